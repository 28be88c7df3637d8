//! `/v1/cluster`, `/health` and `/ready`: what this node knows of the cluster.

use axum::extract::{Extension, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::api::auth::{Caller, Role};
use crate::api::AppState;
use crate::error::Error;
use crate::raft::NodeId;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/cluster", get(cluster))
        .route("/health", get(health))
        .route("/ready", get(ready))
}

#[derive(Serialize)]
struct Member {
    id: NodeId,
    /// Where peers reach it (its `/raft/*` listener).
    peer_url: String,
    voter: bool,
}

#[derive(Serialize)]
struct Replication {
    id: NodeId,
    matched_index: Option<u64>,
    lag: Option<u64>,
}

#[derive(Serialize)]
struct ClusterBody {
    id: NodeId,
    /// This node's client and peer URLs.
    client_url: String,
    peer_url: String,
    state: String,
    leader: Option<NodeId>,
    term: u64,
    last_log_index: Option<u64>,
    committed_index: Option<u64>,
    applied_index: Option<u64>,
    snapshot_index: Option<u64>,
    purged_index: Option<u64>,
    last_contact_ms: Option<u128>,
    members: Vec<Member>,
    replication: Vec<Replication>,
    /// Bytes of keys and values stored, and the quota they are held to.
    data_bytes: u64,
    quota_bytes: u64,
    /// Raised alarms: `quota` when data_bytes reached quota_bytes.
    alarms: Vec<&'static str>,
    /// The last leader changes this node saw, oldest first.
    leader_changes: Vec<crate::store::observe::LeaderChange>,
}

async fn cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<ClusterBody>, Error> {
    caller.require(Role::Read)?;
    let store = &state.store;
    let (data_bytes, over_quota) = store.quota_state()?;
    let committed_index = store.committed_index().await?;
    let m = store.metrics();
    let membership = m.membership_config.membership();
    let members = membership
        .nodes()
        .map(|(id, node)| Member {
            id: *id,
            peer_url: node.addr.clone(),
            voter: membership.voter_ids().any(|v| v == *id),
        })
        .collect();
    let last_log_index = m.last_log_index;
    let replication = m
        .replication
        .iter()
        .flatten()
        .map(|(id, matched)| {
            let matched_index = matched.map(|l| l.index);
            Replication {
                id: *id,
                matched_index,
                lag: last_log_index.map(|last| last.saturating_sub(matched_index.unwrap_or(0))),
            }
        })
        .collect();
    Ok(Json(ClusterBody {
        id: m.id,
        client_url: store.config.advertise_client.clone(),
        peer_url: store.config.advertise_peer.clone(),
        state: format!("{:?}", m.state),
        leader: m.current_leader,
        term: m.current_term,
        last_log_index,
        committed_index,
        applied_index: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        last_contact_ms: store.last_contact(&m).map(|d| d.as_millis()),
        members,
        replication,
        data_bytes,
        quota_bytes: store.config.quota_bytes,
        alarms: if over_quota {
            vec!["quota"]
        } else {
            Vec::new()
        },
        leader_changes: store.recent_leader_changes(),
    }))
}

/// `/v1/snapshot`, outside the request timeout: a backup takes as long as
/// the data takes to snapshot (its own bound is in `backup::take`).
pub fn backup_router() -> Router<AppState> {
    Router::new().route("/v1/snapshot", get(snapshot))
}

/// `GET /v1/snapshot` (admin): a backup of this node's state machine, as of
/// the index in `X-Raft-Index`: the snapshot file, streamed as it is on disk
/// (it ends with its SHA-256, also in `X-Checksum-Sha256`; `quorumkv
/// snapshot save` fetches and checks it).
async fn snapshot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::response::Response, Error> {
    use axum::response::IntoResponse;
    caller.require(Role::Admin)?;
    let (meta, data) = crate::backup::take(&state.store).await?;
    let index = meta.last_log_id.map_or(0, |l| l.index);
    let failed = |e: String| Error::Internal(format!("reading the snapshot: {e}"));
    let (sum, (len, stream)) = tokio::task::spawn_blocking(move || {
        let mut data = data;
        let sum = crate::raft::snapshot::checksum_of(&mut data.file)?;
        Ok::<_, std::io::Error>((sum, data.into_stream()?))
    })
    .await
    .map_err(|e| failed(e.to_string()))?
    .map_err(|e| failed(e.to_string()))?;
    let head = crate::api::headers::Head::new()
        .raft_index(index)
        .into_map();
    let body = axum::body::Body::from_stream(stream);
    Ok((
        head,
        [
            ("content-type", "application/octet-stream".to_owned()),
            ("content-length", len.to_string()),
            ("x-checksum-sha256", crate::backup::hex(&sum)),
        ],
        body,
    )
        .into_response())
}

/// 200 while the process and its Raft core run; 503 once the core stopped
/// (the process then exits).
async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, Error> {
    if let Err(e) = &state.store.metrics().running_state {
        return Err(Error::NotReady(format!("raft core stopped: {e}")));
    }
    Ok(Json(
        serde_json::json!({ "status": "ok", "id": state.store.id }),
    ))
}

async fn ready(State(state): State<AppState>) -> Result<Json<serde_json::Value>, Error> {
    let store = &state.store;
    let committed = store.committed_index().await?;
    let m = store.metrics();
    let applied = m.last_applied.map(|l| l.index);
    let Some(leader) = m.current_leader else {
        return Err(Error::NotReady("no leader known".into()));
    };
    if applied < committed {
        return Err(Error::NotReady(format!(
            "applied {applied:?} behind committed {committed:?}"
        )));
    }
    Ok(Json(serde_json::json!({
        "ready": true, "id": m.id, "leader": leader, "applied_index": applied
    })))
}
