//! The result of a run: one [`Report`], printed as text or as JSON on stdout,
//! plus the WARNING lines for stderr when anything failed.
//!
//! Throughput counts successful requests only (2xx, and gets of absent keys),
//! so fast-failing errors cannot inflate it; latency percentiles are of the
//! same requests.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::{Plan, TargetKind};
use crate::load::Measured;
use crate::stats::{Staleness, Stats};
use quorumkv_proto::ConsistencyLevel;

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: &'static str,
    pub op: String,
    pub consistency: &'static str,
    pub endpoints: Vec<String>,
    /// false with `--pin`.
    pub spread: bool,
    pub connections: usize,
    pub keys: u64,
    pub value_size: usize,
    pub warmup_s: f64,
    /// The measured window: end of warmup to the last measured answer.
    pub duration_s: f64,
    pub requests: u64,
    /// Successful requests, including `not_found`.
    pub ok: u64,
    /// Gets of absent keys (a success: counted in `ok`).
    pub not_found: u64,
    pub puts: u64,
    pub gets: u64,
    pub errors: Errors,
    /// Successful requests per second.
    pub throughput: f64,
    /// `null` when nothing succeeded.
    pub latency_us: Option<Latency>,
    /// Eventual reads on quorumkv; `null` otherwise.
    pub staleness: Option<StalenessReport>,
    /// Strong reads that returned an index below a write acknowledged before they
    /// were sent: should always be 0.
    pub strong_reads_behind: u64,
    /// TCP connections opened; above `connections` means errors forced reconnects.
    pub connections_opened: u64,
    /// Keys the preload could not write; `null` without `--preload`.
    pub preload_failed: Option<u64>,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
}

#[derive(Debug, Serialize)]
pub struct Errors {
    pub total: u64,
    /// Requests that got no HTTP answer.
    pub transport: u64,
    /// Transport errors by kind: connect, timeout, io, request.
    pub transport_kinds: BTreeMap<&'static str, u64>,
    /// One transport error's message.
    pub transport_sample: Option<String>,
    /// Answers that were not a success, by status code.
    pub status: BTreeMap<String, u64>,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Option<Latency> {
        (!h.is_empty()).then(|| Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: round(h.mean(), 1),
        })
    }
}

#[derive(Debug, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        (!h.is_empty()).then(|| Percentiles {
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct StalenessReport {
    /// Eventual reads answered.
    pub reads: u64,
    /// Of those, served by a follower.
    pub on_followers: u64,
    /// `X-Last-Contact-Ms`.
    pub last_contact_ms: Option<Percentiles>,
    /// Reads from a replica that had never heard from a leader.
    pub last_contact_never: u64,
    /// Highest write index acknowledged before the read was sent minus the
    /// read's `X-Raft-Index`, clamped at 0, in log entries.
    pub index_lag: Option<Percentiles>,
}

impl StalenessReport {
    fn of(s: &Staleness) -> StalenessReport {
        StalenessReport {
            reads: s.reads,
            on_followers: s.on_followers,
            last_contact_ms: Percentiles::of(&s.contact_ms),
            last_contact_never: s.contact_never,
            index_lag: Percentiles::of(&s.index_lag),
        }
    }
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

impl Report {
    pub fn new(plan: &Plan, m: &Measured, preload_failed: Option<u64>) -> Report {
        let s: &Stats = &m.stats;
        let secs = m.elapsed.as_secs_f64();
        let eventual_reads = plan.target == TargetKind::Quorumkv
            && plan.consistency == ConsistencyLevel::Eventual
            && plan.op.read_ratio() > 0.0;
        Report {
            target: plan.target.as_str(),
            op: plan.op.to_string(),
            consistency: plan.consistency.as_str(),
            endpoints: plan.endpoints.iter().map(|e| e.url.clone()).collect(),
            spread: plan.spread,
            connections: plan.connections,
            keys: plan.keys,
            value_size: plan.value_size,
            warmup_s: round(plan.warmup.as_secs_f64(), 3),
            duration_s: round(secs, 3),
            requests: s.requests(),
            ok: s.ok,
            not_found: s.not_found,
            puts: s.puts,
            gets: s.gets,
            errors: Errors {
                total: s.errors(),
                transport: s.transport_errors(),
                transport_kinds: s.transport.clone(),
                transport_sample: s.transport_sample.clone(),
                status: s.status.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            },
            throughput: if secs > 0.0 {
                round(s.ok as f64 / secs, 1)
            } else {
                0.0
            },
            latency_us: Latency::of(&s.latency_us),
            staleness: eventual_reads.then(|| StalenessReport::of(&s.staleness)),
            strong_reads_behind: s.strong_reads_behind,
            connections_opened: s.opened,
            preload_failed,
            interrupted: m.interrupted,
        }
    }

