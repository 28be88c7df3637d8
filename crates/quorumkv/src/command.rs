//! What goes through the Raft log: a [`Proposal`] of [`Request`]s, each
//! wrapping a [`Command`] (put, delete, transaction; each possibly
//! conditional), and the [`CommandResult`] that applying each produces. Everything here is decided inside the state
//! machine, in log order, so every replica reaches the same answer.

use quorumkv_proto::ConsistencyLevel;
use serde::{Deserialize, Serialize};

use crate::kv::{Key, Versioned};

/// The payload of one Raft log entry: client writes proposed together so they
/// share one log entry and one flush. They touch
/// pairwise distinct keys, so a key's modification index still names exactly
/// one write; they apply in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub requests: Vec<Request>,
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "proposal({} requests)", self.requests.len())
    }
}

/// One client write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub command: Command,
    /// Lets the leader's log store tell an `eventual` writer its index.
    pub ticket: Option<u64>,
    /// Exactly-once retries: the client's key and a fingerprint of the request.
    pub idempotency: Option<Idempotency>,
    /// Wall clock of the proposing leader (ms since the epoch); drives the
    /// state machine's clock for idempotency retention.
    pub at_ms: u64,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.command.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: u64,
}

/// When a single-key write may apply (HTTP `If-Match` / `If-None-Match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    /// `If-Match: "<index>"`: the key exists with this modification index.
    ModIndex(u64),
    /// `If-Match: *`: the key exists.
    Exists,
    /// `If-None-Match: *`: the key is absent.
    Absent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put {
        key: Key,
        value: Vec<u8>,
        precondition: Option<Precondition>,
    },
    Delete {
        key: Key,
        precondition: Option<Precondition>,
    },
    Txn(Txn),
    /// A put that ties the key to a lease: the key goes when the lease does.
    /// (Its own variant, after the others, so older log entries still decode.)
    PutLeased {
        key: Key,
        value: Vec<u8>,
        precondition: Option<Precondition>,
        lease: u64,
    },
    /// A new lease; its id is the entry's log index.
    LeaseGrant {
        ttl_ms: u64,
        /// The token that asked, when clients authenticate: only it (or an
        /// admin) may keep the lease alive or revoke it.
        owner: Option<String>,
    },
    /// Ends a lease and deletes its keys (a client's revoke, or the leader's
    /// expiry).
    LeaseRevoke {
        id: u64,
    },
}

/// Footprint of a lease grant: two grants never share an entry, so a lease's
/// id (its grant's index) is unique.
const GRANT_FOOTPRINT: &str = "L";

impl Request {
    /// Everything this request reads or writes: its keys and its idempotency
    /// key (in their own namespaces). Requests in one proposal share none.
    pub fn footprint(&self) -> Vec<String> {
        let mut keys: Vec<String> = match &self.command {
            Command::Put { key, .. }
            | Command::Delete { key, .. }
            | Command::PutLeased { key, .. } => vec![format!("k{key}")],
            Command::LeaseGrant { .. } => vec![GRANT_FOOTPRINT.to_string()],
            Command::LeaseRevoke { id } => vec![format!("l{id}")],
            Command::Txn(t) => {
                let ops = t.success.iter().chain(&t.failure).map(|op| match op {
                    TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Get { key } => key,
                });
                t.compares
                    .iter()
                    .map(|c| &c.key)
                    .chain(ops)
                    .map(|k| format!("k{k}"))
                    .collect()
            }
        };
        if let Some(i) = &self.idempotency {
            keys.push(format!("i{}", i.key));
        }
        keys
    }

    /// Rough size in bytes, to bound a proposal.
    pub fn weight(&self) -> usize {
        match &self.command {
            Command::Put { key, value, .. } | Command::PutLeased { key, value, .. } => {
                key.as_str().len() + value.len()
            }
            Command::Delete { key, .. } => key.as_str().len(),
            Command::LeaseGrant { .. } | Command::LeaseRevoke { .. } => 16,
            Command::Txn(t) => t
                .success
                .iter()
                .chain(&t.failure)
                .map(|op| match op {
                    TxnOp::Put { key, value } => key.as_str().len() + value.len(),
                    TxnOp::Delete { key } | TxnOp::Get { key } => key.as_str().len(),
                })
                .sum(),
        }
    }
}

