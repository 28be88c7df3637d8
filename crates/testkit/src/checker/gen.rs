//! Test-only: random histories of a simulated store that really is
//! linearizable (one log, per-node applied indexes for eventual reads).
//! `plant.rs` breaks them.

use std::collections::HashMap;

use super::history::{ConsistencyLevel, Value};
use super::operation::{Op, Operation, Outcome};

pub use crate::rng::Rng;

/// Shape of a generated history.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub processes: usize,
    pub ops: usize,
    pub keys: usize,
    pub nodes: u64,
    /// Share of mutations that complete `info`.
    pub info_pct: u64,
    /// Share of reads and writes done at eventual consistency.
    pub eventual_pct: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Ok,
    Fail,
    Info { effect: bool },
}

struct InFlight {
    op: Operation,
    fate: Fate,
    applied: bool,
}

struct Sim {
    rng: Rng,
    p: Params,
    time: u64,
    log_len: u64,
    /// Per key: (log index, value from then on), ascending; starts absent.
    versions: HashMap<String, Vec<(u64, Option<Value>)>>,
    applied: Vec<u64>,
    fresh: u64,
    /// Info mutations that will take effect later, after their client gave up.
    floating: Vec<Operation>,
    done: Vec<Operation>,
}

/// A history of `p.ops` operations from `p.processes` sequential clients.
pub fn generate(seed: u64, p: Params) -> Vec<Operation> {
    let mut sim = Sim {
        rng: Rng::new(seed),
        p,
        time: 0,
        log_len: 0,
        versions: HashMap::new(),
        applied: vec![0; p.nodes as usize],
        fresh: 0,
        floating: Vec::new(),
        done: Vec::new(),
    };
    let mut procs: Vec<Option<InFlight>> = (0..p.processes).map(|_| None).collect();
    let mut invoked = 0;
    while invoked < p.ops || procs.iter().any(Option::is_some) {
        sim.time += 1 + sim.rng.below(3);
        sim.maybe_float();
        let i = sim.rng.below(p.processes as u64) as usize;
        procs[i] = match procs[i].take() {
            None if invoked < p.ops => {
                invoked += 1;
                Some(sim.invoke(i as u64))
            }
            None => None,
            Some(f) if !f.applied => Some(sim.apply(f)),
            Some(f) => {
                sim.complete(f);
                None
            }
        };
    }
    sim.done
}

impl Sim {
    fn key(&mut self) -> String {
        format!("k{}", self.rng.below(self.p.keys as u64))
    }

    fn fresh(&mut self) -> Value {
        self.fresh += 1;
        Value(format!("v{}", self.fresh))
    }

    fn current(&self, key: &str) -> Option<Value> {
        self.versions
            .get(key)
            .and_then(|v| v.last())
            .and_then(|(_, v)| v.clone())
    }

    fn at(&self, key: &str, index: u64) -> Option<Value> {
        let versions = self.versions.get(key).map_or(&[][..], |v| &v[..]);
        versions
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .and_then(|(_, v)| v.clone())
    }

    fn invoke(&mut self, process: u64) -> InFlight {
        let key = self.key();
        let kind = match self.rng.below(100) {
            0..=39 => Op::Read { value: None },
            40..=69 => Op::Write {
                value: self.fresh(),
            },
            70..=74 => Op::Delete,
            _ => self.cas(&key),
        };
        let eventual = self.rng.percent(self.p.eventual_pct)
            && matches!(kind, Op::Read { .. } | Op::Write { .. });
        let fate = match self.rng.below(100) {
            n if n < self.p.info_pct => Fate::Info {
                effect: self.rng.percent(50),
            },
            n if n < self.p.info_pct + 3 => Fate::Fail,
            _ => Fate::Ok,
        };
        let op = Operation {
            process,
            kind,
            key,
            call: self.time,
            ret: None,
            outcome: Outcome::Ok,
            consistency: match eventual {
                true => ConsistencyLevel::Eventual,
                false => ConsistencyLevel::Strong,
            },
            served_by: None,
            index: None,
        };
        InFlight {
            op,
            fate,
            applied: false,
        }
    }

    fn cas(&mut self, key: &str) -> Op {
        let expected = match self.current(key) {
            Some(v) if self.rng.percent(60) => v,
            _ => {
                let all: Vec<Value> = self.versions.get(key).map_or(Vec::new(), |v| {
                    v.iter().filter_map(|(_, v)| v.clone()).collect()
                });
                match self.rng.pick(&all) {
                    Some(v) => v.clone(),
                    None => self.fresh(),
                }
            }
        };
        Op::Cas {
            expected,
            new: self.fresh(),
        }
    }

    /// The linearization point.
    fn apply(&mut self, mut f: InFlight) -> InFlight {
        f.applied = true;
        match f.fate {
            Fate::Fail => {}
            Fate::Info { effect: false } => {}
            Fate::Info { effect: true } if f.op.is_mutation() && self.rng.percent(50) => {
                self.floating.push(f.op.clone());
            }
            _ => self.take_effect(&mut f.op),
        }
        f
    }

    fn take_effect(&mut self, op: &mut Operation) {
        let node = self.rng.below(self.p.nodes);
        op.served_by = Some(node);
        let new = match &op.kind {
            Op::Read { .. } => return self.read(op, node),
            Op::Write { value } => Some(value.clone()),
            Op::Delete => None,
            Op::Cas { expected, new } => {
                if self.current(&op.key).as_ref() != Some(expected) {
                    op.outcome = Outcome::Fail;
                    return;
                }
                Some(new.clone())
            }
        };
        self.log_len += 1;
        let versions = self.versions.entry(op.key.clone()).or_default();
        versions.push((self.log_len, new));
        op.index = Some(self.log_len);
    }

    fn read(&mut self, op: &mut Operation, node: u64) {
        let index = match op.consistency {
            ConsistencyLevel::Strong | ConsistencyLevel::All => self.log_len,
            ConsistencyLevel::Eventual => {
                let a = &mut self.applied[node as usize];
                *a += self.rng.below(self.log_len - *a + 1);
                *a
            }
        };
        op.kind = Op::Read {
            value: self.at(&op.key, index),
        };
        op.index = Some(index);
    }

    fn maybe_float(&mut self) {
        if self.floating.is_empty() || !self.rng.percent(10) {
            return;
        }
        let i = self.rng.below(self.floating.len() as u64) as usize;
        let mut op = self.floating.swap_remove(i);
        self.take_effect(&mut op);
    }

    fn complete(&mut self, f: InFlight) {
        let mut op = f.op;
        match f.fate {
            Fate::Ok => op.ret = Some(self.time),
            Fate::Fail => {
                op.outcome = Outcome::Fail;
                op.ret = Some(self.time);
            }
            Fate::Info { .. } => {
                op.outcome = Outcome::Info;
                op.ret = None;
                op.index = None;
                op.served_by = None;
            }
        }
        if op.outcome == Outcome::Fail {
            op.index = None;
            if let Op::Read { value } = &mut op.kind {
                *value = None;
            }
        }
        self.done.push(op);
    }
}
