//! The booking workload: many buyers race for few seats through every node
//! while the leader is killed; then what each buyer was told is checked
//! against what the store holds.
//!
//! A buyer tries seats in its own random order until one is its. Even buyers
//! use `PUT booking/seat/<n>` with `If-None-Match: *` (value: the buyer's
//! name); odd buyers a transaction: compare `absent` on the seat, success put
//! the seat and `booking/ticket/<buyer>` = the seat, failure get the seat.
//! No idempotency keys here: an unknown outcome (5xx, timeout, refused) is
//! resolved by reading the seat. The buyer's name is unique, so a seat that
//! holds it was sold to this buyer (perhaps by the try whose answer was
//! lost), one that holds another name is taken, and an absent one is tried
//! again. A 412, or a transaction's `succeeded:false`, is resolved the same
//! way: the seat may hold the buyer's own earlier try.
//!
//! Checks: no seat is sold twice (two buyers told "yes" for one seat); every
//! buyer told "yes" holds the seat it was told; every held seat is held by
//! the buyer told "yes" for it, so buyers told "no" hold nothing; nobody
//! holds two seats; tickets match seats; all seats are sold (there are more
//! buyers than seats); every buyer got a definite answer; replicas agree.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::Opts;
use crate::cluster::LocalCluster;
use crate::drive::{self, backoff, KillReport, LeaderKill, Nodes, Rng};
use crate::wire::{Compare, Op, OpResult, Txn};
use crate::Error;

mod check;

pub use check::check;

pub const SEATS: &str = "booking/seat/";
pub const TICKETS: &str = "booking/ticket/";

#[derive(Debug, Clone)]
pub struct BookingConfig {
    pub seats: usize,
    pub buyers: usize,
    /// Buyer `b` starts `b * stagger` after the first, so sales span the kill.
    pub stagger: Duration,
    pub kill_leader: bool,
    pub seed: u64,
    pub request_timeout: Duration,
    pub deadline: Duration,
}

impl Default for BookingConfig {
    fn default() -> Self {
        BookingConfig {
            seats: 10,
            buyers: 40,
            stagger: Duration::from_millis(40),
            kill_leader: true,
            seed: drive::clock_seed(),
            request_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(90),
        }
    }
}

pub fn seat(n: usize) -> String {
    format!("{SEATS}{n:03}")
}

pub fn buyer(b: usize) -> String {
    format!("buyer-{b:03}")
}

pub(crate) fn ticket(b: usize) -> String {
    format!("{TICKETS}{}", buyer(b))
}

/// How a buyer tries for a seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `PUT` with `If-None-Match: *`.
    PutIfAbsent,
    /// `POST /v1/txn` comparing `absent`, also writing a ticket.
    Txn,
}

/// What a buyer was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// "Yes, seat n is yours"; `by_reading` when a read settled it.
    Yes { seat: usize, by_reading: bool },
    /// "No, every seat is taken."
    No,
    /// No definite answer for this seat before the deadline.
    Unknown { seat: usize },
}

#[derive(Debug, Clone)]
pub struct Buyer {
    pub id: usize,
    pub mode: Mode,
    pub answer: Answer,
    /// Seats tried, in order.
    pub tried: usize,
}

#[derive(Debug, Clone)]
pub struct BookingReport {
    pub buyers: Vec<Buyer>,
    /// Answers that left the outcome unknown (5xx, timeout, refused).
    pub uncertain_answers: u64,
    pub kill: KillReport,
    pub seats_sold: usize,
    pub elapsed: Duration,
    pub violations: Vec<String>,
}

impl BookingReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl crate::example::Verdict for BookingReport {
    fn passed(&self) -> bool {
        self.ok()
    }
}

