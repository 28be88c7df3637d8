//! A cluster of real `quorumkv serve` processes on loopback ports.
//!
//! Each node gets a port checked free, its own data dir, and one log file
//! (stdout + stderr, appended across restarts) in the cluster's temp dir.
//! Drop kills every child; if the test is panicking it keeps the dir and
//! prints each node's log tail, so a failure can be diagnosed afterwards.
//! Helpers panic instead of returning errors for that reason: an `Err`
//! returned from a test would not be seen as a panic by Drop.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::http::Resp;

pub type NodeId = u64;

/// Pause between two polls inside a deadline loop.
pub const POLL: Duration = Duration::from_millis(20);

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Runs a test body with an overall time bound. The panic happens while the
/// body (and so its `Cluster`) is still alive, so Drop keeps the logs.
pub async fn within(limit: Duration, body: impl Future<Output = ()>) {
    let bounded = std::pin::pin!(tokio::time::timeout(limit, body));
    if bounded.await.is_err() {
        panic!("test did not finish within {limit:?}");
    }
}

/// How nodes are launched beyond the defaults.
#[derive(Clone, Default)]
pub struct Options {
    /// Extra `serve` flags, given to every node.
    pub extra_args: Vec<String>,
    /// Program (and its args) to run the node under, e.g. strace. `{dir}` is
    /// replaced by the cluster dir and `{id}` by the node id.
    pub wrapper: Vec<String>,
}

struct Node {
    id: NodeId,
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    proc: Mutex<Proc>,
}

enum Proc {
    Running(Child),
    Stopped(Child),
    Dead,
}

pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    nodes: Vec<Node>,
    opts: Options,
    initial_cluster: String,
    pub http: reqwest::Client,
}

impl Cluster {
    pub async fn start(n: usize) -> Cluster {
        Self::start_opts(n, Options::default()).await
    }

    pub async fn start_with(n: usize, extra_args: &[&str]) -> Cluster {
        let extra_args = extra_args.iter().map(|s| s.to_string()).collect();
        let opts = Options {
            extra_args,
            ..Options::default()
        };
        Self::start_opts(n, opts).await
    }

    pub async fn start_opts(n: usize, opts: Options) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("quorumkv-it-")
            .tempdir()
            .expect("create cluster temp dir");
        let dir_path = dir.path().to_path_buf();
        let nodes: Vec<Node> = (1..=n as NodeId)
            .map(|id| Node {
                id,
                port: free_port(),
                data_dir: dir_path.join(format!("node-{id}")),
                log_path: dir_path.join(format!("node-{id}.log")),
                proc: Mutex::new(Proc::Dead),
            })
            .collect();
        let initial_cluster = nodes
            .iter()
            .map(|n| format!("{}=http://127.0.0.1:{}", n.id, n.port))
            .collect::<Vec<_>>()
            .join(",");
        let http = reqwest::Client::builder()
            .timeout(secs(10))
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .expect("build http client");
        let cluster = Cluster {
            dir: Some(dir),
            dir_path,
            nodes,
            opts,
            initial_cluster,
            http,
        };
        for id in cluster.ids() {
            cluster.spawn(id);
        }
        for id in cluster.ids() {
            cluster.wait_healthy(id, secs(30)).await;
        }
        cluster
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    pub fn url(&self, id: NodeId) -> String {
        format!("http://127.0.0.1:{}", self.node(id).port)
    }

    /// Nodes that are running and not SIGSTOPped.
    pub fn live(&self) -> Vec<NodeId> {
        let live = |n: &&Node| matches!(*n.proc.lock().unwrap(), Proc::Running(_));
        self.nodes.iter().filter(live).map(|n| n.id).collect()
    }

    pub fn others(&self, id: NodeId) -> Vec<NodeId> {
        self.ids().into_iter().filter(|&o| o != id).collect()
    }

