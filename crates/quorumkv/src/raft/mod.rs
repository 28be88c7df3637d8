//! openraft glue: the type configuration and aliases for its generic types.

pub mod durable;
pub mod log_store;
pub mod network;
pub mod snapshot;
pub mod state_machine;
#[cfg(test)]
mod suite;

use std::fmt::Display;
use std::io;

use openraft::BasicNode;

use crate::command::{CommandResult, Proposal};

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// quorumkv's Raft types: commands in, command results out. Snapshots are
    /// whole buffers (`Cursor<Vec<u8>>`); since 0.10 that type belongs to the
    /// state machine and the network, not to the type config.
    pub TypeConfig:
        D = Proposal,
        R = Vec<CommandResult>,
        NodeId = NodeId,
        Node = BasicNode,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The snapshot payload as the state machine and the network carry it.
pub type SnapshotData = std::io::Cursor<Vec<u8>>;

pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// Storage calls return plain `io::Error` since openraft 0.10.
pub type StorageError = io::Error;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
pub type Fatal = openraft::error::Fatal<TypeConfig>;
pub type LinearizableReadError = openraft::error::LinearizableReadError<TypeConfig>;
pub type ClientWriteError = openraft::error::ClientWriteError<TypeConfig>;
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
pub type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
pub type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
pub type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;

/// A storage error that says what failed: `"<what>: <cause>"`, keeping the
/// cause's kind when it is an `io::Error`.
pub fn storage_err(
    what: impl Display,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> io::Error {
    let e: Box<dyn std::error::Error + Send + Sync> = e.into();
    let kind = e
        .downcast_ref::<io::Error>()
        .map_or(io::ErrorKind::Other, |e| e.kind());
    io::Error::new(kind, format!("{what}: {e}"))
}

/// Encodes a value for the wire or disk (bincode: compact, fast).
pub fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, bincode::Error> {
    bincode::serialize(v)
}

pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(b)
}
