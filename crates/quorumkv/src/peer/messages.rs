//! The messages nodes exchange on `/raft/<path>`, besides openraft's own:
//! the path of each call, and the typed request and answer of the store's calls
//! (forward a write, read index, wait applied, probe). Every answer of a call
//! that only the leader can serve is a [`LeaderReply`], so "I am not the
//! leader" is a variant, not an error code to match.

use serde::{Deserialize, Serialize};

use crate::command::WriteOutcome;
use crate::error::{Error, WireError};
use crate::raft::{LogId, NodeId, SnapshotMeta, Vote};

/// The `/raft/<path>` of each call; the router and the callers share them.
pub mod path {
    /// openraft: append-entries (and heartbeats).
    pub const APPEND: &str = "append";
    /// openraft: request a vote.
    pub const VOTE: &str = "vote";
    /// openraft: would you vote for me at my next term? (changes nothing).
    pub const PRE_VOTE: &str = "pre_vote";
    /// openraft: a whole snapshot, streamed ([`SnapshotHeader`] then the file).
    pub const SNAPSHOT: &str = "snapshot";
    /// A follower hands a client write to the leader ([`crate::command::Write`] -> [`ForwardReply`]).
    pub const FORWARD: &str = "forward";
    /// A follower asks the leader for a read index (`()` -> [`ReadIndexReply`]).
    pub const READ_INDEX: &str = "read_index";
    /// The leader asks a voter to wait until it applied an index ([`WaitApplied`]).
    pub const WAIT_APPLIED: &str = "wait_applied";
    /// A follower asks another voter about its leader and log (`()` -> [`ProbeReply`]).
    pub const PROBE: &str = "probe";
    /// A follower hands a membership change to the leader ([`MemberChange`] -> [`MembersReply`]).
    pub const MEMBERS: &str = "members";
    /// openraft: the leader hands leadership to this node.
    pub const TRANSFER_LEADER: &str = "transfer_leader";
    /// A new node asks to be added as a learner ([`JoinRequest`] -> [`JoinReply`]).
    /// The one route that takes a request without a cluster id.
    pub const JOIN: &str = "join";
    /// Before a node is added from the client API: prove you hold the
    /// cluster token without sending it ([`Challenge`] -> [`ProofReply`]).
    /// Needs neither the token nor a cluster id.
    pub const PROVE: &str = "prove";
    /// A follower hands a lease keepalive or TTL question to the leader,
    /// which alone keeps deadlines ([`LeaseCall`] -> [`LeaseReply`]).
    pub const LEASE: &str = "lease";

    /// Whether a request's URI path is `/raft/<name>`.
    pub fn is(uri_path: &str, name: &str) -> bool {
        uri_path.strip_prefix("/raft/") == Some(name)
    }
}

/// The answer of a call only the leader can serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaderReply<T> {
    Done(T),
    /// The callee does not lead (any more): nothing was done, ask the leader.
    NotLeader,
    /// The leader tried and failed; the error is the client's answer.
    Failed(WireError),
}

impl<T> LeaderReply<T> {
    /// What the caller does next: use the value, retry elsewhere, or fail.
    pub fn into_attempt(self) -> Result<Attempt<T>, Error> {
        match self {
            LeaderReply::Done(v) => Ok(Attempt::Done(v)),
            LeaderReply::NotLeader => Ok(Attempt::Retry),
            LeaderReply::Failed(w) => Err(Error::Remote(w)),
        }
    }
}

impl<T> From<Result<Attempt<T>, Error>> for LeaderReply<T> {
    fn from(r: Result<Attempt<T>, Error>) -> Self {
        match r {
            Ok(Attempt::Done(v)) => LeaderReply::Done(v),
            Ok(Attempt::Retry) => LeaderReply::NotLeader,
            Err(e) => LeaderReply::Failed(e.to_wire()),
        }
    }
}

