//! What one connection measured, mergeable across connections: HDR histograms
//! of latency (successful requests only) and of staleness, counts by outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::conn::TransportError;
use crate::error::BenchError;
use crate::target::{Contact, Observed, Outcome};
use crate::workload::Op;
use quorumkv_proto::ConsistencyLevel;

/// Latencies up to an hour, in microseconds, 3 significant digits.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Index lag and last-contact milliseconds; larger values are clamped.
const MAX_STALENESS: u64 = 1 << 40;

fn histogram(high: u64) -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, high, 3).map_err(|e| BenchError::Histogram(e.to_string()))
}

fn add(into: &mut Histogram<u64>, from: &Histogram<u64>) -> Result<(), BenchError> {
    into.add(from)
        .map_err(|e| BenchError::Histogram(e.to_string()))
}

/// How stale eventual reads were (quorumkv only).
#[derive(Debug, Clone)]
pub struct Staleness {
    /// Eventual reads answered (2xx or key not found).
    pub reads: u64,
    /// Of those, served by a node other than the leader it named.
    pub on_followers: u64,
    /// `X-Last-Contact-Ms`, in milliseconds.
    pub contact_ms: Histogram<u64>,
    /// Reads whose replica had never heard from a leader.
    pub contact_never: u64,
    /// Highest write index acknowledged before the read was sent, minus the
    /// read's `X-Raft-Index`, clamped at 0.
    pub index_lag: Histogram<u64>,
}

impl Staleness {
    fn new() -> Result<Staleness, BenchError> {
        Ok(Staleness {
            reads: 0,
            on_followers: 0,
            contact_ms: histogram(MAX_STALENESS)?,
            contact_never: 0,
            index_lag: histogram(MAX_STALENESS)?,
        })
    }

    fn record(&mut self, seen: &Observed, acked_before: u64) {
        self.reads += 1;
        self.on_followers += u64::from(seen.on_follower);
        match seen.contact {
            Contact::Ms(ms) => self.contact_ms.saturating_record(ms),
            Contact::Never => self.contact_never += 1,
            Contact::Absent => {}
        }
        if let Some(index) = seen.raft_index {
            self.index_lag
                .saturating_record(acked_before.saturating_sub(index));
        }
    }

    fn merge(&mut self, o: &Staleness) -> Result<(), BenchError> {
        self.reads += o.reads;
        self.on_followers += o.on_followers;
        self.contact_never += o.contact_never;
        add(&mut self.contact_ms, &o.contact_ms)?;
        add(&mut self.index_lag, &o.index_lag)
    }
}

#[derive(Debug, Clone)]
pub struct Stats {
    /// Successful requests (2xx, and gets of absent keys), microseconds.
    pub latency_us: Histogram<u64>,
    pub puts: u64,
    pub gets: u64,
    /// Successful requests, including `not_found`.
    pub ok: u64,
    /// Gets of a key that does not exist (counted in `ok`).
    pub not_found: u64,
    /// Answered with another status.
    pub status: BTreeMap<u16, u64>,
    /// No answer, by [`TransportError::kind`].
    pub transport: BTreeMap<&'static str, u64>,
    /// One transport error's text, to show what went wrong.
    pub transport_sample: Option<String>,
    pub staleness: Staleness,
    /// Strong reads whose `X-Raft-Index` was below a write acknowledged
    /// (strongly) before the read was sent: a linearizability violation.
    pub strong_reads_behind: u64,
    /// TCP connections opened (one per connection unless errors forced reconnects).
    pub opened: u64,
}

impl Stats {
    pub fn new() -> Result<Stats, BenchError> {
        Ok(Stats {
            latency_us: histogram(MAX_LATENCY_US)?,
            puts: 0,
            gets: 0,
            ok: 0,
            not_found: 0,
            status: BTreeMap::new(),
            transport: BTreeMap::new(),
            transport_sample: None,
            staleness: Staleness::new()?,
            strong_reads_behind: 0,
            opened: 0,
        })
    }

    fn count_op(&mut self, op: Op) {
        match op {
            Op::Put => self.puts += 1,
            Op::Get => self.gets += 1,
        }
    }

    /// An answered request. `acked_before` is the highest write index the bench
    /// had seen acknowledged when this request was sent; `level` is the level
    /// it was sent at.
    pub fn record_answer(
        &mut self,
        op: Op,
        level: ConsistencyLevel,
        latency: Duration,
        seen: &Observed,
        acked_before: u64,
    ) {
        self.count_op(op);
        match seen.outcome {
            Outcome::Ok | Outcome::NotFound => {
                self.ok += 1;
                self.not_found += u64::from(seen.outcome == Outcome::NotFound);
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latency_us.saturating_record(us);
            }
            Outcome::Status(code) => {
                *self.status.entry(code).or_default() += 1;
                return;
            }
        }
        if op != Op::Get {
            return;
        }
        match level {
            ConsistencyLevel::Eventual if seen.contact != Contact::Absent => {
                self.staleness.record(seen, acked_before)
            }
            ConsistencyLevel::Strong if seen.raft_index.is_some_and(|i| i < acked_before) => {
                self.strong_reads_behind += 1
            }
            _ => {}
        }
    }

