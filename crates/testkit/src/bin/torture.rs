//! `torture`: the Jepsen-style torture suite and the failover bench, from the
//! command line (see `quorumkv_testkit::torture`). Exits 1 when a run finds anomalies.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use quorumkv_testkit::checker::{history, pair};
use quorumkv_testkit::drive::clock_seed;
use quorumkv_testkit::find_binary;
use quorumkv_testkit::torture::settle::Settled;
use quorumkv_testkit::torture::workload::Canary;
use quorumkv_testkit::torture::{self, verdict, FailoverConfig, Fault, RunConfig};

#[derive(Parser)]
#[command(about = "Torture a real 3-node quorumkv cluster and check what it answered")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run clients and the nemesis, then check the history and the final state.
    Run(Box<RunArgs>),
    /// Kill the leader N times under steady writes; report the unavailability.
    Failover(FailoverArgs),
    /// Check a recorded history again (a run directory or a history.jsonl).
    Check { path: PathBuf },
}

#[derive(Args)]
struct RunArgs {
    /// Load time in minutes: the long profile (faults more often, 10 clients).
    /// Without it, the CI profile (60 s, every fault kind once or more).
    #[arg(long)]
    minutes: Option<f64>,
    /// Load time in seconds, overriding the profile's.
    #[arg(long)]
    seconds: Option<u64>,
    #[arg(long)]
    clients: Option<usize>,
    /// Seed of every random choice (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Comma-separated fault kinds (default: all).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<Fault>,
    /// Quiet time before each fault, `LO-HI` in ms.
    #[arg(long, value_parser = parse_range)]
    quiet_ms: Option<(Duration, Duration)>,
    /// How long each fault is held, `LO-HI` in ms.
    #[arg(long, value_parser = parse_range)]
    hold_ms: Option<(Duration, Duration)>,
    /// Per-request timeout of the clients.
    #[arg(long)]
    op_timeout_ms: Option<u64>,
    #[arg(long)]
    ops_per_key: Option<u64>,
    #[arg(long)]
    keys_per_window: Option<u64>,
    /// Node flags instead of the snapshot pressure, e.g. "--snapshot-every 1000".
    #[arg(long, allow_hyphen_values = true)]
    node_args: Option<String>,
    /// Count a write's 503 no_leader as unknown (info) rather than failed.
    #[arg(long)]
    no_leader_is_info: bool,
    /// Plant a bug in the harness to check the checks (the run must fail):
    /// `stale-reads` sends strong reads as eventual ones.
    #[arg(long)]
    canary: Option<String>,
    /// Unknown linearizability verdicts tolerated before the run fails.
    #[arg(long, default_value_t = 0)]
    allow_unknown: usize,
    /// Parent directory of the run directory (default: the temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the run directory even when the run passes.
    #[arg(long)]
    keep: bool,
}

#[derive(Args)]
struct FailoverArgs {
    #[arg(long, default_value_t = 20)]
    kills: usize,
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Extra node flags, e.g. "--election-timeout-min-ms 200 --election-timeout-max-ms 400".
    #[arg(long, allow_hyphen_values = true)]
    node_args: Option<String>,
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the cluster directory (node logs) afterwards.
    #[arg(long)]
    keep: bool,
}

fn parse_range(s: &str) -> Result<(Duration, Duration), String> {
    let (lo, hi) = s.split_once('-').ok_or("expected LO-HI in ms")?;
    let ms = |v: &str| v.trim().parse::<u64>().map_err(|e| format!("{v:?}: {e}"));
    let (lo, hi) = (ms(lo)?, ms(hi)?);
    if lo > hi {
        return Err(format!("{lo} > {hi}"));
    }
    Ok((Duration::from_millis(lo), Duration::from_millis(hi)))
}

fn run_config(a: RunArgs) -> anyhow::Result<RunConfig> {
    let bin = find_binary()?;
    let seed = a.seed.unwrap_or_else(clock_seed);
    let mut c = match a.minutes {
        Some(m) if m > 0.0 => RunConfig::long(bin, seed, m),
        Some(m) => bail!("--minutes {m} must be positive"),
        None => RunConfig::ci(bin, seed),
    };
    if let Some(s) = a.seconds {
        c.duration = Duration::from_secs(s);
    }
    if let Some(n) = a.clients {
        c.workload.clients = n;
    }
    if !a.faults.is_empty() {
        c.nemesis.faults = a.faults;
    }
    if let Some(r) = a.quiet_ms {
        c.nemesis.quiet = r;
    }
    if let Some(r) = a.hold_ms {
        c.nemesis.hold = r;
    }
    if let Some(ms) = a.op_timeout_ms {
        c.workload.op_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = a.ops_per_key {
        c.workload.ops_per_key = n;
    }
    if let Some(n) = a.keys_per_window {
        c.workload.keys_per_window = n;
    }
    if let Some(args) = a.node_args {
        c.node_args = args.split_whitespace().map(String::from).collect();
    }
    c.workload.no_leader_is_info = a.no_leader_is_info;
    c.workload.canary = match a.canary.as_deref() {
        None => None,
        Some("stale-reads") => Some(Canary::StaleReads),
        Some(other) => bail!("unknown canary {other:?}; known: stale-reads"),
    };
    c.allow_unknown = a.allow_unknown;
    c.parent_dir = a.dir;
    c.keep = a.keep;
    Ok(c)
}

/// Re-runs the history checks (not the final-state ones) on a saved history.
fn check(path: PathBuf) -> anyhow::Result<bool> {
    let file = match path.is_dir() {
        true => path.join("history.jsonl"),
        false => path,
    };
    let records = history::load(&file)?;
    let ops = pair(&records)?;
    let findings = verdict::check(
        &ops,
        &Settled::default(),
        &[],
        &Default::default(),
        &Default::default(),
    );
    println!("{} operations on {} keys", ops.len(), findings.keys);
    for (name, lines) in findings.sections() {
        println!("{name}: {}", lines.len());
        for l in lines {
            println!("  - {l}");
        }
    }
    Ok(findings.failures(0) == 0)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let passed = match cli.cmd {
        Cmd::Run(a) => {
            let config = run_config(*a)?;
            eprintln!(
                "torture: seed {}, {:?} of load, faults {:?}, nodes {}",
                config.seed,
                config.duration,
                config
                    .nemesis
                    .faults
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>(),
                config.node_args.join(" ")
            );
            let report = torture::run(config).await.context("torture run")?;
            println!("{report}");
            report.passed()
        }
        Cmd::Failover(a) => {
            let mut config = FailoverConfig::new(find_binary()?, a.kills);
            config.writers = a.writers;
            config.parent_dir = a.dir;
            config.keep = a.keep;
            if let Some(args) = a.node_args {
                config.node_args = args.split_whitespace().map(String::from).collect();
            }
            let report = torture::failover(config).await.context("failover bench")?;
            println!("{report}");
            report.unrecovered == 0
        }
        Cmd::Check { path } => check(path)?,
    };
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
