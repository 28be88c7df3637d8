//! Linearizability of the strong operations, key by key (P-compositionality:
//! keys are independent registers, so a history is linearizable iff each
//! key's sub-history is).
//!
//! What enters a key's search (`wgl.rs`): `ok` strong reads, writes, deletes
//! and cas, which must be linearized between invoke and completion; `info`
//! mutations and eventual (acknowledged-before-commit) mutations, which may
//! take effect at any time after their invoke, or never. Dropped: `fail`
//! operations (they did not happen, and a failed cas changed nothing),
//! `info` reads and eventual reads (checked in `eventual.rs`). Every key
//! starts absent.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::history::{show, ConsistencyLevel, Value};
use super::operation::{Op, Operation, Outcome};
use super::wgl::{self, Call, Search, State, Step};

/// Limits of the search.
#[derive(Debug, Clone)]
pub struct LinearConfig {
    /// Search steps allowed per key before giving up with `Unknown`. A step
    /// costs well under a microsecond; the memo holds at most one entry per step.
    pub max_steps: u64,
    /// Keys checked in parallel; 0 = the machine's parallelism.
    pub threads: usize,
}

impl Default for LinearConfig {
    fn default() -> Self {
        LinearConfig {
            max_steps: 10_000_000,
            threads: 0,
        }
    }
}

/// The verdict for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Violation(Box<Violation>),
    /// The budget ran out: neither proven nor refuted.
    Unknown,
}

/// Why a key's history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<Linearized>,
    /// The register after the prefix.
    pub state: Option<Value>,
    /// The earliest-completing operation outside the prefix: it could not be placed.
    pub blocked: Operation,
    /// Other operations outside the prefix invoked before `blocked` completed.
    pub concurrent: Vec<Operation>,
}

/// An operation of a linearization and the register after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linearized {
    pub op: Operation,
    pub after: Option<Value>,
}

/// The result for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    pub key: String,
    /// Operations that entered the search.
    pub ops: usize,
    pub steps: u64,
    pub verdict: Verdict,
}

/// The result for a whole history, one entry per key in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearReport {
    pub keys: Vec<KeyReport>,
}

impl LinearReport {
    /// True iff every key is proven linearizable.
    pub fn is_ok(&self) -> bool {
        self.keys.iter().all(|k| k.verdict == Verdict::Ok)
    }

    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.keys.iter().filter_map(|k| match &k.verdict {
            Verdict::Violation(v) => Some(&**v),
            _ => None,
        })
    }

    /// Keys whose search ran out of budget.
    pub fn unknown(&self) -> impl Iterator<Item = &str> {
        self.keys
            .iter()
            .filter(|k| k.verdict == Verdict::Unknown)
            .map(|k| k.key.as_str())
    }
}

/// Checks every key of `history`, keys in parallel.
pub fn check(history: &[Operation], config: &LinearConfig) -> LinearReport {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let jobs: Vec<(&str, Vec<&Operation>)> = by_key.into_iter().collect();
    let keys = parallel_map(&jobs, config.threads, |(key, ops)| {
        check_key(key, ops, config)
    });
    LinearReport { keys }
}

/// Checks the operations of one key (operations on other keys must not be passed).
pub fn check_key(key: &str, ops: &[&Operation], config: &LinearConfig) -> KeyReport {
    let entered: Vec<&Operation> = ops.iter().copied().filter(|o| enters(o)).collect();
    let mut values = Interner::default();
    let calls: Vec<Call> = entered.iter().map(|o| to_call(o, &mut values)).collect();
    let (steps, verdict) = match wgl::search(&calls, config.max_steps) {
        Search::Linearizable { steps } => (steps, Verdict::Ok),
        Search::Exhausted { steps } => (steps, Verdict::Unknown),
        Search::Violation { steps, prefix } => {
            let verdict = explain(key, &entered, &calls, &values, &prefix)
                .map_or(Verdict::Unknown, |v| Verdict::Violation(Box::new(v)));
            (steps, verdict)
        }
    };
    KeyReport {
        key: key.to_owned(),
        ops: entered.len(),
        steps,
        verdict,
    }
}

