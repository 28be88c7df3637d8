//! What the workloads share: a seeded random source, the nodes' clients with
//! rotation away from a node that fails, reads retried until a definite
//! answer, and the leader kill that happens mid-run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::{Client, Opts};
use crate::cluster::{LocalCluster, POLL};
use crate::wire::ListItem;
use crate::{Error, NodeId};

pub use crate::rng::Rng;

/// A seed from the clock, for runs that do not pin one.
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One client per node, in id order; `at(i)` wraps around, so a worker
/// rotates to the next node by adding one.
#[derive(Debug, Clone)]
pub struct Nodes {
    nodes: Vec<(NodeId, Client)>,
}

impl Nodes {
    /// Clients for every node of `cluster` with their own request timeout.
    pub fn of(cluster: &LocalCluster, timeout: Duration) -> Result<Nodes, Error> {
        let http = Client::http(timeout)?;
        let nodes = cluster
            .ids()
            .into_iter()
            .map(|id| Ok((id, Client::with_http(http.clone(), cluster.url(id)?))))
            .collect::<Result<_, Error>>()?;
        Ok(Nodes { nodes })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn at(&self, i: usize) -> (NodeId, &Client) {
        let (id, client) = &self.nodes[i % self.nodes.len()];
        (*id, client)
    }

    pub fn by_id(&self, id: NodeId) -> Result<&Client, Error> {
        let found = self.nodes.iter().find(|(n, _)| *n == id);
        found.map(|(_, c)| c).ok_or(Error::NoSuchNode(id))
    }
}

/// A back-off that grows from 20 ms to 320 ms over failed tries.
pub fn backoff(tries: u32) -> Duration {
    POLL * 2u32.pow(tries.min(4))
}

/// A key's value and modification index by strong read, trying node after
/// node (starting at `*node`, left at the one that answered) until one gives
/// a definite answer: `Some` on 200, `None` on 404.
pub async fn read_key(
    nodes: &Nodes,
    node: &mut usize,
    key: &str,
    deadline: Instant,
) -> Result<Option<(String, u64)>, Error> {
    let started = Instant::now();
    let mut tries = 0;
    loop {
        let (id, client) = nodes.at(*node);
        let last = match client.get(key, &Opts::strong()).await {
            Ok(r) if r.status == 200 => {
                let index = r.etag().ok_or_else(|| {
                    Error::Unexpected(format!("GET {key} on node {id} without ETag: {r:?}"))
                })?;
                return Ok(Some((r.text(), index)));
            }
            Ok(r) if r.status == 404 => return Ok(None),
            Ok(r) if r.status.is_server_error() => format!("{r:?}"),
            Ok(r) => return Err(Error::Unexpected(format!("GET {key} on {id}: {r:?}"))),
            Err(Error::Http(e)) => e.to_string(),
            Err(e) => return Err(e),
        };
        if Instant::now() >= deadline {
            let what = format!("a strong read of {key}; last on node {id}: {last}");
            return Err(Error::Timeout {
                what,
                waited: started.elapsed(),
            });
        }
        *node += 1;
        tries += 1;
        tokio::time::sleep(backoff(tries)).await;
    }
}

/// Every key under `prefix` (at most 10000) from one node, at one index:
/// returns the items and the index they were read at. `opts` picks the level.
pub async fn scan(
    client: &Client,
    prefix: &str,
    opts: &Opts,
) -> Result<(Vec<ListItem>, u64), Error> {
    let r = client.list(prefix, 10_000, opts).await?;
    let listing = r.listing()?;
    if listing.more {
        return Err(Error::Unexpected(format!(
            "more than 10000 keys under {prefix}"
        )));
    }
    let index = r
        .raft_index()
        .ok_or_else(|| Error::Unexpected(format!("scan without X-Raft-Index: {r:?}")))?;
    Ok((listing.items, index))
}

/// A strong scan, retried on the current leader until it answers.
pub async fn scan_strong(
    cluster: &LocalCluster,
    nodes: &Nodes,
    prefix: &str,
    timeout: Duration,
) -> Result<(Vec<ListItem>, u64), Error> {
    let deadline = Instant::now() + timeout;
    let mut tries = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let leader = cluster.leader(left).await?;
        match scan(nodes.by_id(leader)?, prefix, &Opts::strong()).await {
            Ok(found) => return Ok(found),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(backoff(tries)).await;
            }
        }
    }
}

