//! What operators want told about the Raft core, from openraft's metrics as
//! they change: one log line per leader change (old and new leader, term,
//! how long the cluster had none), one per membership change, the leader
//! change counter, and the recent changes `/v1/cluster` and `/ui` show.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::async_runtime::WatchReceiver as _;
use serde::Serialize;

use crate::metrics::METRICS;
use crate::raft::{NodeId, Raft};
use crate::store::members;

/// Changes kept for `/v1/cluster`.
const KEPT: usize = 20;

/// One leader change as this node saw it.
#[derive(Debug, Clone, Serialize)]
pub struct LeaderChange {
    /// Wall clock, ms since the epoch.
    pub at_ms: u64,
    pub term: u64,
    pub from: Option<NodeId>,
    pub to: Option<NodeId>,
    /// How long this node knew no leader before `to` (when it saw a gap).
    pub election_ms: Option<u64>,
}

/// The recent leader changes.
#[derive(Debug, Default)]
pub struct LeaderChanges(Mutex<VecDeque<LeaderChange>>);

impl LeaderChanges {
    pub fn recent(&self) -> Vec<LeaderChange> {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.iter().cloned().collect()
    }

    fn push(&self, c: LeaderChange) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() == KEPT {
            g.pop_front();
        }
        g.push_back(c);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Follows `raft`'s metrics until it stops, recording into the store's
/// leader changes. A change is a leader (or a term) this node had not seen
/// lead: `from` is the last leader it knew, and the election is the time it
/// knew none in between.
pub fn start(raft: Raft, store: std::sync::Weak<crate::store::Store>) {
    tokio::spawn(async move {
        let mut rx = raft.metrics();
        let (mut known, mut known_term, mut membership) = {
            let m = rx.borrow_watched();
            (
                m.current_leader,
                m.current_term,
                *m.membership_config.log_id(),
            )
        };
        let mut leaderless: Option<Instant> = known.is_none().then(Instant::now);
        while rx.changed().await.is_ok() {
            let (leader, term, now_membership) = {
                let m = rx.borrow_watched();
                (
                    m.current_leader,
                    m.current_term,
                    *m.membership_config.log_id(),
                )
            };
            match leader {
                None => {
                    leaderless.get_or_insert_with(Instant::now);
                }
                Some(_) if leader != known || term != known_term => {
                    let election = leaderless.take().map(|since| since.elapsed());
                    let election_ms = election.map(|d: Duration| d.as_millis() as u64);
                    METRICS.leader_changes.inc();
                    let show =
                        |l: Option<NodeId>| l.map_or("none".to_string(), |id| id.to_string());
                    tracing::info!(
                        from = %show(known),
                        to = %show(leader),
                        term,
                        election_ms,
                        "leader changed"
                    );
                    let Some(store) = store.upgrade() else { return };
                    store.leader_changes.push(LeaderChange {
                        at_ms: now_ms(),
                        term,
                        from: known,
                        to: leader,
                        election_ms,
                    });
                    known = leader;
                    known_term = term;
                }
                Some(_) => {}
            }
            if now_membership != membership {
                let (voters, members): (Vec<NodeId>, Vec<NodeId>) = {
                    let m = rx.borrow_watched();
                    let ms = m.membership_config.membership();
                    (
                        ms.voter_ids().collect(),
                        ms.nodes().map(|(id, _)| *id).collect(),
                    )
                };
                tracing::info!(log_id = ?now_membership, ?voters, "membership changed");
                membership = now_membership;
                // A removed member may come back as a new one, with a new
                // incarnation: forget the old.
                let Some(store) = store.upgrade() else { return };
                store.identity().retain(&members);
            }
        }
    });
}

impl crate::store::Store {
    /// Sets the gauges that mirror Raft's state and the store's, for a scrape.
    pub async fn update_metrics(&self) {
        let m = self.metrics();
        let gauge = |v: Option<u64>| v.map_or(0, |i| i as i64);
        METRICS.term.set(m.current_term as i64);
        METRICS.is_leader.set(i64::from(Self::is_leader(&m)));
        METRICS.last_log_index.set(gauge(m.last_log_index));
        METRICS
            .applied_index
            .set(gauge(m.last_applied.map(|l| l.index)));
        METRICS
            .snapshot_index
            .set(gauge(m.snapshot.map(|l| l.index)));
        if let Ok(committed) = self.committed_index().await {
            METRICS.commit_index.set(gauge(committed));
        }
        METRICS.replication_lag_entries.reset();
        METRICS.replication_last_ack_seconds.reset();
        if Self::is_leader(&m) {
            let membership = m.membership_config.membership();
            for (id, _) in membership.nodes().filter(|(id, _)| **id != m.id) {
                let follower = id.to_string();
                if let Some(lag) = members::lag_of(&m, *id) {
                    METRICS
                        .replication_lag_entries
                        .with_label_values(&[&follower])
                        .set(lag as i64);
                }
                if let Some(age) = members::ack_age(&m, *id) {
                    METRICS
                        .replication_last_ack_seconds
                        .with_label_values(&[&follower])
                        .set(age.as_secs_f64());
                }
            }
        }
        let contact = self
            .last_contact(&m)
            .map_or(f64::INFINITY, |d| d.as_secs_f64());
        METRICS.last_contact_seconds.set(contact);
        if let Ok((bytes, _)) = self.quota_state() {
            METRICS.data_bytes.set(bytes as i64);
        }
        METRICS.watchers.set(self.watchers().open() as i64);
        if let Ok((_, leases)) = self.leases() {
            METRICS.leases.set(leases.len() as i64);
        }
    }

    /// This node's recent leader changes, oldest first.
    pub fn recent_leader_changes(&self) -> Vec<LeaderChange> {
        self.leader_changes.recent()
    }
}