/// Whether an operation takes part in the strong search (see the module doc).
fn enters(op: &Operation) -> bool {
    match (&op.kind, op.outcome) {
        (_, Outcome::Fail) => false,
        (Op::Read { .. }, Outcome::Ok) => op.consistency == ConsistencyLevel::Strong,
        (Op::Read { .. }, Outcome::Info) => false,
        _ => true,
    }
}

fn to_call(op: &Operation, values: &mut Interner) -> Call {
    let step = match &op.kind {
        Op::Read { value } => Step::Read(values.state(value.as_ref())),
        Op::Write { value } => Step::Set(Some(values.id(value))),
        Op::Delete => Step::Set(None),
        Op::Cas { expected, new } => Step::Cas {
            expected: values.id(expected),
            new: values.id(new),
        },
    };
    let required = op.outcome == Outcome::Ok && op.consistency == ConsistencyLevel::Strong;
    Call {
        call: op.call,
        ret: if required { op.ret } else { None },
        step,
    }
}

/// Values of one key as small integers, so the memo hashes words, not strings.
#[derive(Default)]
struct Interner {
    ids: HashMap<Value, u32>,
    values: Vec<Value>,
}

impl Interner {
    fn id(&mut self, value: &Value) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = self.values.len() as u32;
        self.ids.insert(value.clone(), id);
        self.values.push(value.clone());
        id
    }

    fn state(&mut self, value: Option<&Value>) -> State {
        value.map(|v| self.id(v))
    }

    fn value(&self, state: State) -> Option<Value> {
        state.and_then(|id| self.values.get(id as usize).cloned())
    }
}

/// Builds the explanation from the longest prefix; `None` if there is no
/// unplaced required operation, which the search never reports.
fn explain(
    key: &str,
    ops: &[&Operation],
    calls: &[Call],
    values: &Interner,
    prefix: &[usize],
) -> Option<Violation> {
    let mut state: State = None;
    let mut placed = vec![false; ops.len()];
    let mut linearized = Vec::with_capacity(prefix.len());
    for &i in prefix {
        state = calls[i].step.apply(state)?;
        placed[i] = true;
        linearized.push(Linearized {
            op: ops[i].clone(),
            after: values.value(state),
        });
    }
    let blocked = (0..ops.len())
        .filter(|&i| !placed[i])
        .filter_map(|i| calls[i].ret.map(|r| (r, i)))
        .min()?;
    let concurrent = (0..ops.len())
        .filter(|&i| !placed[i] && i != blocked.1 && calls[i].call <= blocked.0)
        .map(|i| ops[i].clone())
        .collect();
    Some(Violation {
        key: key.to_owned(),
        prefix: linearized,
        state: values.value(state),
        blocked: ops[blocked.1].clone(),
        concurrent,
    })
}

/// Operations of the prefix shown by `Display`, counted from its end.
const SHOWN: usize = 8;

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {:?} is not linearizable", self.key)?;
        let skip = self.prefix.len().saturating_sub(SHOWN);
        writeln!(
            f,
            "  longest linearizable prefix: {} ops{}",
            self.prefix.len(),
            if skip > 0 { ", ending" } else { "" }
        )?;
        for l in &self.prefix[skip..] {
            writeln!(f, "    {}  => {}", l.op, show(&l.after))?;
        }
        writeln!(f, "  register then holds {}", show(&self.state))?;
        writeln!(f, "  cannot place: {}", self.blocked)?;
        for op in self.concurrent.iter().take(SHOWN) {
            writeln!(f, "  concurrent, unplaced: {op}")?;
        }
        if self.concurrent.len() > SHOWN {
            writeln!(f, "  ... {} more", self.concurrent.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// Maps `f` over `items` on up to `threads` threads, keeping order.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                done.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|&(i, _)| i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
#[path = "linear_tests.rs"]
mod tests;
