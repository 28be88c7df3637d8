//! The bank workload: concurrent transfers between accounts, each one
//! transaction, sent through every node while the leader is killed; then the
//! invariants are checked against what the store holds.
//!
//! A transfer reads both balances with their modification indexes (`ETag`)
//! and sends one transaction: compare both mod indexes (and `from >= amount`);
//! on success put both new balances and a record
//! `bank/xfer/<client>/<seq>/<attempt>` = `"<from> <to> <amount>"`; on
//! failure get both balances, which the next attempt starts from. Each
//! attempt has its own `Idempotency-Key`; an answer that leaves the outcome
//! unknown (5xx, timeout, refused connection) is retried with the same key and
//! body, on another node, until a definite one.
//!
//! Exactly once is checked, not assumed. The compares alone would not save a
//! retry: after the first try applied, the mod indexes moved, so a retry that
//! re-applied instead of replaying would answer `succeeded:false`, and the
//! client would move the money again in its next attempt, leaving two records
//! for one transfer. So the checks are: each transfer has at most one record,
//! the acknowledged ones exactly theirs (same attempt), those reported failed
//! none; every balance equals its start plus the records' movements; the total
//! is unchanged; no balance is negative; every replica holds the same.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::Opts;
use crate::cluster::LocalCluster;
use crate::drive::{self, backoff, KillReport, LeaderKill, Nodes, Rng};
use crate::wire::{Compare, Op, OpResult, Txn, TxnAck};
use crate::Error;

mod check;

pub use check::check;

pub const ACCOUNTS: &str = "bank/acct/";
pub const RECORDS: &str = "bank/xfer/";

#[derive(Debug, Clone)]
pub struct BankConfig {
    pub accounts: usize,
    pub initial_balance: i64,
    /// Concurrent clients; client `c` starts on node `c % n`.
    pub clients: usize,
    pub transfers_per_client: usize,
    /// Amounts are drawn from `1..=max_amount`.
    pub max_amount: i64,
    pub kill_leader: bool,
    pub seed: u64,
    /// Per request; a timed-out transaction is retried with its key.
    pub request_timeout: Duration,
    /// For the whole run; past it, unknown outcomes stay unknown.
    pub deadline: Duration,
    /// Attempts per transfer that may lose a race (`succeeded:false`).
    pub max_attempts: u32,
    /// Send an `Idempotency-Key` with each attempt. Off, a retry after a lost
    /// answer can apply a transfer twice; the checks are there to catch it.
    pub idempotency_keys: bool,
}

impl Default for BankConfig {
    fn default() -> Self {
        BankConfig {
            accounts: 10,
            initial_balance: 1000,
            clients: 16,
            transfers_per_client: 25,
            max_amount: 150,
            kill_leader: true,
            seed: drive::clock_seed(),
            request_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(120),
            max_attempts: 200,
            idempotency_keys: true,
        }
    }
}

pub fn account(i: usize) -> String {
    format!("{ACCOUNTS}{i:03}")
}

pub(crate) fn record_key(client: usize, seq: usize, attempt: u32) -> String {
    format!("{RECORDS}{client:03}/{seq:05}/{attempt}")
}

/// What a client was told about one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `succeeded:true` for this attempt, committed at `index`.
    Applied { attempt: u32, index: u64 },
    /// The payer's balance was below the amount.
    Declined,
    /// Lost `max_attempts` races in a row.
    Abandoned,
    /// No definite answer for this attempt before the deadline.
    Unknown { attempt: u32 },
}

#[derive(Debug, Clone)]
pub struct Transfer {
    pub client: usize,
    pub seq: usize,
    pub from: usize,
    pub to: usize,
    pub amount: i64,
    pub outcome: Outcome,
}

#[derive(Debug, Default)]
struct Stats {
    applied: AtomicU64,
    conflicts: AtomicU64,
    uncertain: AtomicU64,
    replayed: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct BankReport {
    pub transfers: Vec<Transfer>,
    /// `succeeded:false` answers: a race lost, retried from fresh balances.
    pub conflicts: u64,
    /// Answers that left the outcome unknown (5xx, timeout, refused).
    pub uncertain_answers: u64,
    /// Retries answered `Idempotent-Replayed: true`: the first try had applied.
    pub replayed: u64,
    pub kill: KillReport,
    pub total_after: i64,
    pub elapsed: Duration,
    pub violations: Vec<String>,
}

impl BankReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.transfers.iter().filter(|t| f(&t.outcome)).count()
    }
}

impl crate::example::Verdict for BankReport {
    fn passed(&self) -> bool {
        self.ok()
    }
}

