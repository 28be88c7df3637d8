//! Standing for election as soon as the leader is gone, in the order that
//! wins the first round.
//!
//! On its own (with or without openraft 0.10's pre-vote, which this node
//! enables) a follower stands only `election_timeout_max`
//! (the leader lease every voter grants its leader) plus its random timeout
//! after the last heartbeat. When the first survivor to stand has a shorter log
//! than the other (writes were in flight), the other refuses it; the other's
//! own try at that same term is then refused in turn, and the election takes
//! another round: a third of the leader kills in `scripts/failover-bench.sh`,
//! up to 3.4 s without a leader (measured with openraft 0.9).
//!
//! Here a voting follower that has had no append-entries from any leader for
//! a lease (arrivals count, not just acceptances: a slow disk must not look
//! like a dead leader) asks the other voters (`/raft/probe`). If any of them
//! leads, or heard from a leader within the lease, nothing happens. Otherwise the one with the greatest last
//! log id (the lowest node id on a tie), the one every other voter would vote
//! for, stands at once. Votes, terms and safety stay openraft's: a wrong guess
//! costs no more than the round openraft runs anyway.

use std::sync::Weak;
use std::time::Duration;

use openraft::ServerState;

use crate::peer::messages::{path, Probe, ProbeReply};
use crate::raft::NodeId;
use crate::store::Store;

/// How often a follower checks whether its leader has gone silent.
const CHECK_EVERY: Duration = Duration::from_millis(25);
/// Past the lease, so that the other voters' leases have expired too.
const MARGIN: Duration = Duration::from_millis(30);
/// A peer that does not answer within this is taken to be down.
const PROBE_TIMEOUT: Duration = Duration::from_millis(150);

/// Runs the check on the store behind `me` until the store is gone.
pub(super) fn start(me: Weak<Store>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let Some(store) = me.upgrade() else { return };
            if store.stand_if_leader_gone().await {
                // Give the election a lease to finish before looking again.
                tokio::time::sleep(store.config.election_timeout.1).await;
            }
        }
    });
}

impl Store {
    /// Answers `/raft/probe`: whether this node leads, how long it has not
    /// heard from a leader, its last log id.
    pub fn probe(&self) -> ProbeReply {
        let m = self.metrics();
        Ok(Probe {
            leading: Self::is_leader(&m),
            silent_ms: self.contact.silent_for().as_millis() as u64,
            last_log: self.log.last_log_id(),
        })
    }

    /// Triggers an election if the leader is gone and this node is the one
    /// the others would elect. True if it did.
    async fn stand_if_leader_gone(&self) -> bool {
        let lease = self.config.election_timeout.1;
        let m = self.metrics();
        let silent = self.contact.silent_for();
        if m.state != ServerState::Follower || silent < lease + MARGIN {
            return false;
        }
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if !voters.contains(&self.id) {
            return false;
        }
        let mine = self.log.last_log_id();
        let probes = voters.iter().filter(|&&id| id != self.id).map(|&id| {
            let addr = Self::addr_of(&m, id);
            async move {
                let addr = addr?;
                let reply = self
                    .peers
                    .call(&addr, path::PROBE, &(), PROBE_TIMEOUT)
                    .await;
                let probe: ProbeReply = reply.ok()?;
                probe.ok().map(|p| (id, p))
            }
        });
        let answers: Vec<(NodeId, Probe)> = futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect();
        let lease_ms = lease.as_millis() as u64;
        for (id, p) in &answers {
            let alive = p.leading || p.silent_ms <= lease_ms;
            let better = (p.last_log, std::cmp::Reverse(*id)) > (mine, std::cmp::Reverse(self.id));
            if alive || better {
                return false;
            }
        }
        // Standing can only win with a majority of the voters.
        if answers.len() + 1 < voters.len() / 2 + 1 {
            return false;
        }
        tracing::info!(
            silent_ms = silent.as_millis() as u64,
            "no leader heard for a lease by a majority, and this node has the longest log: standing for election"
        );
        // No Pre-Vote round: the probe above already found a majority
        // without a leader, and the point is to stand at once.
        if let Err(e) = self.raft.trigger().elect(false).await {
            tracing::warn!("triggering an election: {e}");
        }
        true
    }
}