/// How a command touches a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Command {
    /// Every key the command may touch and how: a transaction's compares and
    /// gets read, its puts and deletes write (in either branch).
    pub fn touches(&self) -> Box<dyn Iterator<Item = (&Key, Access)> + '_> {
        match self {
            Command::Put { key, .. }
            | Command::Delete { key, .. }
            | Command::PutLeased { key, .. } => Box::new(std::iter::once((key, Access::Write))),
            Command::LeaseGrant { .. } | Command::LeaseRevoke { .. } => {
                Box::new(std::iter::empty())
            }
            Command::Txn(t) => {
                let compares = t.compares.iter().map(|c| (&c.key, Access::Read));
                let ops = t.success.iter().chain(&t.failure).map(|op| match op {
                    TxnOp::Put { key, .. } | TxnOp::Delete { key } => (key, Access::Write),
                    TxnOp::Get { key } => (key, Access::Read),
                });
                Box::new(compares.chain(ops))
            }
        }
    }

    /// Whether the command may store more data (a put, or a transaction
    /// with one): what a node past its quota refuses.
    pub fn adds_data(&self) -> bool {
        match self {
            Command::Put { .. } | Command::PutLeased { .. } => true,
            Command::Delete { .. } | Command::LeaseGrant { .. } | Command::LeaseRevoke { .. } => {
                false
            }
            Command::Txn(t) => t
                .success
                .iter()
                .chain(&t.failure)
                .any(|op| matches!(op, TxnOp::Put { .. })),
        }
    }

    /// A stable 64-bit fingerprint (FNV-1a of the encoding) for idempotency checks.
    /// The answer bound a transaction carries is the taking node's setting,
    /// not part of what was asked: a retry through another node matches.
    pub fn fingerprint(&self) -> u64 {
        let bytes = match self {
            Command::Txn(t) if t.max_get_bytes.is_some() => {
                let asked = Command::Txn(Txn {
                    max_get_bytes: None,
                    ..t.clone()
                });
                bincode::serialize(&asked)
            }
            _ => bincode::serialize(self),
        }
        .unwrap_or_default();
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Put { key, value, .. } => write!(f, "put({key}, {} bytes)", value.len()),
            Command::Delete { key, .. } => write!(f, "delete({key})"),
            Command::PutLeased {
                key, value, lease, ..
            } => write!(f, "put({key}, {} bytes, lease {lease})", value.len()),
            Command::LeaseGrant { ttl_ms, .. } => write!(f, "lease_grant({ttl_ms} ms)"),
            Command::LeaseRevoke { id } => write!(f, "lease_revoke({id})"),
            Command::Txn(t) => write!(
                f,
                "txn({} compares, {}/{} ops)",
                t.compares.len(),
                t.success.len(),
                t.failure.len()
            ),
        }
    }
}

/// etcd's transaction model: if every compare holds run `success`, else `failure`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
    /// Bound on the gets' answer ([`crate::kv::answer_bytes`]), set by the
    /// node that took the request (its `--max-response-bytes`) and carried
    /// in the entry, so every replica decides the same: past it the
    /// transaction applies nothing ([`CommandResult::TooLarge`]). `None`: no bound.
    pub max_get_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Key,
    pub test: Test,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Test {
    ValueEquals(Vec<u8>),
    ModIndexEquals(u64),
    Exists,
    Absent,
    /// The value, read as a decimal integer, is >= this (false if absent or not a number).
    AtLeast(i64),
    /// The value, read as a decimal integer, is <= this (false if absent or not a number).
    AtMost(i64),
}

