//! `quorumkv get|put|del|list|txn|watch|lease|members|status`: the command
//! line client. Each command is one or a few API calls through [`Conn`],
//! which tries the endpoints in order; its output is text on a terminal or
//! JSON with `--output json`; its exit code says what happened.

mod admin;
mod conn;
mod kv;

use std::process::ExitCode;

pub use conn::{Conn, ConnArgs, Output};

/// Exit codes a script can rely on (also in `quorumkv --help`).
pub const EXIT_CODES: &str = "\
Exit codes of the client commands:
  0  done
  1  failed (a server error, an unreadable answer)
  2  bad usage (flags, or a request the server refused as malformed)
  3  not found (key, lease or member)
  4  precondition failed (--if-match / --if-absent did not hold)
  5  unavailable (no endpoint answered, no leader, timeout: a write's outcome is unknown)
  6  denied (token missing, unknown or without the right)";

/// What went wrong, and so the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Denied(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::PreconditionFailed(_) => 4,
            CliError::Unavailable(_) => 5,
            CliError::Denied(_) => 6,
        }
    }
}

/// A command's own arguments with the connection flags beside them.
#[derive(Debug, clap::Args)]
pub struct With<A: clap::Args> {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub args: A,
}

/// A command group (`lease ...`, `members ...`) with the connection flags.
#[derive(Debug, clap::Args)]
pub struct WithSub<S: clap::Subcommand> {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub cmd: S,
}

#[derive(Debug, clap::Args)]
pub struct NoArgs {}

/// The client commands.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCmd {
    /// Read a key; the value goes to stdout as it is stored.
    Get(With<kv::GetArgs>),
    /// Write a key: the value from the argument, --file, or stdin (`-`).
    Put(With<kv::PutArgs>),
    /// Delete a key.
    Del(With<kv::DelArgs>),
    /// List keys (and values) under a prefix, in key order.
    List(With<kv::ListArgs>),
    /// Run a transaction: its JSON (as for POST /v1/txn) from a file or stdin.
    Txn(With<kv::TxnArgs>),
    /// Print changes as they happen (one line each; JSON lines with -o json).
    Watch(With<kv::WatchArgs>),
    /// Grant, keep alive, revoke and inspect leases.
    Lease(WithSub<admin::LeaseCmd>),
    /// List, add, promote and remove cluster members.
    Members(WithSub<admin::MembersCmd>),
    /// Every endpoint's view: id, role, term, indexes, lag, last contact.
    Status(With<NoArgs>),
}

/// Runs a client command; prints errors to stderr and returns the exit code.
pub async fn run(cmd: ClientCmd) -> ExitCode {
    match dispatch(cmd).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quorumkv: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn dispatch(cmd: ClientCmd) -> Result<(), CliError> {
    match cmd {
        ClientCmd::Get(w) => kv::get(&Conn::new(&w.conn)?, w.args).await,
        ClientCmd::Put(w) => kv::put(&Conn::new(&w.conn)?, w.args).await,
        ClientCmd::Del(w) => kv::del(&Conn::new(&w.conn)?, w.args).await,
        ClientCmd::List(w) => kv::list(&Conn::new(&w.conn)?, w.args).await,
        ClientCmd::Txn(w) => kv::txn(&Conn::new(&w.conn)?, w.args).await,
        ClientCmd::Watch(w) => kv::watch(&Conn::new(&w.conn)?, w.args).await,
        ClientCmd::Lease(w) => admin::lease(&Conn::new(&w.conn)?, w.cmd).await,
        ClientCmd::Members(w) => admin::members(&Conn::new(&w.conn)?, w.cmd).await,
        ClientCmd::Status(w) => admin::status(&Conn::new(&w.conn)?).await,
    }
}

/// Prints a JSON value, pretty on a terminal.
pub(crate) fn print_json(v: &serde_json::Value) {
    use std::io::IsTerminal;
    let text = if std::io::stdout().is_terminal() {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    println!("{}", text.unwrap_or_default());
}
