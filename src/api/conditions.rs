//! `If-Match`, `If-None-Match` -> [`Precondition`]; `Idempotency-Key`; and the
//! mapping of a conditional or idempotent write's result to HTTP.

use axum::http::HeaderMap;

use crate::command::{CommandResult, Precondition};
use crate::error::Error;
use crate::store::WriteOutcome;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY: usize = 256;

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

/// `If-Match: "<index>"` or `*`; `If-None-Match: *`. ETags are modification indexes.
pub fn precondition(headers: &HeaderMap) -> Result<Option<Precondition>, Error> {
    let if_match = text(headers, "if-match")?;
    let if_none_match = text(headers, "if-none-match")?;
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

pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Error> {
    match text(headers, IDEMPOTENCY_KEY)? {
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

/// Turns results that HTTP reports as errors into errors.
pub fn check_outcome(outcome: &WriteOutcome, idempotency_key: Option<&str>) -> Result<(), Error> {
    match &outcome.result {
        Some(CommandResult::PreconditionFailed { current }) => Err(Error::PreconditionFailed {
            current: *current,
            index: outcome.index,
            replayed: outcome.replayed,
        }),
        Some(CommandResult::IdempotencyConflict) => Err(Error::IdempotencyKeyReused(
            idempotency_key.unwrap_or_default().to_string(),
        )),
        _ => Ok(()),
    }
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
    fn parses_preconditions() {
        assert_eq!(precondition(&h(&[])).unwrap(), None);
        assert_eq!(
            precondition(&h(&[("if-match", "\"12\"")])).unwrap(),
            Some(Precondition::ModIndex(12))
        );
        assert_eq!(
            precondition(&h(&[("if-match", "*")])).unwrap(),
            Some(Precondition::Exists)
        );
        assert_eq!(
            precondition(&h(&[("if-none-match", "*")])).unwrap(),
            Some(Precondition::Absent)
        );
        assert!(precondition(&h(&[("if-match", "\"abc\"")])).is_err());
        assert!(precondition(&h(&[("if-none-match", "\"3\"")])).is_err());
        assert!(precondition(&h(&[("if-match", "*"), ("if-none-match", "*")])).is_err());
    }

    #[test]
    fn idempotency_key_bounds() {
        assert_eq!(idempotency_key(&h(&[])).unwrap(), None);
        assert_eq!(
            idempotency_key(&h(&[("idempotency-key", "pay-1")])).unwrap(),
            Some("pay-1".into())
        );
        assert!(idempotency_key(&h(&[("idempotency-key", &"x".repeat(300))])).is_err());
    }
}
