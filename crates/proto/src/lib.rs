//! The HTTP API's vocabulary, shared by the quorumkv server and every client
//! of it (the test kit, the torture checker, the load generator): the
//! consistency levels a request can ask for and the names of the headers that
//! carry them. One definition here, so a renamed header or a new level cannot
//! drift between the server and the tools that test it.
//!
//! Parsing a header's value and writing it belong to each side (the server's
//! `api::headers`, the test kit's client); only the names and the level live
//! here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `X-Consistency`: how a request trades freshness and durability for speed.
///
/// Reads take `strong` or `eventual`; writes also take `all`. The default,
/// when the header is absent, is `strong`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsistencyLevel {
    /// Linearizable reads; writes committed by a quorum before the answer.
    #[default]
    Strong,
    /// Reads from the local replica; writes answered once the leader has them.
    Eventual,
    /// Writes only: committed and applied on every voter before the answer.
    All,
}

impl ConsistencyLevel {
    /// Every level, in the order the API documents them.
    pub const ALL_LEVELS: [ConsistencyLevel; 3] = [
        ConsistencyLevel::Strong,
        ConsistencyLevel::Eventual,
        ConsistencyLevel::All,
    ];

    /// The header value: `strong`, `eventual` or `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsistencyLevel::Strong => "strong",
            ConsistencyLevel::Eventual => "eventual",
            ConsistencyLevel::All => "all",
        }
    }

    /// The level a read goes out at: `all` exists for writes only, and a
    /// read that accompanies an `all` write is a strong one.
    pub fn for_reads(self) -> ConsistencyLevel {
        match self {
            ConsistencyLevel::All => ConsistencyLevel::Strong,
            level => level,
        }
    }
}

impl fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value of `X-Consistency` that names no level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown consistency level {0:?}: use strong, eventual or all")]
pub struct UnknownLevel(pub String);

impl FromStr for ConsistencyLevel {
    type Err = UnknownLevel;

    /// Case-insensitive, surrounding white space ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        ConsistencyLevel::ALL_LEVELS
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownLevel(name.to_owned()))
    }
}

/// Header names, lower case as HTTP/2 and `http::HeaderName` want them.
pub mod headers {
    /// Request and response: the consistency level asked for / served at.
    pub const CONSISTENCY: &str = "x-consistency";
    /// Eventual reads: wait until the replica has applied this index.
    pub const MIN_INDEX: &str = "x-min-index";
    /// Eventual reads: refuse when the replica's last leader contact is older.
    pub const MAX_STALENESS: &str = "x-max-staleness";
    /// Responses: the log index a read saw or a write was committed at.
    pub const RAFT_INDEX: &str = "x-raft-index";
    /// Responses: the id of the node that answered.
    pub const SERVED_BY: &str = "x-served-by";
    /// Read responses: the leader the serving node knows, or `none`.
    pub const RAFT_LEADER: &str = "x-raft-leader";
    /// Eventual read responses: milliseconds since the last leader contact, or `never`.
    pub const LAST_CONTACT_MS: &str = "x-last-contact-ms";
    /// Read responses: the key's modification index, quoted.
    pub const ETAG: &str = "etag";
    /// Writes: apply only if the key is at this modification index (or `*`: exists).
    pub const IF_MATCH: &str = "if-match";
    /// Writes: `*`, apply only if the key is absent.
    pub const IF_NONE_MATCH: &str = "if-none-match";
    /// Writes: a client's token that makes a retry safe.
    pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
    /// Responses: `true` when the answer is a replay of an earlier one.
    pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
    /// Puts: the lease the key is tied to (it is deleted when the lease ends).
    pub const LEASE: &str = "x-lease";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_case_insensitively_and_round_trip() {
        for level in ConsistencyLevel::ALL_LEVELS {
            assert_eq!(level.as_str().parse::<ConsistencyLevel>(), Ok(level));
            assert_eq!(
                level.as_str().to_uppercase().parse::<ConsistencyLevel>(),
                Ok(level)
            );
            let json = serde_json::to_string(&level).unwrap();
            assert_eq!(json, format!("\"{level}\""));
            assert_eq!(
                serde_json::from_str::<ConsistencyLevel>(&json).unwrap(),
                level
            );
        }
        assert_eq!(
            " Eventual ".parse::<ConsistencyLevel>(),
            Ok(ConsistencyLevel::Eventual)
        );
        assert_eq!(
            "weak".parse::<ConsistencyLevel>(),
            Err(UnknownLevel("weak".into()))
        );
        assert_eq!(ConsistencyLevel::default(), ConsistencyLevel::Strong);
        assert_eq!(ConsistencyLevel::All.for_reads(), ConsistencyLevel::Strong);
    }
}
