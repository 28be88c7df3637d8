//! The failover figure: under steady strong writes through the followers,
//! kill -9 the leader N times and measure each time the unavailability, from
//! the kill to the first acknowledged write invoked after it (which only a
//! new leader can commit), through another node. Between kills the old
//! leader is restarted and allowed to catch up.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::POLL;
use crate::{Client, Error, LocalCluster, NodeId, Options, Opts};

#[derive(Debug, Clone)]
pub struct FailoverConfig {
    pub bin: PathBuf,
    pub kills: usize,
    /// Concurrent writers, each strictly sequential.
    pub writers: usize,
    pub op_timeout: Duration,
    /// Bound on each recovery: a kill that sees no acknowledged write in
    /// this long counts as "never recovered".
    pub recover: Duration,
    pub node_args: Vec<String>,
    pub parent_dir: Option<PathBuf>,
    /// Keep the cluster directory (node logs) afterwards.
    pub keep: bool,
}

impl FailoverConfig {
    pub fn new(bin: PathBuf, kills: usize) -> Self {
        FailoverConfig {
            bin,
            kills,
            writers: 4,
            op_timeout: Duration::from_secs(2),
            recover: Duration::from_secs(30),
            node_args: Vec::new(),
            parent_dir: None,
            keep: false,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct FailoverReport {
    /// Unavailability after each kill that recovered, in kill order.
    pub samples: Vec<Duration>,
    /// Kills after which no write was acknowledged within the bound.
    pub unrecovered: usize,
    /// From each kill until a surviving node said it leads (`/v1/cluster`
    /// polled every 10 ms), for telling the election from the write path.
    pub elections: Vec<Duration>,
    pub writes: u64,
    pub elapsed: Duration,
    /// Where the nodes' data and logs are (removed unless kept).
    pub dir: PathBuf,
}

impl FailoverReport {
    /// `q` in 0..=1 of the recovered samples (nearest rank).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.samples, q)
    }

    pub fn max(&self) -> Option<Duration> {
        self.samples.iter().max().copied()
    }
}

impl fmt::Display for FailoverReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{} ms", d.as_millis()));
        writeln!(
            f,
            "failover: {} leader kills, {} recovered, {} never ({} writes acknowledged, {:.1?})",
            self.samples.len() + self.unrecovered,
            self.samples.len(),
            self.unrecovered,
            self.writes,
            self.elapsed
        )?;
        writeln!(
            f,
            "  unavailability: min {}  median {}  p90 {}  max {}",
            ms(self.quantile(0.0)),
            ms(self.quantile(0.5)),
            ms(self.quantile(0.9)),
            ms(self.max())
        )?;
        writeln!(
            f,
            "  of which election (kill -> a survivor leads): min {}  median {}  p90 {}  max {}",
            ms(quantile(&self.elections, 0.0)),
            ms(quantile(&self.elections, 0.5)),
            ms(quantile(&self.elections, 0.9)),
            ms(quantile(&self.elections, 1.0))
        )?;
        let each = |v: &[Duration]| {
            let all: Vec<String> = v.iter().map(|d| d.as_millis().to_string()).collect();
            all.join(" ")
        };
        writeln!(f, "  each unavailability (ms): {}", each(&self.samples))?;
        writeln!(f, "  each election (ms):       {}", each(&self.elections))
    }
}

/// Nearest-rank quantile `q` in 0..=1.
fn quantile(samples: &[Duration], q: f64) -> Option<Duration> {
    let mut s = samples.to_vec();
    s.sort();
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len().max(1));
    s.get(rank - 1).copied()
}

/// What the writers share with the killer.
struct Bench {
    base: Instant,
    /// Nodes the writers use: every node but the one to be killed.
    targets: Mutex<Vec<(NodeId, Client)>>,
    /// Nanoseconds since `base` of the kill; `u64::MAX` between rounds.
    killed_at: AtomicU64,
    /// Earliest acknowledgement of a write invoked after the kill.
    first_ack: AtomicU64,
    acked: AtomicU64,
    stop: AtomicBool,
}

