//! Checks of eventual reads, which are not linearizable (a replica may lag)
//! but still owe three things:
//!
//! (a) no phantom: a value read was written by some write (any consistency,
//!     not `fail`) to that key invoked before the read completed;
//! (b) per node, no going back: a read that began after another read on the
//!     same node (`served_by`) completed reports an index at least as high;
//! (c) the value is the key's value at the reported index (the node's
//!     applied index): the latest write to the key at an index <= it.
//!
//! For (c), a strong `ok` mutation with an `index` is *certain* at that index.
//! Other mutations (eventual, `info`, or without an index) may or may not
//! have taken effect: at their index if reported, else anywhere above the
//! highest committed index seen completed before their invoke. A read with
//! such a write possibly between the certain write and its index is
//! undecidable and counted as skipped, but is still an anomaly if its value
//! matches neither the certain write nor any of those possible writes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::history::{show, ConsistencyLevel, Value};
use super::operation::{Op, Operation, Outcome};

/// Something an eventual read did that no lagging replica may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// (a) The value was never written to the key before the read completed.
    Phantom { read: Operation },
    /// (b) `later` began after `earlier` completed on the same node, with a lower index.
    IndexRegression {
        node: u64,
        earlier: Operation,
        later: Operation,
    },
    /// (c) At its index the key held one of `allowed`, not the value read.
    WrongValue {
        read: Operation,
        allowed: Vec<Option<Value>>,
    },
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::Phantom { read } => write!(f, "phantom: nothing wrote the value of {read}"),
            Anomaly::IndexRegression {
                node,
                earlier,
                later,
            } => write!(f, "index went back on node {node}: {earlier} then {later}"),
            Anomaly::WrongValue { read, allowed } => {
                let allowed: Vec<String> = allowed.iter().map(show).collect();
                write!(
                    f,
                    "wrong value: {read}; at that index: {}",
                    allowed.join(" | ")
                )
            }
        }
    }
}

/// The result of checking a history's eventual reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventualReport {
    /// `ok` eventual reads examined.
    pub reads: usize,
    /// Reads whose value at their index was decided exactly (c).
    pub exact: usize,
    /// Reads (c) could not decide: no index, or a possible write of unknown effect in range.
    pub skipped: usize,
    pub anomalies: Vec<Anomaly>,
}

impl EventualReport {
    pub fn is_ok(&self) -> bool {
        self.anomalies.is_empty()
    }
}

/// Runs (a), (b) and (c) over a whole history; anomalies come in that order.
pub fn check(history: &[Operation]) -> EventualReport {
    let reads: Vec<&Operation> = history.iter().filter(|o| is_eventual_read(o)).collect();
    let mut report = EventualReport {
        reads: reads.len(),
        ..EventualReport::default()
    };
    let by_key = writes_by_key(history);
    let none = Vec::new();
    for read in &reads {
        let writes = by_key.get(read.key.as_str()).unwrap_or(&none);
        if is_phantom(read, writes) {
            report.anomalies.push(Anomaly::Phantom {
                read: (*read).clone(),
            });
        }
    }
    report.anomalies.extend(regressions(&reads));
    let floors = Floors::new(history);
    for read in &reads {
        let writes = by_key.get(read.key.as_str()).unwrap_or(&none);
        match value_at_index(read, writes, &floors) {
            Decision::Exact(None) => report.exact += 1,
            Decision::Undecided(None) => report.skipped += 1,
            Decision::Exact(Some(a)) => {
                report.exact += 1;
                report.anomalies.push(a);
            }
            Decision::Undecided(Some(a)) => {
                report.skipped += 1;
                report.anomalies.push(a);
            }
        }
    }
    report
}

fn is_eventual_read(op: &Operation) -> bool {
    !op.is_mutation() && op.outcome == Outcome::Ok && op.consistency == ConsistencyLevel::Eventual
}

/// Mutations that may have happened (not `fail`), by key.
fn writes_by_key(history: &[Operation]) -> HashMap<&str, Vec<&Operation>> {
    let mut by_key: HashMap<&str, Vec<&Operation>> = HashMap::new();
    for op in history {
        if op.is_mutation() && op.outcome != Outcome::Fail {
            by_key.entry(op.key.as_str()).or_default().push(op);
        }
    }
    by_key
}

