//! The lock recipe, run and checked: workers take one lock through every
//! node while the leader is killed and one holder is paused past its TTL,
//! and act on a shared resource with their fencing tokens.
//!
//! The recipe (README "Coordination"):
//! 1. grant a lease (`POST /v1/lease`) and keep it alive every TTL/3;
//! 2. `PUT <lock>` with `If-None-Match: *` and `X-Lease` (and an
//!    `Idempotency-Key`, so a retry after an unknown outcome is answered
//!    with the original result): 200 means held, and the fencing token is
//!    the write's index (`X-Raft-Index`, the key's modification index);
//! 3. on 412, watch the key (`GET /v1/watch?key=<lock>`) until a delete,
//!    then try again;
//! 4. send the token with every action on the protected resource, which
//!    refuses a token lower than the highest it has seen;
//! 5. release: `DELETE <lock>` with `If-Match: "<token>"`, then revoke the lease.
//!
//! The resource here is a stand-in for the system a lock protects (a
//! storage service, say): it logs every action with its token and refuses
//! stale tokens. One worker, once, stops its keepalives while holding the
//! lock and sleeps 2.5 TTLs (a long GC pause); when it wakes, its action
//! must be refused.
//!
//! Checks: no token was held by two workers; the accepted actions of
//! different tokens never interleave (no two holders acted with valid
//! tokens at once); a holder that was not paused was never refused (the lock
//! itself excluded others, not only the fencing); the paused holder's late
//! action was refused; the lock became free again after the pause (another
//! worker took it); every worker finished its rounds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::client::{Client, Opts, Response};
use crate::cluster::LocalCluster;
use crate::drive::{self, backoff, KillReport, LeaderKill, Nodes};
use crate::watch::{WatchEvent, WatchQuery};
use crate::Error;

pub const LOCK: &str = "locks/resource";

#[derive(Debug, Clone)]
pub struct LockConfig {
    pub workers: usize,
    /// Times each worker takes the lock.
    pub rounds: usize,
    pub ttl: Duration,
    /// How long a holder acts (two actions, this far apart).
    pub hold: Duration,
    pub kill_leader: bool,
    /// One holder stops its keepalives and sleeps 2.5 TTLs, once.
    pub pause_holder: bool,
    pub request_timeout: Duration,
    pub deadline: Duration,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            workers: 4,
            rounds: 5,
            ttl: Duration::from_secs(3),
            hold: Duration::from_millis(100),
            kill_leader: true,
            pause_holder: true,
            request_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(120),
        }
    }
}

/// One action on the resource, as it logged it.
#[derive(Debug, Clone)]
pub struct Action {
    pub worker: usize,
    pub token: u64,
    pub accepted: bool,
    /// Taken by the paused holder after its pause.
    pub late: bool,
}

/// The protected resource: refuses a token lower than the highest seen.
#[derive(Debug, Default)]
pub struct Resource {
    log: Mutex<(u64, Vec<Action>)>,
}

impl Resource {
    pub fn act(&self, worker: usize, token: u64, late: bool) -> bool {
        let mut g = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let accepted = token >= g.0;
        g.0 = g.0.max(token);
        g.1.push(Action {
            worker,
            token,
            accepted,
            late,
        });
        accepted
    }

    fn actions(&self) -> Vec<Action> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).1.clone()
    }
}

#[derive(Debug, Clone)]
pub struct LockReport {
    pub acquisitions: usize,
    pub actions: usize,
    pub refused: usize,
    /// Acquisitions after the paused holder's pause began.
    pub taken_during_pause: usize,
    pub kill: KillReport,
    pub elapsed: Duration,
    pub violations: Vec<String>,
}

impl LockReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl crate::example::Verdict for LockReport {
    fn passed(&self) -> bool {
        self.ok()
    }
}

impl std::fmt::Display for LockReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "lock: {} acquisitions, {} actions ({} refused by fencing) in {:.1?}; \
             {} taken while a holder was paused",
            self.acquisitions, self.actions, self.refused, self.elapsed, self.taken_during_pause
        )?;
        writeln!(f, "  {}", self.kill)?;
        if self.ok() {
            write!(
                f,
                "  OK: one worker per token, no two holders acted at once, the paused \
                 holder was fenced off, the lock became free again"
            )
        } else {
            write!(f, "  {} VIOLATIONS:", self.violations.len())?;
            for v in &self.violations {
                write!(f, "\n    {v}")?;
            }
            Ok(())
        }
    }
}

struct Ctx<'a> {
    cfg: &'a LockConfig,
    nodes: Nodes,
    resource: Resource,
    acquisitions: AtomicU64,
    /// Set once, by the worker that pauses.
    paused: AtomicBool,
    pause_began: Mutex<Option<Instant>>,
    taken: Mutex<Vec<(usize, u64, Instant)>>,
    deadline: Instant,
}

