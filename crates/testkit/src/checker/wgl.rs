//! The search behind the linearizability checker: Wing & Gong's algorithm
//! with Lowe's memoization (as in porcupine and knossos), for one register.
//!
//! Calls and returns sit in one list in time order (`events.rs`). From a
//! configuration (linearized set, register state) the search linearizes a
//! call that precedes the first pending return, if the model allows it and
//! the configuration reached is new, lifting its call and return out of the
//! list; at a return it cannot pass, it backtracks. Optional operations
//! (`ret: None`: `info` or eventual mutations) return at +infinity and need
//! never be linearized: the search succeeds once every required one is.
//!
//! Reductions, each keeping "some linearization exists" unchanged:
//! - a read of the current state that may go next is taken at once, with no
//!   alternatives (it changes nothing and nothing has to precede it);
//! - an optional operation must be directly followed by a read or cas, else
//!   it might as well never have happened;
//! - dead optional operations (`liveness.rs`) are never tried and are merged
//!   in memo keys, as are states nothing pending observes;
//! - of alike pending optional operations only the first is tried;
//! - a configuration is dropped if the same one without some optional write
//!   was already explored (dominance).

use super::events::{Events, HEAD, NIL};
use super::liveness::Liveness;
use super::memo::{Bitset, Memo};
pub(crate) use super::model::{Call, State, Step};

/// How the search ended; `steps` counts loop iterations.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Search {
    Linearizable {
        steps: u64,
    },
    /// No linearization; `prefix` is the longest linearizable prefix found, as
    /// operation indices in linearization order.
    Violation {
        steps: u64,
        prefix: Vec<usize>,
    },
    /// The step budget ran out first.
    Exhausted {
        steps: u64,
    },
}

/// One linearized call on the search stack.
struct Frame {
    entry: usize,
    /// The state before it.
    before: State,
    /// Taken as an enabled read, without alternatives.
    forced: bool,
}

/// The search's mutable state: linearized set, its canonical form for the
/// memo (dead operations added), the register, and the stack to backtrack
/// through.
struct Walk {
    linearized: Bitset,
    canon: Bitset,
    state: State,
    stack: Vec<Frame>,
    /// Linearized optional writes and deletes, oldest first.
    used: Vec<usize>,
    required_left: usize,
    best: Vec<usize>,
}

impl Walk {
    /// Records op `i` as linearized; producers it leaves unwatched die.
    fn push(&mut self, ops: &[Call], live: &mut Liveness, i: usize) {
        self.linearized.set(i);
        self.canon.set(i);
        match (ops[i].ret, ops[i].step) {
            (Some(_), _) => self.required_left -= 1,
            (None, Step::Set(_)) => self.used.push(i),
            (None, _) => {}
        }
        if let Some(s) = live.observes[i] {
            live.watchers[s] -= 1;
            if live.watchers[s] == 0 {
                self.mark_producers(live, s, true);
            }
        }
    }

    /// Undoes `push` of op `i`; it must be the latest.
    fn pop(&mut self, ops: &[Call], live: &mut Liveness, i: usize) {
        if let Some(s) = live.observes[i] {
            if live.watchers[s] == 0 {
                self.mark_producers(live, s, false);
            }
            live.watchers[s] += 1;
        }
        match (ops[i].ret, ops[i].step) {
            (Some(_), _) => self.required_left += 1,
            (None, Step::Set(_)) => _ = self.used.pop(),
            (None, _) => {}
        }
        self.canon.clear(i);
        self.linearized.clear(i);
    }

    fn mark_producers(&mut self, live: &Liveness, s: usize, dead: bool) {
        for &p in live.producers[s].iter() {
            if !self.linearized.contains(p) {
                match dead {
                    true => self.canon.set(p),
                    false => self.canon.clear(p),
                }
            }
        }
    }

    /// Dead: optional, not linearized, yet in the canonical set.
    fn is_dead(&self, i: usize) -> bool {
        self.canon.contains(i) && !self.linearized.contains(i)
    }
}

/// Everything one search works on.
struct Searcher<'a> {
    ops: &'a [Call],
    events: Events,
    /// Keyed by (canonical set, (canonical state, after an optional op)).
    memo: Memo<(State, bool)>,
    live: Liveness,
    walk: Walk,
}

/// Searches for a linearization of `ops` starting from an absent register,
/// giving up after `max_steps` loop iterations.
pub(crate) fn search(ops: &[Call], max_steps: u64) -> Search {
    let live = Liveness::new(ops);
    let mut canon = Bitset::new(ops.len());
    live.mark_initial(&mut canon);
    let mut s = Searcher {
        ops,
        events: Events::new(ops),
        memo: Memo::default(),
        live,
        walk: Walk {
            linearized: Bitset::new(ops.len()),
            canon,
            state: None,
            stack: Vec::new(),
            used: Vec::new(),
            required_left: ops.iter().filter(|o| o.ret.is_some()).count(),
            best: Vec::new(),
        },
    };
    let mut at = Cursor::default();
    at.restart(&s.events);
    let mut steps = 0;
    loop {
        if s.walk.required_left == 0 {
            return Search::Linearizable { steps };
        }
        if steps >= max_steps {
            return Search::Exhausted { steps };
        }
        steps += 1;
        if !s.step(&mut at) {
            return Search::Violation {
                steps,
                prefix: s.walk.best,
            };
        }
    }
}

/// Where the scan of the current configuration's candidates is.
#[derive(Default)]
struct Cursor {
    entry: usize,
    /// Second pass, over optional calls; the first pass takes required ones.
    optional: bool,
    /// The configuration was just reached: look for an enabled read first.
    fresh: bool,
}

