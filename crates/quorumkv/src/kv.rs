//! The data model: keys and versioned values, and their size limits, checked
//! before anything can reach the log.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A validated key: non-empty UTF-8, at most `limit` bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key(String);

impl Key {
    pub fn parse(raw: String, limit: usize) -> Result<Self, Error> {
        if raw.is_empty() {
            return Err(Error::InvalidKey("key must not be empty".into()));
        }
        if raw.len() > limit {
            return Err(Error::KeyTooLarge {
                len: raw.len(),
                limit,
            });
        }
        Ok(Key(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a value against the configured limit.
pub fn check_value(value: &[u8], limit: usize) -> Result<(), Error> {
    if value.len() > limit {
        return Err(Error::ValueTooLarge {
            len: value.len(),
            limit,
        });
    }
    Ok(())
}

/// A stored value with the index of the log entry that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    pub mod_index: u64,
    pub value: Vec<u8>,
}

impl Versioned {
    /// On disk: the modification index (8 bytes, big-endian), then the value.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + self.value.len());
        b.extend_from_slice(&self.mod_index.to_be_bytes());
        b.extend_from_slice(&self.value);
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let (idx, value) = b.split_at_checked(8)?;
        Some(Versioned {
            mod_index: u64::from_be_bytes(idx.try_into().ok()?),
            value: value.to_vec(),
        })
    }
}

/// A pair's share of a JSON answer (a scan's items, a transaction's gets),
/// counted as if the value were base64 (the larger of its two encodings),
/// plus the JSON around it. `--max-response-bytes` bounds the sum.
pub fn answer_bytes(key_len: usize, value_len: usize) -> usize {
    key_len + value_len.div_ceil(3) * 4 + 48
}

/// One key/value pair as returned by a prefix scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub key: String,
    pub value: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_limits() {
        assert!(Key::parse(String::new(), 10).is_err());
        assert!(matches!(
            Key::parse("x".repeat(11), 10),
            Err(Error::KeyTooLarge { len: 11, limit: 10 })
        ));
        assert_eq!(Key::parse("a/b".into(), 10).unwrap().as_str(), "a/b");
    }

    #[test]
    fn versioned_round_trip() {
        let v = Versioned {
            mod_index: 42,
            value: b"abc".to_vec(),
        };
        assert_eq!(Versioned::decode(&v.encode()), Some(v));
        assert_eq!(Versioned::decode(b"short"), None);
    }

    #[test]
    fn value_limit() {
        assert!(check_value(&[0; 4], 4).is_ok());
        assert!(matches!(
            check_value(&[0; 5], 4),
            Err(Error::ValueTooLarge { len: 5, limit: 4 })
        ));
    }
}
