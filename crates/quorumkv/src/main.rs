//! The `quorumkv` binary: flags, logging, and a call into the library.

use std::io::IsTerminal;

use anyhow::Context;
use clap::{Parser, Subcommand};
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
enum Cmd {
    /// Run one node of a cluster.
    Serve(Box<ServeArgs>),
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
    match Cli::parse().command {
        Cmd::Serve(args) => {
            let config = Config::try_from(*args).context("bad flags")?;
            quorumkv::node::run(config, shutdown_signal())
                .await
                .context("node failed")?;
        }
        Cmd::Certs(args) => {
            quorumkv::certs::run(&args).context("certs")?;
            println!("certificates written to {}", args.out.display());
        }
    }
    Ok(())
}