impl std::fmt::Display for BankReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let applied = self.count(|o| matches!(o, Outcome::Applied { .. }));
        let declined = self.count(|o| *o == Outcome::Declined);
        let abandoned = self.count(|o| *o == Outcome::Abandoned);
        let unknown = self.count(|o| matches!(o, Outcome::Unknown { .. }));
        writeln!(
            f,
            "bank: {} transfers in {:.1?}: {applied} applied, {declined} declined \
             (insufficient funds), {abandoned} abandoned (races), {unknown} unknown",
            self.transfers.len(),
            self.elapsed
        )?;
        writeln!(
            f,
            "  {} races lost and retried, {} uncertain answers retried with their \
             Idempotency-Key, {} of them replayed",
            self.conflicts, self.uncertain_answers, self.replayed
        )?;
        writeln!(f, "  {}", self.kill)?;
        writeln!(f, "  total after: {}", self.total_after)?;
        if self.ok() {
            write!(
                f,
                "  OK: total unchanged, no balance negative, every acknowledged transfer \
                 applied exactly once, nothing else applied, replicas agree"
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
    cfg: &'a BankConfig,
    nodes: Nodes,
    stats: Stats,
    deadline: Instant,
    run: u64,
}

/// Creates the accounts, runs the transfers (killing the leader mid-run if
/// configured) and checks the invariants. `Err` means the run itself could
/// not be carried out; broken invariants are `violations` in the report.
pub async fn run(cluster: &LocalCluster, cfg: &BankConfig) -> Result<BankReport, Error> {
    if cfg.accounts < 2 || cfg.clients * cfg.transfers_per_client > 10_000 {
        return Err(Error::Unexpected(
            "bank needs >= 2 accounts and <= 10000 transfers".into(),
        ));
    }
    let started = Instant::now();
    let nodes = Nodes::of(cluster, cfg.request_timeout)?;
    let leader = cluster.leader(Duration::from_secs(20)).await?;
    let setup = Txn {
        success: (0..cfg.accounts)
            .map(|i| Op::put(account(i), cfg.initial_balance.to_string()))
            .collect(),
        ..Txn::default()
    };
    let r = nodes.by_id(leader)?.txn(&setup, &Opts::strong()).await?;
    r.txn_ack()?;

    let ctx = Ctx {
        cfg,
        nodes,
        stats: Stats::default(),
        deadline: started + cfg.deadline,
        run: cfg.seed,
    };
    let total = (cfg.clients * cfg.transfers_per_client) as u64;
    let done = AtomicBool::new(false);
    let work = async {
        let clients = (0..cfg.clients).map(|c| client(&ctx, c));
        let results = futures::future::join_all(clients).await;
        done.store(true, Ordering::SeqCst);
        results
    };
    let chaos = async {
        if !cfg.kill_leader {
            return Ok(KillReport::default());
        }
        let plan = LeaderKill {
            at: total / 3,
            restart_at: total * 2 / 3,
        };
        drive::kill_leader_midway(cluster, &ctx.stats.applied, &done, plan, cfg.deadline).await
    };
    let (results, kill) = tokio::join!(work, chaos);
    let kill = kill?;
    let mut transfers = Vec::new();
    for r in results {
        transfers.extend(r?);
    }

    let (violations, total_after) = verify(cluster, &ctx.nodes, cfg, &transfers).await?;
    let mut violations = violations;
    if cfg.kill_leader && kill.killed.is_none() {
        violations.push("the leader was never killed: the run proved less than it should".into());
    }
    Ok(BankReport {
        transfers,
        conflicts: ctx.stats.conflicts.load(Ordering::SeqCst),
        uncertain_answers: ctx.stats.uncertain.load(Ordering::SeqCst),
        replayed: ctx.stats.replayed.load(Ordering::SeqCst),
        kill,
        total_after,
        elapsed: started.elapsed(),
        violations,
    })
}

/// One client: its transfers one after another.
async fn client(ctx: &Ctx<'_>, c: usize) -> Result<Vec<Transfer>, Error> {
    let cfg = ctx.cfg;
    let mut rng = Rng::new(ctx.run ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9));
    let mut node = c;
    let mut done = Vec::with_capacity(cfg.transfers_per_client);
    for seq in 0..cfg.transfers_per_client {
        let from = rng.below(cfg.accounts as u64) as usize;
        let to = (from + 1 + rng.below(cfg.accounts as u64 - 1) as usize) % cfg.accounts;
        let amount = 1 + rng.below(cfg.max_amount as u64) as i64;
        let mut t = Transfer {
            client: c,
            seq,
            from,
            to,
            amount,
            outcome: Outcome::Abandoned,
        };
        t.outcome = transfer(ctx, &t, &mut node).await?;
        if let Outcome::Applied { .. } = t.outcome {
            ctx.stats.applied.fetch_add(1, Ordering::SeqCst);
        }
        done.push(t);
    }
    Ok(done)
}

/// A balance and its modification index.
type Balance = (i64, u64);

async fn read_balance(ctx: &Ctx<'_>, i: usize, node: &mut usize) -> Result<Balance, Error> {
    let key = account(i);
    match drive::read_key(&ctx.nodes, node, &key, ctx.deadline).await? {
        Some((v, index)) => Ok((parse_balance(&key, &v)?, index)),
        None => Err(Error::Unexpected(format!("account {key} is missing"))),
    }
}

fn parse_balance(key: &str, v: &str) -> Result<i64, Error> {
    v.parse()
        .map_err(|_| Error::Unexpected(format!("{key} holds {v:?}, not a balance")))
}

