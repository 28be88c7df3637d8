//! The store: reads and writes at a consistency level, with leader forwarding.
//! No HTTP here; `api` turns requests into calls on [`Store`].
//!
//! - strong write: `client_write` on the leader (quorum commit + apply).
//! - eventual write: proposed on the leader; acknowledged once in its log.
//! - all write: strong, then every voter confirms it has applied the entry.
//! - strong read: leader confirms leadership with a quorum (ReadIndex); a
//!   follower asks the leader for that read index and waits to apply it.
//! - eventual read: served from the local replica at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, WireError};
use crate::kv::{Command, CommandResult, Pair, Request};
use crate::raft::log_store::AppendWatch;
use crate::raft::network::{CallError, PeerClient};
use crate::raft::state_machine::{SmReader, Versioned};
use crate::raft::{NodeId, Raft, RaftMetrics};

/// How a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteLevel {
    Strong,
    Eventual,
    All,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLevel {
    Strong,
    Eventual {
        min_index: Option<u64>,
        max_staleness: Option<Duration>,
    },
}

/// The outcome of an acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// Commit index (strong, all) or the index the leader appended it at (eventual).
    pub index: u64,
    /// What applying it produced; `None` for eventual writes (not applied yet).
    pub result: Option<CommandResult>,
}

/// Where and how fresh a read was served.
#[derive(Debug, Clone)]
pub struct ReadMeta {
    pub index: u64,
    pub served_by: NodeId,
    pub leader: Option<NodeId>,
    pub last_contact: Option<Duration>,
}

/// Message of `/raft/forward`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Forward {
    pub command: Command,
    pub level: WriteLevel,
}

pub type ForwardReply = Result<WriteOutcome, WireError>;
pub type ReadIndexReply = Result<u64, WireError>;
/// `/raft/wait_applied`: (index, wait in ms) -> applied index reached.
pub type WaitApplied = (u64, u64);
pub type WaitAppliedReply = Result<u64, WireError>;

/// When this node last heard from a leader, for `X-Last-Contact-Ms`.
#[derive(Debug)]
pub struct LastContact {
    start: Instant,
    /// Milliseconds since `start` + 1 of the last accepted append; 0 = never.
    at: AtomicU64,
}

impl LastContact {
    fn new() -> Self {
        LastContact {
            start: Instant::now(),
            at: AtomicU64::new(0),
        }
    }

