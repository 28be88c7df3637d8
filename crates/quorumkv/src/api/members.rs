//! `/v1/cluster/members`: list, add (as a learner), promote and remove
//! members. Changes need the `admin` role when `--auth-file` is set; any node
//! takes them and hands them to the leader.
//!
//! ```text
//! GET    /v1/cluster/members                  the members as the leader sees them
//! POST   /v1/cluster/members                  {"id":4,"peer_url":"http://10.0.0.4:8001"}: a learner
//! POST   /v1/cluster/members/{id}/promote     the learner becomes a voter (409 while it lags)
//! DELETE /v1/cluster/members/{id}             remove it (a leader hands over first)
//! ```

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::api::auth::{Caller, Role};
use crate::api::AppState;
use crate::error::Error;
use crate::peer::messages::{MemberChange, MemberInfo};
use crate::raft::NodeId;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/cluster/members", get(list).post(add))
        .route("/v1/cluster/members/{id}/promote", post(promote))
        .route("/v1/cluster/members/{id}", delete(remove))
}

#[derive(Serialize)]
struct MembersBody {
    members: Vec<MemberInfo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    id: NodeId,
    /// The new node's peer URL (`--advertise-peer`); `addr` is taken too.
    #[serde(alias = "addr")]
    peer_url: String,
}

async fn run(state: &AppState, change: MemberChange) -> Result<Json<MembersBody>, Error> {
    let members = state.store.members(change).await?;
    Ok(Json(MembersBody { members }))
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<MembersBody>, Error> {
    caller.require(Role::Read)?;
    run(&state, MemberChange::List).await
}

async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<MembersBody>), Error> {
    caller.require(Role::Admin)?;
    let body = body.map_err(|e| Error::InvalidBody(e.body_text()))?;
    let AddBody { id, peer_url } = serde_json::from_slice(&body).map_err(|e| {
        Error::InvalidBody(format!(
            "{e}: expected {{\"id\": <node id>, \"peer_url\": \"http://host:port\"}}"
        ))
    })?;
    let change = MemberChange::AddLearner {
        id,
        peer_url,
        proven: false,
    };
    let members = run(&state, change).await?;
    Ok((StatusCode::CREATED, members))
}

fn id_of(path: Result<Path<String>, PathRejection>) -> Result<NodeId, Error> {
    let Path(raw) = path.map_err(|e| Error::InvalidQuery(e.body_text()))?;
    raw.parse()
        .map_err(|_| Error::InvalidQuery(format!("node id {raw:?} is not a positive integer")))
}

async fn promote(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MembersBody>, Error> {
    caller.require(Role::Admin)?;
    let id = id_of(path)?;
    run(&state, MemberChange::Promote { id }).await
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MembersBody>, Error> {
    caller.require(Role::Admin)?;
    let id = id_of(path)?;
    run(&state, MemberChange::Remove { id }).await
}
