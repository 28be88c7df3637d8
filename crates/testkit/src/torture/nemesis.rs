//! The nemesis: faults injected into a running cluster, one at a time, each
//! healed before the next, in rounds that shuffle every enabled kind (so a
//! run of one round has injected each kind once).
//!
//! | fault | what |
//! |---|---|
//! | `kill-random` | kill -9 of a random node, restarted after the hold |
//! | `kill-leader` | kill -9 of the leader, restarted after the hold |
//! | `kill-all` | kill -9 of all three at once, all restarted |
//! | `pause-leader` | SIGSTOP of the leader, longer than the election timeout, then SIGCONT |
//! | `isolate-leader` | the leader cut off from both others (it keeps serving clients) |
//! | `halves` | a random node cut off from the other two (1 \| 2) |
//! | `bridge` | two nodes cut from each other; the third sees both |
//! | `snapshot-catch-up` | kill -9 of a follower until the leader's log is purged past it, then restart: it must catch up by snapshot (and may be killed again mid-install) |
//! | `replace-member` | a membership change: kill -9 of a follower, `DELETE` it from the members, wipe its data dir, start it empty with `--join`: it is added back (two joint-consensus changes) and promoted once caught up |
//!
//! After healing, the nemesis waits until every node answers and a leader
//! is elected; a cluster that does not recover in time is a finding.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Opts;
use crate::cluster::{NodeState, POLL};
use crate::drive::Rng;
use crate::torture::proxy::{CutMode, Fabric};
use crate::torture::recorder::{FaultEvent, Recorder, Wiped};
use crate::{ClusterInfo, Error, LocalCluster, NodeId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    KillRandom,
    KillLeader,
    KillAll,
    PauseLeader,
    IsolateLeader,
    Halves,
    Bridge,
    SnapshotCatchUp,
    ReplaceMember,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::KillRandom,
        Fault::KillLeader,
        Fault::KillAll,
        Fault::PauseLeader,
        Fault::IsolateLeader,
        Fault::Halves,
        Fault::Bridge,
        Fault::SnapshotCatchUp,
        Fault::ReplaceMember,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillRandom => "kill-random",
            Fault::KillLeader => "kill-leader",
            Fault::KillAll => "kill-all",
            Fault::PauseLeader => "pause-leader",
            Fault::IsolateLeader => "isolate-leader",
            Fault::Halves => "halves",
            Fault::Bridge => "bridge",
            Fault::SnapshotCatchUp => "snapshot-catch-up",
            Fault::ReplaceMember => "replace-member",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault {s:?}; known: {}", all.join(", "))
            })
    }
}

/// How often and how long faults last.
#[derive(Debug, Clone)]
pub struct NemesisConfig {
    pub faults: Vec<Fault>,
    /// Quiet time before each fault: uniform in this range.
    pub quiet: (Duration, Duration),
    /// How long a fault is held before healing: uniform in this range. A
    /// pause is held at least `min_pause` (past the election timeout).
    pub hold: (Duration, Duration),
    pub min_pause: Duration,
    /// Bound on recovery after healing: all nodes answer, a leader is elected.
    pub recover: Duration,
}

impl Default for NemesisConfig {
    fn default() -> Self {
        NemesisConfig {
            faults: Fault::ALL.to_vec(),
            quiet: (Duration::from_millis(1000), Duration::from_millis(2500)),
            hold: (Duration::from_millis(1500), Duration::from_millis(3500)),
            min_pause: Duration::from_millis(1600),
            recover: Duration::from_secs(30),
        }
    }
}

pub struct Nemesis {
    cluster: Arc<LocalCluster>,
    fabric: Arc<Fabric>,
    rec: Arc<Recorder>,
    config: NemesisConfig,
    rng: Rng,
    injected: BTreeMap<Fault, u64>,
}

/// What one fault did, before it becomes a [`FaultEvent`].
#[derive(Default)]
struct Done {
    detail: Vec<String>,
    killed: Vec<NodeId>,
    snapshot: Vec<NodeId>,
    wiped: Vec<Wiped>,
}

impl Done {
    fn say(&mut self, s: impl Into<String>) {
        self.detail.push(s.into());
    }
}