/// Checks that every live node holds exactly `want` under `prefix` once it
/// has applied `index`; returns one line per node that differs.
pub async fn replicas_agree(
    cluster: &LocalCluster,
    nodes: &Nodes,
    prefix: &str,
    want: &[ListItem],
    index: u64,
) -> Result<Vec<String>, Error> {
    let mut diffs = Vec::new();
    for id in cluster.live() {
        let opts = Opts::eventual().min_index(index);
        let deadline = Instant::now() + Duration::from_secs(30);
        let (items, _) = loop {
            match scan(nodes.by_id(id)?, prefix, &opts).await {
                Ok(found) => break found,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(POLL * 5).await,
            }
        };
        if items != want {
            let differ = items.iter().filter(|i| !want.contains(i)).count();
            diffs.push(format!(
                "node {id} has {} keys under {prefix} ({differ} not on the leader), the leader {}",
                items.len(),
                want.len()
            ));
        }
    }
    Ok(diffs)
}

/// When to kill the leader and when to start it again, in units of the
/// workload's progress counter (acknowledged transfers, seats sold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderKill {
    pub at: u64,
    pub restart_at: u64,
}

/// What the leader kill did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillReport {
    pub killed: Option<NodeId>,
    /// Progress when the leader was killed.
    pub progress_at_kill: u64,
    pub new_leader: Option<NodeId>,
    /// From the kill until the survivors agreed on a new leader.
    pub election: Option<Duration>,
    pub restarted: bool,
}

impl std::fmt::Display for KillReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.killed, self.new_leader, self.election) {
            (Some(old), Some(new), Some(took)) => {
                write!(
                f,
                "leader {old} killed (kill -9) at progress {}; node {new} led after {took:.1?}; \
                 node {old} {}",
                self.progress_at_kill,
                if self.restarted { "restarted" } else { "left down" }
            )
            }
            (Some(old), _, _) => write!(f, "leader {old} killed; no new leader seen"),
            _ => f.write_str("no leader killed (the run ended first)"),
        }
    }
}

/// Kills the leader with SIGKILL once `progress` reaches `plan.at`, waits
/// for the others to elect a new one, and restarts the old one once
/// `progress` reaches `plan.restart_at` or the workload is `done`.
pub async fn kill_leader_midway(
    cluster: &LocalCluster,
    progress: &AtomicU64,
    done: &AtomicBool,
    plan: LeaderKill,
    timeout: Duration,
) -> Result<KillReport, Error> {
    let deadline = Instant::now() + timeout;
    let mut report = KillReport::default();
    while progress.load(Ordering::SeqCst) < plan.at {
        if done.load(Ordering::SeqCst) || Instant::now() >= deadline {
            return Ok(report);
        }
        tokio::time::sleep(POLL).await;
    }
    let old = cluster.leader(Duration::from_secs(10)).await?;
    cluster.kill9(old)?;
    let killed_at = Instant::now();
    report.killed = Some(old);
    report.progress_at_kill = progress.load(Ordering::SeqCst);
    let new = cluster
        .leader_among(&cluster.others(old), Duration::from_secs(20))
        .await?;
    report.new_leader = Some(new);
    report.election = Some(killed_at.elapsed());
    while progress.load(Ordering::SeqCst) < plan.restart_at
        && !done.load(Ordering::SeqCst)
        && Instant::now() < deadline
    {
        tokio::time::sleep(POLL).await;
    }
    cluster.restart(old).await?;
    report.restarted = true;
    Ok(report)
}
