//! Every check of a finished run, over the recorded history, the final state
//! and the node logs. Each finding is one line of text under its check.
//!
//! - linearizable: `checker::linear` on the strong operations, key by key
//!   (an `Unknown` verdict is reported, and fails unless allowed);
//! - eventual: `checker::eventual` (no phantom, no index regression per
//!   node, the value at the reported index); a regression right after a
//!   restart of that node is named so;
//! - same index: no two acknowledged mutations of one key share an index;
//! - index order: acknowledged strong operations carry indexes in real-time
//!   order (one that began after another completed reports an index at
//!   least as high, and a mutation a strictly higher one);
//! - lost writes: the final state of each key is its last acknowledged
//!   mutation, or a later one of unknown outcome;
//! - replicas: every node caught up and holds the same data, nothing else;
//! - panics: no node log says "panicked";
//! - server errors: no node answered `500` (every 5xx is logged with its
//!   code; faults call for `503`/`504`, never `internal` or `storage`).

use std::collections::{BTreeMap, HashMap};

use crate::checker::{
    eventual, linear, Anomaly, ConsistencyLevel, LinearConfig, Op, Operation, Outcome, Verdict,
};
use crate::torture::recorder::FaultEvent;
use crate::torture::settle::{KeyState, Settled};
use crate::NodeId;

/// What the checks found, one list of lines per check.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    pub keys: usize,
    pub linear_violations: Vec<String>,
    pub linear_unknown: Vec<String>,
    pub eventual_reads: usize,
    pub eventual_exact: usize,
    pub eventual_anomalies: Vec<String>,
    pub same_index: Vec<String>,
    pub index_order: Vec<String>,
    pub lost_writes: Vec<String>,
    pub replicas: Vec<String>,
    pub panics: Vec<String>,
    pub server_errors: Vec<String>,
    pub nemesis: Vec<String>,
    /// Watch streams that missed, repeated, reordered or invented a change.
    pub watch: Vec<String>,
}

impl Findings {
    /// Every check's findings with its name; `Unknown` verdicts included.
    pub fn sections(&self) -> Vec<(&'static str, &Vec<String>)> {
        vec![
            ("linearizability violations", &self.linear_violations),
            (
                "linearizability unknown (budget ran out)",
                &self.linear_unknown,
            ),
            ("eventual-read anomalies", &self.eventual_anomalies),
            (
                "acknowledged mutations of one key at one index",
                &self.same_index,
            ),
            ("indexes out of real-time order", &self.index_order),
            ("lost acknowledged writes", &self.lost_writes),
            ("replicas not caught up or not identical", &self.replicas),
            ("panics in node logs", &self.panics),
            ("500 answers in node logs", &self.server_errors),
            ("faults not healed or cluster not recovered", &self.nemesis),
            ("watch anomalies", &self.watch),
        ]
    }

    /// Findings that fail a run; `Unknown` verdicts count past `allow_unknown`.
    pub fn failures(&self, allow_unknown: usize) -> usize {
        let unknown = self.linear_unknown.len().saturating_sub(allow_unknown);
        self.sections()
            .iter()
            .filter(|(name, _)| !name.contains("unknown"))
            .map(|(_, v)| v.len())
            .sum::<usize>()
            + unknown
    }
}

/// A member wiped and added back under its id is a new node: what it served
/// for requests invoked after it was killed for the wipe is checked as
/// another node's (its applied index starts again from nothing). Those reads
/// get the id `node + 1000 * wipes before`.
fn as_new_nodes(ops: &[Operation], faults: &[FaultEvent]) -> Vec<Operation> {
    let wipes: Vec<(u64, u64)> = faults
        .iter()
        .flat_map(|f| f.wiped.iter().map(|w| (w.node, w.at)))
        .collect();
    if wipes.is_empty() {
        return ops.to_vec();
    }
    ops.iter()
        .map(|op| {
            let mut op = op.clone();
            if let Some(node) = op.served_by {
                let before = wipes
                    .iter()
                    .filter(|&&(n, at)| n == node && at < op.call)
                    .count() as u64;
                op.served_by = Some(node + 1000 * before);
            }
            op
        })
        .collect()
}