impl Nemesis {
    pub fn new(
        cluster: Arc<LocalCluster>,
        fabric: Arc<Fabric>,
        rec: Arc<Recorder>,
        config: NemesisConfig,
        seed: u64,
    ) -> Self {
        Nemesis {
            cluster,
            fabric,
            rec,
            config,
            rng: Rng::new(seed),
            injected: BTreeMap::new(),
        }
    }

    /// Faults injected so far, by kind.
    pub fn injected(&self) -> &BTreeMap<Fault, u64> {
        &self.injected
    }

    /// Injects faults until `until` has passed and at least `min_rounds`
    /// rounds are done, or until `hard_stop`. Heals everything at the end.
    pub async fn run(&mut self, until: Instant, min_rounds: usize, hard_stop: Instant) {
        let mut rounds = 0;
        'rounds: loop {
            let mut round = self.config.faults.clone();
            self.rng.shuffle(&mut round);
            for fault in round {
                let quiet = self.between(self.config.quiet);
                tokio::time::sleep(quiet).await;
                let done_enough = Instant::now() >= until && rounds >= min_rounds;
                if done_enough || Instant::now() >= hard_stop {
                    break 'rounds;
                }
                self.inject(fault).await;
            }
            rounds += 1;
        }
        let start = self.rec.now();
        let problem = self.heal_all().await.err().map(|e| e.to_string());
        if problem.is_some() {
            self.rec.fault(FaultEvent {
                fault: "heal-all".into(),
                detail: "final heal".into(),
                start,
                end: self.rec.now(),
                killed: vec![],
                snapshot_catch_up: vec![],
                wiped: vec![],
                problem,
            });
        }
    }

    fn between(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        let span = hi.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(self.rng.below(span + 1))
    }

    fn pick(&mut self, ids: &[NodeId]) -> NodeId {
        ids[self.rng.below(ids.len() as u64) as usize]
    }

    /// Injects one fault, holds, heals, waits for recovery; logs it.
    pub async fn inject(&mut self, fault: Fault) {
        let start = self.rec.now();
        let mut done = Done::default();
        let mut problem = self.apply(fault, &mut done).await.err();
        let healed = self.heal_all().await;
        if problem.is_none() {
            problem = healed.err();
        }
        if problem.is_none() {
            problem = self.recovered().await.err();
        }
        *self.injected.entry(fault).or_default() += 1;
        self.rec.fault(FaultEvent {
            fault: fault.name().into(),
            detail: done.detail.join("; "),
            start,
            end: self.rec.now(),
            killed: done.killed,
            snapshot_catch_up: done.snapshot,
            wiped: done.wiped,
            problem: problem.map(|e| e.to_string()),
        });
    }

    /// The leader all running nodes agree on, if any within 10 s.
    async fn leader(&self) -> Option<NodeId> {
        self.cluster.leader(Duration::from_secs(10)).await.ok()
    }

    async fn apply(&mut self, fault: Fault, done: &mut Done) -> Result<(), Error> {
        let ids = self.cluster.ids();
        let hold = self.between(self.config.hold);
        let mode = match self.rng.below(2) {
            0 => CutMode::Refuse,
            _ => CutMode::Blackhole,
        };
        let leader = match fault {
            Fault::KillLeader | Fault::PauseLeader | Fault::IsolateLeader => {
                let leader = self.leader().await;
                if leader.is_none() {
                    done.say("no leader agreed on; took a random node");
                }
                match leader {
                    Some(l) => l,
                    None => self.pick(&ids),
                }
            }
            _ => 0,
        };
        match fault {
            Fault::KillRandom | Fault::KillLeader => {
                let victim = match fault {
                    Fault::KillLeader => leader,
                    _ => self.pick(&ids),
                };
                self.cluster.kill9(victim)?;
                done.killed.push(victim);
                done.say(format!("kill -9 node {victim}; down {hold:?}"));
                tokio::time::sleep(hold).await;
            }
            Fault::KillAll => {
                for &id in &ids {
                    self.cluster.kill9(id)?;
                }
                done.killed.extend(&ids);
                let hold = hold / 3;
                done.say(format!("kill -9 of all; down {hold:?}"));
                tokio::time::sleep(hold).await;
            }
            Fault::PauseLeader => {
                let hold = hold.max(self.config.min_pause);
                self.cluster.stop(leader)?;
                done.say(format!("SIGSTOP node {leader} (leader) for {hold:?}"));
                tokio::time::sleep(hold).await;
                self.cluster.cont(leader)?;
            }
            Fault::IsolateLeader => {
                self.fabric.isolate(leader, mode);
                done.say(format!(
                    "node {leader} (leader) isolated ({mode:?}) for {hold:?}"
                ));
                tokio::time::sleep(hold).await;
            }
            Fault::Halves => {
                let alone = self.pick(&ids);
                let rest: Vec<NodeId> = ids.iter().copied().filter(|&i| i != alone).collect();
                self.fabric.partition(&[vec![alone], rest.clone()], mode);
                done.say(format!(
                    "partition {alone} | {rest:?} ({mode:?}) for {hold:?}"
                ));
                tokio::time::sleep(hold).await;
            }
            Fault::Bridge => {
                let bridge = self.pick(&ids);
                let ends: Vec<NodeId> = ids.iter().copied().filter(|&i| i != bridge).collect();
                if let [a, b] = ends[..] {
                    self.fabric.cut(&[(a, b), (b, a)], mode);
                }
                done.say(format!(
                    "bridge: {ends:?} cut from each other ({mode:?}), node {bridge} sees both, \
                     for {hold:?}"
                ));
                tokio::time::sleep(hold).await;
            }
            Fault::SnapshotCatchUp => self.snapshot_catch_up(done).await?,
            Fault::ReplaceMember => self.replace_member(done).await?,
        }
        Ok(())
    }

    /// Removes a follower from the members, wipes it (a lost disk) and adds
    /// it back as a new member with `--join`, known to the others by its
    /// proxy; waits until it is a voter again and has caught up.
    async fn replace_member(&mut self, done: &mut Done) -> Result<(), Error> {
        let Some(leader) = self.leader().await else {
            done.say("no leader agreed on; skipped");
            return Ok(());
        };
        let victim = self.pick(&self.cluster.others(leader));
        self.cluster.kill9(victim)?;
        let killed_at = self.rec.now();
        done.killed.push(victim);
        let path = format!("/v1/cluster/members/{victim}");
        let deadline = Instant::now() + self.config.recover;
        loop {
            let via = self.leader().await.unwrap_or(leader);
            let client = self.cluster.client(via)?;
            let r = client
                .request(
                    reqwest::Method::DELETE,
                    &path,
                    &Opts::new(),
                    bytes::Bytes::new(),
                )
                .await;
            match r {
                Ok(r) if r.status == 200 => break,
                // Already gone (an earlier try that timed out applied).
                Ok(r) if r.status == 404 => break,
                other if Instant::now() >= deadline => {
                    return Err(Error::Unexpected(format!(
                        "removing node {victim}: {other:?}"
                    )))
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        self.cluster.wipe(victim)?;
        done.wiped.push(Wiped {
            node: victim,
            at: killed_at,
        });
        let peers: Vec<String> = self
            .cluster
            .others(victim)
            .into_iter()
            .filter_map(|id| self.fabric.url(id))
            .collect();
        let own = self
            .fabric
            .url(victim)
            .ok_or_else(|| Error::Unexpected(format!("no proxy for node {victim}")))?;
        let args = [
            "--join".to_string(),
            peers.join(","),
            "--advertise-peer".to_string(),
            own,
        ];
        self.cluster.start_replacement(victim, &args).await?;
        let started = Instant::now();
        loop {
            let voter = match self.leader().await {
                Some(l) => self.is_voter(l, victim).await,
                None => false,
            };
            if voter {
                break;
            }
            if started.elapsed() >= self.config.recover {
                return Err(Error::Timeout {
                    what: format!("node {victim} a voter again"),
                    waited: self.config.recover,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let caught = self.caught_up(victim, self.config.recover).await;
        done.say(format!(
            "node {victim} removed, wiped and added back with --join; a voter after {:?}",
            started.elapsed()
        ));
        caught.map(|_| ())
    }

    /// Whether `id` is a voter in the members `leader` lists.
    async fn is_voter(&self, leader: NodeId, id: NodeId) -> bool {
        let Ok(client) = self.cluster.client(leader) else {
            return false;
        };
        let r = client
            .request(
                reqwest::Method::GET,
                "/v1/cluster/members",
                &Opts::new(),
                bytes::Bytes::new(),
            )
            .await;
        let Ok(r) = r else { return false };
        let Ok(v) = r.json::<serde_json::Value>() else {
            return false;
        };
        v["members"].as_array().is_some_and(|ms| {
            ms.iter()
                .any(|m| m["id"].as_u64() == Some(id) && m["voter"] == true)
        })
    }

    /// Kills a follower, waits until the leader's log is purged past the
    /// follower's last entry (or a bound passes), restarts it, sometimes kills
    /// it again while it installs the snapshot, and waits until it caught up.
    async fn snapshot_catch_up(&mut self, done: &mut Done) -> Result<(), Error> {
        let Some(leader) = self.leader().await else {
            done.say("no leader agreed on; skipped");
            return Ok(());
        };
        let follower = self.pick(&self.cluster.others(leader));
        let last = self.info(follower).await?.last_log_index.unwrap_or(0);
        self.cluster.kill9(follower)?;
        done.killed.push(follower);
        let down = Instant::now();
        let bound = self.config.hold.1 * 4;
        let mut purged = 0;
        while down.elapsed() < bound {
            if let Ok(info) = self.info(leader).await {
                purged = info.purged_index.unwrap_or(0);
                if purged > last {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let needs_snapshot = purged > last;
        done.say(format!(
            "kill -9 node {follower} (follower, last log {last}); down {:?}; \
             leader {leader} purged to {purged}",
            down.elapsed()
        ));
        if needs_snapshot && self.rng.below(2) == 0 {
            self.cluster.restart(follower).await?;
            let wait = Duration::from_millis(self.rng.below(400));
            tokio::time::sleep(wait).await;
            self.cluster.kill9(follower)?;
            done.say(format!("restarted and killed again after {wait:?}"));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.cluster.restart(follower).await?;
        let caught = self.caught_up(follower, self.config.recover).await;
        if needs_snapshot {
            done.snapshot.push(follower);
        }
        done.say(match &caught {
            Ok(t) => format!("caught up {t:?} after restart"),
            Err(e) => format!("did not catch up: {e}"),
        });
        caught.map(|_| ())
    }

    async fn info(&self, id: NodeId) -> Result<ClusterInfo, Error> {
        let client = self.cluster.client(id)?;
        match tokio::time::timeout(Duration::from_secs(2), client.cluster_info()).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                what: format!("/v1/cluster of node {id}"),
                waited: Duration::from_secs(2),
            }),
        }
    }

    /// Waits until `id` has applied what the leader had committed when it
    /// was asked; returns how long that took.
    async fn caught_up(&self, id: NodeId, bound: Duration) -> Result<Duration, Error> {
        let start = Instant::now();
        let deadline = start + bound;
        let mut target = None;
        loop {
            if target.is_none() {
                if let Some(l) = self.leader().await {
                    target = self.info(l).await.ok().and_then(|i| i.committed_index);
                }
            }
            if let (Some(t), Ok(info)) = (target, self.info(id).await) {
                if info.applied_index.unwrap_or(0) >= t {
                    return Ok(start.elapsed());
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("node {id} applying the leader's commit index {target:?}"),
                    waited: bound,
                });
            }
            tokio::time::sleep(POLL * 5).await;
        }
    }

    /// Restores every link, thaws every frozen node, restarts every dead one.
    pub async fn heal_all(&self) -> Result<(), Error> {
        self.fabric.heal();
        let mut first_err = None;
        for id in self.cluster.ids() {
            let r = match self.cluster.state(id)? {
                NodeState::Stopped => self.cluster.cont(id),
                NodeState::Dead => self.cluster.restart(id).await,
                NodeState::Running => Ok(()),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// After healing: every node answers `/health` and a leader is elected.
    async fn recovered(&self) -> Result<(), Error> {
        for id in self.cluster.ids() {
            self.cluster.wait_healthy(id, self.config.recover).await?;
        }
        self.cluster.leader(self.config.recover).await.map(|_| ())
    }
}