    /// Pid of the quorumkv process itself (not of a wrapper such as strace).
    pub fn pid(&self, id: NodeId) -> u32 {
        let wrapper_pid = match &*self.node(id).proc.lock().unwrap() {
            Proc::Running(c) | Proc::Stopped(c) => c.id(),
            Proc::Dead => panic!("node {id} is not running"),
        };
        if self.opts.wrapper.is_empty() {
            return wrapper_pid;
        }
        let deadline = Instant::now() + secs(10);
        loop {
            if let Some(pid) = child_named(wrapper_pid, "quorumkv") {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "no quorumkv under wrapper pid {wrapper_pid}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill9(&self, id: NodeId) {
        let inner = (!self.opts.wrapper.is_empty()).then(|| self.pid(id));
        let node = self.node(id);
        let mut proc = node.proc.lock().unwrap();
        kill_proc(&mut proc, inner);
    }

    pub fn stop(&self, id: NodeId) {
        let pid = self.pid(id);
        let mut proc = self.node(id).proc.lock().unwrap();
        let Proc::Running(child) = std::mem::replace(&mut *proc, Proc::Dead) else {
            panic!("node {id} is not running");
        };
        signal(pid, "STOP");
        *proc = Proc::Stopped(child);
    }

    pub fn cont(&self, id: NodeId) {
        let pid = self.pid(id);
        let mut proc = self.node(id).proc.lock().unwrap();
        let Proc::Stopped(child) = std::mem::replace(&mut *proc, Proc::Dead) else {
            panic!("node {id} is not stopped");
        };
        signal(pid, "CONT");
        *proc = Proc::Running(child);
    }

    /// Starts a killed node again: same data dir, port and flags.
    pub async fn restart(&self, id: NodeId) {
        self.spawn(id);
        self.wait_healthy(id, secs(30)).await;
    }

    fn node(&self, id: NodeId) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn spawn(&self, id: NodeId) {
        let node = self.node(id);
        let mut proc = node.proc.lock().unwrap();
        assert!(matches!(*proc, Proc::Dead), "node {id} is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .expect("open node log");
        let bin = env!("CARGO_BIN_EXE_quorumkv");
        let mut cmd = match self.opts.wrapper.split_first() {
            None => Command::new(bin),
            Some((program, args)) => {
                let dir = self.dir_path.display().to_string();
                let fill = |a: &String| a.replace("{dir}", &dir).replace("{id}", &id.to_string());
                let mut cmd = Command::new(program);
                cmd.args(args.iter().map(fill)).arg(bin);
                cmd
            }
        };
        cmd.arg("serve")
            .args(["--id", &id.to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", node.port)])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--initial-cluster", &self.initial_cluster])
            .args(&self.opts.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node {id}: {e}"));
        *proc = Proc::Running(child);
    }

    async fn wait_healthy(&self, id: NodeId, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status(id) {
                panic!("node {id} exited ({status}) before answering /health");
            }
            let url = format!("{}/health", self.url(id));
            if let Ok(r) = self.http.get(url).timeout(secs(1)).send().await {
                let ok = r.status() == 200;
                if ok && r.json::<Value>().await.is_ok_and(|b| b["id"] == id) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {id}: no /health within {timeout:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn exit_status(&self, id: NodeId) -> Option<std::process::ExitStatus> {
        match &mut *self.node(id).proc.lock().unwrap() {
            Proc::Running(c) | Proc::Stopped(c) => c.try_wait().ok().flatten(),
            Proc::Dead => None,
        }
    }

    /// Last `lines` lines of a node's log.
    pub fn log_tail(&self, id: NodeId, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.node(id).log_path) {
            let mut bytes = Vec::new();
            let _ = f.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let wrapped = !self.opts.wrapper.is_empty();
        for node in &self.nodes {
            let mut proc = node.proc.lock().unwrap_or_else(|e| e.into_inner());
            let wrapper_pid = match &*proc {
                Proc::Running(c) | Proc::Stopped(c) => Some(c.id()),
                Proc::Dead => None,
            };
            let inner = wrapper_pid
                .filter(|_| wrapped)
                .and_then(|p| child_named(p, "quorumkv"));
            kill_proc(&mut proc, inner);
        }
        let Some(dir) = self.dir.take() else { return };
        if std::thread::panicking() {
            let path = dir.keep();
            eprintln!("=== cluster dir kept for diagnosis: {}", path.display());
            for id in self.ids() {
                eprintln!("=== node {id} log tail:\n{}", self.log_tail(id, 40));
            }
        }
    }
}

/// Kills a node (SIGCONT first if stopped) and reaps it. `inner` is the real
/// node pid when the child is a wrapper (strace exits once its tracee died).
fn kill_proc(proc: &mut Proc, inner: Option<u32>) {
    let (mut child, stopped) = match std::mem::replace(proc, Proc::Dead) {
        Proc::Running(c) => (c, false),
        Proc::Stopped(c) => (c, true),
        Proc::Dead => return,
    };
    let pid = inner.unwrap_or(child.id());
    if stopped {
        signal(pid, "CONT");
    }
    if let Some(pid) = inner {
        signal(pid, "KILL");
        let deadline = Instant::now() + secs(10);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status();
}

/// A child process of `parent` whose command name is `name`, from /proc.
fn child_named(parent: u32, name: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."; comm may contain spaces, so split at ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 1..].split_whitespace().nth(1);
        if comm == name && ppid == Some(&parent.to_string()) {
            return Some(pid);
        }
    }
    None
}

/// A loopback port that nothing listens on, below Linux's ephemeral range
/// (so outgoing connections do not take it) and distinct within this process.
fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = (std::process::id() % SPAN) * 37 % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (base + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port");
}
