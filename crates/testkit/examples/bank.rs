//! Bank transfers on a 3-node cluster with the leader killed mid-run, then
//! the checks: total unchanged, no balance negative, every acknowledged
//! transfer applied exactly once. The workload is `quorumkv_testkit::bank`.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bank
//! cargo run --example bank -- --accounts 20 --clients 32 --transfers 50 --seed 7
//! # see the checks catch double-applied transfers: short timeouts, no keys
//! cargo run --example bank -- --timeout-ms 30 --no-idempotency
//! ```
//! Uses `$QKV_BIN`, else the `quorumkv` binary next to this example's
//! directory (`target/<profile>/quorumkv`). Exits 1 on any violation and
//! keeps the cluster's directory (logs, data) for a look.

use std::process::ExitCode;
use std::time::Duration;

use quorumkv_testkit::bank::{self, BankConfig};
use quorumkv_testkit::example;

fn usage() -> ExitCode {
    eprintln!(
        "usage: bank [--accounts N] [--initial N] [--clients N] [--transfers N] \
         [--max-amount N] [--seed N] [--timeout-ms N] [--no-kill] [--no-idempotency]"
    );
    ExitCode::from(2)
}

fn parse(args: &[String]) -> Option<BankConfig> {
    let mut cfg = BankConfig::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--no-kill" || flag == "--no-idempotency" {
            cfg.kill_leader &= flag != "--no-kill";
            cfg.idempotency_keys &= flag != "--no-idempotency";
            continue;
        }
        let value = it.next()?;
        match flag.as_str() {
            "--accounts" => cfg.accounts = value.parse().ok()?,
            "--initial" => cfg.initial_balance = value.parse().ok()?,
            "--clients" => cfg.clients = value.parse().ok()?,
            "--transfers" => cfg.transfers_per_client = value.parse().ok()?,
            "--max-amount" => cfg.max_amount = value.parse().ok()?,
            "--seed" => cfg.seed = value.parse().ok()?,
            "--timeout-ms" => cfg.request_timeout = Duration::from_millis(value.parse().ok()?),
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
            "{} accounts x {}, {} clients x {} transfers, seed {}, binary {}",
            cfg.accounts,
            cfg.initial_balance,
            cfg.clients,
            cfg.transfers_per_client,
            cfg.seed,
            bin.display()
        )
    };
    let cluster = match example::start_cluster("bank", banner).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let outcome = bank::run(&cluster, &cfg).await;
    example::finish("bank", &cluster, outcome)
}