    /// The `errors` line: `transport 3 (connect 3); status 503 x 2`.
    fn error_summary(&self) -> String {
        let e = &self.errors;
        let mut parts = Vec::new();
        if e.transport > 0 {
            let kinds: Vec<String> = e
                .transport_kinds
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            parts.push(format!("transport {} ({})", e.transport, kinds.join(", ")));
        }
        if !e.status.is_empty() {
            let codes: Vec<String> = e.status.iter().map(|(c, n)| format!("{c} x {n}")).collect();
            parts.push(format!("status {}", codes.join(", ")));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join("; ")
        }
    }

    /// Lines for stderr, each to be prefixed with `WARNING: `.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.errors.total > 0 {
            let mut line = format!(
                "{} of {} requests failed: {}",
                self.errors.total,
                self.requests,
                self.error_summary()
            );
            if let Some(sample) = &self.errors.transport_sample {
                let _ = write!(line, " (e.g. {sample})");
            }
            w.push(line);
        }
        if self.strong_reads_behind > 0 {
            w.push(format!(
                "{} strong reads returned an X-Raft-Index below a write acknowledged before they were sent",
                self.strong_reads_behind
            ));
        }
        if let Some(n) = self.preload_failed.filter(|&n| n > 0) {
            w.push(format!("preload could not write {n} of {} keys", self.keys));
        }
        if self.interrupted {
            w.push("interrupted: the run was cut short".into());
        }
        w
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let pin = if self.spread {
            "spread"
        } else {
            "pinned to the first"
        };
        let _ = writeln!(
            o,
            "quorumkv-bench: target {}, op {}, consistency {}",
            self.target, self.op, self.consistency
        );
        let _ = writeln!(
            o,
            "  setup       {} connections, {pin} over {} endpoint(s); {} keys, {}-byte values",
            self.connections,
            self.endpoints.len(),
            self.keys,
            self.value_size
        );
        let _ = writeln!(
            o,
            "  measured    {:.2} s after {:.2} s warmup",
            self.duration_s, self.warmup_s
        );
        let _ = writeln!(
            o,
            "  requests    {} ({} puts, {} gets): ok {} (of which key not found {}), errors {}",
            self.requests, self.puts, self.gets, self.ok, self.not_found, self.errors.total
        );
        let _ = writeln!(o, "  throughput  {:.1} ops/s", self.throughput);
        match &self.latency_us {
            Some(l) => {
                let _ = writeln!(
                    o,
                    "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.2} ms",
                    ms(l.p50),
                    ms(l.p90),
                    ms(l.p99),
                    ms(l.p999),
                    ms(l.max),
                    l.mean / 1e3
                );
            }
            None => o.push_str("  latency     n/a (no successful request)\n"),
        }
        if let Some(s) = &self.staleness {
            let _ = writeln!(
                o,
                "  staleness   {} eventual reads, {} served by followers",
                s.reads, s.on_followers
            );
            let _ = writeln!(
                o,
                "    last contact  {} (never heard from a leader: {})",
                percentiles(&s.last_contact_ms, " ms"),
                s.last_contact_never
            );
            let _ = writeln!(
                o,
                "    index lag     {}",
                percentiles(&s.index_lag, " entries")
            );
        }
        let _ = writeln!(o, "  errors      {}", self.error_summary());
        o
    }
}

/// Microseconds as milliseconds with 2 decimals.
pub fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1e3)
}

