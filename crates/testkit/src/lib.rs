//! The quorumkv test kit: real `quorumkv serve` processes on loopback ports, a
//! typed HTTP client for the API, workloads that check invariants against
//! them, the torture suite and the offline checker of its histories. The
//! server's integration tests, the examples and the `torture` binary share it,
//! so a cluster is launched, killed and inspected in one way everywhere. It
//! does not link the server: it runs the `quorumkv` binary.
//!
//! ```text
//! cluster.rs   LocalCluster: free ports, temp dirs, logs, kill -9, SIGSTOP, restart
//! process.rs   ports, fresh dirs, signals, /proc: what LocalCluster builds on
//! client.rs    Client: put/get/delete/list with headers, /v1/txn, /v1/cluster
//! lock.rs      the lock recipe (lease + If-None-Match + fencing token), run
//!              through a leader kill and a paused holder, then checked
//! watch.rs     Watcher (GET /v1/watch, server-sent events) and the lease calls
//! wire.rs      the API's JSON bodies: Txn, Compare, Op; WriteAck, TxnAck, ApiError
//! drive.rs     what workloads share: seeded rng, node rotation, the mid-run leader kill
//! bank/        concurrent transfers by transaction (mod.rs); check.rs: total, no
//!              overdraft, every acknowledged transfer applied exactly once
//! booking/     many buyers, few seats (mod.rs); check.rs: no seat sold twice,
//!              every "yes" holds its seat, every "no" holds nothing
//! example.rs   what examples/bank.rs and booking.rs share: start, verdict, exit code
//! torture/     Jepsen-style runs: faults, recorded histories, verdicts (bin/torture.rs)
//! checker/     offline history checkers: linearizability, eventual reads
//! rng.rs       SplitMix64 for seeded load, workloads and test histories
//! ```
//!
//! Nothing here is a mock: every check goes through sockets to real
//! processes, and every wait has a deadline.

pub mod bank;
pub mod booking;
pub mod checker;
pub mod client;
pub mod cluster;
pub mod drive;
pub mod example;
pub mod lock;
pub mod process;
pub mod rng;
pub mod torture;
pub mod watch;
pub mod wire;

use std::path::PathBuf;
use std::time::Duration;

pub use client::{Client, ClientTls, Opts, Precondition, Response};
pub use cluster::{LocalCluster, Options};
pub use quorumkv_proto::ConsistencyLevel;
pub use wire::{ApiError, ClusterInfo, Compare, Op, OpResult, Test, Txn, TxnAck, WriteAck};

/// Node ids, as in `--id` and `--initial-cluster`.
pub type NodeId = u64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("quorumkv binary not found ({0}); build it with `cargo build` or set QKV_BIN")]
    BinaryNotFound(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no free loopback port")]
    NoFreePort,
    #[error("no node {0} in this cluster")]
    NoSuchNode(NodeId),
    #[error("node {id} is {is}, not {want}")]
    NodeState {
        id: NodeId,
        is: &'static str,
        want: &'static str,
    },
    #[error("node {id} exited ({status}) before answering /health; its log ends:\n{log_tail}")]
    Exited {
        id: NodeId,
        status: String,
        log_tail: String,
    },
    #[error("{what}: not within {waited:?}")]
    Timeout { what: String, waited: Duration },
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// The `quorumkv` binary to launch: `$QKV_BIN` if set, else `quorumkv` next
/// to the running executable or in its parent directory (so
/// `target/debug/examples/bank` finds `target/debug/quorumkv`, and a test in
/// `target/debug/deps` too).
pub fn find_binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("QKV_BIN") {
        let path = PathBuf::from(path);
        return match path.is_file() {
            true => Ok(path),
            false => Err(Error::BinaryNotFound(format!(
                "QKV_BIN={} is not a file",
                path.display()
            ))),
        };
    }
    let exe = std::env::current_exe().map_err(Error::io("locate the current executable"))?;
    let name = format!("quorumkv{}", std::env::consts::EXE_SUFFIX);
    let mut tried = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join(&name);
        if candidate.is_file() && candidate != exe {
            return Ok(candidate);
        }
        tried.push(candidate.display().to_string());
    }
    Err(Error::BinaryNotFound(format!("tried {}", tried.join(", "))))
}
