//! The write path: forward to the leader, propose, acknowledge at the level asked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::command::{CommandResult, Idempotency, Request};
use crate::error::Error;
use crate::peer::messages::{path, ForwardReply, WaitApplied, WaitAppliedReply};
use crate::peer::Attempt;
use crate::raft::NodeId;
use crate::store::proposer::Rejected;
use crate::store::{ConsistencyLevel, Store, Write, WriteOutcome};

fn rejection(r: Rejected) -> Result<Attempt<WriteOutcome>, Error> {
    match r {
        Rejected::NotLeader => Ok(Attempt::Retry),
        Rejected::Stopped => Err(Error::ShuttingDown),
        Rejected::Failed(m) => Err(Error::Internal(m)),
        Rejected::Overloaded(m) => Err(Error::Overloaded(m)),
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
                // A node that learned who leads before it learned the leader's
                // address (a new member catching up) asks again: nothing was sent.
                let Some(addr) = Self::addr_of(&m, leader) else {
                    return Ok(Attempt::Retry);
                };
                let wait = self.config.leader_wait + self.config.read_wait + self.config.all_wait;
                self.peers
                    .call_leader(&addr, path::FORWARD, &write, wait, Error::ForwardFailed)
                    .await
            }
        })
        .await
    }

    /// Writes on this node, which must be the leader (else `Retry`).
    pub(super) async fn write_local(&self, write: Write) -> Result<Attempt<WriteOutcome>, Error> {
        let idempotency = write.idempotency_key.map(|key| Idempotency {
            key,
            fingerprint: write.command.fingerprint(),
        });
        if let Err(refused) = self.check_quota(&write.command) {
            // A retry of an applied write is answered from its record, quota or not.
            let replay = idempotency.as_ref().is_some_and(|i| {
                self.reader
                    .has_idempotency_record(&i.key, i.fingerprint)
                    .unwrap_or(false)
            });
            if !replay {
                return Err(refused);
            }
        }
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let req = Request {
            command: write.command,
            ticket: None,
            idempotency,
            at_ms,
        };
        match write.level {
            ConsistencyLevel::Eventual => self.write_eventual(req).await,
            ConsistencyLevel::Strong => self.write_strong(req).await,
            ConsistencyLevel::All => match self.write_strong(req).await? {
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
                let req = WaitApplied {
                    index,
                    wait_ms: wait.as_millis() as u64,
                };
                let reply = self
                    .peers
                    .call::<_, WaitAppliedReply>(
                        &addr,
                        path::WAIT_APPLIED,
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

    /// On the leader: a write a follower forwarded (`/raft/forward`).
    pub async fn leader_write(&self, write: Write) -> ForwardReply {
        self.write_local(write).await.into()
    }
}