fn percentiles(p: &Option<Percentiles>, unit: &str) -> String {
    match p {
        Some(p) => format!(
            "p50 {}{unit}  p99 {}{unit}  max {}{unit}",
            p.p50, p.p99, p.max
        ),
        None => "n/a".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;
    use serde_json::json;

    use super::*;
    use crate::args::BenchArgs;
    use crate::conn::TransportError;
    use crate::target::{Contact, Observed, Outcome};
    use crate::workload::Op;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn plan(argv: &[&str]) -> Plan {
        let cli = Cli::parse_from(std::iter::once("bench").chain(argv.iter().copied()));
        Plan::try_from(cli.args).unwrap()
    }

    fn answer(outcome: Outcome, index: u64, contact: Contact) -> Observed {
        Observed {
            outcome,
            raft_index: Some(index),
            contact,
            on_follower: true,
        }
    }

    #[test]
    fn formats_milliseconds() {
        assert_eq!(ms(0), "0.00 ms");
        assert_eq!(ms(1234), "1.23 ms");
        assert_eq!(ms(1235), "1.24 ms");
        assert_eq!(ms(250_000), "250.00 ms");
    }

    #[test]
    fn latency_percentiles_from_histogram() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let l = Latency::of(&h).unwrap();
        assert_eq!(
            (l.p50, l.p90, l.p99, l.p999, l.max),
            (500, 900, 990, 999, 1000)
        );
        assert_eq!(l.mean, 500.5);
        h.reset();
        assert_eq!(Latency::of(&h), None);
    }

    #[test]
    fn clean_run_json_and_text() {
        let p = plan(&[
            "--endpoints",
            "http://127.0.0.1:7201,http://127.0.0.1:7202",
            "--connections",
            "2",
            "--keys",
            "100",
        ]);
        let mut stats = Stats::new().unwrap();
        for us in [1000, 2000, 3000, 4000] {
            let lat = Duration::from_micros(us);
            stats.record_answer(
                Op::Put,
                ConsistencyLevel::Strong,
                lat,
                &answer(Outcome::Ok, 7, Contact::Absent),
                0,
            );
        }
        stats.opened = 2;
        let m = Measured {
            stats,
            elapsed: Duration::from_secs(2),
            interrupted: false,
        };
        let r = Report::new(&p, &m, None);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["target"], "quorumkv");
        assert_eq!(v["op"], "put");
        assert_eq!(v["consistency"], "strong");
        assert_eq!(v["connections"], 2);
        assert_eq!(v["duration_s"], 2.0);
        assert_eq!(v["requests"], 4);
        assert_eq!(v["ok"], 4);
        assert_eq!(v["throughput"], 2.0);
        assert_eq!(
            v["errors"],
            json!({"total": 0, "transport": 0, "transport_kinds": {}, "transport_sample": null, "status": {}})
        );
        // 3 significant digits: 4000 µs shares a bucket with 4001.
        assert_eq!(v["latency_us"]["p50"], 2000);
        assert!((4000..=4001).contains(&v["latency_us"]["max"].as_u64().unwrap()));
        assert_eq!(v["staleness"], json!(null));
        assert!(r.warnings().is_empty());
        let text = r.render();
        assert!(text.contains("throughput  2.0 ops/s"), "{text}");
        assert!(text.contains("p50 2.00 ms"), "{text}");
        assert!(text.contains("errors      none"), "{text}");
    }

    #[test]
    fn errors_and_staleness_are_reported() {
        let p = plan(&["--op", "mixed:0.5", "--consistency", "eventual"]);
        let mut stats = Stats::new().unwrap();
        let lat = Duration::from_millis(1);
        let ev = ConsistencyLevel::Eventual;
        stats.record_answer(
            Op::Get,
            ev,
            lat,
            &answer(Outcome::Ok, 40, Contact::Ms(12)),
            50,
        );
        stats.record_answer(
            Op::Get,
            ev,
            lat,
            &answer(Outcome::NotFound, 50, Contact::Ms(3)),
            50,
        );
        stats.record_answer(
            Op::Put,
            ev,
            lat,
            &answer(Outcome::Status(503), 0, Contact::Absent),
            50,
        );
        stats.record_transport(
            Op::Put,
            &TransportError::Connect("127.0.0.1:1: refused".into()),
        );
        let m = Measured {
            stats,
            elapsed: Duration::from_secs(1),
            interrupted: false,
        };
        let r = Report::new(&p, &m, Some(0));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["requests"], 4);
        assert_eq!(
            (v["ok"].clone(), v["not_found"].clone()),
            (json!(2), json!(1))
        );
        assert_eq!(v["errors"]["total"], 2);
        assert_eq!(v["errors"]["transport"], 1);
        assert_eq!(v["errors"]["status"], json!({"503": 1}));
        assert_eq!(
            v["staleness"],
            json!({
                "reads": 2, "on_followers": 2,
                "last_contact_ms": {"p50": 3, "p99": 12, "max": 12},
                "last_contact_never": 0,
                "index_lag": {"p50": 0, "p99": 10, "max": 10}
            })
        );
        let w = r.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("2 of 4 requests failed: transport 1 (connect 1); status 503 x 1"),
            "{w:?}"
        );
        let text = r.render();
        assert!(
            text.contains("staleness   2 eventual reads, 2 served by followers"),
            "{text}"
        );
        assert!(
            text.contains("last contact  p50 3 ms  p99 12 ms  max 12 ms"),
            "{text}"
        );
        assert!(text.contains("index lag     p50 0 entries"), "{text}");
        assert!(
            text.contains("errors      transport 1 (connect 1); status 503 x 1"),
            "{text}"
        );
    }
}
