//! Lease deadlines. Only the leader keeps them, in memory: a keepalive
//! restarts one; a lease past its deadline is revoked through the log (its
//! keys deleted in that entry, so every replica and watcher agrees). A node
//! that becomes leader starts every lease's clock afresh, a full TTL from the
//! moment it sees it, so a failover never expires a lease its owner kept
//! alive (etcd does the same).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use crate::command::{Command, CommandResult};
use crate::error::Error;
use crate::peer::messages::{path, LeaseCall, LeaseInfo};
use crate::peer::Attempt;
use crate::store::{ConsistencyLevel, Store, Write};

/// How often the leader looks for expired leases.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Most keys a lease's description lists.
pub const MAX_LISTED_KEYS: usize = 1000;
/// The shortest and longest TTL a lease may have.
pub const MIN_TTL: Duration = Duration::from_secs(1);
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Deadlines of the leases, valid for one leadership (term).
#[derive(Debug, Default)]
pub struct Deadlines(Mutex<Leadership>);

#[derive(Debug, Default)]
struct Leadership {
    term: u64,
    at: HashMap<u64, Instant>,
    /// Expired, their revoke proposed: a keepalive comes too late for them.
    revoking: HashSet<u64>,
}

impl Deadlines {
    /// Runs `f` on the deadlines of leadership `term`: those of an earlier
    /// term are dropped first (every lease gets a full TTL again).
    fn with<T>(&self, term: u64, f: impl FnOnce(&mut Leadership) -> T) -> T {
        let mut l = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if l.term != term {
            l.term = term;
            l.at.clear();
            l.revoking.clear();
        }
        f(&mut l)
    }

    fn clear(&self) {
        let mut l = self.0.lock().unwrap_or_else(|p| p.into_inner());
        l.term = 0;
        l.at.clear();
        l.revoking.clear();
    }
}

pub(super) fn start(me: Weak<Store>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let Some(store) = me.upgrade() else { return };
            if let Err(e) = store.expire_leases().await {
                tracing::warn!(error = %e, "lease expiry");
            }
        }
    });
}

impl Store {
    /// The leases as this node has applied them, and the applied index.
    pub fn leases(&self) -> Result<(u64, Vec<(u64, crate::sm::lease::Lease)>), Error> {
        let index = self.reader.applied_index()?;
        Ok((index, self.reader.leases()?))
    }

    /// On the leader: revokes the leases past their deadline.
    async fn expire_leases(&self) -> Result<(), Error> {
        let m = self.metrics();
        if !Self::is_leader(&m) {
            self.lease_deadlines.clear();
            return Ok(());
        }
        let leases = self.reader.leases()?;
        let ids: HashSet<u64> = leases.iter().map(|(id, _)| *id).collect();
        let now = Instant::now();
        let expired: Vec<u64> = self.lease_deadlines.with(m.current_term, |l| {
            l.at.retain(|id, _| ids.contains(id));
            l.revoking.retain(|id| ids.contains(id));
            for (id, lease) in &leases {
                if !l.revoking.contains(id) {
                    l.at.entry(*id)
                        .or_insert(now + Duration::from_millis(lease.ttl_ms));
                }
            }
            let expired: Vec<u64> =
                l.at.iter()
                    .filter(|(_, deadline)| **deadline <= now)
                    .map(|(id, _)| *id)
                    .collect();
            for id in &expired {
                l.at.remove(id);
                l.revoking.insert(*id);
            }
            expired
        });
        for id in expired {
            tracing::info!(lease = id, "lease expired; revoking");
            let write = Write {
                command: Command::LeaseRevoke { id },
                level: ConsistencyLevel::Strong,
                idempotency_key: None,
            };
            // Proposed here or not at all: a node that no longer leads has
            // stale deadlines, and the new leader decides with its own.
            match self.write_local(write).await? {
                Attempt::Done(o) => match o.result {
                    Some(CommandResult::LeaseRevoked { deleted }) => {
                        tracing::info!(lease = id, deleted, "lease revoked on expiry");
                    }
                    other => tracing::debug!(lease = id, ?other, "lease already gone"),
                },
                Attempt::Retry => {
                    self.lease_deadlines.clear();
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// A lease's keepalive or description, from the leader (forwarded there).
    pub async fn lease(&self, call: LeaseCall) -> Result<LeaseInfo, Error> {
        self.on_leader(|leader, m| {
            let call = call.clone();
            async move {
                if leader == self.id {
                    return self.leader_lease(call).await;
                }
                // A node that learned who leads before it learned the leader's
                // address (a new member catching up) asks again: nothing was sent.
                let Some(addr) = Self::addr_of(&m, leader) else {
                    return Ok(Attempt::Retry);
                };
                self.peers
                    .call_leader(
                        &addr,
                        path::LEASE,
                        &call,
                        self.config.leader_wait,
                        Error::ForwardFailed,
                    )
                    .await
            }
        })
        .await
    }

    /// `call` on this node, which must lead (`Retry` if not).
    pub async fn leader_lease(&self, call: LeaseCall) -> Result<Attempt<LeaseInfo>, Error> {
        let m = self.metrics();
        if !Self::is_leader(&m) {
            return Ok(Attempt::Retry);
        }
        // A new leader may not have applied all it committed yet (a lease
        // granted just before it took over): catch up before looking.
        if let Some(committed) = self.committed_index().await? {
            self.wait_applied_for_read(committed).await?;
        }
        let Some((lease, mut keys)) = self.reader.lease(call.id, MAX_LISTED_KEYS + 1)? else {
            return Err(Error::LeaseNotFound(call.id));
        };
        if let Some(caller) = &call.caller {
            if lease.owner.as_ref() != Some(caller) {
                return Err(Error::Forbidden(format!(
                    "lease {} belongs to another token",
                    call.id
                )));
            }
        }
        let ttl = Duration::from_millis(lease.ttl_ms);
        let now = Instant::now();
        let deadline = self.lease_deadlines.with(m.current_term, |l| {
            if l.revoking.contains(&call.id) {
                return None;
            }
            let d = l.at.entry(call.id).or_insert(now + ttl);
            if call.keep_alive {
                *d = now + ttl;
            }
            Some(*d)
        });
        // Expired already, its revoke on the way: too late to keep it.
        let Some(deadline) = deadline else {
            return Err(Error::LeaseNotFound(call.id));
        };
        let more_keys = keys.len() > MAX_LISTED_KEYS;
        keys.truncate(MAX_LISTED_KEYS);
        Ok(Attempt::Done(LeaseInfo {
            id: call.id,
            ttl_ms: lease.ttl_ms,
            remaining_ms: deadline.saturating_duration_since(now).as_millis() as u64,
            keys,
            more_keys,
        }))
    }
}