impl Test {
    pub fn holds(&self, current: Option<&Versioned>) -> bool {
        let number = || {
            current
                .and_then(|v| std::str::from_utf8(&v.value).ok())
                .and_then(|s| s.trim().parse::<i64>().ok())
        };
        match self {
            Test::ValueEquals(want) => current.is_some_and(|v| &v.value == want),
            Test::ModIndexEquals(i) => current.is_some_and(|v| v.mod_index == *i),
            Test::Exists => current.is_some(),
            Test::Absent => current.is_none(),
            Test::AtLeast(n) => number().is_some_and(|v| v >= *n),
            Test::AtMost(n) => number().is_some_and(|v| v <= *n),
        }
    }
}

impl Precondition {
    pub fn holds(&self, current: Option<&Versioned>) -> bool {
        match self {
            Precondition::ModIndex(i) => Test::ModIndexEquals(*i).holds(current),
            Precondition::Exists => current.is_some(),
            Precondition::Absent => current.is_none(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Put { key: Key, value: Vec<u8> },
    Delete { key: Key },
    Get { key: Key },
}

/// What applying a command produced, returned to the writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Put,
    Delete {
        existed: bool,
    },
    /// A conditional put/delete whose precondition did not hold: nothing changed.
    PreconditionFailed {
        current: Option<u64>,
    },
    Txn {
        succeeded: bool,
        results: Vec<OpResult>,
    },
    /// A retry of an idempotent request already applied at `index`: the
    /// original result, not applied again.
    Replayed {
        index: u64,
        original: Box<CommandResult>,
    },
    /// The idempotency key was used before for a different request.
    IdempotencyConflict,
    /// A transaction whose gets would answer more than its `max_get_bytes`:
    /// nothing was applied.
    TooLarge {
        bytes: u64,
        limit: u64,
    },
    LeaseGranted {
        id: u64,
        ttl_ms: u64,
    },
    /// The lease is gone; `deleted` of its keys were deleted with it.
    LeaseRevoked {
        deleted: u64,
    },
    /// A put to, or revoke of, a lease that does not exist (never granted,
    /// expired or revoked): nothing changed.
    LeaseNotFound {
        id: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    Put,
    Delete { existed: bool },
    Get { key: Key, value: Option<Versioned> },
}

/// The outcome of an acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// Commit index (strong, all) or the index the leader appended it at
    /// (eventual); for a replayed idempotent request, the original's index.
    pub index: u64,
    /// What applying it produced; `None` for eventual writes (not applied yet).
    pub result: Option<CommandResult>,
    /// True when an `Idempotency-Key` retry returned the original result.
    pub replayed: bool,
}

/// A client write as the store takes it (level, idempotency key), and the
/// message a follower forwards to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Write {
    pub command: Command,
    pub level: ConsistencyLevel,
    /// The client's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(value: &str, mod_index: u64) -> Versioned {
        Versioned {
            mod_index,
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn tests_hold_as_documented() {
        let x = v("100", 7);
        assert!(Test::ValueEquals(b"100".to_vec()).holds(Some(&x)));
        assert!(!Test::ValueEquals(b"100".to_vec()).holds(None));
        assert!(Test::ModIndexEquals(7).holds(Some(&x)));
        assert!(!Test::ModIndexEquals(6).holds(Some(&x)));
        assert!(Test::Exists.holds(Some(&x)) && !Test::Exists.holds(None));
        assert!(Test::Absent.holds(None) && !Test::Absent.holds(Some(&x)));
        assert!(Test::AtLeast(100).holds(Some(&x)) && !Test::AtLeast(101).holds(Some(&x)));
        assert!(Test::AtMost(100).holds(Some(&x)) && !Test::AtMost(99).holds(Some(&x)));
        assert!(!Test::AtLeast(0).holds(Some(&v("abc", 1))));
        assert!(!Test::AtMost(0).holds(None));
    }

    #[test]
    fn fingerprint_tells_requests_apart() {
        let put = |val: &str| Command::Put {
            key: Key::parse("k".into(), 10).unwrap(),
            value: val.as_bytes().to_vec(),
            precondition: None,
        };
        assert_eq!(put("a").fingerprint(), put("a").fingerprint());
        assert_ne!(put("a").fingerprint(), put("b").fingerprint());
    }
}
