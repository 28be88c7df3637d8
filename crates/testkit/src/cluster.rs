//! [`LocalCluster`]: real `quorumkv serve` processes on loopback ports.
//!
//! Each node gets a port checked free, its own data dir, and one log file
//! (stdout + stderr, appended across restarts) in the cluster's temp dir.
//! Nodes can be killed with SIGKILL, frozen with SIGSTOP, thawed and
//! restarted on the same port and data. Drop kills every child; the dir is
//! removed unless [`LocalCluster::keep_dir`] was called or the thread is
//! panicking, in which case each node's log tail is printed too.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::client::{Client, ClientTls};
use crate::process::{child_named, free_port, kill_child, make_dir, signal};
use crate::{Error, NodeId};

/// Pause between two polls inside a deadline loop.
pub const POLL: Duration = Duration::from_millis(20);

/// How nodes are launched beyond the defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// Extra `serve` flags, given to every node.
    pub extra_args: Vec<String>,
    /// Program (and its args) to run each node under, e.g. strace. `{dir}` is
    /// replaced by the cluster dir and `{id}` by the node id.
    pub wrapper: Vec<String>,
    /// Extra environment variables for every node.
    pub env: Vec<(String, String)>,
    /// Name prefix of the cluster's temp dir.
    pub dir_prefix: String,
    /// Where the temp dir goes; default `std::env::temp_dir()`.
    pub parent_dir: Option<PathBuf>,
    /// How long a started node may take to answer `/health`.
    pub start_timeout: Duration,
    /// Request timeout of the clients the cluster hands out.
    pub request_timeout: Duration,
    /// Listen IP of each node in id order (node 1 first), each a loopback
    /// address; nodes past the end listen on 127.0.0.1. A node's peer
    /// connections leave from its listen IP, which is how a proxy between
    /// nodes tells them apart.
    pub listen_ips: Vec<IpAddr>,
    /// The peer URL each node is known by in `--initial-cluster`, in id
    /// order, e.g. a proxy in front of its peer listener; nodes past the end
    /// are known by their own peer URL. Only peers use these:
    /// [`LocalCluster::url`] and its clients go direct to the client listener.
    pub advertise: Vec<String>,
    /// TLS everywhere: a throwaway CA from `quorumkv certs` in `<dir>/tls`,
    /// mutual TLS between peers, HTTPS with client certificates for clients
    /// (the cluster's own clients present `client.crt`).
    pub tls: bool,
    /// The text of an `--auth-file` (written to `<dir>/auth.toml`) every
    /// node is started with.
    pub auth_file: Option<String>,
    /// The bearer token of the cluster's own clients ([`LocalCluster::client`]).
    pub client_token: Option<String>,
    /// Nodes beyond the founding ones (ids n+1 ..): ports and a data dir are
    /// set aside, but they are not in `--initial-cluster` and do not run until
    /// [`LocalCluster::start_spare`], which starts one to be added as a member.
    pub spares: usize,
    /// A backup (`quorumkv snapshot save`) every founding node is restored
    /// from (`quorumkv snapshot restore`) before its first start.
    pub restore_from: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            extra_args: Vec::new(),
            wrapper: Vec::new(),
            env: Vec::new(),
            dir_prefix: "quorumkv-".into(),
            parent_dir: None,
            start_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            listen_ips: Vec::new(),
            advertise: Vec::new(),
            tls: false,
            auth_file: None,
            client_token: None,
            spares: 0,
            restore_from: None,
        }
    }
}

/// What a node's process is doing, as far as the cluster made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Running,
    /// SIGSTOPped.
    Stopped,
    /// Never started, killed, or exited.
    Dead,
}

impl NodeState {
    fn name(self) -> &'static str {
        match self {
            NodeState::Running => "running",
            NodeState::Stopped => "stopped",
            NodeState::Dead => "dead",
        }
    }
}

