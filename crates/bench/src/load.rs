//! The closed loop: `connections` tasks, each with one keep-alive connection
//! and one request in flight, sending the next request as soon as the last
//! one is answered. Warmup requests are sent but not recorded; a request
//! counts if it was *sent* inside the measured window.
//!
//! Also the preload (every key written once, strongly) and the shared
//! counters the progress bar and the staleness measure read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::{JoinHandle, JoinSet};

use crate::args::{Plan, Stop};
use crate::conn::{Conn, TransportError};
use crate::error::BenchError;
use crate::progress::Progress;
use crate::stats::Stats;
use crate::target::{Outcome, Target};
use crate::workload::{KeySpace, Op, Workload};
use quorumkv_proto::ConsistencyLevel;

/// Pause after a failed connect, so a down node is not hammered in a hot loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Attempts per key during preload.
const PRELOAD_ATTEMPTS: u32 = 3;
const TICK: Duration = Duration::from_millis(100);

/// State every connection task shares; all counters are relaxed atomics.
#[derive(Debug, Default)]
pub struct Shared {
    /// Measured requests finished (answered or failed).
    pub done: AtomicU64,
    /// Of those, failed.
    pub failed: AtomicU64,
    /// Tickets handed out for `--requests`.
    issued: AtomicU64,
    /// Highest `X-Raft-Index` of any acknowledged write so far.
    pub max_write_index: AtomicU64,
    /// Set by Ctrl-C: finish the requests in flight, then report.
    pub stop: AtomicBool,
}

impl Shared {
    fn note_write(&self, index: Option<u64>) {
        if let Some(i) = index {
            self.max_write_index.fetch_max(i, Relaxed);
        }
    }
}

/// The measured run.
#[derive(Debug)]
pub struct Measured {
    pub stats: Stats,
    /// From the end of warmup to the last measured answer.
    pub elapsed: Duration,
    pub interrupted: bool,
}

/// Stops the run on the first Ctrl-C; a second one exits at once.
pub fn on_interrupt(shared: Arc<Shared>, progress: Progress) -> JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            shared.stop.store(true, Relaxed);
            progress.note("interrupted: finishing requests in flight (Ctrl-C again to quit)");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    })
}

fn seed(conn: usize) -> u64 {
    (conn as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D)
}

async fn join_all<T: 'static>(
    mut set: JoinSet<Result<T, BenchError>>,
) -> Result<Vec<T>, BenchError> {
    let mut out = Vec::with_capacity(set.len());
    while let Some(joined) = set.join_next().await {
        out.push(joined.map_err(|e| BenchError::Worker(e.to_string()))??);
    }
    Ok(out)
}

/// Writes every key once at `strong` (etcd: a plain put), spread over the
/// connections. Returns how many keys could not be written.
pub async fn preload(
    plan: &Arc<Plan>,
    target: &Arc<Target>,
    shared: &Arc<Shared>,
    progress: &Progress,
) -> Result<u64, BenchError> {
    let written = Arc::new(AtomicU64::new(0));
    progress.phase("preload", plan.keys);
    let mut set = JoinSet::new();
    for id in 0..plan
        .connections
        .min(usize::try_from(plan.keys).unwrap_or(usize::MAX))
    {
        let (plan, target, shared, written) = (
            plan.clone(),
            target.clone(),
            shared.clone(),
            written.clone(),
        );
        set.spawn(async move {
            let keys = KeySpace::new(plan.keys);
            let mut conn = Conn::new(plan.endpoint_for(id).clone(), plan.tls.clone());
            let mut failed = 0u64;
            let mut n = id as u64;
            while n < keys.count() && !shared.stop.load(Relaxed) {
                let key = keys.name(n);
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let res = match target.request(
                        conn.endpoint(),
                        Op::Put,
                        &key,
                        ConsistencyLevel::Strong,
                    ) {
                        Ok(req) => conn.send(req, plan.timeout).await,
                        Err(e) => Err(e.into()),
                    };
                    if let Ok(resp) = &res {
                        let seen = target.observe(Op::Put, resp);
                        if seen.outcome == Outcome::Ok {
                            shared.note_write(seen.raft_index);
                            break;
                        }
                    }
                    if attempts >= PRELOAD_ATTEMPTS {
                        failed += 1;
                        break;
                    }
                    // No leader yet, node restarting: give it a moment.
                    tokio::time::sleep(CONNECT_BACKOFF).await;
                }
                written.fetch_add(1, Relaxed);
                n += plan.connections as u64;
            }
            Ok(failed)
        });
    }
    let ticker = {
        let (written, progress_len) = (written.clone(), plan.keys);
        let bar = progress.clone();
        tokio::spawn(async move {
            loop {
                let w = written.load(Relaxed);
                bar.update(w, format!("{w}/{progress_len} keys"));
                tokio::time::sleep(TICK).await;
            }
        })
    };
    let failed = join_all(set).await;
    ticker.abort();
    Ok(failed?.into_iter().sum())
}