/// (a): the read's value was written by nobody invoked before it completed.
fn is_phantom(read: &Operation, writes: &[&Operation]) -> bool {
    let Op::Read { value: Some(value) } = &read.kind else {
        return false;
    };
    let done = read.ret.unwrap_or(u64::MAX);
    !writes
        .iter()
        .any(|w| w.call <= done && w.written() == Some(Some(value)))
}

/// (b): per node, sweeps reads by invoke time, tracking the highest index
/// among reads that completed strictly before.
fn regressions(reads: &[&Operation]) -> Vec<Anomaly> {
    let mut by_node: BTreeMap<u64, Vec<(&Operation, u64)>> = BTreeMap::new();
    for read in reads {
        if let (Some(node), Some(index)) = (read.served_by, read.index) {
            by_node.entry(node).or_default().push((read, index));
        }
    }
    let mut found = Vec::new();
    for (node, reads) in by_node {
        let mut by_ret = reads.clone();
        by_ret.sort_by_key(|(r, _)| r.ret);
        let mut by_call = reads;
        by_call.sort_by_key(|(r, _)| r.call);
        let mut done = by_ret.iter().peekable();
        let mut highest: Option<(&Operation, u64)> = None;
        for &(later, index) in &by_call {
            while let Some(&&(earlier, i)) = done.peek().filter(|(r, _)| r.ret < Some(later.call)) {
                if highest.is_none_or(|(_, h)| i > h) {
                    highest = Some((earlier, i));
                }
                done.next();
            }
            if let Some((earlier, _)) = highest.filter(|&(_, h)| index < h) {
                found.push(Anomaly::IndexRegression {
                    node,
                    earlier: earlier.clone(),
                    later: later.clone(),
                });
            }
        }
    }
    found
}

/// The highest committed index known to have existed at each point in time:
/// indexes of completed strong mutations and of reads (an applied index is
/// committed). A write invoked after time t lands above `floor(t)`.
struct Floors {
    /// (completion time, running max index), by completion time.
    steps: Vec<(u64, u64)>,
}

impl Floors {
    fn new(history: &[Operation]) -> Self {
        let mut seen: Vec<(u64, u64)> = history
            .iter()
            .filter(|o| o.outcome == Outcome::Ok)
            .filter(|o| !o.is_mutation() || o.consistency == ConsistencyLevel::Strong)
            .filter_map(|o| Some((o.ret?, o.index?)))
            .collect();
        seen.sort_unstable();
        let mut max = 0;
        for step in &mut seen {
            max = max.max(step.1);
            step.1 = max;
        }
        Floors { steps: seen }
    }

    /// Highest index committed by operations completed strictly before `time`.
    fn before(&self, time: u64) -> u64 {
        let n = self.steps.partition_point(|&(t, _)| t < time);
        n.checked_sub(1).map_or(0, |i| self.steps[i].1)
    }
}

enum Decision {
    Exact(Option<Anomaly>),
    Undecided(Option<Anomaly>),
}

/// (c) for one read.
fn value_at_index(read: &Operation, writes: &[&Operation], floors: &Floors) -> Decision {
    let (Some(at), Op::Read { value }) = (read.index, &read.kind) else {
        return Decision::Undecided(None);
    };
    let certain = writes
        .iter()
        .filter(|w| is_certain(w))
        .filter_map(|w| Some((w.index?, *w)))
        .filter(|&(i, _)| i <= at)
        .max_by_key(|&(i, _)| i);
    let base = certain.map_or(0, |(i, _)| i);
    let mut allowed = vec![certain.and_then(|(_, w)| written(w))];
    for w in writes.iter().filter(|w| !is_certain(w)) {
        let possible = match w.index {
            Some(i) => base < i && i <= at,
            None => floors.before(w.call).max(base) < at,
        };
        if possible {
            allowed.push(written(w));
        }
    }
    let anomaly = (!allowed.contains(value)).then(|| Anomaly::WrongValue {
        read: read.clone(),
        allowed: allowed.clone(),
    });
    match allowed.len() {
        1 => Decision::Exact(anomaly),
        _ => Decision::Undecided(anomaly),
    }
}

/// A strong, acknowledged mutation with its commit index: it is at that index.
fn is_certain(w: &Operation) -> bool {
    w.outcome == Outcome::Ok && w.consistency == ConsistencyLevel::Strong && w.index.is_some()
}

fn written(w: &Operation) -> Option<Value> {
    w.written().flatten().cloned()
}

#[cfg(test)]
#[path = "eventual_tests.rs"]
mod tests;