/// Runs every check.
pub fn check(
    ops: &[Operation],
    settled: &Settled,
    faults: &[FaultEvent],
    logs: &BTreeMap<NodeId, String>,
    linear_config: &LinearConfig,
) -> Findings {
    let mut f = Findings::default();
    let report = linear::check(ops, linear_config);
    f.keys = report.keys.len();
    for k in &report.keys {
        match &k.verdict {
            Verdict::Ok => {}
            Verdict::Violation(v) => f.linear_violations.push(v.to_string()),
            Verdict::Unknown => f.linear_unknown.push(format!(
                "key {:?}: {} ops, gave up after {} steps",
                k.key, k.ops, k.steps
            )),
        }
    }
    let ev = eventual::check(&as_new_nodes(ops, faults));
    f.eventual_reads = ev.reads;
    f.eventual_exact = ev.exact;
    f.eventual_anomalies = ev
        .anomalies
        .iter()
        .map(|a| describe_anomaly(a, faults))
        .collect();
    f.same_index = same_index(ops);
    f.index_order = index_order(ops);
    if let Some(leader) = settled.leader {
        if let Some(finals) = settled.finals.get(&leader) {
            f.lost_writes = lost_writes(ops, finals);
        }
    }
    f.replicas = replicas(settled);
    for (id, text) in logs {
        for line in text.lines() {
            if line.contains("panicked") {
                f.panics.push(format!("node {id}: {line}"));
            }
            if line.contains("code=\"internal\"") || line.contains("code=\"storage\"") {
                f.server_errors.push(format!("node {id}: {line}"));
            }
        }
    }
    for fault in faults {
        if let Some(p) = &fault.problem {
            f.nemesis
                .push(format!("{} ({}): {p}", fault.fault, fault.detail));
        }
    }
    f
}

fn describe_anomaly(a: &Anomaly, faults: &[FaultEvent]) -> String {
    if let Anomaly::IndexRegression {
        node,
        earlier,
        later,
    } = a
    {
        let from = earlier.call;
        let to = later.call;
        let crash = faults
            .iter()
            .find(|e| e.killed.contains(node) && e.start < to && e.end > from);
        if let Some(crash) = crash {
            return format!(
                "{a} -- after node {node} was killed and restarted ({}: {})",
                crash.fault, crash.detail
            );
        }
    }
    a.to_string()
}

/// Acknowledged (`ok`) strong operations that report an index.
fn acknowledged(ops: &[Operation]) -> impl Iterator<Item = (&Operation, u64)> {
    ops.iter()
        .filter(|o| o.outcome == Outcome::Ok && o.consistency == ConsistencyLevel::Strong)
        .filter_map(|o| Some((o, o.index?)))
}

fn same_index(ops: &[Operation]) -> Vec<String> {
    let mut seen: HashMap<(&str, u64), &Operation> = HashMap::new();
    let mut found = Vec::new();
    for (op, index) in acknowledged(ops).filter(|(o, _)| o.is_mutation()) {
        if let Some(first) = seen.insert((op.key.as_str(), index), op) {
            found.push(format!("index {index}: {first} and {op}"));
        }
    }
    found
}

/// Sweeps operations by invoke time, tracking the highest index among those
/// completed strictly before.
fn index_order(ops: &[Operation]) -> Vec<String> {
    let acked: Vec<(&Operation, u64)> = acknowledged(ops).collect();
    let mut by_ret = acked.clone();
    by_ret.sort_by_key(|(o, _)| o.ret);
    let mut by_call = acked;
    by_call.sort_by_key(|(o, _)| o.call);
    let mut done = by_ret.iter().peekable();
    let mut highest: Option<(&Operation, u64)> = None;
    let mut found = Vec::new();
    for &(op, index) in &by_call {
        while let Some(&&(earlier, i)) = done.peek().filter(|(e, _)| e.ret < Some(op.call)) {
            if highest.is_none_or(|(_, h)| i > h) {
                highest = Some((earlier, i));
            }
            done.next();
        }
        if let Some((earlier, h)) = highest {
            let behind = match op.is_mutation() {
                true => index <= h,
                false => index < h,
            };
            if behind {
                found.push(format!(
                    "{op} began after {earlier} completed, at an index not above it"
                ));
            }
        }
    }
    found
}