/// Runs the workers (killing the leader mid-run if configured) and checks.
pub async fn run(cluster: &LocalCluster, cfg: &LockConfig) -> Result<LockReport, Error> {
    if cfg.workers < 2 || cfg.rounds == 0 || cfg.ttl < Duration::from_secs(1) {
        return Err(Error::Unexpected(
            "the lock run needs 2+ workers, 1+ rounds and a TTL of 1 s or more".into(),
        ));
    }
    let started = Instant::now();
    cluster.leader(Duration::from_secs(20)).await?;
    let ctx = Ctx {
        cfg,
        nodes: Nodes::of(cluster, cfg.request_timeout)?,
        resource: Resource::default(),
        acquisitions: AtomicU64::new(0),
        paused: AtomicBool::new(false),
        pause_began: Mutex::new(None),
        taken: Mutex::new(Vec::new()),
        deadline: started + cfg.deadline,
    };
    let done = AtomicBool::new(false);
    let work = async {
        let workers = (0..cfg.workers).map(|w| worker(&ctx, w));
        let results = futures::future::join_all(workers).await;
        done.store(true, Ordering::SeqCst);
        results.into_iter().collect::<Result<Vec<()>, Error>>()
    };
    let total = (cfg.workers * cfg.rounds) as u64;
    let plan = LeaderKill {
        at: total / 3,
        restart_at: total * 2 / 3,
    };
    let kill = async {
        if !cfg.kill_leader {
            return Ok(KillReport::default());
        }
        drive::kill_leader_midway(cluster, &ctx.acquisitions, &done, plan, cfg.deadline).await
    };
    let (worked, kill) = tokio::join!(work, kill);
    worked?;
    let kill = kill?;
    Ok(check(&ctx, kill, started.elapsed()))
}

fn check(ctx: &Ctx<'_>, kill: KillReport, elapsed: Duration) -> LockReport {
    let actions = ctx.resource.actions();
    let taken = ctx.taken.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut violations = Vec::new();
    // One worker per token.
    let mut owner: BTreeMap<u64, usize> = BTreeMap::new();
    for (w, token, _) in &taken {
        if let Some(other) = owner.insert(*token, *w) {
            violations.push(format!(
                "token {token} was taken by workers {other} and {w}"
            ));
        }
    }
    // Accepted actions of different tokens never interleave.
    let accepted: Vec<&Action> = actions.iter().filter(|a| a.accepted).collect();
    let mut closed: Vec<u64> = Vec::new();
    for pair in accepted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.token != b.token {
            if closed.contains(&b.token) {
                violations.push(format!(
                    "token {} acted again after token {} had acted",
                    b.token, a.token
                ));
            }
            closed.push(a.token);
        }
    }
    for a in &actions {
        if !a.accepted && !a.late {
            violations.push(format!(
                "worker {} was refused with token {} while its lease was kept alive: \
                 the lock let another worker in",
                a.worker, a.token
            ));
        }
    }
    let late: Vec<&Action> = actions.iter().filter(|a| a.late).collect();
    let pause_began = *ctx.pause_began.lock().unwrap_or_else(|p| p.into_inner());
    let taken_during_pause = pause_began.map_or(0, |at| {
        taken.iter().filter(|(_, _, when)| *when > at).count()
    });
    if ctx.cfg.pause_holder {
        match late.as_slice() {
            [] => violations.push("no holder was paused".into()),
            [a] if a.accepted => violations.push(format!(
                "the paused holder (worker {}, token {}) acted after its TTL and was not refused",
                a.worker, a.token
            )),
            _ => {}
        }
        if taken_during_pause == 0 {
            violations.push("the lock never became free while its holder was paused".into());
        }
    }
    let expected = ctx.cfg.workers * ctx.cfg.rounds;
    if taken.len() != expected {
        violations.push(format!("{} acquisitions, expected {expected}", taken.len()));
    }
    LockReport {
        acquisitions: taken.len(),
        actions: actions.len(),
        refused: actions.iter().filter(|a| !a.accepted).count(),
        taken_during_pause,
        kill,
        elapsed,
        violations,
    }
}

impl Ctx<'_> {
    fn check_deadline(&self, what: &str) -> Result<(), Error> {
        if Instant::now() >= self.deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                waited: self.cfg.deadline,
            });
        }
        Ok(())
    }

    /// Sends `call` to node after node until one answers with a status
    /// that `done` accepts (others: retried after a back-off).
    async fn until<F, Fut>(
        &self,
        node: &mut usize,
        what: &str,
        done: impl Fn(&Response) -> bool,
        call: F,
    ) -> Result<Response, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<Response, Error>>,
    {
        let mut tries = 0;
        loop {
            self.check_deadline(what)?;
            let (_, client) = self.nodes.at(*node);
            match call(client.clone()).await {
                Ok(r) if done(&r) => return Ok(r),
                _ => {
                    *node += 1;
                    tries += 1;
                    tokio::time::sleep(backoff(tries)).await;
                }
            }
        }
    }
}

fn json_u64(r: &Response, field: &str) -> Result<u64, Error> {
    let body: serde_json::Value = r.json()?;
    body[field]
        .as_u64()
        .ok_or_else(|| Error::Unexpected(format!("no {field} in {r:?}")))
}

