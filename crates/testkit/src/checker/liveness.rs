//! Which optional operations of the search can still matter, and which
//! register states some pending operation still observes.

use super::memo::Bitset;
use super::model::{Call, State, Step};

/// Optional operations that can no longer matter. An optional write or cas
/// that leaves value `v` is *dead* once no unlinearized operation observes
/// `v` (reads it, or expects it in a cas): linearizing it could only be
/// followed by an overwrite, so a linearization with it exists iff one
/// without it does. Dead operations are never tried, and count as
/// linearized in the memo key, which merges configurations differing only
/// in them.
pub(crate) struct Liveness {
    /// Per op: the state slot it observes, if any.
    pub observes: Vec<Option<usize>>,
    /// Per op: the state slot it leaves.
    produces: Vec<usize>,
    /// Per state slot: optional operations that produce it.
    pub producers: Vec<Vec<usize>>,
    /// Per state slot: observers not yet linearized.
    pub watchers: Vec<u32>,
}

/// Stands for any unwatched state in memo keys; no interned value is this large.
const UNWATCHED: State = Some(u32::MAX);

pub(crate) fn slot(state: State) -> usize {
    state.map_or(0, |v| v as usize + 1)
}

impl Liveness {
    pub(crate) fn new(ops: &[Call]) -> Self {
        let slots = ops
            .iter()
            .map(|o| o.step.max_slot())
            .max()
            .map_or(1, |m| m + 1);
        let mut live = Liveness {
            observes: Vec::with_capacity(ops.len()),
            produces: ops.iter().map(|o| slot(o.step.produces())).collect(),
            producers: vec![Vec::new(); slots],
            watchers: vec![0; slots],
        };
        for (i, op) in ops.iter().enumerate() {
            let observes = op.step.observes().map(slot);
            if let Some(s) = observes {
                live.watchers[s] += 1;
            }
            live.observes.push(observes);
            if op.ret.is_none() && !matches!(op.step, Step::Read(_)) {
                live.producers[slot(op.step.produces())].push(i);
            }
        }
        live
    }

    /// Whether some unlinearized operation observes the state op `i` leaves.
    pub(crate) fn watched(&self, i: usize) -> bool {
        self.watchers[self.produces[i]] > 0
    }

    /// The state as the memo keys it: all states no unlinearized operation
    /// observes are alike (whatever comes next must overwrite them), so
    /// they are merged into one.
    pub(crate) fn canonical(&self, state: State) -> State {
        match self.watchers[slot(state)] {
            0 => UNWATCHED,
            _ => state,
        }
    }

    /// Marks in `canon` the producers of unwatched states, at the start.
    pub(crate) fn mark_initial(&self, canon: &mut Bitset) {
        for (s, producers) in self.producers.iter().enumerate() {
            if self.watchers[s] == 0 {
                producers.iter().for_each(|&i| canon.set(i));
            }
        }
    }
}
