//! Prometheus metrics, with the `prometheus` crate (its text exposition
//! format, which `promtool check metrics` reads). One registry per process:
//! counters and histograms are updated where things happen (the flusher,
//! the state machine, the proposer, the API); gauges that mirror Raft's own
//! state are read from openraft's metrics when `/metrics` is scraped.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds: 100 us to 10 s.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]
}

pub struct Metrics {
    registry: Registry,
    // Raft state, set at scrape time.
    pub term: IntGauge,
    pub is_leader: IntGauge,
    pub last_log_index: IntGauge,
    pub commit_index: IntGauge,
    pub applied_index: IntGauge,
    pub snapshot_index: IntGauge,
    pub replication_lag_entries: IntGaugeVec,
    pub replication_last_ack_seconds: GaugeVec,
    pub leader_changes: IntCounter,
    // Writes.
    pub proposals: IntCounter,
    pub proposal_batch: Histogram,
    pub fsync_seconds: Histogram,
    pub apply_seconds: Histogram,
    pub apply_entries: Histogram,
    // Reads.
    pub read_index_rounds: IntCounter,
    pub eventual_staleness_seconds: Histogram,
    // Requests.
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    // Snapshots.
    pub snapshot_bytes: IntGauge,
    pub snapshot_build_seconds: Histogram,
    pub snapshot_install_seconds: Histogram,
    // Coordination.
    pub watchers: IntGauge,
    pub leases: IntGauge,
    pub data_bytes: IntGauge,
    pub last_contact_seconds: Gauge,
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    // Names are fixed and distinct: registering cannot fail.
    let _ = r.register(Box::new(c.clone()));
    c
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    reg(r, IntGauge::new(name, help).expect("metric"))
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    reg(r, IntCounter::new(name, help).expect("metric"))
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    reg(r, Histogram::with_opts(opts).expect("metric"))
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let sizes = prometheus::exponential_buckets(1.0, 2.0, 12).expect("buckets");
        Metrics {
            term: int_gauge(&r, "quorumkv_raft_term", "This node's current Raft term."),
            is_leader: int_gauge(&r, "quorumkv_is_leader", "1 if this node is the leader, else 0."),
            last_log_index: int_gauge(&r, "quorumkv_raft_last_log_index", "Index of the last entry in this node's log."),
            commit_index: int_gauge(&r, "quorumkv_raft_commit_index", "The committed index as this node knows it."),
            applied_index: int_gauge(&r, "quorumkv_raft_applied_index", "The last index this node applied."),
            snapshot_index: int_gauge(&r, "quorumkv_raft_snapshot_index", "The last index this node's snapshot covers."),
            replication_lag_entries: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new("quorumkv_replication_lag_entries", "On the leader: entries each follower lacks of its log."),
                    &["follower"],
                )
                .expect("metric"),
            ),
            replication_last_ack_seconds: reg(
                &r,
                GaugeVec::new(
                    Opts::new("quorumkv_replication_last_ack_seconds", "On the leader: seconds since each follower last acknowledged it."),
                    &["follower"],
                )
                .expect("metric"),
            ),
            leader_changes: counter(&r, "quorumkv_leader_changes_total", "Times this node saw a new leader (or a new term of one)."),
            proposals: counter(&r, "quorumkv_proposals_total", "Client writes proposed by this node as leader."),
            proposal_batch: histogram(&r, "quorumkv_proposal_batch_requests", "Client writes per proposed log entry.", sizes.clone()),
            fsync_seconds: histogram(&r, "quorumkv_log_fsync_duration_seconds", "From a Raft log append to the fdatasync that covers it.", latency_buckets()),
            apply_seconds: histogram(&r, "quorumkv_apply_duration_seconds", "One apply call of the state machine (a batch of entries).", latency_buckets()),
            apply_entries: histogram(&r, "quorumkv_apply_batch_entries", "Log entries per apply call.", sizes),
            read_index_rounds: counter(&r, "quorumkv_read_index_rounds_total", "Rounds the leader ran to confirm leadership for strong reads."),
            eventual_staleness_seconds: histogram(
                &r,
                "quorumkv_eventual_read_staleness_seconds",
                "Seconds since this node last heard from a leader, at each eventual read.",
                latency_buckets(),
            ),
            http_requests: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("quorumkv_http_requests_total", "Client requests by route, method, status and consistency level."),
                    &["route", "method", "status", "consistency"],
                )
                .expect("metric"),
            ),
            http_seconds: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("quorumkv_http_request_duration_seconds", "Client request latency by route, method and consistency level.")
                        .buckets(latency_buckets()),
                    &["route", "method", "consistency"],
                )
                .expect("metric"),
            ),
            snapshot_bytes: int_gauge(&r, "quorumkv_snapshot_size_bytes", "Size of the last snapshot built or installed."),
            snapshot_build_seconds: histogram(&r, "quorumkv_snapshot_build_duration_seconds", "Building a snapshot.", latency_buckets()),
            snapshot_install_seconds: histogram(&r, "quorumkv_snapshot_install_duration_seconds", "Installing a snapshot from the leader.", latency_buckets()),
            watchers: int_gauge(&r, "quorumkv_watchers", "Watches and blocking reads open on this node."),
            leases: int_gauge(&r, "quorumkv_leases", "Leases, as this node has applied them."),
            data_bytes: int_gauge(&r, "quorumkv_data_bytes", "Bytes of keys and values stored (what --quota-bytes bounds)."),
            last_contact_seconds: reg(
                &r,
                Gauge::new("quorumkv_last_contact_seconds", "Seconds since this node last heard from a leader (on the leader: from a quorum); +Inf if never.")
                    .expect("metric"),
            ),
            registry: r,
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Observes `d` in `h`.
pub fn observe(h: &Histogram, d: Duration) {
    h.observe(d.as_secs_f64());
}
