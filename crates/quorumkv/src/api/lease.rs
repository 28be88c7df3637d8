//! `/v1/lease` routes: grant, keep alive, revoke, describe and list leases
//! ([`crate::store::leases`], [`crate::sm::lease`]). Grants and revokes go
//! through the log at `strong` (a lease's id is its grant's index, which only
//! a committed entry makes final).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::api::auth::{Caller, Role};
use crate::api::headers::{idempotency_key, write_level, Head};
use crate::api::kv::run_write;
use crate::api::AppState;
use crate::command::{Command, CommandResult};
use crate::error::Error;
use crate::peer::messages::{LeaseCall, LeaseInfo};
use crate::store::leases::{MAX_TTL, MIN_TTL};
use crate::store::{ConsistencyLevel, WriteOutcome};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/lease", post(grant))
        .route("/v1/leases", get(list))
        .route("/v1/lease/{id}", get(describe).delete(revoke))
        .route("/v1/lease/{id}/keepalive", post(keep_alive))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    /// e.g. "10s", "1m".
    ttl: String,
}

#[derive(Serialize)]
struct Granted {
    id: u64,
    ttl_ms: u64,
    index: u64,
}

fn lease_id(path: Result<Path<u64>, PathRejection>) -> Result<u64, Error> {
    path.map(|Path(id)| id)
        .map_err(|_| Error::InvalidQuery("a lease id is a positive integer".into()))
}

/// Leases are written at `strong` or `all`: an `eventual` grant could be
/// lost with its leader, and its id given to another lease. Otherwise a
/// write like any other ([`run_write`]).
async fn lease_write(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    command: Command,
) -> Result<(ConsistencyLevel, WriteOutcome), Error> {
    if write_level(headers)? == ConsistencyLevel::Eventual {
        return Err(Error::InvalidConsistency(
            "eventual (leases are granted and revoked at strong or all)".into(),
        ));
    }
    run_write(state, caller, headers, command).await
}

async fn grant(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    caller.require(Role::Write)?;
    let body = body.map_err(|e| Error::InvalidBody(e.body_text()))?;
    let GrantBody { ttl } = serde_json::from_slice(&body)
        .map_err(|e| Error::InvalidBody(format!("expected {{\"ttl\":\"10s\"}}: {e}")))?;
    let ttl = humantime::parse_duration(&ttl)
        .map_err(|e| Error::InvalidBody(format!("ttl {ttl:?}: {e}")))?;
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(Error::InvalidBody(format!(
            "ttl must be from {MIN_TTL:?} to {MAX_TTL:?}"
        )));
    }
    let command = Command::LeaseGrant {
        ttl_ms: ttl.as_millis() as u64,
        owner: caller.name().map(str::to_string),
    };
    let (level, outcome) = lease_write(&state, &caller, &headers, command).await?;
    let Some(CommandResult::LeaseGranted { id, ttl_ms }) = outcome.result else {
        return Err(Error::Internal(format!(
            "a lease grant answered {:?}",
            outcome.result
        )));
    };
    let head = Head::new()
        .raft_index(outcome.index)
        .consistency(level)
        .replayed(outcome.replayed);
    let body = Granted {
        id,
        ttl_ms,
        index: outcome.index,
    };
    Ok((StatusCode::CREATED, head.into_map(), Json(body)).into_response())
}

async fn leader_call(
    state: &AppState,
    caller: &Caller,
    id: u64,
    keep_alive: bool,
) -> Result<LeaseInfo, Error> {
    let call = LeaseCall {
        id,
        keep_alive,
        caller: caller.bound_to_own_leases().map(str::to_string),
    };
    state.store.lease(call).await
}

async fn keep_alive(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Json<LeaseInfo>, Error> {
    caller.require(Role::Write)?;
    let id = lease_id(path)?;
    let mut info = leader_call(&state, &caller, id, true).await?;
    info.keys.clear();
    info.more_keys = false;
    Ok(Json(info))
}

async fn describe(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Json<LeaseInfo>, Error> {
    caller.require(Role::Read)?;
    let id = lease_id(path)?;
    Ok(Json(leader_call(&state, &caller, id, false).await?))
}

#[derive(Serialize)]
struct Revoked {
    id: u64,
    /// Keys deleted with it.
    deleted: u64,
    index: u64,
}

async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<u64>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    caller.require(Role::Write)?;
    let id = lease_id(path)?;
    // Only its owner (or an admin) may end a lease: its keys go with it. A
    // keyed retry of a revoke that applied finds no lease: the log answers it.
    match leader_call(&state, &caller, id, false).await {
        Ok(_) => {}
        Err(e) if e.code() == "lease_not_found" && idempotency_key(&headers)?.is_some() => {}
        Err(e) => return Err(e),
    }
    let (level, outcome) =
        lease_write(&state, &caller, &headers, Command::LeaseRevoke { id }).await?;
    let deleted = match outcome.result {
        Some(CommandResult::LeaseRevoked { deleted }) => deleted,
        Some(CommandResult::LeaseNotFound { id }) => return Err(Error::LeaseNotFound(id)),
        other => {
            return Err(Error::Internal(format!(
                "a lease revoke answered {other:?}"
            )))
        }
    };
    let head = Head::new()
        .raft_index(outcome.index)
        .consistency(level)
        .replayed(outcome.replayed);
    let body = Revoked {
        id,
        deleted,
        index: outcome.index,
    };
    Ok((head.into_map(), Json(body)).into_response())
}

#[derive(Serialize)]
struct Listed {
    id: u64,
    ttl_ms: u64,
}

#[derive(Serialize)]
struct LeaseList {
    /// As this node has applied them (a follower may lag), in id order, at
    /// most [`MAX_LISTED`].
    leases: Vec<Listed>,
    /// More leases than listed.
    more: bool,
    index: u64,
}

/// Most leases one listing shows.
const MAX_LISTED: usize = 10_000;

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<LeaseList>, Error> {
    caller.require(Role::Read)?;
    let (index, leases) = state.store.leases()?;
    let more = leases.len() > MAX_LISTED;
    let leases = leases
        .into_iter()
        .take(MAX_LISTED)
        .map(|(id, l)| Listed {
            id,
            ttl_ms: l.ttl_ms,
        })
        .collect();
    Ok(Json(LeaseList {
        leases,
        more,
        index,
    }))
}
