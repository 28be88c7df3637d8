//! The write path: forward to the leader, propose, acknowledge at the level asked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use openraft::error::{ClientWriteError, RaftError};

use crate::command::{CommandResult, Idempotency, Request};
use crate::error::Error;
use crate::raft::network::CallError;
use crate::raft::NodeId;
use crate::store::{
    fatal, Attempt, Store, WaitApplied, WaitAppliedReply, Write, WriteLevel, WriteOutcome,
    WriteReply,
};

impl Store {
    /// Writes through whichever node leads, retrying on a new leader only when
    /// the write provably was not proposed.
    #[tracing::instrument(skip_all, fields(cmd = %write.command, level = ?write.level))]
    pub async fn write(&self, write: Write) -> Result<WriteOutcome, Error> {
        self.on_leader(|leader, m| {
            let write = write.clone();
            async move {
                if leader == self.id {
                    return self.write_local(write).await;
                }
                let addr = Self::addr_of(&m, leader)
                    .ok_or_else(|| Error::Internal(format!("no address for leader {leader}")))?;
                let wait = self.config.leader_wait + self.config.read_wait + self.config.all_wait;
                match self
                    .peers
                    .call::<_, WriteReply>(&addr, "forward", &write, wait)
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
    async fn write_local(&self, write: Write) -> Result<Attempt<WriteOutcome>, Error> {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let idempotency = write.idempotency_key.map(|key| Idempotency {
            key,
            fingerprint: write.command.fingerprint(),
        });
        let req = Request {
            command: write.command,
            ticket: None,
            idempotency,
            at_ms,
        };
        match write.level {
            WriteLevel::Eventual => self.write_eventual(req).await,
            WriteLevel::Strong => self.write_strong(req).await,
            WriteLevel::All => match self.write_strong(req).await? {
                Attempt::Done(outcome) => {
                    self.wait_all_applied(outcome.index).await?;
                    Ok(Attempt::Done(outcome))
                }
                Attempt::Retry => Ok(Attempt::Retry),
            },
        }
    }

    async fn write_strong(&self, req: Request) -> Result<Attempt<WriteOutcome>, Error> {
        let wait = self.config.leader_wait + self.config.read_wait;
        let res = tokio::time::timeout(wait, self.raft.client_write(req))
            .await
            .map_err(|_| Error::WriteTimeout(wait))?;
        match res {
            Ok(resp) => Ok(Attempt::Done(match resp.data {
                CommandResult::Replayed { index, original } => WriteOutcome {
                    index,
                    result: Some(*original),
                    replayed: true,
                },
                result => WriteOutcome {
                    index: resp.log_id.index,
                    result: Some(result),
                    replayed: false,
                },
            })),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Ok(Attempt::Retry),
            Err(RaftError::APIError(e)) => Err(Error::Internal(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// Acknowledged once the leader's log store has appended the entry (its
    /// ticket reports the index), or earlier if Raft already answered.
    async fn write_eventual(&self, mut req: Request) -> Result<Attempt<WriteOutcome>, Error> {
        let (ticket, appended) = self.appends.register();
        req.ticket = Some(ticket);
        let answer = match self.raft.client_write_ff(req).await {
            Ok(rx) => rx,
            Err(e) => {
                self.appends.forget(ticket);
                return Err(fatal(e));
            }
        };
        let mut answer = answer.fuse();
        let wait = self.config.leader_wait;
        let done = |index| {
            Some(Attempt::Done(WriteOutcome {
                index,
                result: None,
                replayed: false,
            }))
        };
        let outcome = tokio::select! {
            index = appended => index.ok().and_then(done),
            res = &mut answer => match res {
                Ok(Ok(resp)) => done(resp.log_id.index),
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
                let Some(addr) = addr else {
                    return (id, false);
                };
                let req: WaitApplied = (index, wait.as_millis() as u64);
                let reply = self
                    .peers
                    .call::<_, WaitAppliedReply>(
                        &addr,
                        "wait_applied",
                        &req,
                        wait + Duration::from_millis(200),
                    )
                    .await;
                (id, matches!(reply, Ok(Ok(applied)) if applied >= index))
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

    /// Server side of `/raft/forward`.
    pub async fn serve_forward(&self, write: Write) -> WriteReply {
        match self.write_local(write).await {
            Ok(Attempt::Done(o)) => Ok(o),
            Ok(Attempt::Retry) => Err(Error::NotLeader.to_wire()),
            Err(e) => Err(e.to_wire()),
        }
    }

    /// Server side of `/raft/wait_applied`.
    pub async fn serve_wait_applied(&self, (index, wait_ms): WaitApplied) -> WaitAppliedReply {
        let wait = Duration::from_millis(wait_ms).min(self.config.all_wait);
        self.wait_applied(index, wait)
            .await
            .map_err(|e| e.to_wire())
    }
}
