//! One torture run: a cluster behind proxies, the clients, the nemesis, then
//! healing, settling and every check; and its configuration profiles.
//!
//! On failure the cluster directory is kept (node data dirs, node logs,
//! `history.jsonl`, `nemesis.jsonl`, `report.txt`) and its path printed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checker::{pair, ConsistencyLevel, LinearConfig, Op, Outcome};
use crate::torture::nemesis::{Nemesis, NemesisConfig};
use crate::torture::proxy::{node_ip, Fabric, ProxyStats};
use crate::torture::recorder::Recorder;
use crate::torture::settle::{settle, Settled, FINAL_READER};
use crate::torture::verdict::{self, Findings};
use crate::torture::watchers::{self, Watchers};
use crate::torture::workload::{Workload, WorkloadConfig, KEY_PREFIX};

/// Watchers following every change of the workload's keys.
const WATCHERS: usize = 2;
use crate::{Error, LocalCluster, NodeId, Options};

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The `quorumkv` binary.
    pub bin: PathBuf,
    /// How long the workload runs (at least; see `min_rounds`).
    pub duration: Duration,
    /// Nemesis rounds (every enabled fault once) to finish before stopping.
    pub min_rounds: usize,
    pub seed: u64,
    pub workload: WorkloadConfig,
    pub nemesis: NemesisConfig,
    /// Extra `serve` flags: the snapshot pressure.
    pub node_args: Vec<String>,
    /// Where the run's directory goes; default the system temp dir.
    pub parent_dir: Option<PathBuf>,
    /// Keep the directory even if the run passes.
    pub keep: bool,
    /// `Unknown` linearizability verdicts tolerated.
    pub allow_unknown: usize,
    pub linear: LinearConfig,
    /// Bound on catching up after the final heal.
    pub settle: Duration,
}

impl RunConfig {
    /// The CI profile: every fault kind at least once, about 70 s of load.
    pub fn ci(bin: PathBuf, seed: u64) -> Self {
        RunConfig {
            bin,
            duration: Duration::from_secs(60),
            min_rounds: 1,
            seed,
            workload: WorkloadConfig::default(),
            nemesis: NemesisConfig::default(),
            node_args: snapshot_pressure(),
            parent_dir: None,
            keep: false,
            allow_unknown: 0,
            linear: LinearConfig::default(),
            settle: Duration::from_secs(60),
        }
    }

    /// The long profile: `minutes` of load, faults more often, more clients.
    pub fn long(bin: PathBuf, seed: u64, minutes: f64) -> Self {
        let mut c = Self::ci(bin, seed);
        c.duration = Duration::from_secs_f64(minutes * 60.0);
        c.workload.clients = 10;
        c.nemesis.quiet = (Duration::from_millis(300), Duration::from_millis(1200));
        c.nemesis.hold = (Duration::from_millis(1000), Duration::from_millis(3000));
        c
    }
}

/// Snapshots every 50 entries keeping 20 behind: kills land while snapshots
/// are built and installed, and a follower down for a moment needs one.
pub fn snapshot_pressure() -> Vec<String> {
    ["--snapshot-every", "50", "--keep-logs", "20"]
        .map(String::from)
        .to_vec()
}

/// Operation counts of one kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

/// What a run did and found.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub dir: PathBuf,
    pub seed: u64,
    /// Workload time, and the whole run's.
    pub load_time: Duration,
    pub total_time: Duration,
    pub check_time: Duration,
    /// Operations by kind (`read`, `eventual read`, `write`, ...).
    pub ops: BTreeMap<String, Counts>,
    /// Answers by operation and status, from the clients.
    pub answers: BTreeMap<String, u64>,
    pub faults: BTreeMap<String, u64>,
    /// Restarts of a follower that found the leader's log purged past it.
    pub snapshot_catch_ups: usize,
    /// "installing snapshot" lines in the node logs.
    pub snapshot_installs: usize,
    pub proxy: ProxyStats,
    /// Per watcher: changes seen and reconnects.
    pub watchers: Vec<(usize, usize)>,
    pub settled: Settled,
    pub findings: Findings,
    pub allow_unknown: usize,
}

impl RunReport {
    pub fn failures(&self) -> usize {
        self.findings.failures(self.allow_unknown)
    }

    pub fn passed(&self) -> bool {
        self.failures() == 0
    }