async fn worker(ctx: &Ctx<'_>, w: usize) -> Result<(), Error> {
    let mut node = w;
    for round in 0..ctx.cfg.rounds {
        let ttl = format!("{}ms", ctx.cfg.ttl.as_millis());
        let granted = ctx
            .until(
                &mut node,
                "lease grant",
                |r| r.status == 201,
                |c| {
                    let ttl = ttl.clone();
                    async move { c.lease_grant(&ttl).await }
                },
            )
            .await?;
        let lease = json_u64(&granted, "id")?;
        let keeping = AtomicBool::new(true);
        let keepalive = keep_alive(ctx, lease, w, &keeping);
        let hold = async {
            let token = acquire(ctx, &mut node, w, round, lease).await?;
            ctx.acquisitions.fetch_add(1, Ordering::SeqCst);
            ctx.taken
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((w, token, Instant::now()));
            ctx.resource.act(w, token, false);
            tokio::time::sleep(ctx.cfg.hold).await;
            if ctx.cfg.pause_holder && round == 1 && !ctx.paused.swap(true, Ordering::SeqCst) {
                // A long pause: no keepalives; the lease expires meanwhile.
                keeping.store(false, Ordering::SeqCst);
                *ctx.pause_began.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                tokio::time::sleep(ctx.cfg.ttl * 5 / 2).await;
                ctx.resource.act(w, token, true);
            } else {
                ctx.resource.act(w, token, false);
            }
            release(ctx, &mut node, token, lease).await?;
            keeping.store(false, Ordering::SeqCst);
            Ok::<(), Error>(())
        };
        let (held, ()) = tokio::join!(hold, keepalive);
        held?;
    }
    Ok(())
}

/// Keeps `lease` alive every TTL/3 while `keeping`.
async fn keep_alive(ctx: &Ctx<'_>, lease: u64, w: usize, keeping: &AtomicBool) {
    let mut node = w;
    while keeping.load(Ordering::SeqCst) && Instant::now() < ctx.deadline {
        let (_, client) = ctx.nodes.at(node);
        match client.lease_keepalive(lease).await {
            Ok(r) if r.status == 200 || r.status == 404 => {}
            _ => node += 1,
        }
        let step = ctx.cfg.ttl / 3;
        let until = Instant::now() + step;
        while keeping.load(Ordering::SeqCst) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Takes the lock with `lease`; returns the fencing token. Each try has its
/// own idempotency key, kept across the retries of that try, so a retry
/// after an unknown outcome gets the original answer.
async fn acquire(
    ctx: &Ctx<'_>,
    node: &mut usize,
    w: usize,
    round: usize,
    lease: u64,
) -> Result<u64, Error> {
    for attempt in 0u64.. {
        let opts = Client::lease_opts(&Opts::strong().if_none_match(), lease)
            .idempotency_key(format!("lock-{w}-{round}-{lease}-{attempt}"));
        let taken = |r: &Response| r.status == 200 || r.status == 412;
        let r = ctx
            .until(node, "take the lock", taken, |c| {
                let opts = opts.clone();
                async move { c.put(LOCK, format!("worker {w}"), &opts).await }
            })
            .await?;
        if r.status == 200 {
            return r
                .raft_index()
                .ok_or_else(|| Error::Unexpected(format!("no index: {r:?}")));
        }
        // Held by another: wait for its delete, then try again.
        let from = r.raft_index().unwrap_or(0) + 1;
        wait_for_delete(ctx, *node, from).await;
    }
    unreachable!("tries are unbounded; the deadline ends them")
}

/// Watches the lock key from `from` until a delete (or a few seconds pass:
/// then the caller simply tries again).
async fn wait_for_delete(ctx: &Ctx<'_>, node: usize, from: u64) {
    let (_, client) = ctx.nodes.at(node);
    let q = WatchQuery::key(LOCK).from(from);
    let Ok(Ok(mut watch)) = client.watch(&q).await else {
        tokio::time::sleep(backoff(2)).await;
        return;
    };
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        match watch.next(Duration::from_secs(2)).await {
            Ok(Some(WatchEvent::Change(c))) if !c.is_put() => return,
            Ok(Some(WatchEvent::Final { .. })) | Ok(None) | Err(_) => return,
            Ok(Some(_)) => {}
        }
    }
}

/// Deletes the lock if it still holds `token`, then revokes the lease.
async fn release(ctx: &Ctx<'_>, node: &mut usize, token: u64, lease: u64) -> Result<(), Error> {
    let opts = Opts::strong().if_match(token);
    ctx.until(
        node,
        "release the lock",
        |r| matches!(r.status.as_u16(), 200 | 412 | 404),
        |c| {
            let opts = opts.clone();
            async move { c.delete(LOCK, &opts).await }
        },
    )
    .await?;
    ctx.until(
        node,
        "revoke the lease",
        |r| matches!(r.status.as_u16(), 200 | 404),
        |c| async move { c.lease_revoke(lease).await },
    )
    .await?;
    Ok(())
}
