//! `/v1/kv` routes: parse the request, call [`Store`](crate::store::Store), format.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::api::auth::Caller;
use crate::api::headers::{
    content_length, idempotency_key, lease, precondition, read_level, write_level, Head,
};
use crate::api::AppState;
use crate::command::{Access, Command, CommandResult};
use crate::error::Error;
use crate::kv::{check_value, Key};
use crate::sm::reader::Page;
use crate::store::{ConsistencyLevel, Write, WriteOutcome};

pub const MAX_LIST_LIMIT: usize = 10_000;
const DEFAULT_LIST_LIMIT: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/kv", get(list))
        .route("/v1/kv/", get(empty_key).put(empty_key).delete(empty_key))
        .route(
            "/v1/kv/{*key}",
            get(get_key).put(put_key).delete(delete_key),
        )
}

fn key(state: &AppState, path: Result<Path<String>, PathRejection>) -> Result<Key, Error> {
    let Path(raw) = path.map_err(|e| Error::InvalidKey(e.body_text()))?;
    Key::parse(raw, state.store.config.limits.max_key_bytes)
}

async fn empty_key() -> Error {
    Error::InvalidKey("key must not be empty: use /v1/kv/{key}".into())
}

/// Consul's blocking query: `?wait_index=N&wait=30s`.
#[derive(Deserialize)]
struct GetQuery {
    wait_index: Option<String>,
    wait: Option<String>,
}

/// Longest `wait` of a blocking read.
const MAX_WAIT: Duration = Duration::from_secs(600);
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

impl GetQuery {
    /// The index to wait past and for how long, if this read blocks.
    fn blocking(&self) -> Result<Option<(u64, Duration)>, Error> {
        let Some(raw) = &self.wait_index else {
            if self.wait.is_some() {
                return Err(Error::InvalidQuery("wait needs wait_index".into()));
            }
            return Ok(None);
        };
        let index = raw.parse::<u64>().map_err(|_| {
            Error::InvalidQuery(format!("wait_index {raw:?} must be a non-negative integer"))
        })?;
        let wait = match &self.wait {
            None => DEFAULT_WAIT,
            Some(w) => humantime::parse_duration(w)
                .map_err(|e| Error::InvalidQuery(format!("wait {w:?}: {e}")))?,
        };
        if wait > MAX_WAIT {
            return Err(Error::InvalidQuery(format!("wait is at most {MAX_WAIT:?}")));
        }
        Ok(Some((index, wait)))
    }
}

async fn get_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<GetQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let key = key(&state, path)?;
    caller.may(Access::Read, key.as_str())?;
    let level = read_level(&headers)?;
    let Query(q) = query.map_err(|e| Error::InvalidQuery(e.body_text()))?;
    if let Some((after, wait)) = q.blocking()? {
        // Wait on this node's history, then read at the level asked.
        state
            .store
            .wait_for_change(key.as_str(), after, wait)
            .await?;
    }
    let (meta, value) = state.store.get(key.as_str(), level).await?;
    let head = Head::read(&meta, level);
    Ok(match value {
        Some(v) => {
            let mut h = head.etag(v.mod_index).into_map();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            (StatusCode::OK, h, v.value).into_response()
        }
        None => (head.into_map(), Error::KeyNotFound(key.to_string())).into_response(),
    })
}

#[derive(Serialize)]
struct WriteBody {
    index: u64,
    consistency: ConsistencyLevel,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<bool>,
}

/// Status and headers of an acknowledged write.
pub fn write_head(
    state: &AppState,
    level: ConsistencyLevel,
    outcome: &WriteOutcome,
) -> (StatusCode, HeaderMap) {
    let status = match level {
        ConsistencyLevel::Eventual => StatusCode::ACCEPTED,
        ConsistencyLevel::Strong | ConsistencyLevel::All => StatusCode::OK,
    };
    let head = Head::new()
        .raft_index(outcome.index)
        .consistency(level)
        .served_by(state.store.id)
        .replayed(outcome.replayed);
    (status, head.into_map())
}

