//! `quorumkv-bench`: closed-loop HTTP load against a quorumkv cluster (or
//! etcd's v3 JSON gateway); reports throughput, latency and staleness.

use anyhow::Context;
use clap::Parser;

use quorumkv_bench::BenchArgs;

#[derive(Parser)]
#[command(
    name = "quorumkv-bench",
    version,
    about = "Closed-loop HTTP load against a quorumkv cluster (or etcd); reports throughput and latency"
)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    quorumkv_bench::run(cli.args).await.context("bench failed")
}