async fn transfer(ctx: &Ctx<'_>, t: &Transfer, node: &mut usize) -> Result<Outcome, Error> {
    let (fkey, tkey) = (account(t.from), account(t.to));
    let mut fresh: Option<(Balance, Balance)> = None;
    for attempt in 0..ctx.cfg.max_attempts {
        let ((fb, fi), (tb, ti)) = match fresh.take() {
            Some(both) => both,
            None => (
                read_balance(ctx, t.from, node).await?,
                read_balance(ctx, t.to, node).await?,
            ),
        };
        if fb < t.amount {
            return Ok(Outcome::Declined);
        }
        let record = format!("{} {} {}", t.from, t.to, t.amount);
        let txn = Txn {
            compare: vec![
                Compare::mod_index_eq(&fkey, fi),
                Compare::mod_index_eq(&tkey, ti),
                Compare::ge(&fkey, t.amount),
            ],
            success: vec![
                Op::put(&fkey, (fb - t.amount).to_string()),
                Op::put(&tkey, (tb + t.amount).to_string()),
                Op::put(record_key(t.client, t.seq, attempt), record),
            ],
            failure: vec![Op::get(&fkey), Op::get(&tkey)],
        };
        let key = format!("bank-{:x}-{}-{}-{attempt}", ctx.run, t.client, t.seq);
        let Some(ack) = submit(ctx, &txn, &key, node).await? else {
            return Ok(Outcome::Unknown { attempt });
        };
        if ack.succeeded == Some(true) {
            return Ok(Outcome::Applied {
                attempt,
                index: ack.index,
            });
        }
        ctx.stats.conflicts.fetch_add(1, Ordering::SeqCst);
        fresh = balances_from(&ack, &fkey, &tkey);
    }
    Ok(Outcome::Abandoned)
}

/// The two balances the failure branch read, if it answered both.
fn balances_from(ack: &TxnAck, fkey: &str, tkey: &str) -> Option<(Balance, Balance)> {
    let mut got = BTreeMap::new();
    for r in ack.results.as_deref().unwrap_or_default() {
        if let OpResult::Get {
            key,
            value: Some(v),
            mod_index: Some(i),
            ..
        } = r
        {
            got.insert(key.as_str(), (v.parse().ok()?, *i));
        }
    }
    Some((*got.get(fkey)?, *got.get(tkey)?))
}

/// Sends `txn` with idempotency key `key` until a definite answer: `None`
/// when the deadline passed first (the outcome stays unknown).
async fn submit(
    ctx: &Ctx<'_>,
    txn: &Txn,
    key: &str,
    node: &mut usize,
) -> Result<Option<TxnAck>, Error> {
    let opts = match ctx.cfg.idempotency_keys {
        true => Opts::strong().idempotency_key(key),
        false => Opts::strong(),
    };
    let mut tries = 0;
    loop {
        let (id, client) = ctx.nodes.at(*node);
        match client.txn(txn, &opts).await {
            Ok(r) if r.status == 200 => {
                if r.replayed() {
                    ctx.stats.replayed.fetch_add(1, Ordering::SeqCst);
                }
                return r.txn_ack().map(Some);
            }
            Ok(r) if r.outcome_unknown() => {}
            Ok(r) => {
                let what = format!("transfer {key} on node {id}: {r:?}");
                return Err(Error::Unexpected(what));
            }
            Err(Error::Http(_)) => {}
            Err(e) => return Err(e),
        }
        ctx.stats.uncertain.fetch_add(1, Ordering::SeqCst);
        if Instant::now() >= ctx.deadline {
            return Ok(None);
        }
        *node += 1;
        tries += 1;
        tokio::time::sleep(backoff(tries)).await;
    }
}

/// Reads accounts and records and checks every invariant; returns the
/// violations and the total.
async fn verify(
    cluster: &LocalCluster,
    nodes: &Nodes,
    cfg: &BankConfig,
    transfers: &[Transfer],
) -> Result<(Vec<String>, i64), Error> {
    let wait = Duration::from_secs(30);
    let (accounts, _) = drive::scan_strong(cluster, nodes, ACCOUNTS, wait).await?;
    let (records, index) = drive::scan_strong(cluster, nodes, RECORDS, wait).await?;
    let (mut v, total) = check::check(cfg, &accounts, &records, transfers);
    v.extend(drive::replicas_agree(cluster, nodes, ACCOUNTS, &accounts, index).await?);
    v.extend(drive::replicas_agree(cluster, nodes, RECORDS, &records, index).await?);
    Ok((v, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_branch_balances_are_read_back() {
        let get = |key: &str, value: &str, i| OpResult::Get {
            key: key.into(),
            found: true,
            value: Some(value.into()),
            encoding: Some("utf8".into()),
            mod_index: Some(i),
        };
        let ack = TxnAck {
            index: 9,
            consistency: "strong".into(),
            succeeded: Some(false),
            results: Some(vec![get("a", "10", 3), get("b", "5", 4)]),
        };
        assert_eq!(balances_from(&ack, "a", "b"), Some(((10, 3), (5, 4))));
        assert_eq!(balances_from(&ack, "a", "c"), None);
    }
}
