//! The store: reads and writes at a consistency level, with leader forwarding.
//! No HTTP here; `api` turns requests into calls on [`Store`].
//!
//! - strong write: `client_write` on the leader (quorum commit + apply).
//! - eventual write: proposed on the leader; acknowledged once in its log.
//! - all write: strong, then every voter confirms it has applied the entry.
//! - strong read: leader confirms leadership with a quorum (ReadIndex, or a
//!   quorum ack within its lease with `--strong-reads lease`); a follower asks
//!   the leader for that read index and waits to apply it.
//! - eventual read: served from the local replica at once.
//!
//! `write.rs` and `read.rs` hold the two paths; this file holds what they
//! share: read levels, last leader contact, finding the leader and retrying
//! on a new one.

mod failover;
pub mod leases;
mod proposer;
pub use proposer::QueueBounds;
mod members;
pub use members::MAX_PROMOTE_LAG;
pub mod observe;
mod quota;
mod read;
mod rounds;
pub mod watch;
mod write;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver as _;
use openraft::Instant as _;
use openraft::ServerState;

pub use crate::command::{Write, WriteOutcome};
use crate::config::Config;
use crate::error::Error;
use crate::peer::{Attempt, PeerClient};
use crate::raft::log_store::LogStore;
use crate::raft::{NodeId, Raft, RaftMetrics};
use crate::sm::reader::SmReader;
pub use quorumkv_proto::ConsistencyLevel;

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLevel {
    Strong,
    Eventual {
        min_index: Option<u64>,
        max_staleness: Option<Duration>,
    },
}

impl ReadLevel {
    /// The `X-Consistency` this read is served at.
    pub fn level(&self) -> ConsistencyLevel {
        match self {
            ReadLevel::Strong => ConsistencyLevel::Strong,
            ReadLevel::Eventual { .. } => ConsistencyLevel::Eventual,
        }
    }
}

/// Where and how fresh a read was served.
#[derive(Debug, Clone)]
pub struct ReadMeta {
    pub index: u64,
    pub served_by: NodeId,
    pub leader: Option<NodeId>,
    pub last_contact: Option<Duration>,
}

/// When this node last heard from a leader: an accepted append-entries, for
/// `X-Last-Contact-Ms`; and any append-entries at all, for failover.
#[derive(Debug)]
pub struct LastContact {
    start: Instant,
    /// Milliseconds since `start` + 1 of the last accepted append; 0 = never.
    accepted: AtomicU64,
    /// The same for the last append-entries that arrived, accepted or not.
    arrived: AtomicU64,
}

