//! The run's history as it happens: every operation's invoke and completion
//! ([`Record`], Jepsen's convention), and every fault the nemesis injects,
//! on one monotonic clock (nanoseconds since the run started). An invoke is
//! stamped just before its request is sent and a completion just after its
//! answer arrived, so each operation's interval covers its real effect.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::checker::{history, HistoryError, Record};

/// One fault, as the nemesis log (`nemesis.jsonl`) keeps it.
/// A node wiped by a fault, and when it was killed for it (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Wiped {
    pub node: u64,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultEvent {
    /// The fault's name, e.g. `kill-leader`.
    pub fault: String,
    /// What was done, e.g. `kill -9 node 2 (leader); restarted after 1.2s`.
    pub detail: String,
    /// When it was injected and when it was healed, nanoseconds.
    pub start: u64,
    pub end: u64,
    /// Nodes killed (then restarted) by it, for telling a crash apart.
    pub killed: Vec<u64>,
    /// Nodes that needed a snapshot to catch up after it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshot_catch_up: Vec<u64>,
    /// Nodes whose data dir it wiped (a member replaced under its id), with
    /// when they were killed for it: what a node served from a request
    /// invoked after that, a new node served.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wiped: Vec<Wiped>,
    /// What went wrong while injecting or healing it, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The shared recorder of a run.
pub struct Recorder {
    start: Instant,
    records: Mutex<Vec<Record>>,
    faults: Mutex<Vec<FaultEvent>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            records: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the run started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// The monotonic instant behind time 0.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Stamps `record` now and appends it.
    pub fn log(&self, mut record: Record) -> Record {
        let mut records = lock(&self.records);
        record.time = self.now();
        records.push(record.clone());
        record
    }

    pub fn fault(&self, event: FaultEvent) {
        lock(&self.faults).push(event);
    }

    pub fn records(&self) -> Vec<Record> {
        lock(&self.records).clone()
    }

    pub fn faults(&self) -> Vec<FaultEvent> {
        lock(&self.faults).clone()
    }

    /// Writes `history.jsonl` and `nemesis.jsonl` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), HistoryError> {
        history::save(&dir.join("history.jsonl"), &self.records())?;
        let mut text = String::new();
        for f in self.faults() {
            text.push_str(&serde_json::to_string(&f).map_err(std::io::Error::from)?);
            text.push('\n');
        }
        std::fs::write(dir.join("nemesis.jsonl"), text)?;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