impl Cursor {
    fn restart(&mut self, events: &Events) {
        self.entry = events.next[HEAD];
        self.optional = false;
        self.fresh = true;
    }
}

impl Searcher<'_> {
    /// A read that may be linearized now: among the calls before the first
    /// pending return, one that returned the current state. Taking it at once
    /// loses nothing (a read changes no state and nothing must precede it),
    /// so the search never tries the alternatives: partial-order reduction.
    fn enabled_read(&self) -> Option<usize> {
        let mut entry = self.events.next[HEAD];
        while entry != NIL && self.events.is_call[entry] {
            let step = self.ops[self.events.op[entry]].step;
            if step == Step::Read(self.walk.state) {
                return Some(entry);
            }
            entry = self.events.next[entry];
        }
        None
    }

    /// Whether the latest linearized operation is optional. Then the next
    /// must observe the state it left (a read or cas): were it a write or
    /// delete, the optional one could as well never have happened, and the
    /// search only looks for linearizations in that normal form.
    fn after_optional(&self) -> bool {
        let last = self.walk.stack.last();
        last.is_some_and(|f| self.ops[self.events.op[f.entry]].ret.is_none())
    }

    /// One move of the search; false once nothing is left to backtrack to.
    /// Required calls are tried before optional ones so that configurations
    /// without an optional operation are explored first, for `dominated`.
    fn step(&mut self, at: &mut Cursor) -> bool {
        if std::mem::take(&mut at.fresh) {
            if let Some(read) = self.enabled_read() {
                if self.try_linearize(read, true) {
                    at.restart(&self.events);
                    return true;
                }
                return self.backtrack_to(at);
            }
        }
        let e = at.entry;
        if e == NIL || !self.events.is_call[e] {
            if at.optional {
                return self.backtrack_to(at);
            }
            at.optional = true;
            at.entry = self.events.next[HEAD];
            return true;
        }
        let optional = self.ops[self.events.op[e]].ret.is_none();
        let candidate = optional == at.optional && (!optional || self.first_of_its_kind(e));
        if candidate && self.try_linearize(e, false) {
            at.restart(&self.events);
        } else {
            at.entry = self.events.next[e];
        }
        true
    }

    /// Whether no optional call before `e` in the list does the same step.
    /// Optional calls that are both pending and alike are interchangeable
    /// (neither ever has to return), so only the first is tried.
    fn first_of_its_kind(&self, e: usize) -> bool {
        let step = self.ops[self.events.op[e]].step;
        let mut at = self.events.next[HEAD];
        while at != e && at != NIL {
            let op = &self.ops[self.events.op[at]];
            if self.events.is_call[at] && op.ret.is_none() && op.step == step {
                return false;
            }
            at = self.events.next[at];
        }
        true
    }

    /// Backtracks and resumes the scan after the call taken back.
    fn backtrack_to(&mut self, at: &mut Cursor) -> bool {
        let Some(e) = self.backtrack() else {
            return false;
        };
        at.entry = self.events.next[e];
        at.optional = self.ops[self.events.op[e]].ret.is_none();
        at.fresh = false;
        true
    }

    /// Linearizes the call at `entry` if it is live, the model allows it and
    /// the resulting configuration is new; returns whether it did. `forced`
    /// marks a read taken by `enabled_read`.
    fn try_linearize(&mut self, entry: usize, forced: bool) -> bool {
        let i = self.events.op[entry];
        let step = self.ops[i].step;
        if self.walk.is_dead(i) || (self.after_optional() && matches!(step, Step::Set(_))) {
            return false;
        }
        let Some(next) = step.apply(self.walk.state) else {
            return false;
        };
        let before = self.walk.state;
        self.walk.push(self.ops, &mut self.live, i);
        let key = (self.live.canonical(next), self.ops[i].ret.is_none());
        if self.dominated(i, key.0) || !self.memo.insert((self.walk.canon.clone(), key)) {
            self.walk.pop(self.ops, &mut self.live, i);
            return false;
        }
        self.walk.stack.push(Frame {
            entry,
            before,
            forced,
        });
        self.walk.state = next;
        self.events.lift(entry);
        if self.walk.stack.len() > self.walk.best.len() {
            let events = &self.events;
            self.walk.best = self.walk.stack.iter().map(|f| events.op[f.entry]).collect();
        }
        true
    }

    /// Whether the configuration just reached (after op `i`, in canonical
    /// state `state`) is no better than one already explored without success:
    /// the same but with some optional write or delete `p` left unlinearized
    /// (and live). Leaving `p` for later or never allows everything using it
    /// now allows. `p` = `i` is skipped: that configuration is the parent, still
    /// being explored; no other ancestor can match.
    fn dominated(&self, i: usize, state: State) -> bool {
        self.walk.used.iter().any(|&p| {
            if p == i || !self.live.watched(p) {
                return false;
            }
            let mut without = self.walk.canon.clone();
            without.clear(p);
            self.memo.contains(&(without, (state, false)))
        })
    }

    /// Takes back linearized calls up to and including the latest unforced
    /// one (a configuration whose forced read failed has failed too) and
    /// returns its entry, or `None` if the stack ran out.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let frame = self.walk.stack.pop()?;
            let i = self.events.op[frame.entry];
            self.walk.state = frame.before;
            self.walk.pop(self.ops, &mut self.live, i);
            self.events.unlift(frame.entry);
            if !frame.forced {
                return Some(frame.entry);
            }
        }
    }
}

#[cfg(test)]
#[path = "wgl_tests.rs"]
mod tests;
