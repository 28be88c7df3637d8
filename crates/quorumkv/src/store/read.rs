//! The read path: make the local replica fresh enough for the level, then
//! read it. Strong reads use ReadIndex: the leader confirms with a quorum that
//! it still leads and names the index every read must see; the node serving
//! the read waits until it has applied that index.
//!
//! Names say which node does what: `leader_*` runs on the leader (for its own
//! reads and, through `/raft/read_index`, its followers'); `follower_*` runs on
//! a node the leader asked; the rest on whichever node serves the read.

use std::sync::Weak;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver as _;
use openraft::error::{LinearizableReadError, RaftError};
use openraft::raft::linearizable_read::LinearizerOption;
use openraft::ReadPolicy;

use crate::config::StrongReads;
use crate::error::{Error, WireError};
use crate::kv::{Pair, Versioned};
use crate::peer::messages::{path, ReadIndexReply, WaitApplied, WaitAppliedReply};
use crate::peer::{Attempt, LeaderReply};
use crate::sm::reader::Page;
use crate::store::rounds::Rounds;
use crate::store::{fatal, ReadLevel, ReadMeta, Store};

/// Leadership confirmations tried before a strong read gives up with `503`.
const QUORUM_ROUNDS: u32 = 3;

/// An index this node did not apply in time: it is at `applied`.
struct Behind {
    applied: u64,
}