    /// Records that a leader's append-entries was accepted just now.
    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64 + 1;
        self.at.store(ms, Ordering::Relaxed);
    }

    fn since(&self) -> Option<Duration> {
        match self.at.load(Ordering::Relaxed) {
            0 => None,
            at => Some(
                self.start
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }
}

/// Outcome of one attempt on the node believed to lead.
pub enum Attempt<T> {
    Done(T),
    /// Safe to retry: the leader changed before anything was proposed.
    Retry,
}

pub struct Store {
    pub id: NodeId,
    pub raft: Raft,
    pub config: Arc<Config>,
    pub contact: Arc<LastContact>,
    reader: SmReader,
    peers: PeerClient,
    appends: AppendWatch,
}

impl Store {
    pub fn new(
        config: Arc<Config>,
        raft: Raft,
        reader: SmReader,
        peers: PeerClient,
        appends: AppendWatch,
    ) -> Self {
        Store {
            id: config.id,
            raft,
            config,
            contact: Arc::new(LastContact::new()),
            reader,
            peers,
            appends,
        }
    }

    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
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
            m.millis_since_quorum_ack.map(Duration::from_millis)
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

    // ---- writes ----

    #[tracing::instrument(skip_all, fields(cmd = %command, ?level))]
    pub async fn write(&self, command: Command, level: WriteLevel) -> Result<WriteOutcome, Error> {
        self.on_leader(|leader, m| {
            let command = command.clone();
            async move {
                if leader == self.id {
                    return self.write_local(command, level).await;
                }
                let addr = Self::addr_of(&m, leader)
                    .ok_or_else(|| Error::Internal(format!("no address for leader {leader}")))?;
                let req = Forward { command, level };
                let wait = self.config.leader_wait + self.config.read_wait + self.config.all_wait;
                match self
                    .peers
                    .call::<_, ForwardReply>(&addr, "forward", &req, wait)
                    .await
                {
                    Ok(Ok(outcome)) => Ok(Attempt::Done(outcome)),
                    Ok(Err(w)) if w.code == "not_leader" => Ok(Attempt::Retry),
                    Ok(Err(w)) => Err(Error::Remote(w)),
                    Err(CallError::Unreachable(_)) => Ok(Attempt::Retry),
                    Err(CallError::Failed(e)) => Err(Error::ForwardFailed(e)),
                }
            }
        })
        .await
    }

    /// Writes on this node, which must be the leader (else `Retry`).
    pub async fn write_local(
        &self,
        command: Command,
        level: WriteLevel,
    ) -> Result<Attempt<WriteOutcome>, Error> {
        match level {
            WriteLevel::Eventual => self.write_eventual(command).await,
            WriteLevel::Strong => self.write_strong(command).await,
            WriteLevel::All => match self.write_strong(command).await? {
                Attempt::Done(outcome) => {
                    self.wait_all_applied(outcome.index).await?;
                    Ok(Attempt::Done(outcome))
                }
                Attempt::Retry => Ok(Attempt::Retry),
            },
        }
    }

    async fn write_strong(&self, command: Command) -> Result<Attempt<WriteOutcome>, Error> {
        let req = Request {
            command,
            ticket: None,
        };
        let wait = self.config.leader_wait + self.config.read_wait;
        let res = tokio::time::timeout(wait, self.raft.client_write(req))
            .await
            .map_err(|_| Error::WriteTimeout(wait))?;
        match res {
            Ok(resp) => Ok(Attempt::Done(WriteOutcome {
                index: resp.log_id.index,
                result: Some(resp.data),
            })),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Ok(Attempt::Retry),
            Err(RaftError::APIError(e)) => Err(Error::Internal(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    async fn write_eventual(&self, command: Command) -> Result<Attempt<WriteOutcome>, Error> {
        let (ticket, appended) = self.appends.register();
        let req = Request {
            command,
            ticket: Some(ticket),
        };
        let answer = match self.raft.client_write_ff(req).await {
            Ok(rx) => rx,
            Err(e) => {
                self.appends.forget(ticket);
                return Err(fatal(e));
            }
        };
        let mut answer = answer.fuse();
        let wait = self.config.leader_wait;
        let outcome = tokio::select! {
            index = appended => index.ok().map(|index| Attempt::Done(WriteOutcome { index, result: None })),
            res = &mut answer => match res {
                Ok(Ok(resp)) => Some(Attempt::Done(WriteOutcome { index: resp.log_id.index, result: None })),
                Ok(Err(ClientWriteError::ForwardToLeader(_))) => Some(Attempt::Retry),
                Ok(Err(e)) => return Err(Error::Internal(e.to_string())),
                Err(_) => None,
            },
            _ = tokio::time::sleep(wait) => None,
        };
        self.appends.forget(ticket);
        outcome.ok_or(Error::WriteTimeout(wait))
    }

    /// Waits until every voter has applied `index` (`X-Consistency: all`).
    async fn wait_all_applied(&self, index: u64) -> Result<(), Error> {
        let wait = self.config.all_wait;
        let m = self.metrics();
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        let checks = voters.into_iter().map(|id| {
            let addr = Self::addr_of(&m, id);
            async move {
                if id == self.id {
                    return (id, true);
                }
                let Some(addr) = addr else { return (id, false) };
                let req: WaitApplied = (index, wait.as_millis() as u64);
                let ok = matches!(
                    self.peers
                        .call::<_, WaitAppliedReply>(&addr, "wait_applied", &req, wait + Duration::from_millis(200))
                        .await,
                    Ok(Ok(applied)) if applied >= index
                );
                (id, ok)
            }
        });
        let missing: Vec<NodeId> = futures::future::join_all(checks)
            .await
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(id, _)| id)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::NotFullyReplicated {
                index,
                missing,
                waited: wait,
            })
        }
    }

    /// Waits until this node has applied `index`; returns the applied index.
    pub async fn wait_applied(&self, index: u64, wait: Duration) -> Result<u64, Error> {
        match self
            .raft
            .wait(Some(wait))
            .applied_index_at_least(Some(index), "wait applied")
            .await
        {
            Ok(m) => Ok(m.last_applied.map_or(0, |l| l.index)),
            Err(openraft::metrics::WaitError::ShuttingDown) => Err(Error::ShuttingDown),
            Err(_) => Err(Error::MinIndexTimeout {
                want: index,
                applied: self.reader.applied_index().unwrap_or(0),
                waited: wait,
            }),
        }
    }

    // ---- reads ----

    /// The read index from the leader's point of view: leadership confirmed by a
    /// quorum, then the index every read must see. Errors when not leader.
    pub async fn read_index_local(&self) -> Result<Attempt<u64>, Error> {
        let wait = self.config.read_wait;
        let res = tokio::time::timeout(wait, self.raft.get_read_log_id())
            .await
            .map_err(|_| Error::NoQuorum(format!("no quorum answered within {wait:?}")))?;
        match res {
            Ok((read_log_id, _)) => Ok(Attempt::Done(read_log_id.map_or(0, |l| l.index))),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(_))) => {
                Ok(Attempt::Retry)
            }
            Err(RaftError::APIError(e)) => Err(Error::NoQuorum(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// The read index, from this node if it leads or else from the leader.
    async fn read_index(&self) -> Result<u64, Error> {
        self.on_leader(|leader, m| async move {
            if leader == self.id {
                return self.read_index_local().await;
            }
            let addr = Self::addr_of(&m, leader)
                .ok_or_else(|| Error::Internal(format!("no address for leader {leader}")))?;
            let wait = self.config.read_wait + Duration::from_millis(200);
            match self
                .peers
                .call::<_, ReadIndexReply>(&addr, "read_index", &(), wait)
                .await
            {
                Ok(Ok(index)) => Ok(Attempt::Done(index)),
                Ok(Err(w)) if w.code == "not_leader" => Ok(Attempt::Retry),
                Ok(Err(w)) => Err(Error::Remote(w)),
                Err(CallError::Unreachable(_)) => Ok(Attempt::Retry),
                Err(CallError::Failed(e)) => Err(Error::NoQuorum(e)),
            }
        })
        .await
    }

    /// Makes the local replica fresh enough for `level`; returns its contact age.
    async fn prepare_read(&self, level: ReadLevel) -> Result<(), Error> {
        match level {
            ReadLevel::Strong => {
                let index = self.read_index().await?;
                self.wait_applied(index, self.config.read_wait).await?;
            }
            ReadLevel::Eventual {
                min_index,
                max_staleness,
            } => {
                if let Some(max) = max_staleness {
                    let m = self.metrics();
                    match self.last_contact(&m) {
                        Some(age) if age <= max => {}
                        age => {
                            return Err(Error::StaleReplica {
                                last_contact: age.map_or("never".into(), |a| format!("{a:?}")),
                                max,
                            })
                        }
                    }
                }
                if let Some(index) = min_index {
                    self.wait_applied(index, self.config.read_wait).await?;
                }
            }
        }
        Ok(())
    }

    fn meta(&self, index: u64) -> ReadMeta {
        let m = self.metrics();
        ReadMeta {
            index,
            served_by: self.id,
            leader: m.current_leader,
            last_contact: self.last_contact(&m),
        }
    }

    #[tracing::instrument(skip_all, fields(key = %key))]
    pub async fn get(
        &self,
        key: &str,
        level: ReadLevel,
    ) -> Result<(ReadMeta, Option<Versioned>), Error> {
        self.prepare_read(level).await?;
        let (index, value) = self.reader.get(key)?;
        Ok((self.meta(index), value))
    }

    pub async fn scan(
        &self,
        prefix: &str,
        limit: usize,
        level: ReadLevel,
    ) -> Result<(ReadMeta, Vec<Pair>, bool), Error> {
        self.prepare_read(level).await?;
        let (index, pairs, more) = self.reader.scan(prefix, limit)?;
        Ok((self.meta(index), pairs, more))
    }

    /// The committed index as this node knows it.
    pub async fn committed_index(&self) -> Result<Option<u64>, Error> {
        self.raft
            .with_raft_state(|st| st.committed.map(|l| l.index))
            .await
            .map_err(fatal)
    }
}

fn fatal(e: openraft::error::Fatal<NodeId>) -> Error {
    match e {
        openraft::error::Fatal::Stopped => Error::ShuttingDown,
        other => Error::Storage(other.to_string()),
    }
}

/// The server side of `/raft/forward`, `/raft/read_index`, `/raft/wait_applied`.
impl Store {
    pub async fn serve_forward(&self, req: Forward) -> ForwardReply {
        match self.write_local(req.command, req.level).await {
            Ok(Attempt::Done(o)) => Ok(o),
            Ok(Attempt::Retry) => Err(Error::NotLeader.to_wire()),
            Err(e) => Err(e.to_wire()),
        }
    }

    pub async fn serve_read_index(&self) -> ReadIndexReply {
        match self.read_index_local().await {
            Ok(Attempt::Done(i)) => Ok(i),
            Ok(Attempt::Retry) => Err(Error::NotLeader.to_wire()),
            Err(e) => Err(e.to_wire()),
        }
    }

    pub async fn serve_wait_applied(&self, (index, wait_ms): WaitApplied) -> WaitAppliedReply {
        let wait = Duration::from_millis(wait_ms).min(self.config.all_wait);
        self.wait_applied(index, wait)
            .await
            .map_err(|e| e.to_wire())
    }
}
