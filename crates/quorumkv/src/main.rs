//! The `quorumkv` binary: flags, logging, and a call into the library.

use std::io::IsTerminal;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use quorumkv::certs::CertsArgs;
use quorumkv::config::{Config, ServeArgs};

/// glibc's malloc showed as the top user-space cost under write load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "quorumkv",
    version,
    about = "A replicated key-value store: strong or eventual consistency per request"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Fetch a consistent backup (GET /v1/snapshot) from the first endpoint
    /// that answers, check its checksum, and write it to FILE.
    Save(quorumkv::backup::SaveArgs),
    /// Write a new node's data dir from a backup, with the new cluster's
    /// --initial-cluster as its members; restore every node of the new
    /// cluster from the same file, then start them with the same flags.
    Restore(quorumkv::backup::RestoreArgs),
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node of a cluster.
    Serve(Box<ServeArgs>),
    /// Back up a running cluster, or seed a new node from a backup.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Make a throwaway CA and certificates for a local or test cluster
    /// (peer and client CAs, node-N and client certificates) in --out.
    Certs(CertsArgs),
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("no SIGTERM handler: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown signal received");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn,sled=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let serve = Cli::command()
        .find_subcommand("serve")
        .cloned()
        .context("no serve subcommand")?;
    let argv = quorumkv::config_file::expand(std::env::args_os().collect(), &serve)?;
    match Cli::parse_from(argv).command {
        Cmd::Serve(args) => {
            let config = Config::try_from(*args).context("bad flags")?;
            quorumkv::node::run(config, shutdown_signal())
                .await
                .context("node failed")?;
        }
        Cmd::Snapshot(SnapshotCmd::Save(args)) => {
            let done = quorumkv::backup::save(&args)
                .await
                .context("snapshot save")?;
            println!("{done}");
        }
        Cmd::Snapshot(SnapshotCmd::Restore(args)) => {
            let done = quorumkv::backup::restore(&args)
                .await
                .context("snapshot restore")?;
            println!("{done}");
        }
        Cmd::Certs(args) => {
            quorumkv::certs::run(&args).context("certs")?;
            println!("certificates written to {}", args.out.display());
        }
    }
    Ok(())
}