    pub fn total_ops(&self) -> u64 {
        self.ops.values().map(|c| c.ok + c.fail + c.info).sum()
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        writeln!(
            f,
            "torture {verdict}: seed {}, load {:.1?}, total {:.1?} (checks {:.1?})",
            self.seed, self.load_time, self.total_time, self.check_time
        )?;
        writeln!(
            f,
            "  operations: {} ({:.0}/s)",
            self.total_ops(),
            self.total_ops() as f64 / self.load_time.as_secs_f64().max(0.001)
        )?;
        for (kind, c) in &self.ops {
            writeln!(
                f,
                "    {kind:<14} ok {:>6}  fail {:>5}  info {:>5}",
                c.ok, c.fail, c.info
            )?;
        }
        let faults: u64 = self.faults.values().sum();
        writeln!(f, "  faults injected: {faults}")?;
        for (fault, n) in &self.faults {
            writeln!(f, "    {fault:<18} {n}")?;
        }
        writeln!(
            f,
            "  snapshot catch-ups forced: {}; snapshot installs logged: {}",
            self.snapshot_catch_ups, self.snapshot_installs
        )?;
        writeln!(
            f,
            "  proxies: {} connections forwarded; while cut: {} refused, {} swallowed \
             (blackhole), {} open ones severed",
            self.proxy.forwarded, self.proxy.refused, self.proxy.swallowed, self.proxy.severed
        )?;
        for (w, (changes, reconnects)) in self.watchers.iter().enumerate() {
            writeln!(
                f,
                "  watcher {w}: {changes} changes seen, {reconnects} reconnects to another node"
            )?;
        }
        let fi = &self.findings;
        writeln!(
            f,
            "  checked: {} keys; {} eventual reads ({} decided exactly); \
             settled at commit index {} after {:.1?}",
            fi.keys,
            fi.eventual_reads,
            fi.eventual_exact,
            self.settled.committed,
            self.settled.catch_up.unwrap_or_default()
        )?;
        writeln!(f, "  anomalies:")?;
        for (name, lines) in fi.sections() {
            writeln!(f, "    {name}: {}", lines.len())?;
            for line in lines.iter().take(10) {
                for (i, l) in line.lines().enumerate() {
                    let lead = if i == 0 { "      - " } else { "        " };
                    writeln!(f, "{lead}{l}")?;
                }
            }
            if lines.len() > 10 {
                writeln!(f, "      ... {} more", lines.len() - 10)?;
            }
        }
        writeln!(f, "  answers (operation, status -> count):")?;
        for (what, n) in &self.answers {
            writeln!(f, "    {what:<40} {n}")?;
        }
        writeln!(f, "  run directory: {}", self.dir.display())
    }
}

/// Runs one torture test. `Err` only when the harness itself could not run
/// (no cluster, no leader at the start); findings are in the report.
pub async fn run(config: RunConfig) -> Result<RunReport, Error> {
    let started = Instant::now();
    let ids: Vec<NodeId> = vec![1, 2, 3];
    let mut fabric = Fabric::bind(&ids)
        .await
        .map_err(Error::io("bind the peer proxies"))?;
    let opts = Options {
        extra_args: config.node_args.clone(),
        dir_prefix: "quorumkv-torture-".into(),
        parent_dir: config.parent_dir.clone(),
        listen_ips: ids.iter().map(|&id| node_ip(id)).collect(),
        advertise: ids.iter().filter_map(|&id| fabric.url(id)).collect(),
        request_timeout: Duration::from_secs(5),
        ..Options::default()
    };
    let cluster = Arc::new(LocalCluster::start(&config.bin, ids.len(), opts).await?);
    fabric.start(|id| cluster.peer_addr(id).ok());
    let fabric = Arc::new(fabric);
    let result = drive(&config, &cluster, &fabric, started).await;
    match &result {
        Ok(report) if report.passed() && !config.keep => {}
        Ok(report) => {
            cluster.keep_dir();
            let _ = std::fs::write(cluster.dir().join("report.txt"), report.to_string());
            if !report.passed() {
                eprintln!(
                    "torture FAILED: kept {} (node-N.log, node-N/, history.jsonl, nemesis.jsonl, report.txt)",
                    cluster.dir().display()
                );
            }
        }
        Err(e) => {
            cluster.keep_dir();
            eprintln!(
                "torture could not run ({e}); kept {}",
                cluster.dir().display()
            );
        }
    }
    drop(fabric);
    result
}

