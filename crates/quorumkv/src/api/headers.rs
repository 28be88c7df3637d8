//! Every header of the client API, read and written in one place: the names
//! come from `quorumkv_proto::headers` (shared with the clients), the parsing
//! of request headers into typed values and the writing of response headers
//! live here. Handlers never spell a header name.
//!
//! Request: `X-Consistency`, `X-Min-Index`, `X-Max-Staleness` -> [`ReadLevel`]
//! or a write's [`ConsistencyLevel`]; `If-Match` / `If-None-Match` ->
//! [`Precondition`]; `Idempotency-Key`.
//! Response: `X-Raft-Index`, `X-Served-By`, `X-Raft-Leader`,
//! `X-Last-Contact-Ms`, `X-Consistency`, `ETag`, `Idempotent-Replayed`.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use quorumkv_proto::headers as name;
use quorumkv_proto::ConsistencyLevel;

use crate::command::Precondition;
use crate::error::Error;
use crate::raft::NodeId;
use crate::store::{ReadLevel, ReadMeta};

const MAX_IDEMPOTENCY_KEY: usize = 256;

/// A request header as trimmed text; `InvalidHeader` when it is not visible ASCII.
fn text<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, Error> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map(str::trim).map_err(|_| Error::InvalidHeader {
                name,
                reason: "not visible ASCII".into(),
            })
        })
        .transpose()
}

/// `X-Consistency`, `strong` when absent.
fn level(headers: &HeaderMap) -> Result<ConsistencyLevel, Error> {
    match text(headers, name::CONSISTENCY)? {
        None => Ok(ConsistencyLevel::Strong),
        Some(v) => v
            .parse()
            .map_err(|_| Error::InvalidConsistency(v.to_ascii_lowercase())),
    }
}

/// A write's level: `strong`, `eventual` or `all`.
pub fn write_level(headers: &HeaderMap) -> Result<ConsistencyLevel, Error> {
    level(headers)
}

/// A read's level with its options: `X-Min-Index` and `X-Max-Staleness`.
pub fn read_level(headers: &HeaderMap) -> Result<ReadLevel, Error> {
    let min_index = text(headers, name::MIN_INDEX)?
        .map(|v| {
            v.parse::<u64>().map_err(|_| Error::InvalidHeader {
                name: "X-Min-Index",
                reason: format!("{v:?} is not a log index (a non-negative integer)"),
            })
        })
        .transpose()?;
    let max_staleness = text(headers, name::MAX_STALENESS)?
        .map(parse_duration)
        .transpose()?;
    match level(headers)? {
        ConsistencyLevel::Strong => Ok(ReadLevel::Strong),
        ConsistencyLevel::Eventual => Ok(ReadLevel::Eventual {
            min_index,
            max_staleness,
        }),
        ConsistencyLevel::All => Err(Error::AllOnRead),
    }
}

fn parse_duration(v: &str) -> Result<Duration, Error> {
    humantime::parse_duration(v).map_err(|e| Error::InvalidHeader {
        name: "X-Max-Staleness",
        reason: format!("{v:?} is not a duration such as 500ms or 2s: {e}"),
    })
}

/// `If-Match: "<index>"` or `*`; `If-None-Match: *`. ETags are modification indexes.
pub fn precondition(headers: &HeaderMap) -> Result<Option<Precondition>, Error> {
    let if_match = text(headers, name::IF_MATCH)?;
    let if_none_match = text(headers, name::IF_NONE_MATCH)?;
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(Error::InvalidHeader {
            name: "If-Match",
            reason: "use If-Match or If-None-Match, not both".into(),
        }),
        (Some("*"), None) => Ok(Some(Precondition::Exists)),
        (Some(tag), None) => {
            let index = tag
                .strip_prefix("W/")
                .unwrap_or(tag)
                .trim_matches('"')
                .parse::<u64>()
                .map_err(|_| Error::InvalidHeader {
                    name: "If-Match",
                    reason: format!("{tag:?} is not an ETag of this store (\"<index>\") or *"),
                })?;
            Ok(Some(Precondition::ModIndex(index)))
        }
        (None, Some("*")) => Ok(Some(Precondition::Absent)),
        (None, Some(other)) => Err(Error::InvalidHeader {
            name: "If-None-Match",
            reason: format!("{other:?}: only * (create if absent) is supported on writes"),
        }),
        (None, None) => Ok(None),
    }
}