impl Store {
    /// On the leader: confirms with a quorum that it still leads, then answers
    /// the index every read must see. `Retry` when it does not lead.
    async fn leader_read_index(&self) -> Result<Attempt<u64>, Error> {
        let wait = self.config.read_wait;
        let mut rounds = 0;
        loop {
            rounds += 1;
            crate::metrics::METRICS.read_index_rounds.inc();
            let res = tokio::time::timeout(wait, self.raft.get_read_log_id(self.read_option()))
                .await
                .map_err(|_| Error::NoQuorum(format!("no quorum answered within {wait:?}")))?;
            return match res {
                Ok((read_log_id, _)) => Ok(Attempt::Done(read_log_id.index())),
                Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_))) => {
                    Ok(Attempt::Retry)
                }
                // A round lasts one heartbeat timeout (100 ms): followers busy
                // for longer (a snapshot of a big state machine) miss it though
                // they are there. A fresh round is as valid as the first.
                Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)))
                    if rounds < QUORUM_ROUNDS =>
                {
                    continue;
                }
                Err(RaftError::APIError(e)) => Err(Error::NoQuorum(e.to_string())),
                Err(RaftError::Fatal(e)) => Err(fatal(e)),
            };
        }
    }

    /// What a strong read asks of openraft. ReadIndex: a quorum acknowledges
    /// a heartbeat sent after the read arrived. Lease: a quorum acknowledgement
    /// younger than the lease (`--election-timeout-max-ms`, the time a voter
    /// refuses other candidates after hearing from its leader) is enough; when
    /// none is, heartbeats go out at once and the read waits for them.
    fn read_option(&self) -> LinearizerOption {
        match self.config.strong_reads {
            StrongReads::ReadIndex => ReadPolicy::ReadIndex.into(),
            StrongReads::Lease => LinearizerOption::new(None, true),
        }
    }

    /// On the leader: a read-index round shared by the leader's own reads and
    /// its followers' (the server side of `/raft/read_index`).
    pub async fn leader_shared_read_index(&self) -> ReadIndexReply {
        self.leader_read_rounds
            .join()
            .await
            .unwrap_or_else(|e| LeaderReply::Failed(e.to_wire()))
    }

    /// One read index for this node's reads: from the leader's shared rounds
    /// when this node leads, else asked of the leader.
    async fn fetch_read_index(&self) -> Result<u64, Error> {
        self.on_leader(|leader, m| async move {
            if leader == self.id {
                return self.leader_shared_read_index().await.into_attempt();
            }
            // A node that learned who leads before it learned the leader's
            // address (a new member catching up) asks again: nothing was sent.
            let Some(addr) = Self::addr_of(&m, leader) else {
                return Ok(Attempt::Retry);
            };
            let wait = self.config.read_wait + Duration::from_millis(200);
            self.peers
                .call_leader(&addr, path::READ_INDEX, &(), wait, Error::NoQuorum)
                .await
        })
        .await
    }

    /// The read index of a round that started after this call; this node's
    /// concurrent strong reads share rounds.
    async fn shared_read_index(&self) -> Result<u64, Error> {
        self.read_rounds.join().await?.map_err(Error::Remote)
    }

    /// Waits up to `wait` until this node has applied `index`; the applied
    /// index reached, or how far it got.
    async fn applied_at_least(
        &self,
        index: u64,
        wait: Duration,
    ) -> Result<Result<u64, Behind>, Error> {
        match self
            .raft
            .wait(Some(wait))
            .applied_index_at_least(Some(index), "wait applied")
            .await
        {
            Ok(m) => Ok(Ok(m.last_applied.map_or(0, |l| l.index))),
            Err(openraft::metrics::WaitError::ShuttingDown) => Err(Error::ShuttingDown),
            Err(_) => Ok(Err(Behind {
                applied: self.reader.applied_index().unwrap_or(0),
            })),
        }
    }

    /// Waits up to `--read-wait-ms` until `index` is applied here; otherwise
    /// the error `behind(applied, waited)` says how far it got.
    async fn wait_index(
        &self,
        index: u64,
        behind: impl FnOnce(u64, Duration) -> Error,
    ) -> Result<(), Error> {
        let waited = self.config.read_wait;
        match self.applied_at_least(index, waited).await? {
            Ok(_) => Ok(()),
            Err(Behind { applied }) => Err(behind(applied, waited)),
        }
    }

    /// Waits up to `--read-wait-ms` until `index` is applied here, or
    /// `504 read_index_timeout`.
    pub(super) async fn wait_applied_for_read(&self, index: u64) -> Result<(), Error> {
        self.wait_index(index, |applied, waited| Error::ReadIndexTimeout {
            index,
            applied,
            waited,
        })
        .await
    }

    /// On a voter the leader asked (`/raft/wait_applied`, for `all` writes):
    /// waits until `index` is applied here; the applied index reached.
    pub async fn follower_wait_applied(&self, req: WaitApplied) -> WaitAppliedReply {
        let wait = Duration::from_millis(req.wait_ms).min(self.config.all_wait);
        match self.applied_at_least(req.index, wait).await {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(Behind { applied })) => Err(Error::MinIndexTimeout {
                want: req.index,
                applied,
                waited: wait,
            }
            .to_wire()),
            Err(e) => Err(e.to_wire()),
        }
    }

    /// Makes the local replica fresh enough for `level`.
    async fn prepare_read(&self, level: ReadLevel) -> Result<(), Error> {
        match level {
            ReadLevel::Strong => {
                let index = self.shared_read_index().await?;
                self.wait_index(index, |applied, waited| Error::ReadIndexTimeout {
                    index,
                    applied,
                    waited,
                })
                .await?;
            }
            ReadLevel::Eventual {
                min_index,
                max_staleness,
            } => {
                let staleness = {
                    let m = self.raft.metrics();
                    let m = m.borrow_watched();
                    self.last_contact(&m)
                };
                if let Some(age) = staleness {
                    let h = &crate::metrics::METRICS.eventual_staleness_seconds;
                    crate::metrics::observe(h, age);
                }
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
                if let Some(want) = min_index {
                    self.wait_index(want, |applied, waited| Error::MinIndexTimeout {
                        want,
                        applied,
                        waited,
                    })
                    .await?;
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
        page: &Page<'_>,
        level: ReadLevel,
    ) -> Result<(ReadMeta, Vec<Pair>, Option<String>), Error> {
        self.prepare_read(level).await?;
        let (index, pairs, next) = self.reader.scan(page)?;
        Ok((self.meta(index), pairs, next))
    }

    /// Starts the two kinds of shared rounds on the store behind `me`.
    pub(super) fn start_read_rounds(me: Weak<Store>) -> (SharedReads, LeaderSharedReads) {
        let own = me.clone();
        let reads = Rounds::start(move || {
            own.upgrade()
                .map(|s| async move { s.fetch_read_index().await.map_err(|e| e.to_wire()) })
        });
        let leader = Rounds::start(move || {
            me.upgrade()
                .map(|s| async move { LeaderReply::from(s.leader_read_index().await) })
        });
        (reads, leader)
    }
}

/// This node's strong reads, coalesced into rounds.
pub(super) type SharedReads = Rounds<Result<u64, WireError>>;
/// The leader's rounds, shared by its own reads and its followers'.
pub(super) type LeaderSharedReads = Rounds<ReadIndexReply>;
