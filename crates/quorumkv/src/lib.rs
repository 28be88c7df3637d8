//! quorumkv: a replicated key-value store with per-request consistency.
//!
//! The server and its command line client (`cli/`): the test kit and the
//! bench tools live in their own crates and run the `quorumkv` binary.
//!
//! ```text
//! config.rs             flags + env -> validated Config
//! config_file.rs        --config FILE (TOML): settings no flag or env gives, as flags
//! error.rs              Error and its one mapping to HTTP
//! node.rs               one node: open storage and Raft (Node), serve, shut down
//! listener.rs           HTTP/1.1 (TLS optional) with a connection limit, header-read timeout, drain
//! tls.rs                rustls configs from PEM files: client listener, mutual TLS between peers
//! certs.rs              `quorumkv certs`: a throwaway CA and node/client certificates (rcgen)
//! bootstrap.rs          form a fresh cluster from --initial-cluster
//! backup.rs             backups: GET /v1/snapshot, `quorumkv snapshot save|restore` (streamed)
//! kv.rs                 Key, Versioned value, size limits
//! command.rs            Request, Command (put/delete/txn, conditions), CommandResult, Write
//! store/                reads and writes at a consistency level; leader forwarding
//! peer/                 node to node: messages, PeerClient (call_leader), /raft/* router
//! sm/                   state machine data: layout, apply, idempotency, reads, captures,
//!                       current tree, redo (an apply written whole without a sled batch)
//! raft/mod.rs           openraft type config and aliases
//! raft/durable.rs       sled flush + fdatasync (the state machine's database)
//! raft/log_store.rs     RaftLogStorage on raft-log; the purge runs in the background
//! raft/committed.rs     the committed log id beside the log (pwrite, no sync: survives kill -9)
//! raft/wal.rs           raft-log's types, codecs and flush callback
//! raft/state_machine.rs RaftStateMachine on the sm tree
//! raft/snapshot.rs      the snapshot file: framed format, writer, reader, the slot
//! raft/network.rs       openraft's network traits on PeerClient (snapshots streamed)
//! raft/responder.rs     the callback openraft answers a proposal's writers with
//! api/mod.rs            router, AppState, JSON 404/405
//! api/headers.rs        every header: parsing requests, writing responses
//! api/kv.rs             /v1/kv routes
//! api/txn.rs            /v1/txn
//! api/cluster.rs        /v1/cluster, /health, /ready
//! api/watch.rs          /v1/watch (server-sent events)
//! api/lease.rs          /v1/lease, /v1/leases
//! api/ops.rs            /metrics, /ui (embedded ui.html), request metrics and spans
//! metrics.rs            the Prometheus registry and every metric
//! cli/                  `quorumkv get|put|del|list|txn|watch|lease|members|status`
//! ```

pub mod api;
pub mod backup;
pub mod bootstrap;
pub mod certs;
pub mod cli;
pub mod command;
pub mod config;
pub mod config_file;
pub mod error;
pub mod kv;
pub mod listener;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod raft;
pub mod sm;
pub mod store;
pub mod tls;

pub use config::Config;
pub use error::Error;
