//! Test-only: planters that break a generated history in a way no checker
//! may accept; each returns `None` when the history offers no site for it.

use super::gen::Rng;
use super::history::{ConsistencyLevel, Value};
use super::operation::{Op, Operation, Outcome};

fn strong_ok(op: &Operation) -> bool {
    op.outcome == Outcome::Ok && op.consistency == ConsistencyLevel::Strong
}

fn strong_read(op: &Operation) -> bool {
    strong_ok(op) && !op.is_mutation()
}

fn set_read(op: &mut Operation, value: Option<Value>) {
    op.kind = Op::Read { value };
}

/// A strong read returns a value overwritten before it began: for some
/// writer `wx` of x and mutation `wy`, wx < wy < read in real time.
pub fn plant_stale_read(ops: &[Operation], rng: &mut Rng) -> Option<Vec<Operation>> {
    let before = |a: &Operation, b: &Operation| a.ret.is_some_and(|r| r < b.call);
    let mut sites = Vec::new();
    for (ri, r) in ops.iter().enumerate().filter(|(_, o)| strong_read(o)) {
        let same = |o: &&Operation| o.key == r.key && strong_ok(o) && o.is_mutation();
        let Some(wy) = ops
            .iter()
            .filter(same)
            .filter(|w| before(w, r))
            .max_by_key(|w| w.call)
        else {
            continue;
        };
        for wx in ops.iter().filter(same).filter(|w| before(w, wy)) {
            if let Some(Some(x)) = wx.written() {
                sites.push((ri, x.clone()));
            }
        }
    }
    let (ri, x) = rng.pick(&sites)?.clone();
    let mut out = ops.to_vec();
    set_read(&mut out[ri], Some(x));
    Some(out)
}

/// A strong read returns a value written only by a write invoked after the read completed.
pub fn plant_future_read(ops: &[Operation], rng: &mut Rng) -> Option<Vec<Operation>> {
    let mut sites = Vec::new();
    for (ri, r) in ops.iter().enumerate().filter(|(_, o)| strong_read(o)) {
        let later = ops
            .iter()
            .filter(|w| w.key == r.key && r.ret < Some(w.call));
        for w in later.filter(|w| w.outcome != Outcome::Fail) {
            if let Some(Some(x)) = w.written() {
                sites.push((ri, x.clone()));
            }
        }
    }
    let (ri, x) = rng.pick(&sites)?.clone();
    let mut out = ops.to_vec();
    set_read(&mut out[ri], Some(x));
    Some(out)
}

/// A write some strong read saw is dropped (`drop`) or marked `fail` (`!drop`).
pub fn plant_lost_write(ops: &[Operation], rng: &mut Rng, drop: bool) -> Option<Vec<Operation>> {
    let seen: Vec<(String, Value)> = ops
        .iter()
        .filter(|o| strong_read(o))
        .filter_map(|o| match &o.kind {
            Op::Read { value: Some(v) } => Some((o.key.clone(), v.clone())),
            _ => None,
        })
        .collect();
    let sites: Vec<usize> = (0..ops.len())
        .filter(|&i| match &ops[i].kind {
            Op::Write { value } => seen.contains(&(ops[i].key.clone(), value.clone())),
            _ => false,
        })
        .collect();
    let &wi = rng.pick(&sites)?;
    let mut out = ops.to_vec();
    if drop {
        out.remove(wi);
    } else {
        out[wi].outcome = Outcome::Fail;
        out[wi].ret = Some(out[wi].ret.unwrap_or(out[wi].call + 1));
    }
    Some(out)
}

/// A successful strong cas claims to have matched a value never written.
pub fn plant_bad_cas(ops: &[Operation], rng: &mut Rng) -> Option<Vec<Operation>> {
    let sites: Vec<usize> = (0..ops.len())
        .filter(|&i| strong_ok(&ops[i]) && matches!(ops[i].kind, Op::Cas { .. }))
        .collect();
    let &ci = rng.pick(&sites)?;
    let mut out = ops.to_vec();
    if let Op::Cas { expected, .. } = &mut out[ci].kind {
        *expected = Value("never-written".into());
    }
    Some(out)
}

/// A read (strong or eventual) returns a value nobody wrote.
pub fn plant_phantom(ops: &[Operation], rng: &mut Rng, eventual: bool) -> Option<Vec<Operation>> {
    let want = match eventual {
        true => ConsistencyLevel::Eventual,
        false => ConsistencyLevel::Strong,
    };
    let sites: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].outcome == Outcome::Ok && !ops[i].is_mutation())
        .filter(|&i| ops[i].consistency == want)
        .collect();
    let &ri = rng.pick(&sites)?;
    let mut out = ops.to_vec();
    set_read(&mut out[ri], Some(Value("phantom".into())));
    Some(out)
}

fn eventual_read(op: &Operation) -> bool {
    op.outcome == Outcome::Ok && op.consistency == ConsistencyLevel::Eventual && !op.is_mutation()
}

/// An eventual read reports an index below one an earlier read on its node
/// reported; returns the history and the index of the changed read.
pub fn plant_regression(ops: &[Operation], rng: &mut Rng) -> Option<(Vec<Operation>, usize)> {
    let mut sites = Vec::new();
    for (bi, b) in ops.iter().enumerate().filter(|(_, o)| eventual_read(o)) {
        for a in ops
            .iter()
            .filter(|a| eventual_read(a) && a.served_by == b.served_by)
        {
            if a.ret.is_some_and(|r| r < b.call) && a.index.is_some_and(|i| i > 0) {
                sites.push((bi, a.index.unwrap_or(1) - 1));
            }
        }
    }
    let &(bi, index) = rng.pick(&sites)?;
    let mut out = ops.to_vec();
    out[bi].index = Some(index);
    Some((out, bi))
}

/// An eventual read returns the value of an acknowledged strong write on its
/// key whose index is above the one the read reports.
pub fn plant_wrong_value(ops: &[Operation], rng: &mut Rng) -> Option<(Vec<Operation>, usize)> {
    let mut sites = Vec::new();
    for (ri, r) in ops.iter().enumerate().filter(|(_, o)| eventual_read(o)) {
        let later = ops
            .iter()
            .filter(|w| w.key == r.key && strong_ok(w) && w.index > r.index);
        for w in later {
            if let Some(Some(x)) = w.written() {
                sites.push((ri, x.clone()));
            }
        }
    }
    let (ri, x) = rng.pick(&sites)?.clone();
    let mut out = ops.to_vec();
    set_read(&mut out[ri], Some(x));
    Some((out, ri))
}
