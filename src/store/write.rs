//! The write path: forward to the leader, propose, acknowledge at the level asked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::command::{CommandResult, Idempotency, Request};
use crate::error::Error;
use crate::raft::network::CallError;
use crate::raft::NodeId;
use crate::store::proposer::Rejected;
use crate::store::{
    Attempt, Store, WaitApplied, WaitAppliedReply, Write, WriteLevel, WriteOutcome, WriteReply,
};

fn rejection(r: Rejected) -> Result<Attempt<WriteOutcome>, Error> {
    match r {
        Rejected::NotLeader => Ok(Attempt::Retry),
        Rejected::Stopped => Err(Error::ShuttingDown),
        Rejected::Failed(m) => Err(Error::Internal(m)),
    }
}

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
        let applied = tokio::time::timeout(wait, self.proposer.submit(req))
            .await
            .map_err(|_| Error::WriteTimeout(wait))?
            .map_err(|_| Error::ShuttingDown)?;
        match applied {
            Ok((
                index,
                CommandResult::Replayed {
                    index: original,
                    original: result,
                },
            )) => {
                let _ = index;
                Ok(Attempt::Done(WriteOutcome {
                    index: original,
                    result: Some(*result),
                    replayed: true,
                }))
            }
            Ok((index, result)) => Ok(Attempt::Done(WriteOutcome {
                index,
                result: Some(result),
                replayed: false,
            })),
            Err(rejected) => rejection(rejected),
        }
    }

    /// Acknowledged once the leader's log store has appended the entry (its
    /// ticket reports the index), or earlier if it was rejected.
    async fn write_eventual(&self, mut req: Request) -> Result<Attempt<WriteOutcome>, Error> {
        let (ticket, appended) = self.log.appends().register();
        req.ticket = Some(ticket);
        let answer = self.proposer.submit(req);
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
            res = answer => match res {
                Ok(Ok((index, _))) => done(index),
                Ok(Err(rejected)) => {
                    self.log.appends().forget(ticket);
                    return rejection(rejected);
                }
                Err(_) => None,
            },
            _ = tokio::time::sleep(wait) => None,
        };
        self.log.appends().forget(ticket);
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
