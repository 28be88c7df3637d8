//! Watchers in a torture run: each follows every change to the workload's
//! keys through the faults, reconnecting to another node (from the last
//! index it applied + 1) whenever its node is killed, paused or cut off.
//! After the run each must reach the settled commit index; then
//! [`check`] compares their streams with the clients' acknowledged writes
//! and with each other.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checker::{ConsistencyLevel, Op, Operation, Outcome};
use crate::client::Client;
use crate::cluster::POLL;
use crate::watch::{Change, WatchEvent, WatchQuery};
use crate::NodeId;

/// What one watcher saw.
#[derive(Debug, Clone, Default)]
pub struct WatchLog {
    pub watcher: usize,
    /// Changes of whole indexes, in the order received.
    pub changes: Vec<Change>,
    /// Every change up to here was received.
    pub through: u64,
    pub reconnects: usize,
    /// Final events (`compacted`, ...) and stream errors, as text.
    pub ends: Vec<String>,
}

/// Running watchers.
pub struct Watchers {
    /// 0 while the run goes on; then the index each must reach before stopping.
    target: Arc<AtomicU64>,
    handles: Vec<tokio::task::JoinHandle<WatchLog>>,
}

impl Watchers {
    /// Starts `n` watchers of `prefix` over `nodes` (each starting on a
    /// different node), from `from`.
    pub fn start(nodes: Vec<(NodeId, Client)>, n: usize, prefix: &str, from: u64) -> Watchers {
        let target = Arc::new(AtomicU64::new(0));
        let handles = (0..n)
            .map(|w| {
                let (nodes, target) = (nodes.clone(), target.clone());
                let prefix = prefix.to_string();
                tokio::spawn(async move { follow(w, nodes, prefix, from, target).await })
            })
            .collect();
        Watchers { target, handles }
    }

    /// Lets each watcher run until it has seen `through` (or `bound` passes),
    /// then returns what each saw.
    pub async fn finish(self, through: u64, bound: Duration) -> Vec<WatchLog> {
        self.target.store(through.max(1), Ordering::SeqCst);
        let mut logs = Vec::new();
        for (w, h) in self.handles.into_iter().enumerate() {
            match tokio::time::timeout(bound, h).await {
                Ok(Ok(log)) => logs.push(log),
                Ok(Err(e)) => logs.push(WatchLog {
                    watcher: w,
                    ends: vec![format!("watcher task failed: {e}")],
                    ..WatchLog::default()
                }),
                Err(_) => logs.push(WatchLog {
                    watcher: w,
                    ends: vec![format!("did not reach index {through} within {bound:?}")],
                    ..WatchLog::default()
                }),
            }
        }
        logs
    }
}

async fn follow(
    w: usize,
    nodes: Vec<(NodeId, Client)>,
    prefix: String,
    from: u64,
    target: Arc<AtomicU64>,
) -> WatchLog {
    let mut log = WatchLog {
        watcher: w,
        through: from.saturating_sub(1),
        ..WatchLog::default()
    };
    let mut partial: Vec<Change> = Vec::new();
    let mut node = w;
    let mut stream = None;
    let mut finishing_since: Option<Instant> = None;
    loop {
        let t = target.load(Ordering::SeqCst);
        if t > 0 {
            let since = *finishing_since.get_or_insert_with(Instant::now);
            if log.through >= t || since.elapsed() > Duration::from_secs(120) {
                return log;
            }
        }
        let Some(watch) = stream.as_mut() else {
            let (_, client) = &nodes[node % nodes.len()];
            let q = WatchQuery::prefix(&prefix).from(log.through + 1);
            match client.watch(&q).await {
                Ok(Ok(s)) => stream = Some(s),
                Ok(Err(resp)) => {
                    if resp.status == 410 {
                        log.ends.push(format!("410 on reconnect: {}", resp.text()));
                        return log;
                    }
                    node += 1;
                    tokio::time::sleep(POLL).await;
                }
                Err(_) => {
                    node += 1;
                    tokio::time::sleep(POLL).await;
                }
            }
            continue;
        };
        match watch.next(Duration::from_secs(3)).await {
            Ok(Some(WatchEvent::Change(c))) => {
                let (ends, index) = (c.ends_index, c.index);
                partial.push(c);
                if ends {
                    log.changes.append(&mut partial);
                    log.through = index;
                }
            }
            Ok(Some(WatchEvent::Progress(i))) => log.through = log.through.max(i),
            Ok(Some(WatchEvent::Final { name, body })) => {
                if name == "compacted" {
                    log.ends.push(format!("compacted: {body}"));
                    return log;
                }
                // Cancelled (too slow): resume where it said.
                partial.clear();
                stream = None;
                log.reconnects += 1;
            }
            Ok(None) | Err(_) => {
                // Its node went, froze or was cut off: on to the next one.
                partial.clear();
                stream = None;
                node += 1;
                log.reconnects += 1;
            }
        }
    }
}