    pub fn record_transport(&mut self, op: Op, err: &TransportError) {
        self.count_op(op);
        *self.transport.entry(err.kind()).or_default() += 1;
        if self.transport_sample.is_none() {
            self.transport_sample = Some(err.to_string());
        }
    }

    pub fn merge(&mut self, o: &Stats) -> Result<(), BenchError> {
        add(&mut self.latency_us, &o.latency_us)?;
        self.puts += o.puts;
        self.gets += o.gets;
        self.ok += o.ok;
        self.not_found += o.not_found;
        for (code, n) in &o.status {
            *self.status.entry(*code).or_default() += n;
        }
        for (kind, n) in &o.transport {
            *self.transport.entry(kind).or_default() += n;
        }
        if self.transport_sample.is_none() {
            self.transport_sample.clone_from(&o.transport_sample);
        }
        self.staleness.merge(&o.staleness)?;
        self.strong_reads_behind += o.strong_reads_behind;
        self.opened += o.opened;
        Ok(())
    }

    pub fn transport_errors(&self) -> u64 {
        self.transport.values().sum()
    }

    pub fn status_errors(&self) -> u64 {
        self.status.values().sum()
    }

    pub fn errors(&self) -> u64 {
        self.transport_errors() + self.status_errors()
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.errors()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(outcome: Outcome, index: Option<u64>, contact: Contact) -> Observed {
        Observed {
            outcome,
            raft_index: index,
            contact,
            on_follower: true,
        }
    }

    #[test]
    fn counts_and_merges() {
        let ms = Duration::from_millis;
        let mut a = Stats::new().unwrap();
        a.record_answer(
            Op::Put,
            ConsistencyLevel::Strong,
            ms(1),
            &seen(Outcome::Ok, Some(5), Contact::Absent),
            0,
        );
        a.record_answer(
            Op::Put,
            ConsistencyLevel::Strong,
            ms(9),
            &seen(Outcome::Status(503), None, Contact::Absent),
            0,
        );
        let mut b = Stats::new().unwrap();
        b.record_answer(
            Op::Get,
            ConsistencyLevel::Strong,
            ms(2),
            &seen(Outcome::NotFound, Some(5), Contact::Absent),
            5,
        );
        b.record_answer(
            Op::Get,
            ConsistencyLevel::Strong,
            ms(3),
            &seen(Outcome::Ok, Some(4), Contact::Absent),
            5,
        );
        b.record_transport(Op::Get, &TransportError::Timeout(ms(10)));
        b.record_answer(
            Op::Get,
            ConsistencyLevel::Strong,
            ms(3),
            &seen(Outcome::Status(503), None, Contact::Absent),
            5,
        );
        a.merge(&b).unwrap();
        assert_eq!((a.puts, a.gets), (2, 4));
        assert_eq!((a.ok, a.not_found), (3, 1));
        assert_eq!(a.status.get(&503), Some(&2));
        assert_eq!(a.transport.get("timeout"), Some(&1));
        assert_eq!(a.transport_sample.as_deref(), Some("no answer within 10ms"));
        assert_eq!((a.errors(), a.requests()), (3, 6));
        assert_eq!(a.latency_us.len(), 3);
        assert_eq!(a.latency_us.max(), a.latency_us.highest_equivalent(3000));
        assert_eq!(a.strong_reads_behind, 1);
        assert_eq!(a.staleness.reads, 0);
    }

    #[test]
    fn eventual_reads_record_staleness() {
        let ms = Duration::from_millis(1);
        let mut s = Stats::new().unwrap();
        let ev = ConsistencyLevel::Eventual;
        s.record_answer(
            Op::Get,
            ev,
            ms,
            &seen(Outcome::Ok, Some(90), Contact::Ms(40)),
            100,
        );
        s.record_answer(
            Op::Get,
            ev,
            ms,
            &seen(Outcome::Ok, Some(120), Contact::Ms(0)),
            100,
        );
        s.record_answer(
            Op::Get,
            ev,
            ms,
            &seen(Outcome::NotFound, Some(100), Contact::Never),
            100,
        );
        s.record_answer(
            Op::Get,
            ev,
            ms,
            &seen(Outcome::Status(503), None, Contact::Absent),
            100,
        );
        let st = &s.staleness;
        assert_eq!((st.reads, st.on_followers, st.contact_never), (3, 3, 1));
        assert_eq!(st.contact_ms.len(), 2);
        assert_eq!(st.contact_ms.max(), 40);
        assert_eq!(st.index_lag.len(), 3);
        assert_eq!(st.index_lag.max(), 10);
        assert_eq!(st.index_lag.value_at_quantile(0.5), 0);
    }
}
