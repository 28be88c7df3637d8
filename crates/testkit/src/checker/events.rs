//! The event list of the linearizability search: calls and returns of the
//! operations in time order, as a doubly linked list from which a linearized
//! operation's pair is lifted and, on backtracking, put back (dancing links).

use super::model::Call;

/// The head entry.
pub(crate) const HEAD: usize = 0;
/// Past the last entry.
pub(crate) const NIL: usize = usize::MAX;

/// The dancing-links list of call and return events. Entry 0 is the head;
/// op `i` owns one call entry and the return entry `ret_of[i]`.
pub(crate) struct Events {
    pub next: Vec<usize>,
    prev: Vec<usize>,
    /// Entry -> operation index.
    pub op: Vec<usize>,
    pub is_call: Vec<bool>,
    ret_of: Vec<usize>,
}

impl Events {
    pub(crate) fn new(ops: &[Call]) -> Self {
        // (+infinity?, time, return?, op): calls before returns at equal times,
        // so touching operations count as concurrent.
        let mut order: Vec<(bool, u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            order.push((false, op.call, false, i));
            order.push((op.ret.is_none(), op.ret.unwrap_or(u64::MAX), true, i));
        }
        order.sort_unstable();
        let len = order.len() + 1;
        let mut events = Events {
            next: (1..=len).map(|e| if e == len { NIL } else { e }).collect(),
            prev: (0..len).map(|e| e.wrapping_sub(1)).collect(),
            op: vec![0; len],
            is_call: vec![false; len],
            ret_of: vec![0; ops.len()],
        };
        for (pos, &(_, _, is_ret, i)) in order.iter().enumerate() {
            let entry = pos + 1;
            events.op[entry] = i;
            events.is_call[entry] = !is_ret;
            if is_ret {
                events.ret_of[i] = entry;
            }
        }
        events
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NIL {
            self.prev[n] = e;
        }
    }

    /// Removes a call entry and its return.
    pub(crate) fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.ret_of[self.op[call]]);
    }

    /// Undoes the latest `lift`, which must have been of `call`.
    pub(crate) fn unlift(&mut self, call: usize) {
        self.relink(self.ret_of[self.op[call]]);
        self.relink(call);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::model::Step;

    fn walk(e: &Events) -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        let mut at = e.next[HEAD];
        while at != NIL {
            out.push((e.op[at], e.is_call[at]));
            at = e.next[at];
        }
        out
    }

    #[test]
    fn orders_calls_before_returns_and_infinity_last() {
        let step = Step::Set(None);
        let ops = [
            Call {
                call: 5,
                ret: None,
                step,
            },
            Call {
                call: 0,
                ret: Some(5),
                step,
            },
            Call {
                call: 1,
                ret: Some(2),
                step,
            },
        ];
        let mut e = Events::new(&ops);
        let all = vec![
            (1, true),
            (2, true),
            (2, false),
            (0, true),
            (1, false),
            (0, false),
        ];
        assert_eq!(walk(&e), all);
        let call_of_2 = 2;
        assert_eq!((e.op[call_of_2], e.is_call[call_of_2]), (2, true));
        e.lift(call_of_2);
        assert_eq!(walk(&e), vec![(1, true), (0, true), (1, false), (0, false)]);
        e.unlift(call_of_2);
        assert_eq!(walk(&e), all);
    }
}
