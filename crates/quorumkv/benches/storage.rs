//! In-process micro-benchmarks of the storage path, no network:
//!
//! - encode: bincode of a log entry (what every append and AppendEntries pays);
//! - log append: a sled batch of entries into the `log` tree, then
//!   [`Durable::sync`] (flush + `fdatasync`), as one group commit does;
//! - apply: [`Changes`] alone (the in-memory overlay), and the whole
//!   [`StateMachine::apply`] (overlay + one atomic sled batch);
//! - snapshot: building a snapshot of the state machine.
//!
//! `cargo bench --bench storage` measures; `cargo test` runs each once, tiny,
//! as a smoke test (cargo passes `--bench` only when benchmarking). The disk
//! under `$TMPDIR` is the one measured by the log benchmarks.

use std::hint::black_box;
use std::time::{Duration, Instant};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use quorumkv::command::{Command, Proposal, Request};
use quorumkv::kv::Key;
use quorumkv::raft::durable::Durable;
use quorumkv::raft::snapshot::SnapshotFile;
use quorumkv::raft::state_machine::StateMachine;
use quorumkv::raft::{encode, Entry};
use quorumkv::sm::apply::Changes;
use quorumkv::sm::idempotency::Policy;

const VALUE_SIZE: usize = 256;

/// How hard to work: `--bench` measures, anything else is a smoke test.
#[derive(Clone, Copy)]
struct Scale {
    smoke: bool,
}

impl Scale {
    /// `full` iterations when measuring, a handful otherwise.
    fn n(self, full: usize) -> usize {
        if self.smoke {
            full.clamp(1, 3)
        } else {
            full
        }
    }
}

/// Latencies of one benchmark, printed as one line.
struct Timings {
    name: String,
    samples: Vec<Duration>,
    /// Items (entries, requests, bytes) handled per sample, for the rate.
    per_sample: f64,
    unit: &'static str,
}

impl Timings {
    fn print(mut self) {
        self.samples.sort_unstable();
        let n = self.samples.len().max(1);
        let total: Duration = self.samples.iter().sum();
        let mean = total / n as u32;
        let pct = |q: f64| self.samples[((n - 1) as f64 * q).round() as usize];
        let rate = self.per_sample * n as f64 / total.as_secs_f64().max(1e-12);
        println!(
            "{:<48} n={:<6} mean {:>10.1?}  p50 {:>10.1?}  p99 {:>10.1?}  {:>12.0} {}/s",
            self.name,
            n,
            mean,
            pct(0.5),
            pct(0.99),
            rate,
            self.unit
        );
    }
}

fn time(
    name: String,
    iters: usize,
    per_sample: f64,
    unit: &'static str,
    mut f: impl FnMut(),
) -> Timings {
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    Timings {
        name,
        samples,
        per_sample,
        unit,
    }
}

/// `1 entry`, `16 entries`, `64 puts`.
fn plural(n: u64, word: &str) -> String {
    match (n, word.strip_suffix('y')) {
        (1, _) => format!("1 {word}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {word}s"),
    }
}

fn request(i: u64) -> Request {
    Request {
        command: Command::Put {
            key: Key::parse(format!("bench/{i:08}"), 4096).expect("valid key"),
            value: vec![b'x'; VALUE_SIZE],
            precondition: None,
        },
        ticket: None,
        idempotency: None,
        at_ms: 1,
    }
}

/// An entry at `index` carrying `requests` puts of distinct keys from `first_key`.
fn entry(index: u64, first_key: u64, requests: u64) -> Entry {
    Entry {
        log_id: openraft::testing::log_id::<quorumkv::raft::TypeConfig>(1, 1, index),
        payload: EntryPayload::Normal(Proposal {
            requests: (first_key..first_key + requests).map(request).collect(),
        }),
    }
}

fn bench_encode(s: Scale) {
    for reqs in [1u64, 64] {
        let e = entry(1, 0, reqs);
        let size = encode(&e).expect("encode").len();
        time(
            format!("encode entry ({}, {size} B)", plural(reqs, "put")),
            s.n(20_000),
            1.0,
            "entries",
            || {
                black_box(encode(black_box(&e)).expect("encode"));
            },
        )
        .print();
    }
}

async fn bench_log_append(s: Scale) {
    let dir = tempfile::tempdir().expect("temp dir");
    let durable = Durable::open(dir.path()).expect("open sled");
    let log = durable.db().open_tree("log").expect("log tree");
    let mut index = 1u64;
    for batch in [1u64, 16, 64] {
        let iters = s.n(if batch == 1 { 300 } else { 100 });
        let mut samples = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            let mut b = sled::Batch::default();
            for _ in 0..batch {
                let e = entry(index, index, 1);
                b.insert(&index.to_be_bytes(), encode(&e).expect("encode"));
                index += 1;
            }
            log.apply_batch(b).expect("apply batch");
            durable.sync().await.expect("sync");
            samples.push(t.elapsed());
        }
        Timings {
            name: format!("sled append {} + flush + fdatasync", plural(batch, "entry")),
            samples,
            per_sample: batch as f64,
            unit: "entries",
        }
        .print();
    }
}

