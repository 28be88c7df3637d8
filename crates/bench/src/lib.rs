//! `quorumkv-bench`: a closed-loop HTTP/1.1 load generator for a quorumkv
//! cluster, or for etcd's v3 JSON gateway to compare against.
//!
//! ```text
//! args.rs      flags -> validated Plan (endpoints, stop rule, op mix, levels)
//! workload.rs  next op and key per connection; key names; the value
//! target.rs    quorumkv vs etcd: build requests, read responses
//! conn.rs      one keep-alive connection per virtual client (hyper http1)
//! load.rs      preload, warmup, the measured closed loop, shared counters
//! stats.rs     per-connection HDR histograms and counts; merge
//! report.rs    Report: text or JSON, WARNING lines
//! progress.rs  indicatif bar on a terminal
//! error.rs     BenchError
//! ```
//!
//! Each connection is hyper's bare `client::conn::http1` (no pool, no lock):
//! a virtual client sends its next request the moment the last one is
//! answered, so throughput is what the cluster sustains at that concurrency.

mod args;
mod conn;
mod error;
mod load;
mod progress;
mod report;
mod stats;
mod target;
mod workload;

use std::io::{IsTerminal, Write};
use std::sync::Arc;

pub use args::{BenchArgs, OpMix, Plan, TargetKind};
pub use error::BenchError;
pub use quorumkv_proto::ConsistencyLevel;
pub use report::Report;

use load::Shared;
use progress::Progress;
use target::Target;

/// Runs the benchmark the flags describe and prints its report on stdout.
/// Fails on bad flags, or when not one measured request succeeded.
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    let plan = Arc::new(Plan::try_from(args)?);
    let target = Arc::new(
        Target::new(plan.target, workload::value(plan.value_size))
            .with_token(plan.token.as_deref()),
    );
    let shared = Arc::new(Shared::default());
    let progress = Progress::new(!plan.json && std::io::stderr().is_terminal());
    let interrupt = load::on_interrupt(shared.clone(), progress.clone());

    let preload_failed = if plan.preload {
        Some(load::preload(&plan, &target, &shared, &progress).await?)
    } else {
        None
    };
    let measured = load::measure(&plan, &target, &shared, &progress).await;
    progress.finish();
    interrupt.abort();
    let measured = measured?;

    let report = Report::new(&plan, &measured, preload_failed);
    let mut out = std::io::stdout().lock();
    if plan.json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(report.render().as_bytes())?;
    }
    out.flush()?;
    for line in report.warnings() {
        eprintln!("WARNING: {line}");
    }
    match (report.requests, report.ok) {
        (0, _) => Err(BenchError::NothingMeasured),
        (n, 0) => Err(BenchError::AllFailed(n)),
        _ => Ok(()),
    }
}