/// Outcome of one attempt on the node believed to lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt<T> {
    Done(T),
    /// Safe to retry: the leader changed before anything was proposed.
    Retry,
}

/// `/raft/forward`: the outcome of a follower's client write, run by the leader.
pub type ForwardReply = LeaderReply<WriteOutcome>;
/// `/raft/read_index`: the index a read must see, after the leader confirmed
/// with a quorum that it still leads.
pub type ReadIndexReply = LeaderReply<u64>;

/// `/raft/wait_applied`: wait up to `wait_ms` until `index` is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitApplied {
    pub index: u64,
    pub wait_ms: u64,
}

/// The applied index reached, or why not.
pub type WaitAppliedReply = Result<u64, WireError>;

/// What `/raft/probe` answers: this node's view of the leader and its log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub leading: bool,
    /// Milliseconds since a leader's append-entries last arrived here, even
    /// one not yet accepted (since this node started, if none has).
    pub silent_ms: u64,
    pub last_log: Option<LogId>,
}

pub type ProbeReply = Result<Probe, WireError>;

/// `/raft/members`: a membership change (or just the list), run by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberChange {
    List,
    /// `proven`: the new node showed the cluster token already (it asked
    /// to join with it); otherwise the leader challenges it first.
    AddLearner {
        id: NodeId,
        peer_url: String,
        proven: bool,
    },
    Promote {
        id: NodeId,
    },
    Remove {
        id: NodeId,
    },
}

/// One member as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: NodeId,
    pub peer_url: String,
    /// A voter; else a learner.
    pub voter: bool,
    pub leader: bool,
    /// The last log index known to be on it.
    pub matched_index: Option<u64>,
    /// Entries it lacks of the leader's log.
    pub lag: Option<u64>,
    /// Milliseconds since it last acknowledged the leader.
    pub last_ack_ms: Option<u64>,
}

pub type MembersReply = LeaderReply<Vec<MemberInfo>>;

/// `/raft/prove`: the answer is HMAC-SHA256(cluster token, what this says).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub nonce: Vec<u8>,
    pub id: NodeId,
    pub peer_url: String,
}

impl Challenge {
    /// The bytes the MAC covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut b = b"quorumkv-prove-v1".to_vec();
        b.extend_from_slice(&self.nonce);
        b.extend_from_slice(&self.id.to_be_bytes());
        b.extend_from_slice(self.peer_url.as_bytes());
        b
    }
}

pub type ProofReply = Result<Vec<u8>, WireError>;

/// `/raft/join`: add me, `id`, reachable at `peer_url`, as a learner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub id: NodeId,
    pub peer_url: String,
}

/// The cluster's id (hex) and its members after the join, or why not.
pub type JoinReply = Result<(String, Vec<MemberInfo>), WireError>;

/// What `/raft/snapshot` carries before the snapshot file: its body is the
/// header's length (u32 BE), the header, then the file
/// ([`crate::raft::snapshot`]), streamed.
#[derive(Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub vote: Vote,
    pub meta: SnapshotMeta,
}

/// The longest [`SnapshotHeader`] a node takes (it holds the membership).
pub const MAX_SNAPSHOT_HEADER_BYTES: u32 = 1 << 20;

/// `/raft/lease`: what only the leader knows of a lease, its deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCall {
    pub id: u64,
    /// Restart the lease's TTL (a keepalive); else only report it.
    pub keep_alive: bool,
    /// The token name asking, when clients authenticate and it is not an
    /// admin: only the lease's owner may use it.
    pub caller: Option<String>,
}

/// A lease as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub id: u64,
    pub ttl_ms: u64,
    /// Until the leader revokes it, unless kept alive.
    pub remaining_ms: u64,
    /// Its keys, in key order, at most [`crate::store::leases::MAX_LISTED_KEYS`].
    pub keys: Vec<String>,
    /// More keys than listed.
    pub more_keys: bool,
}

pub type LeaseReply = LeaderReply<LeaseInfo>;
