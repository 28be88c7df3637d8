//! Offline checkers for histories recorded by the torture suite: several
//! sequential clients against a cluster, one JSON line per invoke/completion.
//!
//! ```text
//! history.rs    Record (one JSON line), Value, JSONL load/save, HistoryError
//! operation.rs  Operation: an invoke paired with its ok/fail/info completion
//! linear.rs     linearizability of strong operations, key by key
//! wgl.rs        the search: Wing & Gong + Lowe's memo, for one register
//! events.rs     its time-ordered call/return list (dancing links)
//! model.rs      the register model it checks against
//! liveness.rs   its pruning: optional ops that can no longer matter
//! memo.rs       bitset + hasher of the explored-configuration cache
//! eventual.rs   eventual reads: no phantoms, monotonic index, value at index
//! gen.rs, plant.rs, fixtures.rs, *_tests.rs   tests only: generated histories,
//!               planted violations, hand-made operations
//! ```
//!
//! Typical use: `let ops = pair(&load(path)?)?;` then `linear::check(&ops,
//! &LinearConfig::default())` and `eventual::check(&ops)`.

mod events;
pub mod eventual;
pub mod history;
pub mod linear;
mod liveness;
mod memo;
mod model;
pub mod operation;
mod wgl;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod gen;
#[cfg(test)]
mod plant;

pub use eventual::{Anomaly, EventualReport};
pub use history::{load, save, ConsistencyLevel, HistoryError, OpKind, Phase, Record, Value};
pub use linear::{KeyReport, LinearConfig, LinearReport, Verdict, Violation};
pub use operation::{pair, Op, Operation, Outcome};

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clients: p0 writes 1 then 2; p1 then reads 1 (strong: stale) and
    /// 2 (eventual, from node 3 at index 4, consistent with the writes).
    const HISTORY: &str = r#"
{"type":"invoke","process":0,"f":"write","key":"x","value":1,"time":0}
{"type":"ok","process":0,"f":"write","key":"x","value":1,"time":10,"index":3,"served_by":1}
{"type":"invoke","process":0,"f":"write","key":"x","value":2,"time":20}
{"type":"ok","process":0,"f":"write","key":"x","value":2,"time":30,"index":4,"served_by":1}
{"type":"invoke","process":1,"f":"read","key":"x","time":40}
{"type":"ok","process":1,"f":"read","key":"x","value":1,"time":50,"index":4,"served_by":2}
{"type":"invoke","process":1,"f":"read","key":"x","time":60,"consistency":"eventual"}
{"type":"ok","process":1,"f":"read","key":"x","value":"2","time":70,"index":4,"served_by":3}
"#;

    #[test]
    fn from_jsonl_to_verdicts() {
        let records = history::read_jsonl(HISTORY.as_bytes()).unwrap();
        let ops = pair(&records).unwrap();
        assert_eq!(ops.len(), 4);
        let linear = linear::check(&ops, &LinearConfig::default());
        let violation = linear.violations().next().unwrap();
        assert_eq!(violation.blocked, ops[2]);
        let text = violation.to_string();
        assert!(
            text.contains("cannot place: p1 x read -> 1 [40, 50]"),
            "{text}"
        );
        let eventual = eventual::check(&ops);
        assert!(eventual.is_ok(), "{eventual:?}");
        assert_eq!((eventual.reads, eventual.exact), (1, 1));
    }
}