/// The final state of each key against its last acknowledged mutation.
fn lost_writes(ops: &[Operation], finals: &BTreeMap<String, KeyState>) -> Vec<String> {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.is_mutation()) {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut found = Vec::new();
    for (key, muts) in by_key {
        let last = muts
            .iter()
            .filter(|o| o.outcome == Outcome::Ok)
            .filter_map(|o| Some((o.index?, *o)))
            .max_by_key(|(i, _)| *i);
        let Some((index, last)) = last else { continue };
        let unsure: Vec<&&Operation> = muts
            .iter()
            .filter(|o| o.outcome == Outcome::Info || o.consistency == ConsistencyLevel::Eventual)
            .collect();
        let state = finals.get(key).cloned().flatten();
        let fine = match &state {
            Some((value, at)) => {
                let by_last = *at == index && wrote(last) == Some(value.as_str());
                let by_unsure = *at > index && unsure.iter().any(|o| wrote(o) == Some(value));
                by_last || by_unsure
            }
            None => {
                matches!(last.kind, Op::Delete)
                    || unsure.iter().any(|o| matches!(o.kind, Op::Delete))
            }
        };
        if !fine {
            let shown = state.map_or("absent".to_owned(), |(v, at)| format!("{v} at {at}"));
            found.push(format!(
                "key {key}: last acknowledged {last}, but finally {shown}"
            ));
        }
    }
    found
}

fn wrote(op: &Operation) -> Option<&str> {
    op.written().flatten().map(|v| v.0.as_str())
}

fn replicas(s: &Settled) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(p) = &s.problem {
        found.push(format!("settling failed: {p}"));
    }
    for (id, applied) in &s.lagging {
        found.push(format!(
            "node {id} applied only {applied} of the leader's commit index {}",
            s.committed
        ));
    }
    for (key, per_node) in &s.diverged {
        found.push(format!("key {key} differs: {per_node:?}"));
    }
    for (id, keys) in &s.strangers {
        found.push(format!(
            "node {id} holds keys nobody wrote: {:?}",
            &keys[..keys.len().min(5)]
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::fixtures::{read, write, Modify};

    #[test]
    fn finds_same_index_and_order() {
        let ops = vec![
            write(0, "a", 0, 10).at(1, 5),
            write(1, "b", 20, 30).at(1, 5),
            read(2, None, 40, 50).at(1, 4),
        ];
        assert_eq!(same_index(&ops).len(), 1);
        let order = index_order(&ops);
        assert_eq!(order.len(), 2, "{order:?}");
    }

    #[test]
    fn a_replaced_node_is_a_new_node_for_the_per_node_checks() {
        // Node 1 served index 8, was wiped and added back at t=100, then
        // served index 0: no regression, it is another node now.
        let mut before = read(0, None, 10, 20).at(1, 8);
        before.consistency = ConsistencyLevel::Eventual;
        let mut after = read(1, None, 150, 160).at(1, 0);
        after.consistency = ConsistencyLevel::Eventual;
        let ops = vec![before, after];
        assert_eq!(
            eventual::check(&ops).anomalies.len(),
            1,
            "a regression as one node"
        );
        let wipe = FaultEvent {
            fault: "replace-member".into(),
            detail: String::new(),
            start: 100,
            end: 140,
            killed: vec![1],
            snapshot_catch_up: vec![],
            wiped: vec![crate::torture::recorder::Wiped { node: 1, at: 100 }],
            problem: None,
        };
        let renamed = as_new_nodes(&ops, &[wipe]);
        assert_eq!(renamed[0].served_by, Some(1));
        assert_eq!(renamed[1].served_by, Some(1001));
        assert!(eventual::check(&renamed).anomalies.is_empty());
    }

    #[test]
    fn finds_lost_write() {
        let ops = vec![
            write(0, "a", 0, 10).at(1, 5),
            write(1, "b", 20, 30).at(1, 7),
        ];
        let mut finals = BTreeMap::new();
        finals.insert("k".to_owned(), Some(("a".to_owned(), 5)));
        assert_eq!(lost_writes(&ops, &finals).len(), 1);
        finals.insert("k".to_owned(), Some(("b".to_owned(), 7)));
        assert!(lost_writes(&ops, &finals).is_empty());
        let unsure = write(2, "c", 40, 0).info();
        let ops = vec![ops[0].clone(), ops[1].clone(), unsure];
        finals.insert("k".to_owned(), Some(("c".to_owned(), 9)));
        assert!(lost_writes(&ops, &finals).is_empty());
        finals.insert("k".to_owned(), None);
        assert_eq!(lost_writes(&ops, &finals).len(), 1);
    }
}
