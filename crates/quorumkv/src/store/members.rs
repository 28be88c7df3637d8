//! Membership changes, as etcd's `member add/promote/remove`: a new node
//! joins as a learner (it receives the log but does not vote), is promoted to
//! voter once it has caught up, and any member, the leader included, can be
//! removed. Every change runs on the leader (a follower forwards it,
//! `/raft/members`) through openraft's joint consensus, one at a time.
//!
//! Refused with a clear error before anything is proposed: an unknown id
//! (404), a duplicate id or peer URL, a promotion of a learner that lags, a
//! removal that would leave no voter or leave the new configuration without
//! a quorum of voters the leader has heard from lately, and a change while
//! another is still in flight (409).

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};

use crate::error::Error;
use crate::peer::cluster_id::{ClusterId, ClusterIdCell};
use crate::peer::messages::{
    path, Challenge, JoinReply, JoinRequest, MemberChange, MemberInfo, ProofReply,
};
use crate::peer::Attempt;
use crate::raft::{NodeId, RaftMetrics};
use crate::store::{fatal, Store};

/// A learner at most this many entries behind the leader's log may be promoted.
pub const MAX_PROMOTE_LAG: u64 = 100;

/// How long a joining node waits for an answer to one join request.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Runs `change` on the leader (forwarded when this node is not it) and
    /// returns the members as the leader sees them afterwards.
    pub async fn members(&self, change: MemberChange) -> Result<Vec<MemberInfo>, Error> {
        self.on_leader(|leader, m| {
            let change = change.clone();
            async move {
                if leader == self.id {
                    return self.leader_members(change).await;
                }
                // A node that learned who leads before it learned the leader's
                // address (a new member catching up) asks again: nothing was sent.
                let Some(addr) = Self::addr_of(&m, leader) else {
                    return Ok(Attempt::Retry);
                };
                let wait = self.config.leader_wait + self.config.election_timeout.1 * 4;
                self.peers
                    .call_leader(&addr, path::MEMBERS, &change, wait, Error::ForwardFailed)
                    .await
            }
        })
        .await
    }

    /// `change`, run here on the leader (`Retry` if this node does not lead).
    pub async fn leader_members(
        &self,
        change: MemberChange,
    ) -> Result<Attempt<Vec<MemberInfo>>, Error> {
        let m = self.metrics();
        if !Self::is_leader(&m) {
            return Ok(Attempt::Retry);
        }
        let membership = m.membership_config.membership();
        let is_voter = |id: NodeId| membership.voter_ids().any(|v| v == id);
        let known = |id: NodeId| membership.get_node(&id).is_some();
        let result = match change {
            MemberChange::List => return Ok(Attempt::Done(self.member_list(&m))),
            MemberChange::AddLearner {
                id,
                peer_url,
                proven,
            } => {
                let peer_url = peer_url.trim().trim_end_matches('/').to_owned();
                self.check_new_member(&m, id, &peer_url)?;
                if !proven {
                    self.verify_holds_token(id, &peer_url).await?;
                }
                tracing::info!(id, %peer_url, "adding a learner");
                self.raft
                    .add_learner(id, BasicNode::new(peer_url), false)
                    .await
            }
            MemberChange::Promote { id } => {
                if !known(id) {
                    return Err(Error::MemberNotFound(id));
                }
                if is_voter(id) {
                    return Err(Error::MemberConflict(format!(
                        "node {id} is already a voter"
                    )));
                }
                let lag = lag_of(&m, id);
                if lag.is_none_or(|lag| lag > MAX_PROMOTE_LAG) {
                    return Err(Error::LearnerLagging {
                        id,
                        lag,
                        max: MAX_PROMOTE_LAG,
                    });
                }
                tracing::info!(id, "promoting a learner to voter");
                let ids = BTreeSet::from([id]);
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(ids), false)
                    .await
            }
            MemberChange::Remove { id } => {
                if !known(id) {
                    return Err(Error::MemberNotFound(id));
                }
                let ids = BTreeSet::from([id]);
                if is_voter(id) {
                    self.check_quorum_without(&m, id)?;
                    if id == self.id {
                        // Hand over first: the new leader then removes this node.
                        self.hand_over(&m).await?;
                        return Ok(Attempt::Retry);
                    }
                    tracing::info!(id, "removing a voter");
                    self.raft
                        .change_membership(ChangeMembers::RemoveVoters(ids), false)
                        .await
                } else {
                    tracing::info!(id, "removing a learner");
                    self.raft
                        .change_membership(ChangeMembers::RemoveNodes(ids), false)
                        .await
                }
            }
        };
        match result {
            Ok(_) => Ok(Attempt::Done(self.member_list(&self.metrics()))),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Ok(Attempt::Retry),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(Error::MemberConflict(match e {
                    ChangeMembershipError::InProgress(p) => format!(
                        "another membership change is still in flight ({p}); retry when it has committed"
                    ),
                    other => other.to_string(),
                }))
            }
            Err(RaftError::APIError(e)) => Err(Error::Internal(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(fatal(f)),
        }
    }

    /// A new member's id and URL: not taken, and of this cluster's scheme.
    fn check_new_member(&self, m: &RaftMetrics, id: NodeId, peer_url: &str) -> Result<(), Error> {
        if id == 0 {
            return Err(Error::InvalidBody("a node id is a positive integer".into()));
        }
        let scheme = if self.config.peer_tls.is_some() {
            "https://"
        } else {
            "http://"
        };
        if !peer_url.starts_with(scheme) || peer_url.len() == scheme.len() {
            return Err(Error::InvalidBody(format!(
                "peer URL {peer_url:?} must start with {scheme} (the scheme of this cluster's peers)"
            )));
        }
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_some() {
            return Err(Error::MemberConflict(format!(
                "node {id} is already a member"
            )));
        }
        if let Some((other, _)) = membership.nodes().find(|(_, n)| n.addr == peer_url) {
            return Err(Error::MemberConflict(format!(
                "peer URL {peer_url} is already node {other}'s"
            )));
        }
        Ok(())
    }

    /// Without peer TLS every peer request carries the cluster token, so a
    /// member added at a URL that is not one of ours would be handed the
    /// token. Before adding it, the node there must prove it holds the token
    /// already, without being sent it (an HMAC of a fresh challenge). With
    /// peer TLS the leader only talks to holders of a peer certificate; with
    /// no token there is no secret to hand over.
    async fn verify_holds_token(&self, id: NodeId, peer_url: &str) -> Result<(), Error> {
        let Some(token) = &self.config.cluster_token else {
            return Ok(());
        };
        if self.config.peer_tls.is_some() {
            return Ok(());
        }
        let mut nonce = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| Error::Internal("no randomness for the challenge".into()))?;
        let challenge = Challenge {
            nonce,
            id,
            peer_url: peer_url.to_owned(),
        };
        let unverified = |why: String| {
            Error::MemberUnverified(format!(
                "node {id} at {peer_url} did not prove it holds the cluster token ({why}); \
                 start it first (with the cluster token and no --initial-cluster), then add it"
            ))
        };
        let proof = self
            .peers
            .call_stranger::<_, ProofReply>(peer_url, path::PROVE, &challenge, JOIN_TIMEOUT)
            .await
            .map_err(|e| unverified(e.to_string()))?
            .map_err(|e| unverified(e.message))?;
        if !token.verify(&challenge.signed_bytes(), &proof) {
            return Err(unverified("a wrong proof".into()));
        }
        Ok(())
    }

    /// Refuses to remove voter `id` when the voters left would be none, or
    /// fewer than a quorum of them have answered the leader lately (etcd's
    /// strict reconfiguration check): the cluster would stop.
    fn check_quorum_without(&self, m: &RaftMetrics, id: NodeId) -> Result<(), Error> {
        let left: Vec<NodeId> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|&v| v != id)
            .collect();
        if left.is_empty() {
            return Err(Error::WouldLoseQuorum(format!(
                "node {id} is the last voter"
            )));
        }
        let recent = self.config.election_timeout.1 * 2;
        let active = left
            .iter()
            .filter(|&&v| v == self.id || ack_age(m, v).is_some_and(|age| age <= recent))
            .count();
        let quorum = left.len() / 2 + 1;
        if active < quorum {
            return Err(Error::WouldLoseQuorum(format!(
                "without node {id}, {active} of the {} remaining voters answer; a quorum needs {quorum}",
                left.len()
            )));
        }
        Ok(())
    }

    /// `--join`: asks the members at `urls`, in turn, to add this node as a
    /// learner, and adopts the cluster id they answer with. A refusal (the
    /// id is a voter's, the URL another node's) is returned; unreachable
    /// members are retried for up to a minute.
    pub async fn join(&self, urls: &[String], cluster: &ClusterIdCell) -> Result<(), Error> {
        let req = JoinRequest {
            id: self.id,
            peer_url: self.config.advertise_peer.clone(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            for url in urls {
                match self
                    .peers
                    .call::<_, JoinReply>(url, path::JOIN, &req, JOIN_TIMEOUT)
                    .await
                {
                    Ok(Ok((id, members))) => {
                        let id = ClusterId::parse(&id).ok_or_else(|| {
                            Error::Internal(format!("{url} sent cluster id {id:?}"))
                        })?;
                        cluster
                            .adopt(id)
                            .map_err(|e| Error::Storage(format!("writing the cluster id: {e}")))?;
                        tracing::info!(via = %url, members = members.len(), "joined the cluster as a learner");
                        return Ok(());
                    }
                    Ok(Err(refused)) if refused.status < 500 && refused.code != "no_leader" => {
                        return Err(Error::Remote(refused));
                    }
                    Ok(Err(e)) => last = format!("{url}: {}", e.message),
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(Error::ForwardFailed(format!(
            "no member added this node within 60 s; last: {last}"
        )))
    }

    /// After `--join` (without `--learner`): asks for promotion to voter
    /// until it is granted, while the learner catches up.
    pub async fn promote_when_caught_up(&self) {
        loop {
            match self.members(MemberChange::Promote { id: self.id }).await {
                Ok(_) => {
                    tracing::info!("promoted to voter");
                    return;
                }
                // Here or forwarded from the leader.
                Err(e)
                    if e.code() == "member_conflict"
                        && e.to_string().contains("already a voter") =>
                {
                    return
                }
                Err(e) if e.code() == "learner_lagging" => {}
                Err(Error::ShuttingDown) => return,
                Err(e) => tracing::warn!("asking for promotion: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// On SIGTERM: a leader hands leadership to the most up-to-date other
    /// voter before it stops, so the cluster does not wait an election
    /// timeout for a new one. A failure is logged; the node stops anyway.
    pub async fn hand_over_if_leader(&self) {
        let m = self.metrics();
        let others = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v != self.id);
        if !Self::is_leader(&m) || !others {
            return;
        }
        match self.hand_over(&m).await {
            Ok(()) => tracing::info!("shutting down: leadership handed over"),
            Err(e) => tracing::warn!("shutting down: could not hand leadership over: {e}"),
        }
    }

    /// Transfers leadership to the most up-to-date other voter and waits
    /// until this node no longer leads.
    async fn hand_over(&self, m: &RaftMetrics) -> Result<(), Error> {
        let to = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|&v| v != self.id)
            .max_by_key(|&v| (matched(m, v), std::cmp::Reverse(v)))
            .ok_or_else(|| Error::WouldLoseQuorum("no other voter to hand over to".into()))?;
        tracing::info!(to, "handing leadership over first");
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(fatal)?;
        let wait = self.config.election_timeout.1 * 4;
        let me = self.id;
        self.raft
            .wait(Some(wait))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != me),
                "another leader",
            )
            .await
            .map_err(|_| Error::NoLeader(wait))?;
        Ok(())
    }

    /// Every member with its role, and as the leader sees it, its replication.
    fn member_list(&self, m: &RaftMetrics) -> Vec<MemberInfo> {
        let membership = m.membership_config.membership();
        membership
            .nodes()
            .map(|(&id, node)| MemberInfo {
                id,
                peer_url: node.addr.clone(),
                voter: membership.voter_ids().any(|v| v == id),
                leader: m.current_leader == Some(id),
                matched_index: matched(m, id),
                lag: lag_of(m, id),
                last_ack_ms: ack_age(m, id).map(|d| d.as_millis() as u64),
            })
            .collect()
    }
}

fn matched(m: &RaftMetrics, id: NodeId) -> Option<u64> {
    if id == m.id {
        return m.last_log_index;
    }
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id))
        .and_then(|l| l.map(|l| l.index))
}

/// Entries between the leader's last log and `id`'s.
pub(super) fn lag_of(m: &RaftMetrics, id: NodeId) -> Option<u64> {
    let last = m.last_log_index.unwrap_or(0);
    matched(m, id).map(|i| last.saturating_sub(i))
}

/// How long since `id` last acknowledged the leader (zero for the leader itself).
pub(super) fn ack_age(m: &RaftMetrics, id: NodeId) -> Option<Duration> {
    if id == m.id {
        return Some(Duration::ZERO);
    }
    use openraft::Instant as _;
    m.heartbeat
        .as_ref()
        .and_then(|h| h.get(&id))
        .and_then(|at| at.as_ref())
        .map(|at| at.elapsed())
}
