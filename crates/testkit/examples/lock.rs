//! The lock recipe on a 3-node cluster: workers take one lock (a lease, a
//! create-if-absent put, the write's index as fencing token) and act on a
//! shared resource that refuses stale tokens, while the leader is killed
//! and one holder is paused past its TTL. Then the checks: no two holders
//! acted with valid tokens at once, the paused holder was fenced off, and the
//! lock became free again. The workload is `quorumkv_testkit::lock`.
//!
//! ```sh
//! cargo build --release && cargo run --release --example lock
//! cargo run --example lock -- --workers 6 --rounds 10 --ttl-ms 2000
//! ```
//! Uses `$QKV_BIN`, else the `quorumkv` binary next to this example's
//! directory. Exits 1 on any violation and keeps the cluster's directory.

use std::process::ExitCode;
use std::time::Duration;

use quorumkv_testkit::example;
use quorumkv_testkit::lock::{self, LockConfig};

fn usage() -> ExitCode {
    eprintln!("usage: lock [--workers N] [--rounds N] [--ttl-ms N] [--no-kill] [--no-pause]");
    ExitCode::from(2)
}

fn parse(args: &[String]) -> Option<LockConfig> {
    let mut cfg = LockConfig::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--no-kill" => cfg.kill_leader = false,
            "--no-pause" => cfg.pause_holder = false,
            "--workers" => cfg.workers = it.next()?.parse().ok()?,
            "--rounds" => cfg.rounds = it.next()?.parse().ok()?,
            "--ttl-ms" => cfg.ttl = Duration::from_millis(it.next()?.parse().ok()?),
            _ => return None,
        }
    }
    Some(cfg)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cfg) = parse(&args) else {
        return usage();
    };
    let banner = |bin: &std::path::Path| {
        format!(
            "{} workers x {} rounds, TTL {:?}, binary {}",
            cfg.workers,
            cfg.rounds,
            cfg.ttl,
            bin.display()
        )
    };
    let cluster = match example::start_cluster("lock", banner).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let outcome = lock::run(&cluster, &cfg).await;
    example::finish("lock", &cluster, outcome)
}
