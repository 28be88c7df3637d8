//! quorumkv: a replicated key-value store with per-request consistency.
//!
//! ```text
//! config.rs             flags + env -> validated Config
//! error.rs              Error and its one mapping to HTTP
//! node.rs               run one node: sled, Raft, HTTP, shutdown
//! bootstrap.rs          form a fresh cluster from --initial-cluster
//! checker/mod.rs        offline history checkers: linearizability, eventual reads
//! kv.rs                 Key, Versioned value, size limits
//! command.rs            Request, Command (put/delete/txn, conditions), CommandResult
//! store/                reads and writes at a consistency level; forwarding
//! sm/                   state machine data: layout, apply, idempotency, reads
//! rng.rs                SplitMix64 for seeded load, workloads and test histories
//! raft/mod.rs           openraft type config and aliases
//! raft/durable.rs       sled flush + fdatasync; group commit
//! raft/log_store.rs     RaftLogStorage on sled
//! raft/state_machine.rs RaftStateMachine on the sm tree
//! raft/snapshot.rs      the snapshot file
//! raft/network.rs       client side of peer RPC
//! raft/rpc.rs           /raft/* routes: server side of peer RPC
//! api/mod.rs            router, AppState, JSON 404/405
//! api/consistency.rs    X-Consistency, X-Min-Index, X-Max-Staleness
//! api/kv.rs             /v1/kv routes
//! api/conditions.rs     If-Match, If-None-Match, Idempotency-Key
//! api/txn.rs            /v1/txn
//! api/cluster.rs        /v1/cluster, /health, /ready
//! bench/mod.rs          `quorumkv bench`: closed-loop load generator (quorumkv or etcd)
//! testkit/              LocalCluster of real processes, typed client, bank/booking workloads
//! torture/              Jepsen-style fault injection, history recording and checks
//! ```

pub mod api;
pub mod bench;
pub mod bootstrap;
pub mod checker;
pub mod command;
pub mod config;
pub mod error;
pub mod kv;
pub mod node;
pub mod raft;
pub mod rng;
pub mod sm;
pub mod store;
pub mod testkit;
pub mod torture;

pub use config::Config;
pub use error::Error;