struct Node {
    id: NodeId,
    ip: IpAddr,
    port: u16,
    peer_port: u16,
    /// Started at least once: a founder, or a spare that was started.
    started: AtomicBool,
    /// Flags of this node alone (a spare's `--join`), after the common ones.
    own_args: Mutex<Vec<String>>,
    /// A founder replaced by a new member under its id: no more
    /// `--initial-cluster` ([`LocalCluster::start_replacement`]).
    replaced: AtomicBool,
    data_dir: PathBuf,
    log_path: PathBuf,
    proc: Mutex<Proc>,
}

enum Proc {
    Running(Child),
    Stopped(Child),
    Dead,
}

impl Proc {
    fn state(&self) -> NodeState {
        match self {
            Proc::Running(_) => NodeState::Running,
            Proc::Stopped(_) => NodeState::Stopped,
            Proc::Dead => NodeState::Dead,
        }
    }
}

pub struct LocalCluster {
    bin: PathBuf,
    dir: PathBuf,
    keep: AtomicBool,
    nodes: Vec<Node>,
    opts: Options,
    initial_cluster: String,
    /// The cluster token every node requires of peer requests (a fresh random
    /// one per cluster, passed as `QKV_CLUSTER_TOKEN`).
    token: String,
    /// With [`Options::tls`]: what the cluster's clients trust and present.
    tls: Option<ClientTls>,
    http: reqwest::Client,
}