impl Bench {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    async fn writer(&self, w: usize) {
        let mut n = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            n += 1;
            let target = {
                let t = self.targets.lock().unwrap_or_else(|e| e.into_inner());
                t.get((n as usize + w) % t.len().max(1)).cloned()
            };
            let Some((_, client)) = target else {
                tokio::time::sleep(POLL).await;
                continue;
            };
            let invoked = self.now();
            let key = format!("fo/{w}/{n}");
            match client.put(&key, "x", &Opts::strong()).await {
                Ok(r) if r.status.is_success() => {
                    self.acked.fetch_add(1, Ordering::Relaxed);
                    if invoked >= self.killed_at.load(Ordering::SeqCst) {
                        self.first_ack.fetch_min(self.now(), Ordering::SeqCst);
                    }
                }
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
}

/// Runs the bench on a fresh 3-node cluster.
pub async fn failover(config: FailoverConfig) -> Result<FailoverReport, Error> {
    let started = Instant::now();
    let opts = Options {
        extra_args: config.node_args.clone(),
        dir_prefix: "quorumkv-failover-".into(),
        parent_dir: config.parent_dir.clone(),
        ..Options::default()
    };
    let cluster = LocalCluster::start(&config.bin, 3, opts).await?;
    let http = Client::http(config.op_timeout)?;
    let bench = Arc::new(Bench {
        base: Instant::now(),
        targets: Mutex::new(Vec::new()),
        killed_at: AtomicU64::new(u64::MAX),
        first_ack: AtomicU64::new(u64::MAX),
        acked: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let writers: Vec<_> = (0..config.writers)
        .map(|w| {
            let b = bench.clone();
            tokio::spawn(async move { b.writer(w).await })
        })
        .collect();
    let result = rounds(&config, &cluster, &bench, &http).await;
    bench.stop.store(true, Ordering::SeqCst);
    for w in writers {
        let _ = tokio::time::timeout(config.op_timeout * 2, w).await;
    }
    if result.is_err() || config.keep {
        cluster.keep_dir();
    }
    let mut report = result?;
    report.writes = bench.acked.load(Ordering::Relaxed);
    report.elapsed = started.elapsed();
    report.dir = cluster.dir().to_owned();
    Ok(report)
}

async fn rounds(
    config: &FailoverConfig,
    cluster: &LocalCluster,
    bench: &Bench,
    http: &reqwest::Client,
) -> Result<FailoverReport, Error> {
    let mut report = FailoverReport::default();
    for _ in 0..config.kills {
        let leader = cluster.leader(config.recover).await?;
        let others = cluster
            .others(leader)
            .into_iter()
            .map(|id| Ok((id, Client::with_http(http.clone(), cluster.url(id)?))))
            .collect::<Result<Vec<_>, Error>>()?;
        *bench.targets.lock().unwrap_or_else(|e| e.into_inner()) = others;
        // Steady state: writes flowing through the followers.
        let before = bench.acked.load(Ordering::Relaxed);
        let steady = Instant::now() + config.recover;
        while bench.acked.load(Ordering::Relaxed) < before + 3 * config.writers as u64 {
            if Instant::now() >= steady {
                return Err(Error::Timeout {
                    what: "writes flowing before a kill".into(),
                    waited: config.recover,
                });
            }
            tokio::time::sleep(POLL).await;
        }
        bench.first_ack.store(u64::MAX, Ordering::SeqCst);
        cluster.kill9(leader)?;
        // Reaped: a write invoked from now on can only commit under a new leader.
        bench.killed_at.store(bench.now(), Ordering::SeqCst);
        let killed = Instant::now();
        let election = elected(cluster, leader, http, config.recover);
        let deadline = Instant::now() + config.recover;
        loop {
            let first = bench.first_ack.load(Ordering::SeqCst);
            if first != u64::MAX {
                let killed = bench.killed_at.load(Ordering::SeqCst);
                report
                    .samples
                    .push(Duration::from_nanos(first.saturating_sub(killed)));
                break;
            }
            if Instant::now() >= deadline {
                report.unrecovered += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if let Ok(Some(at)) = election.await {
            report.elections.push(at.saturating_duration_since(killed));
        }
        bench.killed_at.store(u64::MAX, Ordering::SeqCst);
        cluster.restart(leader).await?;
        caught_up(cluster, leader, config.recover).await?;
    }
    Ok(report)
}

/// When a node other than `old` first says it leads, polled every 10 ms.
fn elected(
    cluster: &LocalCluster,
    old: NodeId,
    http: &reqwest::Client,
    bound: Duration,
) -> tokio::task::JoinHandle<Option<Instant>> {
    let clients: Vec<Client> = cluster
        .others(old)
        .into_iter()
        .filter_map(|id| Some(Client::with_http(http.clone(), cluster.url(id).ok()?)))
        .collect();
    tokio::spawn(async move {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            for c in &clients {
                let info = tokio::time::timeout(Duration::from_millis(500), c.cluster_info()).await;
                if let Ok(Ok(info)) = info {
                    if info.state == "Leader" {
                        return Some(Instant::now());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    })
}

/// Waits until `id` has applied the leader's commit index.
async fn caught_up(cluster: &LocalCluster, id: NodeId, bound: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + bound;
    loop {
        let leader = cluster.leader(bound).await?;
        let target = cluster
            .client(leader)?
            .cluster_info()
            .await?
            .committed_index;
        let applied = cluster.client(id)?.cluster_info().await?.applied_index;
        if applied >= target {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("node {id} catching up to {target:?} (at {applied:?})"),
                waited: bound,
            });
        }
        tokio::time::sleep(POLL * 5).await;
    }
}
