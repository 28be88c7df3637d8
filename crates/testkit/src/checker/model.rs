//! The model the search linearizes against: one register holding an
//! interned value or nothing, and what each kind of operation does to it.

use super::liveness::slot;

/// The register's state: an interned value, or `None` for absent.
pub(crate) type State = Option<u32>;

/// What an operation does to the register, with interned values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// A read that returned this state.
    Read(State),
    /// A write (`Some`) or delete (`None`).
    Set(State),
    /// A compare-and-set that succeeded.
    Cas { expected: u32, new: u32 },
}

impl Step {
    /// The state after this step, or `None` if the step is impossible in `state`.
    pub(crate) fn apply(self, state: State) -> Option<State> {
        match self {
            Step::Read(seen) => (seen == state).then_some(state),
            Step::Set(next) => Some(next),
            Step::Cas { expected, new } => (state == Some(expected)).then_some(Some(new)),
        }
    }

    /// The state this step requires, if any.
    pub(crate) fn observes(self) -> Option<State> {
        match self {
            Step::Read(seen) => Some(seen),
            Step::Set(_) => None,
            Step::Cas { expected, .. } => Some(Some(expected)),
        }
    }

    /// The state this step leaves (for a read: the one it requires).
    pub(crate) fn produces(self) -> State {
        match self {
            Step::Read(seen) => seen,
            Step::Set(next) => next,
            Step::Cas { new, .. } => Some(new),
        }
    }

    /// The highest state slot this step mentions.
    pub(crate) fn max_slot(self) -> usize {
        slot(self.produces()).max(self.observes().map_or(0, slot))
    }
}

/// One operation to linearize. `ret: None` makes it optional, returning at
/// +infinity; only mutations are optional (an unsure read says nothing).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    pub call: u64,
    pub ret: Option<u64>,
    pub step: Step,
}
