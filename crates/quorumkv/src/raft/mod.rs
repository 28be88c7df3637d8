//! openraft glue: the type configuration and aliases for its generic types.

pub mod committed;
pub mod durable;
pub mod log_store;
pub mod network;
pub mod responder;
pub mod snapshot;
pub mod state_machine;
#[cfg(test)]
mod suite;
pub mod wal;

use std::fmt::Display;
use std::io;

use openraft::BasicNode;

use crate::command::{CommandResult, Proposal};

pub type NodeId = u64;

/// quorumkv's Raft types: commands in, command results out. Snapshots are
/// files ([`SnapshotData`]); since 0.10 that type belongs to the state
/// machine and the network, not to the type config. Written out rather than
/// with `declare_raft_types!`, which cannot name a generic responder: the
/// rest are that macro's defaults.
#[derive(Debug, Clone, Copy, Default, Eq, PartialEq, Ord, PartialOrd)]
pub struct TypeConfig {}

impl openraft::RaftTypeConfig for TypeConfig {
    type D = Proposal;
    type R = Vec<CommandResult>;
    type NodeId = NodeId;
    type Node = BasicNode;
    type Term = u64;
    type LeaderId = openraft::impls::leader_id_adv::LeaderId<Self::Term, Self::NodeId>;
    type Vote = openraft::impls::Vote<Self::LeaderId>;
    type Payload = openraft::EntryPayload<Self::D, Self::NodeId, Self::Node>;
    type Entry =
        openraft::Entry<<Self::LeaderId as openraft::vote::RaftLeaderId>::Committed, Self::Payload>;
    type Responder<T>
        = responder::Callback<T>
    where
        T: openraft::OptionalSend + 'static;
    type Batch<T>
        = openraft::impls::InlineBatch<T>
    where
        T: openraft::OptionalSend + 'static;
    type AsyncRuntime = openraft::TokioRuntime;
    type ErrorSource = openraft::impls::BoxedErrorSource;
}

/// The snapshot payload as the state machine and the network carry it: an
/// open snapshot file ([`snapshot`]).
pub use snapshot::SnapshotData;

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
pub type TransferLeaderRequest = openraft::raft::TransferLeaderRequest<TypeConfig>;
pub type TransferLeaderResponse = openraft::raft::TransferLeaderResponse<TypeConfig>;

/// Moves the value in `tx` up to `to` if `to` is greater; says whether it did.
pub fn raise<T: PartialOrd>(tx: &tokio::sync::watch::Sender<T>, to: T) -> bool {
    tx.send_if_modified(|v| {
        let newer = *v < to;
        if newer {
            *v = to;
        }
        newer
    })
}

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
    use bincode::Options;
    // The options of `bincode::deserialize`, plus a limit: a length prefix may
    // not claim more bytes than the input has, so a forged or corrupt message
    // cannot make the decoder allocate beyond its own size.
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(b.len() as u64)
        .deserialize(b)
}
#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_length_prefix_beyond_the_input_is_refused_without_allocating_it() {
        // A Vec<u8> claiming 2^40 bytes, in 8 + 3 bytes.
        let mut forged = (1u64 << 40).to_le_bytes().to_vec();
        forged.extend_from_slice(b"abc");
        assert!(decode::<Vec<u8>>(&forged).is_err());
        let real = encode(&b"abc".to_vec()).unwrap();
        assert_eq!(decode::<Vec<u8>>(&real).unwrap(), b"abc");
    }

    proptest! {
        /// Whatever arrives on a peer route decodes or fails; it never panics.
        #[test]
        fn peer_messages_decode_or_fail_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<AppendEntriesRequest>(&bytes);
            let _ = decode::<VoteRequest>(&bytes);
            let _ = decode::<crate::command::Write>(&bytes);
            let _ = decode::<crate::peer::messages::SnapshotHeader>(&bytes);
            let _ = decode::<crate::peer::messages::WaitApplied>(&bytes);
        }
    }
}
