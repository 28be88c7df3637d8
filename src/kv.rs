//! The data model: keys, values, the commands that go through the Raft log and
//! what applying them returns. Size limits are checked here, before a command
//! can reach the log.

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

/// A state-machine command: the payload of one Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put { key: Key, value: Vec<u8> },
    Delete { key: Key },
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Put { key, value } => write!(f, "put({key}, {} bytes)", value.len()),
            Command::Delete { key } => write!(f, "delete({key})"),
        }
    }
}

/// The payload of one Raft log entry: a command, plus an optional ticket by
/// which the leader's log store tells an `eventual` writer the index it was
/// appended at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub command: Command,
    pub ticket: Option<u64>,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.command.fmt(f)
    }
}

/// What applying a command produced, returned to the writer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Membership changes and blank entries carry no client command.
    #[default]
    None,
    Put,
    Delete {
        existed: bool,
    },
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
    fn value_limit() {
        assert!(check_value(&[0; 4], 4).is_ok());
        assert!(matches!(
            check_value(&[0; 5], 4),
            Err(Error::ValueTooLarge { len: 5, limit: 4 })
        ));
    }
}
