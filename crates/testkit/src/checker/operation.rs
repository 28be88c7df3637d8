//! Operations: an `invoke` record paired with its completion, which is what
//! the checkers consume. An invoke still pending when the history ends is
//! taken as `info` (it may have happened).

use std::collections::HashMap;
use std::fmt;

use super::history::{show, ConsistencyLevel, HistoryError, OpKind, Phase, Record, Value};

/// What an operation did, with its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `value` is what an `ok` read returned; `None` = the key was absent.
    Read {
        value: Option<Value>,
    },
    Write {
        value: Value,
    },
    Delete,
    /// Compare-and-set: `ok` if the register held `expected`, then it holds `new`.
    Cas {
        expected: Value,
        new: Value,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Read { value } => write!(f, "read -> {}", show(value)),
            Op::Write { value } => write!(f, "write {value}"),
            Op::Delete => f.write_str("delete"),
            Op::Cas { expected, new } => write!(f, "cas {expected} -> {new}"),
        }
    }
}

/// How an operation completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It happened, between `call` and `ret`.
    Ok,
    /// It definitely did not happen.
    Fail,
    /// Unknown: it may take effect any time after `call`, or never.
    Info,
}

/// One operation of one process on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub process: u64,
    pub kind: Op,
    pub key: String,
    /// Invoke time, nanoseconds.
    pub call: u64,
    /// Completion time; `None` for `info` (it may take effect at any later time).
    pub ret: Option<u64>,
    pub outcome: Outcome,
    pub consistency: ConsistencyLevel,
    pub served_by: Option<u64>,
    pub index: Option<u64>,
}

impl Operation {
    /// True for a write, delete or cas.
    pub fn is_mutation(&self) -> bool {
        !matches!(self.kind, Op::Read { .. })
    }

