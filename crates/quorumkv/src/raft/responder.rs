//! The responder openraft answers a client write with: a callback, run where
//! the write completes (the state machine's worker right after the apply, or
//! the core when it refuses the write). The proposer's callback hands each
//! writer of a proposal its result directly, with no task of its own waiting
//! in between (one task wake-up less per proposal).

use openraft::raft::responder::Responder;
use openraft::OptionalSend;

use crate::raft::TypeConfig;

/// Runs a closure with the outcome of a client write.
pub struct Callback<T>(Box<dyn FnOnce(T) + Send>);

impl<T> Callback<T> {
    pub fn new(f: impl FnOnce(T) + Send + 'static) -> Self {
        Callback(Box::new(f))
    }
}

impl<T: OptionalSend + 'static> Responder<TypeConfig, T> for Callback<T> {
    fn on_complete(self, result: T) {
        (self.0)(result)
    }
}