/// Turns results that HTTP reports as errors into errors.
pub fn check_outcome(outcome: &WriteOutcome, idempotency_key: Option<&str>) -> Result<(), Error> {
    match &outcome.result {
        Some(CommandResult::PreconditionFailed { current }) => Err(Error::PreconditionFailed {
            current: *current,
            index: outcome.index,
            replayed: outcome.replayed,
        }),
        Some(CommandResult::LeaseNotFound { id }) => Err(Error::LeaseNotFound(*id)),
        Some(CommandResult::IdempotencyConflict) => Err(Error::IdempotencyKeyReused(
            idempotency_key.unwrap_or_default().to_string(),
        )),
        Some(CommandResult::TooLarge { bytes, limit }) => Err(Error::ResponseTooLarge {
            what: format!(
                "the transaction's gets would answer {bytes} bytes; nothing was applied (at index {})",
                outcome.index
            ),
            limit: *limit as usize,
        }),
        _ => Ok(()),
    }
}

/// Runs a write from an HTTP request: level and idempotency from its
/// headers, every key it touches checked against the caller's rights first.
pub async fn run_write(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    command: Command,
) -> Result<(ConsistencyLevel, WriteOutcome), Error> {
    caller.may_run(&command)?;
    let level = write_level(headers)?;
    let key = idempotency_key(headers)?;
    let write = Write {
        command,
        level,
        idempotency_key: key.clone().map(|k| caller.scope_idempotency_key(k)),
    };
    let outcome = state.store.write(write).await?;
    check_outcome(&outcome, key.as_deref())?;
    Ok((level, outcome))
}

fn write_response(state: &AppState, level: ConsistencyLevel, outcome: WriteOutcome) -> Response {
    let (status, headers) = write_head(state, level, &outcome);
    let deleted = match outcome.result {
        Some(CommandResult::Delete { existed }) => Some(existed),
        _ => None,
    };
    let body = WriteBody {
        index: outcome.index,
        consistency: level,
        deleted,
    };
    (status, headers, Json(body)).into_response()
}

async fn put_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let key = key(&state, path)?;
    let limit = state.store.config.limits.max_value_bytes;
    let value =
        body.map_err(|e| Error::body_rejected(e, content_length(&headers), limit, "value"))?;
    check_value(&value, limit)?;
    let precondition = precondition(&headers)?;
    let command = match lease(&headers)? {
        None => Command::Put {
            key,
            value: value.to_vec(),
            precondition,
        },
        Some(lease) => Command::PutLeased {
            key,
            value: value.to_vec(),
            precondition,
            lease,
        },
    };
    let (level, outcome) = run_write(&state, &caller, &headers, command).await?;
    Ok(write_response(&state, level, outcome))
}

async fn delete_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let key = key(&state, path)?;
    let command = Command::Delete {
        key,
        precondition: precondition(&headers)?,
    };
    let (level, outcome) = run_write(&state, &caller, &headers, command).await?;
    Ok(write_response(&state, level, outcome))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    /// The first key of this page: the previous page's `next`.
    start: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct ListItem {
    key: String,
    value: String,
    encoding: &'static str,
}

#[derive(Serialize)]
struct ListBody {
    items: Vec<ListItem>,
    /// More keys follow: by `limit` or by `--max-response-bytes`.
    more: bool,
    /// Where the next page starts (`start=`), when `more`.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let Query(q) = query.map_err(|e| Error::InvalidQuery(e.body_text()))?;
    caller.may_scan(&q.prefix)?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIST_LIMIT,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
            _ => {
                return Err(Error::InvalidQuery(format!(
                    "limit {s:?} must be an integer from 1 to {MAX_LIST_LIMIT}"
                )))
            }
        },
    };
    if let Some(start) = &q.start {
        if !start.starts_with(&q.prefix) {
            return Err(Error::InvalidQuery(format!(
                "start {start:?} does not begin with prefix {:?}",
                q.prefix
            )));
        }
    }
    let level = read_level(&headers)?;
    let page = Page {
        prefix: &q.prefix,
        start: q.start.as_deref(),
        limit,
        max_bytes: state.store.config.limits.max_response_bytes,
    };
    let (meta, pairs, next) = state.store.scan(&page, level).await?;
    let items = pairs
        .into_iter()
        .map(|p| match String::from_utf8(p.value) {
            Ok(value) => ListItem {
                key: p.key,
                value,
                encoding: "utf8",
            },
            Err(e) => ListItem {
                key: p.key,
                value: base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                encoding: "base64",
            },
        })
        .collect();
    let headers = Head::read(&meta, level).into_map();
    let body = ListBody {
        items,
        more: next.is_some(),
        next,
    };
    Ok((headers, Json(body)).into_response())
}