/// `Idempotency-Key`: 1 to 256 visible ASCII bytes.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Error> {
    match text(headers, name::IDEMPOTENCY_KEY)? {
        None => Ok(None),
        Some("") => Err(Error::InvalidHeader {
            name: "Idempotency-Key",
            reason: "must not be empty".into(),
        }),
        Some(k) if k.len() > MAX_IDEMPOTENCY_KEY => Err(Error::InvalidHeader {
            name: "Idempotency-Key",
            reason: format!("{} bytes; limit is {MAX_IDEMPOTENCY_KEY}", k.len()),
        }),
        Some(k) => Ok(Some(k.to_string())),
    }
}

/// `X-Lease` on a put: the lease id to tie the key to.
pub fn lease(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    match text(headers, name::LEASE)? {
        None => Ok(None),
        Some(raw) => raw
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| Error::InvalidHeader {
                name: "X-Lease",
                reason: format!("{raw:?} is not a lease id"),
            }),
    }
}

/// `Content-Length`, when the request states a valid one.
pub fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

/// Response headers, built up by name.
#[derive(Default)]
pub struct Head(HeaderMap);

impl Head {
    pub fn new() -> Head {
        Head::default()
    }

    fn set(mut self, header: &'static str, v: impl ToString) -> Head {
        let v =
            HeaderValue::from_str(&v.to_string()).unwrap_or(HeaderValue::from_static("invalid"));
        self.0.insert(HeaderName::from_static(header), v);
        self
    }

    /// `X-Raft-Index`: the index a read saw or a write was committed at.
    pub fn raft_index(self, index: u64) -> Head {
        self.set(name::RAFT_INDEX, index)
    }

    /// `X-Served-By`: the node that answered.
    pub fn served_by(self, id: NodeId) -> Head {
        self.set(name::SERVED_BY, id)
    }

    /// `X-Consistency`: the level the request was served at.
    pub fn consistency(self, level: ConsistencyLevel) -> Head {
        self.set(name::CONSISTENCY, level)
    }

    /// `ETag: "<mod index>"`.
    pub fn etag(self, mod_index: u64) -> Head {
        self.set(name::ETAG, format!("\"{mod_index}\""))
    }

    /// `Idempotent-Replayed: true` when the answer is a replay.
    pub fn replayed(self, replayed: bool) -> Head {
        match replayed {
            true => self.set(name::IDEMPOTENT_REPLAYED, "true"),
            false => self,
        }
    }

    /// What every read answers: index, node, leader, level, and on eventual
    /// reads the time since the last leader contact.
    pub fn read(meta: &ReadMeta, level: ReadLevel) -> Head {
        let head = Head::new()
            .raft_index(meta.index)
            .served_by(meta.served_by)
            .set(
                name::RAFT_LEADER,
                meta.leader.map_or("none".into(), |l| l.to_string()),
            )
            .consistency(level.level());
        match level {
            ReadLevel::Eventual { .. } => head.set(
                name::LAST_CONTACT_MS,
                meta.last_contact
                    .map_or("never".into(), |d| d.as_millis().to_string()),
            ),
            ReadLevel::Strong => head,
        }
    }

    pub fn into_map(self) -> HeaderMap {
        self.0
    }
}