impl std::fmt::Display for BookingReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yes = |read: bool| {
            let f = |b: &&Buyer| matches!(b.answer, Answer::Yes { by_reading, .. } if by_reading == read);
            self.buyers.iter().filter(f).count()
        };
        let no = self
            .buyers
            .iter()
            .filter(|b| b.answer == Answer::No)
            .count();
        let unknown = self.buyers.len() - yes(true) - yes(false) - no;
        writeln!(
            f,
            "booking: {} buyers, {} seats sold in {:.1?}: {} told yes ({} settled by reading \
             after an uncertain answer), {no} told no, {unknown} without an answer",
            self.buyers.len(),
            self.seats_sold,
            self.elapsed,
            yes(true) + yes(false),
            yes(true)
        )?;
        writeln!(
            f,
            "  {} uncertain answers resolved by reading the seat",
            self.uncertain_answers
        )?;
        writeln!(f, "  {}", self.kill)?;
        if self.ok() {
            write!(
                f,
                "  OK: no seat sold twice, every yes holds its seat, every no holds nothing, \
                 tickets match, replicas agree"
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
    cfg: &'a BookingConfig,
    nodes: Nodes,
    sold: AtomicU64,
    uncertain: AtomicU64,
    deadline: Instant,
}

/// Runs the buyers (killing the leader mid-run if configured) and checks
/// the invariants. `Err` means the run itself could not be carried out.
pub async fn run(cluster: &LocalCluster, cfg: &BookingConfig) -> Result<BookingReport, Error> {
    if cfg.seats == 0 || cfg.buyers <= cfg.seats || cfg.buyers > 10_000 {
        return Err(Error::Unexpected(
            "booking needs more buyers than seats (and at most 10000)".into(),
        ));
    }
    let started = Instant::now();
    cluster.leader(Duration::from_secs(20)).await?;
    let ctx = Ctx {
        cfg,
        nodes: Nodes::of(cluster, cfg.request_timeout)?,
        sold: AtomicU64::new(0),
        uncertain: AtomicU64::new(0),
        deadline: started + cfg.deadline,
    };
    let done = AtomicBool::new(false);
    let work = async {
        let buyers = (0..cfg.buyers).map(|b| buy(&ctx, b));
        let results = futures::future::join_all(buyers).await;
        done.store(true, Ordering::SeqCst);
        results
    };
    let chaos = async {
        if !cfg.kill_leader {
            return Ok(KillReport::default());
        }
        let third = (cfg.seats as u64 / 3).max(1);
        let plan = LeaderKill {
            at: third,
            restart_at: third * 2,
        };
        drive::kill_leader_midway(cluster, &ctx.sold, &done, plan, cfg.deadline).await
    };
    let (results, kill) = tokio::join!(work, chaos);
    let kill = kill?;
    let buyers = results.into_iter().collect::<Result<Vec<_>, _>>()?;

    let (mut violations, seats_sold) = verify(cluster, &ctx.nodes, cfg, &buyers).await?;
    if cfg.kill_leader && kill.killed.is_none() {
        violations.push("the leader was never killed: the run proved less than it should".into());
    }
    Ok(BookingReport {
        buyers,
        uncertain_answers: ctx.uncertain.load(Ordering::SeqCst),
        kill,
        seats_sold,
        elapsed: started.elapsed(),
        violations,
    })
}

async fn buy(ctx: &Ctx<'_>, b: usize) -> Result<Buyer, Error> {
    tokio::time::sleep(ctx.cfg.stagger * b as u32).await;
    let mut rng = Rng::new(ctx.cfg.seed ^ (b as u64 + 1).wrapping_mul(0x2545_f491));
    let mut order: Vec<usize> = (0..ctx.cfg.seats).collect();
    rng.shuffle(&mut order);
    let mode = match b % 2 {
        0 => Mode::PutIfAbsent,
        _ => Mode::Txn,
    };
    let mut node = b;
    let mut tried = 0;
    for n in order {
        tried += 1;
        match try_seat(ctx, b, mode, n, &mut node).await? {
            Some(Answer::No) => continue,
            Some(answer) => {
                if let Answer::Yes { .. } = answer {
                    ctx.sold.fetch_add(1, Ordering::SeqCst);
                }
                return Ok(Buyer {
                    id: b,
                    mode,
                    answer,
                    tried,
                });
            }
            None => {
                return Ok(Buyer {
                    id: b,
                    mode,
                    answer: Answer::Unknown { seat: n },
                    tried,
                })
            }
        }
    }
    Ok(Buyer {
        id: b,
        mode,
        answer: Answer::No,
        tried,
    })
}

/// Who holds a seat, as the store says.
enum Seat {
    Mine,
    Taken,
    Free,
}

fn holder(b: usize, value: Option<&str>) -> Seat {
    match value {
        Some(v) if v == buyer(b) => Seat::Mine,
        Some(_) => Seat::Taken,
        None => Seat::Free,
    }
}

/// One seat for buyer `b`: `Yes`, `No` (taken), or `None` when no definite
/// answer came before the deadline.
async fn try_seat(
    ctx: &Ctx<'_>,
    b: usize,
    mode: Mode,
    n: usize,
    node: &mut usize,
) -> Result<Option<Answer>, Error> {
    let key = seat(n);
    let me = buyer(b);
    let mut uncertain = false;
    let mut tries = 0;
    loop {
        let (id, client) = ctx.nodes.at(*node);
        let sent = match mode {
            Mode::PutIfAbsent => {
                let opts = Opts::new().if_none_match();
                client.put(&key, me.clone(), &opts).await
            }
            Mode::Txn => {
                let txn = Txn {
                    compare: vec![Compare::absent(&key)],
                    success: vec![Op::put(&key, &me), Op::put(ticket(b), n.to_string())],
                    failure: vec![Op::get(&key)],
                };
                client.txn(&txn, &Opts::new()).await
            }
        };
        let sent_status = sent.as_ref().ok().map(|r| r.status.as_u16());
        // What the answer says about the seat, or None if a read must tell.
        let seen: Option<Seat> = match sent {
            Ok(r) if r.status == 200 && mode == Mode::PutIfAbsent => Some(Seat::Mine),
            Ok(r) if r.status == 200 => {
                let ack = r.txn_ack()?;
                match ack.succeeded {
                    Some(true) => Some(Seat::Mine),
                    _ => Some(holder(b, seat_in(&ack.results, &key).as_deref())),
                }
            }
            // Taken, perhaps by this buyer's own earlier try: read it.
            Ok(r) if r.status == 412 && mode == Mode::PutIfAbsent => None,
            Ok(r) if r.outcome_unknown() => None,
            Ok(r) => {
                let what = format!("seat {n} for {me} on node {id}: {r:?}");
                return Err(Error::Unexpected(what));
            }
            Err(Error::Http(_)) => None,
            Err(e) => return Err(e),
        };
        let seen = match seen {
            Some(s) => s,
            None => {
                if !matches!(&sent_status, Some(412)) {
                    uncertain = true;
                    ctx.uncertain.fetch_add(1, Ordering::SeqCst);
                    *node += 1;
                }
                match drive::read_key(&ctx.nodes, node, &key, ctx.deadline).await {
                    Ok(v) => holder(b, v.map(|(v, _)| v).as_deref()),
                    Err(Error::Timeout { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
        };
        match seen {
            Seat::Mine => {
                return Ok(Some(Answer::Yes {
                    seat: n,
                    by_reading: uncertain,
                }))
            }
            Seat::Taken => return Ok(Some(Answer::No)),
            Seat::Free => {}
        }
        if Instant::now() >= ctx.deadline {
            return Ok(None);
        }
        tries += 1;
        tokio::time::sleep(backoff(tries)).await;
    }
}

/// The seat's value from a failure branch's `get`.
fn seat_in(results: &Option<Vec<OpResult>>, key: &str) -> Option<String> {
    results.as_deref()?.iter().find_map(|r| match r {
        OpResult::Get { key: k, value, .. } if k == key => value.clone(),
        _ => None,
    })
}

/// Reads seats and tickets and checks every invariant; returns the
/// violations and the number of seats sold.
async fn verify(
    cluster: &LocalCluster,
    nodes: &Nodes,
    cfg: &BookingConfig,
    buyers: &[Buyer],
) -> Result<(Vec<String>, usize), Error> {
    let wait = Duration::from_secs(30);
    let (seats, _) = drive::scan_strong(cluster, nodes, SEATS, wait).await?;
    let (tickets, index) = drive::scan_strong(cluster, nodes, TICKETS, wait).await?;
    let (mut v, sold) = check::check(cfg, &seats, &tickets, buyers);
    v.extend(drive::replicas_agree(cluster, nodes, SEATS, &seats, index).await?);
    v.extend(drive::replicas_agree(cluster, nodes, TICKETS, &tickets, index).await?);
    Ok((v, sold))
}
