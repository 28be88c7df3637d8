//! The read path: make the local replica fresh enough for the level, then
//! read it.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};

use crate::error::Error;
use crate::kv::{Pair, Versioned};
use crate::raft::network::CallError;
use crate::store::{fatal, Attempt, ReadIndexReply, ReadLevel, ReadMeta, Store};

/// Leadership confirmations tried before a strong read gives up with `503`.
const QUORUM_ROUNDS: u32 = 3;

impl Store {
    /// The read index from the leader's point of view: leadership confirmed by a
    /// quorum, then the index every read must see. Errors when not leader.
    pub async fn read_index_local(&self) -> Result<Attempt<u64>, Error> {
        let wait = self.config.read_wait;
        let mut rounds = 0;
        loop {
            rounds += 1;
            let res = tokio::time::timeout(wait, self.raft.get_read_log_id())
                .await
                .map_err(|_| Error::NoQuorum(format!("no quorum answered within {wait:?}")))?;
            return match res {
                Ok((read_log_id, _)) => Ok(Attempt::Done(read_log_id.map_or(0, |l| l.index))),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
                    Ok(Attempt::Retry)
                }
                // A round lasts one heartbeat timeout (100 ms): followers busy
                // for longer (a snapshot of a big state machine) miss it though
                // they are there. A fresh round is as valid as the first.
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))
                    if rounds < QUORUM_ROUNDS =>
                {
                    continue;
                }
                Err(RaftError::APIError(e)) => Err(Error::NoQuorum(e.to_string())),
                Err(RaftError::Fatal(e)) => Err(fatal(e)),
            };
        }
    }

    /// One read-index round: from this node if it leads, else from the leader.
    /// Callers go through [`Store::read_index`], which shares rounds.
    pub(crate) async fn read_index_round(&self) -> Result<u64, Error> {
        self.on_leader(|leader, m| async move {
            if leader == self.id {
                return match self.leader_rounds.join().await {
                    Ok(index) => Ok(Attempt::Done(index)),
                    Err(e) if e.code() == "not_leader" => Ok(Attempt::Retry),
                    Err(e) => Err(e),
                };
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

    /// The read index of a round that started after this call.
    async fn read_index(&self) -> Result<u64, Error> {
        self.rounds.join().await
    }

    /// Makes the local replica fresh enough for `level`.
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

    /// One round on the leader, as `/raft/read_index` and local reads need it.
    pub(crate) async fn leader_round(&self) -> Result<u64, Error> {
        match self.read_index_local().await? {
            Attempt::Done(i) => Ok(i),
            Attempt::Retry => Err(Error::NotLeader),
        }
    }

    /// Server side of `/raft/read_index`: followers' reads share the leader's rounds.
    pub async fn serve_read_index(&self) -> ReadIndexReply {
        self.leader_rounds.join().await.map_err(|e| e.to_wire())
    }
}