/// `X-Served-By` on a response that has none yet (errors and fallbacks too).
pub fn add_served_by(headers: &mut HeaderMap, id: NodeId) {
    headers
        .entry(name::SERVED_BY)
        .or_insert_with(|| HeaderValue::from(id));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn defaults_to_strong() {
        assert_eq!(read_level(&h(&[])).unwrap(), ReadLevel::Strong);
        assert_eq!(write_level(&h(&[])).unwrap(), ConsistencyLevel::Strong);
    }

    #[test]
    fn parses_eventual_options() {
        let headers = h(&[
            (name::CONSISTENCY, "Eventual"),
            (name::MIN_INDEX, "42"),
            (name::MAX_STALENESS, "500ms"),
        ]);
        assert_eq!(
            read_level(&headers).unwrap(),
            ReadLevel::Eventual {
                min_index: Some(42),
                max_staleness: Some(Duration::from_millis(500))
            }
        );
    }

    #[test]
    fn rejects_bad_levels_and_options() {
        assert!(matches!(
            read_level(&h(&[(name::CONSISTENCY, "all")])),
            Err(Error::AllOnRead)
        ));
        assert!(matches!(
            write_level(&h(&[(name::CONSISTENCY, "weak")])),
            Err(Error::InvalidConsistency(_))
        ));
        assert!(read_level(&h(&[(name::MIN_INDEX, "-1")])).is_err());
        assert!(read_level(&h(&[(name::MAX_STALENESS, "soon")])).is_err());
    }

    #[test]
    fn parses_preconditions() {
        assert_eq!(precondition(&h(&[])).unwrap(), None);
        assert_eq!(
            precondition(&h(&[(name::IF_MATCH, "\"12\"")])).unwrap(),
            Some(Precondition::ModIndex(12))
        );
        assert_eq!(
            precondition(&h(&[(name::IF_MATCH, "*")])).unwrap(),
            Some(Precondition::Exists)
        );
        assert_eq!(
            precondition(&h(&[(name::IF_NONE_MATCH, "*")])).unwrap(),
            Some(Precondition::Absent)
        );
        assert!(precondition(&h(&[(name::IF_MATCH, "\"abc\"")])).is_err());
        assert!(precondition(&h(&[(name::IF_NONE_MATCH, "\"3\"")])).is_err());
        assert!(precondition(&h(&[(name::IF_MATCH, "*"), (name::IF_NONE_MATCH, "*")])).is_err());
    }

    #[test]
    fn idempotency_key_bounds() {
        assert_eq!(idempotency_key(&h(&[])).unwrap(), None);
        assert_eq!(
            idempotency_key(&h(&[(name::IDEMPOTENCY_KEY, "pay-1")])).unwrap(),
            Some("pay-1".into())
        );
        assert!(idempotency_key(&h(&[(name::IDEMPOTENCY_KEY, &"x".repeat(300))])).is_err());
    }

    #[test]
    fn read_head_says_where_and_how_fresh() {
        let meta = ReadMeta {
            index: 7,
            served_by: 2,
            leader: None,
            last_contact: Some(Duration::from_millis(35)),
        };
        let strong = Head::read(&meta, ReadLevel::Strong).into_map();
        assert_eq!(strong[name::RAFT_INDEX], "7");
        assert_eq!(strong[name::SERVED_BY], "2");
        assert_eq!(strong[name::RAFT_LEADER], "none");
        assert_eq!(strong[name::CONSISTENCY], "strong");
        assert!(strong.get(name::LAST_CONTACT_MS).is_none());
        let eventual = ReadLevel::Eventual {
            min_index: None,
            max_staleness: None,
        };
        let ev = Head::read(&meta, eventual).into_map();
        assert_eq!(ev[name::LAST_CONTACT_MS], "35");
        assert_eq!(ev[name::CONSISTENCY], "eventual");
    }

    proptest::proptest! {
        /// Any visible-ASCII value of any request header: a typed value or a
        /// 400-class error; never a panic.
        #[test]
        fn any_header_value_parses_or_is_refused(value in "[ -~]{0,300}") {
            for header in [
                name::CONSISTENCY,
                name::MIN_INDEX,
                name::MAX_STALENESS,
                name::IF_MATCH,
                name::IF_NONE_MATCH,
                name::IDEMPOTENCY_KEY,
            ] {
                let h = h(&[(header, value.as_str())]);
                for e in [read_level(&h).err(), write_level(&h).err(), precondition(&h).err(), idempotency_key(&h).err()].into_iter().flatten() {
                    proptest::prop_assert!(e.status().is_client_error(), "{e}");
                }
            }
        }
    }
}