/// When the phases start and end.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    measure_start: Instant,
    /// `None` with `--requests`.
    end: Option<Instant>,
}

/// Warmup, then the measured window; returns the merged statistics.
pub async fn measure(
    plan: &Arc<Plan>,
    target: &Arc<Target>,
    shared: &Arc<Shared>,
    progress: &Progress,
) -> Result<Measured, BenchError> {
    let start = Instant::now();
    let measure_start = start + plan.warmup;
    let clock = Clock {
        start,
        measure_start,
        end: match plan.stop {
            Stop::After(d) => Some(measure_start + d),
            Stop::Requests(_) => None,
        },
    };
    let mut set = JoinSet::new();
    for id in 0..plan.connections {
        set.spawn(connection(
            id,
            plan.clone(),
            target.clone(),
            shared.clone(),
            clock,
        ));
    }
    let ticker = tokio::spawn(tick(plan.clone(), shared.clone(), progress.clone(), clock));
    let joined = join_all(set).await;
    ticker.abort();
    let mut stats = Stats::new()?;
    let mut last = measure_start;
    for (s, finished) in joined? {
        stats.merge(&s)?;
        last = last.max(finished);
    }
    Ok(Measured {
        stats,
        elapsed: last.saturating_duration_since(measure_start),
        interrupted: shared.stop.load(Relaxed),
    })
}

/// One virtual client. Returns its statistics and when its last measured
/// request finished.
async fn connection(
    id: usize,
    plan: Arc<Plan>,
    target: Arc<Target>,
    shared: Arc<Shared>,
    clock: Clock,
) -> Result<(Stats, Instant), BenchError> {
    let mut conn = Conn::new(plan.endpoint_for(id).clone(), plan.tls.clone());
    let mut work = Workload::new(plan.op, KeySpace::new(plan.keys), seed(id));
    let mut stats = Stats::new()?;
    let mut last = clock.measure_start;
    while !shared.stop.load(Relaxed) {
        let sent = Instant::now();
        if clock.end.is_some_and(|end| sent >= end) {
            break;
        }
        let measured = sent >= clock.measure_start;
        if let (true, Stop::Requests(n)) = (measured, plan.stop) {
            if shared.issued.fetch_add(1, Relaxed) >= n {
                break;
            }
        }
        let (op, key) = work.next();
        let level = match op {
            Op::Put => plan.consistency,
            Op::Get => plan.consistency.for_reads(),
        };
        // Read before sending: a write acknowledged by now must be visible to a
        // strong read, and its absence from an eventual read is staleness.
        let acked_before = shared.max_write_index.load(Relaxed);
        let res = match target.request(conn.endpoint(), op, &key, level) {
            Ok(req) => conn.send(req, plan.timeout).await,
            Err(e) => Err(e.into()),
        };
        let finished = Instant::now();
        let failed = match &res {
            Ok(resp) => {
                let seen = target.observe(op, resp);
                if op == Op::Put && seen.outcome == Outcome::Ok {
                    shared.note_write(seen.raft_index);
                }
                if measured {
                    stats.record_answer(op, level, finished - sent, &seen, acked_before);
                }
                matches!(seen.outcome, Outcome::Status(_))
            }
            Err(e) => {
                if measured {
                    stats.record_transport(op, e);
                }
                true
            }
        };
        if measured {
            last = finished;
            shared.done.fetch_add(1, Relaxed);
            shared.failed.fetch_add(u64::from(failed), Relaxed);
        }
        if let Err(TransportError::Connect(_)) = res {
            tokio::time::sleep(CONNECT_BACKOFF).await;
        }
    }
    stats.opened = conn.opened;
    Ok((stats, last))
}

/// Moves the bar: warmup by time, then by time or by requests.
async fn tick(plan: Arc<Plan>, shared: Arc<Shared>, progress: Progress, clock: Clock) {
    let warmup_ms = millis(plan.warmup);
    if warmup_ms > 0 {
        progress.phase("warmup", warmup_ms);
    }
    let mut measuring = false;
    loop {
        let now = Instant::now();
        if now < clock.measure_start {
            let ms = millis(now - clock.start);
            progress.update(
                ms,
                format!("{:.1}s of {:.1}s", ms as f64 / 1e3, warmup_ms as f64 / 1e3),
            );
        } else {
            let (len, pos) = match plan.stop {
                Stop::After(d) => (millis(d), millis(now - clock.measure_start)),
                Stop::Requests(n) => (n, shared.done.load(Relaxed)),
            };
            if !measuring {
                progress.phase("run", len);
                measuring = true;
            }
            let done = shared.done.load(Relaxed);
            let secs = (now - clock.measure_start).as_secs_f64().max(1e-3);
            let failed = shared.failed.load(Relaxed);
            let errs = if failed > 0 {
                format!(", {failed} errors")
            } else {
                String::new()
            };
            progress.update(
                pos.min(len),
                format!("{done} requests, {:.0} ops/s{errs}", done as f64 / secs),
            );
        }
        tokio::time::sleep(TICK).await;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
