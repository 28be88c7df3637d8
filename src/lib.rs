//! quorumkv: a replicated key-value store with per-request consistency.
//!
//! ```text
//! config.rs             flags + env -> validated Config
//! error.rs              Error and its one mapping to HTTP
//! node.rs               run one node: sled, Raft, HTTP, shutdown
//! bootstrap.rs          form a fresh cluster from --initial-cluster
//! kv.rs                 Key, Command, CommandResult, size limits
//! store.rs              reads and writes at a consistency level; forwarding
//! raft/mod.rs           openraft type config and aliases
//! raft/durable.rs       sled flush + fdatasync; group commit
//! raft/log_store.rs     RaftLogStorage on sled
//! raft/state_machine.rs RaftStateMachine + snapshots on sled
//! raft/network.rs       client side of peer RPC
//! raft/rpc.rs           /raft/* routes: server side of peer RPC
//! api/mod.rs            router, AppState, JSON 404/405
//! api/consistency.rs    X-Consistency, X-Min-Index, X-Max-Staleness
//! api/kv.rs             /v1/kv routes
//! api/cluster.rs        /v1/cluster, /health, /ready
//! ```

pub mod api;
pub mod bootstrap;
pub mod config;
pub mod error;
pub mod kv;
pub mod node;
pub mod raft;
pub mod store;

pub use config::Config;
pub use error::Error;