/// The watch anomalies: streams out of order or with a change twice; an
/// acknowledged strong write missing or different; a value nobody wrote;
/// two watchers that disagree on the indexes both saw.
pub fn check(ops: &[Operation], logs: &[WatchLog]) -> Vec<String> {
    let mut found = Vec::new();
    let mut written: HashSet<(&str, &str)> = HashSet::new();
    for op in ops {
        match &op.kind {
            Op::Write { value } | Op::Cas { new: value, .. } => {
                written.insert((op.key.as_str(), value.0.as_str()));
            }
            _ => {}
        }
    }
    for log in logs {
        let w = log.watcher;
        for end in &log.ends {
            found.push(format!("watcher {w}: {end}"));
        }
        let mut seen = HashSet::new();
        for pair in log.changes.windows(2) {
            if pair[1].index < pair[0].index {
                found.push(format!(
                    "watcher {w}: index {} after {}",
                    pair[1].index, pair[0].index
                ));
            }
        }
        let mut at: BTreeMap<(u64, &str), &Change> = BTreeMap::new();
        for c in &log.changes {
            if !seen.insert((c.index, c.key.as_str(), c.value.clone())) {
                found.push(format!("watcher {w}: {} at {} twice", c.key, c.index));
            }
            if let Some(v) = &c.value {
                if !written.contains(&(c.key.as_str(), v.as_str())) {
                    found.push(format!(
                        "watcher {w}: {} = {v} at {}: no client wrote it",
                        c.key, c.index
                    ));
                }
            }
            at.insert((c.index, c.key.as_str()), c);
        }
        let acked = ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok && o.consistency != ConsistencyLevel::Eventual);
        for op in acked {
            let (Some(index), Some(Some(value))) = (op.index, op.written()) else {
                continue;
            };
            if index > log.through {
                continue;
            }
            match at.get(&(index, op.key.as_str())) {
                Some(c) if c.value.as_deref() == Some(value.0.as_str()) => {}
                Some(c) => found.push(format!(
                    "watcher {w}: {} at {index} shows {:?}, acknowledged {value}",
                    op.key, c.value
                )),
                None => found.push(format!(
                    "watcher {w}: acknowledged {} = {value} at {index} never seen (through {})",
                    op.key, log.through
                )),
            }
        }
    }
    // Watchers agree on every index both reached.
    for pair in logs.windows(2) {
        let upto = pair[0].through.min(pair[1].through);
        let cut = |l: &WatchLog| -> Vec<(u64, String, Option<String>)> {
            l.changes
                .iter()
                .filter(|c| c.index <= upto)
                .map(|c| (c.index, c.key.clone(), c.value.clone()))
                .collect()
        };
        let (a, b) = (cut(&pair[0]), cut(&pair[1]));
        if a != b {
            let first = a.iter().zip(&b).position(|(x, y)| x != y);
            found.push(format!(
                "watchers {} and {} disagree up to {upto}: {} vs {} changes, first difference at {:?}",
                pair[0].watcher,
                pair[1].watcher,
                a.len(),
                b.len(),
                first.map(|i| (a.get(i).cloned(), b.get(i).cloned()))
            ));
        }
    }
    found
}
