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
    about = "A replicated key-value store: strong or eventual consistency per request",
    after_help = quorumkv::cli::EXIT_CODES
)]
struct Cli {
    /// Log lines as text, or as one JSON object each.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "QKV_LOG_FORMAT")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    #[command(flatten)]
    Client(quorumkv::cli::ClientCmd),
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

fn init_logs(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let serve = Cli::command()
        .find_subcommand("serve")
        .cloned()
        .context("no serve subcommand")?;
    let argv = quorumkv::config_file::expand(std::env::args_os().collect(), &serve)?;
    let cli = Cli::parse_from(argv);
    // The client commands speak through stdout/stderr and exit codes; they
    // log only warnings. raft-log and its WAL log every cache eviction at
    // info (126,000 lines in 20 s of writes at 1M keys): warnings only.
    let default = match cli.command {
        Cmd::Client(_) => "warn",
        _ => "info,openraft=warn,sled=warn,raft_log=warn,chunked_wal=warn",
    };
    init_logs(cli.log_format, default);
    match cli.command {
        Cmd::Serve(args) => {
            let config = Config::try_from(*args).context("bad flags")?;
            quorumkv::node::run(config, shutdown_signal())
                .await
                .context("node failed")?;
        }
        Cmd::Snapshot(SnapshotCmd::Save(args)) => {
            // It takes as long as the data takes to snapshot and send.
            let spinner = std::io::stderr().is_terminal().then(|| {
                let s = indicatif::ProgressBar::new_spinner();
                s.set_message(format!(
                    "fetching a backup from {}",
                    args.endpoints.join(", ")
                ));
                s.enable_steady_tick(std::time::Duration::from_millis(120));
                s
            });
            let done = quorumkv::backup::save(&args).await;
            if let Some(s) = spinner {
                s.finish_and_clear();
            }
            println!("{}", done.context("snapshot save")?);
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
        Cmd::Client(cmd) => return Ok(quorumkv::cli::run(cmd).await),
    }
    Ok(std::process::ExitCode::SUCCESS)
}