/// The log store as a node runs it (raft-log): append, then wait for the
/// callback its flush thread fires after the `fdatasync`.
async fn bench_log_store_append(s: Scale) {
    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::type_config::TypeConfigExt;
    use quorumkv::raft::TypeConfig;
    let dir = tempfile::tempdir().expect("temp dir");
    let sm = Durable::open(&dir.path().join("sm")).expect("open sled");
    let tree = quorumkv::sm::tree::SmTree::open(sm.db()).expect("sm tree");
    let mut log =
        quorumkv::raft::log_store::LogStore::open(&dir.path().join("wal"), sm, tree, None)
            .expect("log store");
    let mut index = 1u64;
    for batch in [1u64, 16, 64] {
        let iters = s.n(if batch == 1 { 300 } else { 100 });
        let mut samples = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            let entries: Vec<Entry> = (index..index + batch).map(|i| entry(i, i, 1)).collect();
            index += batch;
            let (tx, rx) = TypeConfig::oneshot();
            log.append(entries, IOFlushed::signal(tx))
                .await
                .expect("append");
            rx.await.expect("flushed").expect("fdatasync");
            samples.push(t.elapsed());
        }
        Timings {
            name: format!("raft-log append {} + fdatasync", plural(batch, "entry")),
            samples,
            per_sample: batch as f64,
            unit: "entries",
        }
        .print();
    }
}

fn bench_changes(s: Scale) {
    let dir = tempfile::tempdir().expect("temp dir");
    let durable = Durable::open(dir.path()).expect("open sled");
    let tree = durable.db().open_tree("sm").expect("sm tree");
    let reqs: Vec<Request> = (0..64).map(request).collect();
    time(
        "Changes::apply, 64 puts (overlay only)".into(),
        s.n(5_000),
        64.0,
        "requests",
        || {
            let mut c = Changes::new(&tree, Policy::default());
            for (i, r) in reqs.iter().enumerate() {
                black_box(c.apply(i as u64 + 1, r).expect("apply"));
            }
            black_box(c);
        },
    )
    .print();
}

async fn bench_state_machine(s: Scale) {
    let dir = tempfile::tempdir().expect("temp dir");
    let durable = Durable::open(&dir.path().join("sm")).expect("open sled");
    let snapshots = SnapshotFile::open(dir.path().join("snapshot")).expect("snapshot file");
    let tree = quorumkv::sm::tree::SmTree::open(durable.db()).expect("sm tree");
    let mut sm =
        StateMachine::open(durable, tree, snapshots, Default::default()).expect("state machine");
    let mut index = 1u64;
    let mut key = 0u64;
    for (entries, reqs) in [(1u64, 1u64), (1, 64), (16, 4)] {
        let iters = s.n(2_000 / (entries * reqs) as usize + 50);
        let mut samples = Vec::with_capacity(iters);
        for _ in 0..iters {
            let batch: Vec<Entry> = (0..entries)
                .map(|_| {
                    let e = entry(index, key, reqs);
                    index += 1;
                    key += reqs;
                    e
                })
                .collect();
            let stream = futures::stream::iter(batch.into_iter().map(|e| Ok((e, None))));
            let t = Instant::now();
            sm.apply(stream).await.expect("apply");
            samples.push(t.elapsed());
        }
        Timings {
            name: format!(
                "StateMachine::apply {} x {}",
                plural(entries, "entry"),
                plural(reqs, "put")
            ),
            samples,
            per_sample: (entries * reqs) as f64,
            unit: "requests",
        }
        .print();
    }
    let keys = key;
    let iters = s.n(5);
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let mut builder = sm.get_snapshot_builder().await;
        let t = Instant::now();
        black_box(builder.build_snapshot().await.expect("snapshot"));
        samples.push(t.elapsed());
    }
    Timings {
        name: format!("build snapshot of {keys} keys"),
        samples,
        per_sample: keys as f64,
        unit: "keys",
    }
    .print();
}

fn main() {
    let scale = Scale {
        smoke: !std::env::args().any(|a| a == "--bench"),
    };
    if scale.smoke {
        println!("storage benches: smoke run (use `cargo bench --bench storage` to measure)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    bench_encode(scale);
    rt.block_on(bench_log_append(scale));
    rt.block_on(bench_log_store_append(scale));
    bench_changes(scale);
    rt.block_on(bench_state_machine(scale));
}
