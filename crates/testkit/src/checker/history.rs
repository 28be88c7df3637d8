//! The recorded history: one [`Record`] per event, stored as JSON lines.
//!
//! Jepsen's convention: each operation is an `invoke` record followed, on the
//! same process, by exactly one completion: `ok`, `fail` (it definitely did not
//! happen) or `info` (unknown: timeout, reset, 5xx). Times are nanoseconds on a
//! monotonic clock since the test started. Pairing records into operations
//! lives in `operation.rs`.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

pub use quorumkv_proto::ConsistencyLevel;
use serde::{Deserialize, Deserializer, Serialize};

/// Why a history could not be read, written or paired.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("history i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("history line {line}: {source}")]
    Json {
        line: usize,
        source: serde_json::Error,
    },
    #[error("record {record}: process {process} completes an operation it never invoked")]
    NotInvoked { record: usize, process: u64 },
    #[error("record {record}: process {process} invokes while its record {pending} is pending")]
    AlreadyPending {
        record: usize,
        process: u64,
        pending: usize,
    },
    #[error("record {record}: completion does not match invoke {invoke}: {what}")]
    Mismatch {
        record: usize,
        invoke: usize,
        what: &'static str,
    },
    #[error("record {record}: completion at {time} precedes its invoke at {call}")]
    TimeBackwards { record: usize, call: u64, time: u64 },
    #[error("record {record}: a {f} needs `{field}`")]
    MissingField {
        record: usize,
        f: OpKind,
        field: &'static str,
    },
}

/// A register value. Histories use unique values per write; JSON accepts a
/// string or an unsigned integer (`5` and `"5"` are the same value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Value(pub String);

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value(s)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value(n.to_string())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl serde::de::Visitor<'_> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an unsigned integer")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value(v.to_owned()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value(v.to_string()))
    }
}

/// Formats an optional value: `nil` for absent.
pub fn show(value: &Option<Value>) -> String {
    value
        .as_ref()
        .map_or_else(|| "nil".to_owned(), |v| v.0.clone())
}

/// Which half of an operation a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// What the operation does (Jepsen's `f`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Read,
    Write,
    Delete,
    Cas,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Delete => "delete",
            OpKind::Cas => "cas",
        })
    }
}

/// One line of a history file.
///
/// `value` is the written value on a write's records and the value read on a
/// read's `ok` (absent = key absent). `expected`/`new` belong to a cas.
/// `served_by` is `X-Served-By`, `index` is `X-Raft-Index` of the response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(rename = "type")]
    pub phase: Phase,
    pub process: u64,
    pub f: OpKind,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    pub time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<ConsistencyLevel>,
    /// Free text for `fail`/`info`: why (status, timeout, reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record {
    /// An `invoke` with no payload; set `value`/`expected`/`new` as `f` needs.
    pub fn invoke(process: u64, f: OpKind, key: impl Into<String>, time: u64) -> Self {
        Record {
            phase: Phase::Invoke,
            process,
            f,
            key: key.into(),
            value: None,
            expected: None,
            new: None,
            time,
            served_by: None,
            index: None,
            consistency: None,
            error: None,
        }
    }

    /// The completion of `invoke`: same process, f, key and payload; a read's
    /// `value` is cleared for the caller to fill in.
    pub fn complete(invoke: &Record, phase: Phase, time: u64) -> Self {
        let value = match invoke.f {
            OpKind::Read => None,
            _ => invoke.value.clone(),
        };
        Record {
            phase,
            time,
            value,
            ..invoke.clone()
        }
    }
}

/// Parses JSON lines; blank lines are skipped.
pub fn read_jsonl(reader: impl BufRead) -> Result<Vec<Record>, HistoryError> {
    let mut records = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| HistoryError::Json {
            line: i + 1,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Writes one JSON object per line.
pub fn write_jsonl(mut writer: impl Write, records: &[Record]) -> Result<(), HistoryError> {
    for record in records {
        serde_json::to_writer(&mut writer, record).map_err(std::io::Error::from)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()?;
    Ok(())
}

/// Loads a JSON-lines history file.
pub fn load(path: &Path) -> Result<Vec<Record>, HistoryError> {
    let file = File::open(path).map_err(|source| file_error(path, source))?;
    read_jsonl(BufReader::new(file))
}

/// Saves a history as a JSON-lines file, replacing it.
pub fn save(path: &Path, records: &[Record]) -> Result<(), HistoryError> {
    let file = File::create(path).map_err(|source| file_error(path, source))?;
    write_jsonl(BufWriter::new(file), records)
}

fn file_error(path: &Path, source: std::io::Error) -> HistoryError {
    HistoryError::File {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair() -> Vec<Record> {
        let mut invoke = Record::invoke(3, OpKind::Write, "k", 10);
        invoke.value = Some("v1".into());
        invoke.consistency = Some(ConsistencyLevel::Strong);
        let mut ok = Record::complete(&invoke, Phase::Ok, 20);
        ok.index = Some(7);
        ok.served_by = Some(1);
        vec![invoke, ok]
    }

    #[test]
    fn jsonl_round_trip() {
        let records = write_pair();
        let mut buf = Vec::new();
        write_jsonl(&mut buf, &records).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains(r#""type":"invoke""#), "{text}");
        assert_eq!(read_jsonl(&buf[..]).unwrap(), records);
    }

    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        save(&path, &write_pair()).unwrap();
        assert_eq!(load(&path).unwrap(), write_pair());
    }

    #[test]
    fn accepts_numeric_values_and_minimal_records() {
        let text = "\n{\"type\":\"ok\",\"process\":1,\"f\":\"read\",\"key\":\"a\",\"value\":42,\"time\":5}\n";
        let records = read_jsonl(text.as_bytes()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].value, Some(Value::from(42)));
        assert_eq!(records[0].consistency, None);
    }

    #[test]
    fn bad_line_names_its_number() {
        let text =
            "{\"type\":\"ok\",\"process\":1,\"f\":\"read\",\"key\":\"a\",\"time\":5}\nnot json\n";
        match read_jsonl(text.as_bytes()) {
            Err(HistoryError::Json { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a JSON error, got {other:?}"),
        }
    }

    #[test]
    fn complete_clears_read_value_only() {
        let mut read = Record::invoke(1, OpKind::Read, "k", 1);
        read.value = Some("junk".into());
        assert_eq!(Record::complete(&read, Phase::Ok, 2).value, None);
        let write = &write_pair()[0];
        assert_eq!(Record::complete(write, Phase::Info, 2).value, write.value);
    }
}