    /// The value a mutation leaves in the register (`None` for delete), or
    /// `None` for a read.
    pub fn written(&self) -> Option<Option<&Value>> {
        match &self.kind {
            Op::Read { .. } => None,
            Op::Write { value } => Some(Some(value)),
            Op::Delete => Some(None),
            Op::Cas { new, .. } => Some(Some(new)),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ret = self.ret.map_or_else(|| "?".to_owned(), |r| r.to_string());
        write!(
            f,
            "p{} {} {} [{}, {}] {:?}",
            self.process, self.key, self.kind, self.call, ret, self.outcome
        )?;
        if self.consistency == ConsistencyLevel::Eventual {
            f.write_str(" eventual")?;
        }
        if let Some(node) = self.served_by {
            write!(f, " node={node}")?;
        }
        if let Some(index) = self.index {
            write!(f, " index={index}")?;
        }
        Ok(())
    }
}

/// Pairs each invoke with its process's next completion. Operations come out
/// in invoke order; invokes never completed become `info`.
pub fn pair(records: &[Record]) -> Result<Vec<Operation>, HistoryError> {
    let mut ops: Vec<Option<Operation>> = Vec::new();
    let mut pending: HashMap<u64, (usize, usize)> = HashMap::new(); // process -> (record, op slot)
    for (i, record) in records.iter().enumerate() {
        if record.phase == Phase::Invoke {
            if let Some(&(pending_record, _)) = pending.get(&record.process) {
                return Err(HistoryError::AlreadyPending {
                    record: i,
                    process: record.process,
                    pending: pending_record,
                });
            }
            pending.insert(record.process, (i, ops.len()));
            ops.push(None);
            continue;
        }
        let (invoke, slot) = pending
            .remove(&record.process)
            .ok_or(HistoryError::NotInvoked {
                record: i,
                process: record.process,
            })?;
        ops[slot] = Some(complete(&records[invoke], invoke, record, i)?);
    }
    for (invoke, slot) in pending.into_values() {
        let mut info = records[invoke].clone();
        info.phase = Phase::Info;
        ops[slot] = Some(complete(&records[invoke], invoke, &info, invoke)?);
    }
    Ok(ops.into_iter().flatten().collect())
}

/// Builds the operation from an invoke (record `a`) and its completion (`b`).
fn complete(invoke: &Record, a: usize, done: &Record, b: usize) -> Result<Operation, HistoryError> {
    check_match(invoke, a, done, b)?;
    let outcome = match done.phase {
        Phase::Ok => Outcome::Ok,
        Phase::Fail => Outcome::Fail,
        _ => Outcome::Info,
    };
    Ok(Operation {
        process: invoke.process,
        kind: kind(invoke, done, a)?,
        key: invoke.key.clone(),
        call: invoke.time,
        ret: (outcome != Outcome::Info).then_some(done.time),
        outcome,
        consistency: done.consistency.or(invoke.consistency).unwrap_or_default(),
        served_by: done.served_by,
        index: done.index,
    })
}

fn check_match(invoke: &Record, a: usize, done: &Record, b: usize) -> Result<(), HistoryError> {
    let mismatch = |what| HistoryError::Mismatch {
        record: b,
        invoke: a,
        what,
    };
    if done.f != invoke.f {
        return Err(mismatch("f differs"));
    }
    if done.key != invoke.key {
        return Err(mismatch("key differs"));
    }
    if done.time < invoke.time {
        return Err(HistoryError::TimeBackwards {
            record: b,
            call: invoke.time,
            time: done.time,
        });
    }
    Ok(())
}

/// The payload: a read's value comes from its completion, the rest from the invoke.
fn kind(invoke: &Record, done: &Record, a: usize) -> Result<Op, HistoryError> {
    let need = |v: &Option<Value>, field| {
        v.clone().ok_or(HistoryError::MissingField {
            record: a,
            f: invoke.f,
            field,
        })
    };
    Ok(match invoke.f {
        OpKind::Read => Op::Read {
            value: done.value.clone(),
        },
        OpKind::Write => Op::Write {
            value: need(&invoke.value, "value")?,
        },
        OpKind::Delete => Op::Delete,
        OpKind::Cas => Op::Cas {
            expected: need(&invoke.expected, "expected")?,
            new: need(&invoke.new, "new")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoke(process: u64, f: OpKind, time: u64) -> Record {
        let mut r = Record::invoke(process, f, "k", time);
        match f {
            OpKind::Write => r.value = Some("w".into()),
            OpKind::Cas => {
                r.expected = Some("e".into());
                r.new = Some("n".into());
            }
            _ => {}
        }
        r
    }

    #[test]
    fn pairs_interleaved_processes() {
        let w = invoke(1, OpKind::Write, 0);
        let r = invoke(2, OpKind::Read, 1);
        let mut r_ok = Record::complete(&r, Phase::Ok, 3);
        r_ok.value = Some("w".into());
        r_ok.index = Some(4);
        r_ok.served_by = Some(2);
        let w_fail = Record::complete(&w, Phase::Fail, 5);
        let ops = pair(&[w, r, r_ok, w_fail]).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].kind, Op::Write { value: "w".into() });
        assert_eq!((ops[0].outcome, ops[0].ret), (Outcome::Fail, Some(5)));
        assert_eq!(
            ops[1].kind,
            Op::Read {
                value: Some("w".into())
            }
        );
        assert_eq!((ops[1].call, ops[1].ret), (1, Some(3)));
        assert_eq!((ops[1].served_by, ops[1].index), (Some(2), Some(4)));
        assert_eq!(ops[1].consistency, ConsistencyLevel::Strong);
    }

    #[test]
    fn info_and_pending_have_no_return() {
        let c = invoke(1, OpKind::Cas, 0);
        let c_info = Record::complete(&c, Phase::Info, 9);
        let mut d = invoke(1, OpKind::Delete, 10);
        d.consistency = Some(ConsistencyLevel::Eventual);
        let ops = pair(&[c, c_info, d]).unwrap();
        assert_eq!(ops.len(), 2);
        assert!(ops
            .iter()
            .all(|o| o.outcome == Outcome::Info && o.ret.is_none()));
        assert_eq!(ops[1].kind, Op::Delete);
        assert_eq!(ops[1].consistency, ConsistencyLevel::Eventual);
    }

    #[test]
    fn rejects_malformed_histories() {
        let w = invoke(1, OpKind::Write, 5);
        let orphan = Record::complete(&w, Phase::Ok, 6);
        assert!(matches!(
            pair(std::slice::from_ref(&orphan)),
            Err(HistoryError::NotInvoked { record: 0, .. })
        ));
        assert!(matches!(
            pair(&[w.clone(), w.clone()]),
            Err(HistoryError::AlreadyPending { record: 1, .. })
        ));
        let mut other_key = orphan.clone();
        other_key.key = "x".into();
        assert!(matches!(
            pair(&[w.clone(), other_key]),
            Err(HistoryError::Mismatch { .. })
        ));
        let early = Record::complete(&w, Phase::Ok, 4);
        assert!(matches!(
            pair(&[w.clone(), early]),
            Err(HistoryError::TimeBackwards { .. })
        ));
        let mut bare = w;
        bare.value = None;
        assert!(matches!(
            pair(&[bare]),
            Err(HistoryError::MissingField { field: "value", .. })
        ));
    }

    #[test]
    fn written_values() {
        let op = |kind| Operation {
            process: 0,
            kind,
            key: "k".into(),
            call: 0,
            ret: None,
            outcome: Outcome::Info,
            consistency: ConsistencyLevel::Strong,
            served_by: None,
            index: None,
        };
        let v = Value::from("v");
        assert_eq!(op(Op::Read { value: None }).written(), None);
        assert_eq!(op(Op::Delete).written(), Some(None));
        assert_eq!(op(Op::Write { value: v.clone() }).written(), Some(Some(&v)));
        assert!(op(Op::Delete).is_mutation());
    }
}