async fn drive(
    config: &RunConfig,
    cluster: &Arc<LocalCluster>,
    fabric: &Arc<Fabric>,
    started: Instant,
) -> Result<RunReport, Error> {
    cluster.leader(Duration::from_secs(30)).await?;
    let rec = Arc::new(Recorder::new());
    let urls = cluster
        .ids()
        .into_iter()
        .map(|id| Ok((id, cluster.url(id)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let watch_nodes = cluster
        .ids()
        .into_iter()
        .map(|id| Ok((id, cluster.client(id)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let watchers = Watchers::start(watch_nodes, WATCHERS, KEY_PREFIX, 1);
    let workload = Arc::new(Workload::new(config.workload.clone(), rec.clone(), urls));
    let load = {
        let w = workload.clone();
        let seed = config.seed;
        tokio::spawn(async move { w.run(seed).await })
    };
    let load_start = Instant::now();
    let mut nemesis = Nemesis::new(
        cluster.clone(),
        fabric.clone(),
        rec.clone(),
        config.nemesis.clone(),
        config.seed.rotate_left(17),
    );
    let until = load_start + config.duration;
    nemesis
        .run(until, config.min_rounds, until + config.duration * 2)
        .await;
    workload.stop();
    let bound = config.workload.op_timeout + Duration::from_secs(10);
    if tokio::time::timeout(bound, load).await.is_err() {
        return Err(Error::Timeout {
            what: "clients finishing their last operation".into(),
            waited: bound,
        });
    }
    let load_time = load_start.elapsed();

    let keys: BTreeSet<String> = rec.records().into_iter().map(|r| r.key).collect();
    let settled = settle(cluster, &rec, &keys, config.settle).await;
    let watch_logs = watchers
        .finish(settled.committed, Duration::from_secs(90))
        .await;
    rec.save(cluster.dir())
        .map_err(|e| Error::Unexpected(format!("save the history: {e}")))?;

    let check_start = Instant::now();
    let records = rec.records();
    let ops = pair(&records).map_err(|e| Error::Unexpected(format!("history: {e}")))?;
    let logs: BTreeMap<NodeId, String> = cluster
        .ids()
        .into_iter()
        .map(|id| {
            let text = cluster
                .log_path(id)
                .ok()
                .and_then(|p| std::fs::read(p).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            (id, text)
        })
        .collect();
    let faults = rec.faults();
    let findings = {
        let (ops, settled, faults, logs) =
            (ops.clone(), settled.clone(), faults.clone(), logs.clone());
        let linear = config.linear.clone();
        tokio::task::spawn_blocking(move || verdict::check(&ops, &settled, &faults, &logs, &linear))
            .await
            .map_err(|e| Error::Unexpected(format!("checker: {e}")))?
    };
    let mut findings = findings;
    findings.watch = watchers::check(&ops, &watch_logs);
    let check_time = check_start.elapsed();

    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.process != FINAL_READER) {
        let kind = match (&op.kind, op.consistency) {
            (Op::Read { .. }, ConsistencyLevel::Eventual) => "eventual read".to_owned(),
            (k, _) => op_name(k).to_owned(),
        };
        let c = counts.entry(kind).or_default();
        match op.outcome {
            Outcome::Ok => c.ok += 1,
            Outcome::Fail => c.fail += 1,
            Outcome::Info => c.info += 1,
        }
    }
    let faults_by_kind: BTreeMap<String, u64> = nemesis
        .injected()
        .iter()
        .map(|(f, n)| (f.name().to_owned(), *n))
        .collect();
    let snapshot_catch_ups = faults.iter().map(|f| f.snapshot_catch_up.len()).sum();
    let snapshot_installs = logs
        .values()
        .map(|t| t.matches("installing snapshot").count())
        .sum();
    Ok(RunReport {
        dir: cluster.dir().to_owned(),
        seed: config.seed,
        load_time,
        total_time: started.elapsed(),
        check_time,
        ops: counts,
        answers: workload.tally(),
        faults: faults_by_kind,
        snapshot_catch_ups,
        snapshot_installs,
        proxy: fabric.stats(),
        watchers: watch_logs
            .iter()
            .map(|l| (l.changes.len(), l.reconnects))
            .collect(),
        settled,
        findings,
        allow_unknown: config.allow_unknown,
    })
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Read { .. } => "read",
        Op::Write { .. } => "write",
        Op::Delete => "delete",
        Op::Cas { .. } => "cas",
    }
}