impl LocalCluster {
    /// Launches `n` nodes of `bin` (`quorumkv`) and waits until each answers
    /// `/health`. A leader may not be elected yet: see [`LocalCluster::leader`].
    /// A port taken between the check and the node's bind is retried with new
    /// ports; on any other failure the directory is kept for diagnosis.
    pub async fn start(bin: impl Into<PathBuf>, n: usize, opts: Options) -> Result<Self, Error> {
        let bin = bin.into();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let cluster = Self::launch(bin.clone(), n, opts.clone())?;
            let mut healthy = Ok(());
            for id in cluster.ids() {
                healthy = cluster.wait_healthy(id, cluster.opts.start_timeout).await;
                if healthy.is_err() {
                    break;
                }
            }
            match healthy {
                Ok(()) => return Ok(cluster),
                Err(Error::Exited { .. }) if attempt < 3 && cluster.port_clash() => continue,
                Err(e) => {
                    cluster.keep_dir();
                    return Err(e);
                }
            }
        }
    }

    /// Picks ports, makes the directory and spawns every node.
    fn launch(bin: PathBuf, n: usize, opts: Options) -> Result<Self, Error> {
        let parent = opts.parent_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = make_dir(&parent, &opts.dir_prefix)?;
        let tls = match opts.tls {
            true => Some(make_certs(&bin, &dir, n, &opts).inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&dir);
            })?),
            false => None,
        };
        if let Some(text) = &opts.auth_file {
            let path = dir.join("auth.toml");
            std::fs::write(&path, text).map_err(Error::io(format!("write {}", path.display())))?;
        }
        let total = n + opts.spares;
        let ports = (0..total)
            .map(|_| Ok::<_, Error>((free_port()?, free_port()?)))
            .collect::<Result<Vec<_>, _>>()?;
        let http = Client::http_tls(opts.request_timeout, tls.as_ref())?;
        let nodes: Vec<Node> = (1..=total as NodeId)
            .zip(ports)
            .map(|(id, (port, peer_port))| Node {
                id,
                ip: listen_ip(&opts, id),
                port,
                peer_port,
                started: AtomicBool::new(id as usize <= n),
                own_args: Mutex::new(Vec::new()),
                replaced: AtomicBool::new(false),
                data_dir: dir.join(format!("node-{id}")),
                log_path: dir.join(format!("node-{id}.log")),
                proc: Mutex::new(Proc::Dead),
            })
            .collect();
        let initial_cluster = nodes
            .iter()
            .take(n)
            .map(|n| match opts.advertise.get(n.id as usize - 1) {
                Some(url) => format!("{}={url}", n.id),
                None => format!(
                    "{}={}://{}",
                    n.id,
                    scheme(&opts),
                    SocketAddr::new(n.ip, n.peer_port)
                ),
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut rng =
            crate::rng::Rng::new(crate::drive::clock_seed() ^ u64::from(std::process::id()));
        let token = format!("qkv-test-{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        // From here on, Drop kills what was spawned and removes the directory.
        let cluster = LocalCluster {
            bin,
            dir,
            keep: AtomicBool::new(false),
            nodes,
            opts,
            initial_cluster,
            token,
            tls,
            http,
        };
        if let Some(backup) = &cluster.opts.restore_from {
            for id in cluster.ids() {
                cluster.restore(id, backup)?;
            }
        }
        for id in cluster.ids() {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    /// Whether a node's log says its port was taken.
    fn port_clash(&self) -> bool {
        let clash = |id| self.log_tail(id, 20).contains("Address already in use");
        self.ids().into_iter().any(clash)
    }

    /// The founders and every spare started so far.
    pub fn ids(&self) -> Vec<NodeId> {
        let started = |n: &&Node| n.started.load(Ordering::SeqCst);
        self.nodes.iter().filter(started).map(|n| n.id).collect()
    }

    /// Spares never started yet ([`Options::spares`]).
    pub fn spare_ids(&self) -> Vec<NodeId> {
        let spare = |n: &&Node| !n.started.load(Ordering::SeqCst);
        self.nodes.iter().filter(spare).map(|n| n.id).collect()
    }

    /// Starts spare `id` with an empty data dir and no `--initial-cluster`:
    /// it waits to be added (`POST /v1/cluster/members` with its
    /// [`LocalCluster::peer_url`]). Waits until it answers `/health`.
    pub async fn start_spare(&self, id: NodeId) -> Result<(), Error> {
        self.start_spare_with(id, &[]).await
    }

    /// [`LocalCluster::start_spare`] with flags of its own (e.g. `--join`),
    /// kept for its restarts.
    pub async fn start_spare_with(&self, id: NodeId, args: &[String]) -> Result<(), Error> {
        let node = self.node(id)?;
        node.started.store(true, Ordering::SeqCst);
        *node.own_args.lock().unwrap_or_else(|e| e.into_inner()) = args.to_vec();
        self.restart(id).await
    }

    /// Starts a dead founder again as a new member under its id (after it
    /// was removed and wiped): with `args` (e.g. `--join`) instead of
    /// `--initial-cluster`, from now on. Waits until it answers `/health`.
    pub async fn start_replacement(&self, id: NodeId, args: &[String]) -> Result<(), Error> {
        self.node(id)?.replaced.store(true, Ordering::SeqCst);
        self.start_spare_with(id, args).await
    }

    /// Deletes a dead node's data dir (a lost disk).
    pub fn wipe(&self, id: NodeId) -> Result<(), Error> {
        let node = self.node(id)?;
        let state = self.state(id)?;
        if state != NodeState::Dead {
            return Err(self.wrong_state(id, state, "dead"));
        }
        match std::fs::remove_dir_all(&node.data_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("wipe {}", node.data_dir.display()))(e)),
        }
    }

    pub fn others(&self, id: NodeId) -> Vec<NodeId> {
        self.ids().into_iter().filter(|&o| o != id).collect()
    }

    /// Nodes that are running and not SIGSTOPped.
    pub fn live(&self) -> Vec<NodeId> {
        let live = |n: &&Node| lock(&n.proc).state() == NodeState::Running;
        self.nodes.iter().filter(live).map(|n| n.id).collect()
    }

    pub fn state(&self, id: NodeId) -> Result<NodeState, Error> {
        Ok(lock(&self.node(id)?.proc).state())
    }

    /// The cluster's directory: node data dirs, logs, and whatever a wrapper writes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn binary(&self) -> &Path {
        &self.bin
    }

    /// The cluster token the nodes require of peer requests.
    pub fn cluster_token(&self) -> &str {
        &self.token
    }

    /// The `--initial-cluster` value every node was started with.
    pub fn initial_cluster(&self) -> &str {
        &self.initial_cluster
    }

    pub fn data_dir(&self, id: NodeId) -> Result<&Path, Error> {
        Ok(&self.node(id)?.data_dir)
    }

    pub fn log_path(&self, id: NodeId) -> Result<&Path, Error> {
        Ok(&self.node(id)?.log_path)
    }

    pub fn port(&self, id: NodeId) -> Result<u16, Error> {
        Ok(self.node(id)?.port)
    }

    /// The address a node listens on: its listen IP and port.
    pub fn listen_addr(&self, id: NodeId) -> Result<SocketAddr, Error> {
        let node = self.node(id)?;
        Ok(SocketAddr::new(node.ip, node.port))
    }

    /// The address a node's peer listener (`/raft/*`) is bound to.
    pub fn peer_addr(&self, id: NodeId) -> Result<SocketAddr, Error> {
        let node = self.node(id)?;
        Ok(SocketAddr::new(node.ip, node.peer_port))
    }

    /// `http(s)://<peer addr>` of a node: its own peer listener, not a proxy.
    pub fn peer_url(&self, id: NodeId) -> Result<String, Error> {
        Ok(format!("{}://{}", scheme(&self.opts), self.peer_addr(id)?))
    }

    /// With [`Options::tls`]: the CA and client certificate the cluster's
    /// clients use (files in `<dir>/tls`, see `quorumkv certs`).
    pub fn client_tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// `http://<listen ip>:<port>` of a node (`127.0.0.1` unless
    /// [`Options::listen_ips`] says otherwise): clients reach it directly.
    pub fn url(&self, id: NodeId) -> Result<String, Error> {
        Ok(format!(
            "{}://{}",
            scheme(&self.opts),
            self.listen_addr(id)?
        ))
    }

    /// A client for node `id`; all of the cluster's clients share one pool.
    pub fn client(&self, id: NodeId) -> Result<Client, Error> {
        let client = Client::with_http(self.http.clone(), self.url(id)?);
        Ok(client.with_token(self.opts.client_token.as_deref()))
    }

    /// The `reqwest::Client` behind [`LocalCluster::client`].
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Keeps the directory (data, logs) when the cluster is dropped.
    pub fn keep_dir(&self) {
        self.keep.store(true, Ordering::SeqCst);
    }

    /// Pid of the quorumkv process itself (not of a wrapper such as strace).
    pub fn pid(&self, id: NodeId) -> Result<u32, Error> {
        let outer = match &*lock(&self.node(id)?.proc) {
            Proc::Running(c) | Proc::Stopped(c) => c.id(),
            Proc::Dead => return Err(self.wrong_state(id, NodeState::Dead, "running")),
        };
        if self.opts.wrapper.is_empty() {
            return Ok(outer);
        }
        let waited = Duration::from_secs(10);
        let deadline = Instant::now() + waited;
        loop {
            if let Some(pid) = child_named(outer, "quorumkv") {
                return Ok(pid);
            }
            if Instant::now() >= deadline {
                let what = format!("quorumkv under wrapper pid {outer}");
                return Err(Error::Timeout { what, waited });
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL: no chance to flush or say goodbye. Killing a dead node is a no-op.
    pub fn kill9(&self, id: NodeId) -> Result<(), Error> {
        let inner = match self.state(id)? {
            NodeState::Dead => return Ok(()),
            _ if self.opts.wrapper.is_empty() => None,
            _ => Some(self.pid(id)?),
        };
        kill_proc(&mut lock(&self.node(id)?.proc), inner);
        Ok(())
    }

    /// SIGTERM, then waits up to `timeout` for the node to exit by itself;
    /// returns its exit status. The node is dead afterwards.
    pub async fn terminate(&self, id: NodeId, timeout: Duration) -> Result<ExitStatus, Error> {
        let pid = self.pid(id)?;
        signal(pid, "TERM")?;
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut proc = lock(&self.node(id)?.proc);
                let exited = match &mut *proc {
                    Proc::Running(c) | Proc::Stopped(c) => c.try_wait().ok().flatten(),
                    Proc::Dead => return Err(self.wrong_state(id, NodeState::Dead, "running")),
                };
                if let Some(status) = exited {
                    *proc = Proc::Dead;
                    return Ok(status);
                }
            }
            if Instant::now() >= deadline {
                let what = format!("node {id} exiting after SIGTERM");
                return Err(Error::Timeout {
                    what,
                    waited: timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGSTOP: the process freezes with its sockets open.
    pub fn stop(&self, id: NodeId) -> Result<(), Error> {
        self.flip(id, NodeState::Running, "STOP", Proc::Stopped)
    }

    /// SIGCONT after [`LocalCluster::stop`].
    pub fn cont(&self, id: NodeId) -> Result<(), Error> {
        self.flip(id, NodeState::Stopped, "CONT", Proc::Running)
    }

    /// Sends `sig` to a node in state `from`; it is then `to(child)`.
    fn flip(
        &self,
        id: NodeId,
        from: NodeState,
        sig: &str,
        to: fn(Child) -> Proc,
    ) -> Result<(), Error> {
        let pid = self.pid(id)?;
        let mut proc = lock(&self.node(id)?.proc);
        if proc.state() != from {
            return Err(self.wrong_state(id, proc.state(), from.name()));
        }
        signal(pid, sig)?;
        if let Proc::Running(child) | Proc::Stopped(child) =
            std::mem::replace(&mut *proc, Proc::Dead)
        {
            *proc = to(child);
        }
        Ok(())
    }

    /// Starts a killed node again: same data dir, port and flags.
    pub async fn restart(&self, id: NodeId) -> Result<(), Error> {
        self.spawn(id)?;
        self.wait_healthy(id, self.opts.start_timeout).await
    }

    /// The leader every live node agrees on.
    pub async fn leader(&self, timeout: Duration) -> Result<NodeId, Error> {
        self.leader_among(&self.live(), timeout).await
    }

    /// Polls `/v1/cluster` on `ids` until all name the same leader, one of `ids`.
    pub async fn leader_among(&self, ids: &[NodeId], timeout: Duration) -> Result<NodeId, Error> {
        let deadline = Instant::now() + timeout;
        let per_call = Duration::from_secs(2);
        loop {
            let mut seen = Vec::new();
            for &id in ids {
                let client = self.client(id)?;
                let info = tokio::time::timeout(per_call, client.cluster_info()).await;
                seen.push(info.ok().and_then(Result::ok).and_then(|i| i.leader));
            }
            if let Some(Some(leader)) = seen.first() {
                if ids.contains(leader) && seen.iter().all(|s| *s == Some(*leader)) {
                    return Ok(*leader);
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("nodes {ids:?} agree on no leader; last seen {seen:?}"),
                    waited: timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until node `id` answers `/health` with its own id.
    pub async fn wait_healthy(&self, id: NodeId, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let client = self.client(id)?;
        loop {
            if let Some(status) = self.exit_status(id)? {
                return Err(Error::Exited {
                    id,
                    status: status.to_string(),
                    log_tail: self.log_tail(id, 8),
                });
            }
            if client.health(Duration::from_secs(1)).await.ok() == Some(id) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let what = format!("node {id} answering /health");
                return Err(Error::Timeout {
                    what,
                    waited: timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The exit status of a node's process if it exited by itself.
    pub fn exit_status(&self, id: NodeId) -> Result<Option<ExitStatus>, Error> {
        Ok(match &mut *lock(&self.node(id)?.proc) {
            Proc::Running(c) | Proc::Stopped(c) => c.try_wait().ok().flatten(),
            Proc::Dead => None,
        })
    }

    /// Last `lines` lines of a node's log (empty if it cannot be read).
    pub fn log_tail(&self, id: NodeId, lines: usize) -> String {
        let mut bytes = Vec::new();
        if let Ok(node) = self.node(id) {
            if let Ok(mut f) = File::open(&node.log_path) {
                let _ = f.read_to_end(&mut bytes);
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn node(&self, id: NodeId) -> Result<&Node, Error> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or(Error::NoSuchNode(id))
    }

    fn wrong_state(&self, id: NodeId, is: NodeState, want: &'static str) -> Error {
        Error::NodeState {
            id,
            is: is.name(),
            want,
        }
    }

    fn spawn(&self, id: NodeId) -> Result<(), Error> {
        let node = self.node(id)?;
        let mut proc = lock(&node.proc);
        if let Proc::Running(_) | Proc::Stopped(_) = *proc {
            return Err(self.wrong_state(id, proc.state(), "dead"));
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(Error::io(format!("open {}", node.log_path.display())))?;
        let log2 = log.try_clone().map_err(Error::io("clone log handle"))?;
        let mut cmd = match self.opts.wrapper.split_first() {
            None => Command::new(&self.bin),
            Some((program, args)) => {
                let dir = self.dir.display().to_string();
                let fill = |a: &String| a.replace("{dir}", &dir).replace("{id}", &id.to_string());
                let mut cmd = Command::new(program);
                cmd.args(args.iter().map(fill)).arg(&self.bin);
                cmd
            }
        };
        cmd.arg("serve")
            .args(["--id", &id.to_string()])
            .args(["--listen", &SocketAddr::new(node.ip, node.port).to_string()])
            .args([
                "--peer-listen",
                &SocketAddr::new(node.ip, node.peer_port).to_string(),
            ])
            .arg("--data-dir")
            .arg(&node.data_dir);
        if self.is_founder(id) {
            cmd.args(["--initial-cluster", &self.initial_cluster]);
        }
        let own = node
            .own_args
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        cmd.args(self.security_args(id))
            .args(&self.opts.extra_args)
            .args(own)
            .env("QKV_CLUSTER_TOKEN", &self.token)
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log);
        let child = cmd.spawn().map_err(Error::io(format!(
            "spawn node {id} ({})",
            self.bin.display()
        )))?;
        *proc = Proc::Running(child);
        Ok(())
    }
}

impl LocalCluster {
    /// [`Options::client_token`]: what the cluster's own clients present.
    pub fn client_token(&self) -> Option<&str> {
        self.opts.client_token.as_deref()
    }

    /// `quorumkv snapshot restore` into node `id`'s data dir.
    fn restore(&self, id: NodeId, backup: &Path) -> Result<(), Error> {
        let node = self.node(id)?;
        let out = Command::new(&self.bin)
            .args(["snapshot", "restore"])
            .arg(backup)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args([
                "--id",
                &id.to_string(),
                "--initial-cluster",
                &self.initial_cluster,
            ])
            .output()
            .map_err(Error::io(format!(
                "run {} snapshot restore",
                self.bin.display()
            )))?;
        if !out.status.success() {
            return Err(Error::Io {
                what: format!(
                    "snapshot restore of node {id}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                source: std::io::Error::other("restore failed"),
            });
        }
        Ok(())
    }

    /// One of the nodes in `--initial-cluster` (not a spare).
    fn is_founder(&self, id: NodeId) -> bool {
        let replaced = self
            .node(id)
            .is_ok_and(|n| n.replaced.load(Ordering::SeqCst));
        !replaced
            && self
                .initial_cluster
                .split(',')
                .any(|m| m.split_once('=').is_some_and(|(i, _)| i == id.to_string()))
    }

    /// Where [`Options::auth_file`] was written.
    pub fn auth_file(&self) -> PathBuf {
        self.dir.join("auth.toml")
    }

    /// The TLS and auth flags of node `id`, from [`Options::tls`] and
    /// [`Options::auth_file`].
    fn security_args(&self, id: NodeId) -> Vec<String> {
        let mut args = Vec::new();
        if self.opts.auth_file.is_some() {
            args.push("--auth-file".to_owned());
            args.push(self.auth_file().display().to_string());
        }
        if self.tls.is_none() {
            return args;
        }
        let file = |name: String| self.dir.join("tls").join(name).display().to_string();
        let flags = [
            ("--cert", format!("node-{id}.crt")),
            ("--key", format!("node-{id}.key")),
            ("--client-ca", "ca.crt".into()),
            ("--peer-cert", format!("node-{id}-peer.crt")),
            ("--peer-key", format!("node-{id}-peer.key")),
            ("--peer-ca", "peer-ca.crt".into()),
        ];
        args.extend(
            flags
                .into_iter()
                .flat_map(|(flag, name)| [flag.to_owned(), file(name)]),
        );
        args
    }
}

fn scheme(opts: &Options) -> &'static str {
    if opts.tls {
        "https"
    } else {
        "http"
    }
}

/// Runs `quorumkv certs` into `<dir>/tls` for `n` nodes on their listen IPs,
/// and reads back what the cluster's clients need.
fn make_certs(bin: &Path, dir: &Path, n: usize, opts: &Options) -> Result<ClientTls, Error> {
    let out = dir.join("tls");
    let mut hosts: Vec<String> = (1..=n as NodeId)
        .map(|id| listen_ip(opts, id).to_string())
        .collect();
    hosts.push("localhost".into());
    hosts.dedup();
    let status = Command::new(bin)
        .arg("certs")
        .arg("--out")
        .arg(&out)
        .args(["--nodes", &n.to_string(), "--hosts", &hosts.join(",")])
        .stdout(Stdio::null())
        .status()
        .map_err(Error::io(format!("run {} certs", bin.display())))?;
    if !status.success() {
        return Err(Error::Io {
            what: format!("{} certs: {status}", bin.display()),
            source: std::io::Error::other("certificate generation failed"),
        });
    }
    let read = |name: &str| {
        let path = out.join(name);
        std::fs::read(&path).map_err(Error::io(format!("read {}", path.display())))
    };
    let mut identity_pem = read("client.crt")?;
    identity_pem.extend(read("client.key")?);
    Ok(ClientTls {
        ca_pem: read("ca.crt")?,
        identity_pem,
    })
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let wrapped = !self.opts.wrapper.is_empty();
        for node in &self.nodes {
            let mut proc = lock(&node.proc);
            let outer = match &*proc {
                Proc::Running(c) | Proc::Stopped(c) => Some(c.id()),
                Proc::Dead => None,
            };
            let inner = outer
                .filter(|_| wrapped)
                .and_then(|p| child_named(p, "quorumkv"));
            kill_proc(&mut proc, inner);
        }
        let panicking = std::thread::panicking();
        if panicking || self.keep.load(Ordering::SeqCst) {
            eprintln!("=== cluster dir kept for diagnosis: {}", self.dir.display());
            if panicking {
                for id in self.ids() {
                    eprintln!("=== node {id} log tail:\n{}", self.log_tail(id, 40));
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Node `id`'s listen IP from `opts`, 127.0.0.1 by default.
fn listen_ip(opts: &Options, id: NodeId) -> IpAddr {
    let default = IpAddr::V4(Ipv4Addr::LOCALHOST);
    opts.listen_ips
        .get(id as usize - 1)
        .copied()
        .unwrap_or(default)
}

/// Kills whatever `proc` runs and leaves it `Dead`.
fn kill_proc(proc: &mut Proc, inner: Option<u32>) {
    match std::mem::replace(proc, Proc::Dead) {
        Proc::Running(c) => kill_child(c, false, inner),
        Proc::Stopped(c) => kill_child(c, true, inner),
        Proc::Dead => {}
    }
}

/// A poisoned lock still holds a valid `Proc`: take it anyway.
fn lock(m: &Mutex<Proc>) -> MutexGuard<'_, Proc> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
