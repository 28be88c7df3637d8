//! Ticket booking on a 3-node cluster: many buyers race for few seats
//! through every node while the leader is killed; then the checks: no seat
//! sold twice, every buyer told "yes" holds its seat, every buyer told "no"
//! holds nothing. The workload is `quorumkv_testkit::booking`.
//!
//! ```sh
//! cargo build --release && cargo run --release --example booking
//! cargo run --example booking -- --seats 5 --buyers 100 --seed 7
//! ```
//! Uses `$QKV_BIN`, else the `quorumkv` binary next to this example's
//! directory (`target/<profile>/quorumkv`). Exits 1 on any violation and
//! keeps the cluster's directory (logs, data) for a look.

use std::process::ExitCode;
use std::time::Duration;

use quorumkv_testkit::booking::{self, BookingConfig};
use quorumkv_testkit::example;

fn usage() -> ExitCode {
    eprintln!("usage: booking [--seats N] [--buyers N] [--stagger-ms N] [--seed N] [--no-kill]");
    ExitCode::from(2)
}

fn parse(args: &[String]) -> Option<BookingConfig> {
    let mut cfg = BookingConfig::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--no-kill" {
            cfg.kill_leader = false;
            continue;
        }
        let value = it.next()?;
        match flag.as_str() {
            "--seats" => cfg.seats = value.parse().ok()?,
            "--buyers" => cfg.buyers = value.parse().ok()?,
            "--stagger-ms" => cfg.stagger = Duration::from_millis(value.parse().ok()?),
            "--seed" => cfg.seed = value.parse().ok()?,
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
            "{} buyers for {} seats, seed {}, binary {}",
            cfg.buyers,
            cfg.seats,
            cfg.seed,
            bin.display()
        )
    };
    let cluster = match example::start_cluster("booking", banner).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let outcome = booking::run(&cluster, &cfg).await;
    example::finish("booking", &cluster, outcome)
}