impl LastContact {
    fn new() -> Self {
        LastContact {
            start: Instant::now(),
            accepted: AtomicU64::new(0),
            arrived: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Records that a leader's append-entries was accepted just now.
    pub fn touch(&self) {
        self.accepted.store(self.now(), Ordering::Relaxed);
    }

    /// Records that an append-entries arrived just now. A follower whose disk
    /// is slow may take longer than the leader waits (one heartbeat) to accept
    /// it; the leader is alive all the same.
    pub fn arrived(&self) {
        self.arrived.store(self.now(), Ordering::Relaxed);
    }

    /// How long since any append-entries arrived; since start if none has.
    pub fn silent_for(&self) -> Duration {
        self.age(&self.arrived)
            .unwrap_or_else(|| self.start.elapsed())
    }

    fn since(&self) -> Option<Duration> {
        self.age(&self.accepted)
    }

    /// Time since the moment `stamp` holds; `None` if it was never set.
    fn age(&self, stamp: &AtomicU64) -> Option<Duration> {
        match stamp.load(Ordering::Relaxed) {
            0 => None,
            at => Some(
                self.start
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }
}

pub struct Store {
    pub id: NodeId,
    pub raft: Raft,
    pub config: Arc<Config>,
    pub contact: Arc<LastContact>,
    reader: SmReader,
    /// Read-only use: this node's last log id (`/raft/probe`) and the index
    /// an `eventual` write was appended at.
    log: LogStore,
    peers: PeerClient,
    proposer: proposer::Proposer,
    /// This node's strong reads, coalesced.
    read_rounds: read::SharedReads,
    /// Leader-side rounds, shared by its own reads and its followers'.
    leader_read_rounds: read::LeaderSharedReads,
    quota_alarm: quota::Alarm,
    watchers: watch::Watchers,
    lease_deadlines: leases::Deadlines,
    leader_changes: observe::LeaderChanges,
}

impl Store {
    pub fn new(
        config: Arc<Config>,
        raft: Raft,
        reader: SmReader,
        log: LogStore,
        peers: PeerClient,
        me: Weak<Store>,
    ) -> Self {
        let proposer = proposer::Proposer::start(raft.clone(), config.write_queue);
        if config.fast_failover {
            failover::start(me.clone());
        }
        quota::start(me.clone());
        leases::start(me.clone());
        observe::start(raft.clone(), me.clone());
        let (read_rounds, leader_read_rounds) = Self::start_read_rounds(me);
        let watchers = watch::Watchers::new(config.watch.max_watchers);
        Store {
            id: config.id,
            raft,
            config,
            contact: Arc::new(LastContact::new()),
            reader,
            log,
            peers,
            proposer,
            read_rounds,
            leader_read_rounds,
            quota_alarm: quota::Alarm::default(),
            watchers,
            lease_deadlines: leases::Deadlines::default(),
            leader_changes: observe::LeaderChanges::default(),
        }
    }

    /// This node's incarnation and its peers'.
    pub fn identity(&self) -> &Arc<crate::peer::identity::Identity> {
        self.peers.identity()
    }

    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow_watched().clone()
    }

    /// This node's current term, without copying the rest of the metrics
    /// (checked on every peer message).
    pub fn current_term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    fn is_leader(m: &RaftMetrics) -> bool {
        m.state == ServerState::Leader && m.current_leader == Some(m.id)
    }

    fn addr_of(m: &RaftMetrics, id: NodeId) -> Option<String> {
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// The leader, waiting up to `--leader-wait-ms` for one during an election.
    async fn leader(&self, deadline: Instant) -> Result<(NodeId, RaftMetrics), Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self
            .raft
            .wait(Some(left))
            .metrics(|m| m.current_leader.is_some(), "leader known")
            .await
        {
            Ok(m) => Ok((m.current_leader.unwrap_or(m.id), m)),
            Err(openraft::metrics::WaitError::ShuttingDown) => Err(Error::ShuttingDown),
            Err(_) => Err(Error::NoLeader(self.config.leader_wait)),
        }
    }

    /// How long since this node heard from a leader; on the leader, from a quorum.
    pub fn last_contact(&self, m: &RaftMetrics) -> Option<Duration> {
        if Self::is_leader(m) {
            m.last_quorum_acked.as_ref().map(|at| at.elapsed())
        } else {
            self.contact.since()
        }
    }

    /// Retries `attempt` against the current leader until it answers or the deadline.
    async fn on_leader<T, F, Fut>(&self, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut(NodeId, RaftMetrics) -> Fut,
        Fut: std::future::Future<Output = Result<Attempt<T>, Error>>,
    {
        let deadline = Instant::now() + self.config.leader_wait;
        loop {
            let (leader, m) = self.leader(deadline).await?;
            match attempt(leader, m).await? {
                Attempt::Done(v) => return Ok(v),
                Attempt::Retry if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Attempt::Retry => return Err(Error::NoLeader(self.config.leader_wait)),
            }
        }
    }

    /// The committed index as this node knows it.
    pub async fn committed_index(&self) -> Result<Option<u64>, Error> {
        self.raft
            .with_raft_state(|st| st.local_committed().map(|l| l.index))
            .await
            .map_err(fatal)
    }
}

pub fn fatal(e: crate::raft::Fatal) -> Error {
    match e {
        openraft::error::Fatal::Stopped => Error::ShuttingDown,
        other => Error::Storage(other.to_string()),
    }
}
