//! Test helpers: terse constructors for hand-made operations on key `k`,
//! strong and `ok` unless a modifier says otherwise.

use super::history::{ConsistencyLevel, Value};
use super::operation::{Op, Operation, Outcome};

fn op(process: u64, kind: Op, call: u64, ret: u64) -> Operation {
    Operation {
        process,
        kind,
        key: "k".into(),
        call,
        ret: Some(ret),
        outcome: Outcome::Ok,
        consistency: ConsistencyLevel::Strong,
        served_by: None,
        index: None,
    }
}

pub fn write(process: u64, value: &str, call: u64, ret: u64) -> Operation {
    op(
        process,
        Op::Write {
            value: value.into(),
        },
        call,
        ret,
    )
}

pub fn read(process: u64, value: Option<&str>, call: u64, ret: u64) -> Operation {
    let value = value.map(Value::from);
    op(process, Op::Read { value }, call, ret)
}

pub fn delete(process: u64, call: u64, ret: u64) -> Operation {
    op(process, Op::Delete, call, ret)
}

pub fn cas(process: u64, expected: &str, new: &str, call: u64, ret: u64) -> Operation {
    let kind = Op::Cas {
        expected: expected.into(),
        new: new.into(),
    };
    op(process, kind, call, ret)
}

/// Chainable changes to a test operation.
pub trait Modify {
    fn info(self) -> Self;
    fn fail(self) -> Self;
    fn on(self, key: &str) -> Self;
    fn eventual(self) -> Self;
    fn at(self, node: u64, index: u64) -> Self;
}

impl Modify for Operation {
    fn info(mut self) -> Self {
        self.outcome = Outcome::Info;
        self.ret = None;
        self
    }

    fn fail(mut self) -> Self {
        self.outcome = Outcome::Fail;
        self
    }

    fn on(mut self, key: &str) -> Self {
        self.key = key.into();
        self
    }

    fn eventual(mut self) -> Self {
        self.consistency = ConsistencyLevel::Eventual;
        self
    }

    fn at(mut self, node: u64, index: u64) -> Self {
        self.served_by = Some(node);
        self.index = Some(index);
        self
    }
}
