//! `/v1/kv` routes: parse the request, call [`Store`](crate::store::Store), format.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, ETAG};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::api::conditions::{check_outcome, idempotency_key, precondition};
use crate::api::consistency::{read_level, read_level_name, write_level, write_level_name};
use crate::api::AppState;
use crate::command::{Command, CommandResult};
use crate::error::Error;
use crate::kv::{check_value, Key};
use crate::store::{ReadLevel, ReadMeta, Write, WriteLevel, WriteOutcome};

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

pub fn header_value(v: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&v.to_string()).unwrap_or(HeaderValue::from_static("invalid"))
}

fn read_headers(meta: &ReadMeta, level: ReadLevel) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut set = |name: &'static str, v: String| {
        h.insert(HeaderName::from_static(name), header_value(v));
    };
    set("x-raft-index", meta.index.to_string());
    set("x-served-by", meta.served_by.to_string());
    set(
        "x-raft-leader",
        meta.leader.map_or("none".into(), |l| l.to_string()),
    );
    set("x-consistency", read_level_name(level).into());
    if let ReadLevel::Eventual { .. } = level {
        let ms = meta
            .last_contact
            .map_or("never".into(), |d| d.as_millis().to_string());
        set("x-last-contact-ms", ms);
    }
    h
}

async fn get_key(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let key = key(&state, path)?;
    let level = read_level(&headers)?;
    let (meta, value) = state.store.get(key.as_str(), level).await?;
    let mut h = read_headers(&meta, level);
    Ok(match value {
        Some(v) => {
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(ETAG, header_value(format!("\"{}\"", v.mod_index)));
            (StatusCode::OK, h, v.value).into_response()
        }
        None => (h, Error::KeyNotFound(key.to_string())).into_response(),
    })
}

#[derive(Serialize)]
struct WriteBody {
    index: u64,
    consistency: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<bool>,
}

/// Status and headers of an acknowledged write.
pub fn write_head(
    state: &AppState,
    level: WriteLevel,
    outcome: &WriteOutcome,
) -> (StatusCode, HeaderMap) {
    let status = match level {
        WriteLevel::Eventual => StatusCode::ACCEPTED,
        WriteLevel::Strong | WriteLevel::All => StatusCode::OK,
    };
    let mut h = HeaderMap::new();
    h.insert("x-raft-index", header_value(outcome.index));
    h.insert(
        "x-consistency",
        HeaderValue::from_static(write_level_name(level)),
    );
    h.insert("x-served-by", header_value(state.store.id));
    if outcome.replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    (status, h)
}

/// Runs a write from an HTTP request: level and idempotency from its headers.
pub async fn run_write(
    state: &AppState,
    headers: &HeaderMap,
    command: Command,
) -> Result<(WriteLevel, WriteOutcome), Error> {
    let level = write_level(headers)?;
    let write = Write {
        command,
        level,
        idempotency_key: idempotency_key(headers)?,
    };
    let key = write.idempotency_key.clone();
    let outcome = state.store.write(write).await?;
    check_outcome(&outcome, key.as_deref())?;
    Ok((level, outcome))
}

fn write_response(state: &AppState, level: WriteLevel, outcome: WriteOutcome) -> Response {
    let (status, headers) = write_head(state, level, &outcome);
    let deleted = match outcome.result {
        Some(CommandResult::Delete { existed }) => Some(existed),
        _ => None,
    };
    let body = WriteBody {
        index: outcome.index,
        consistency: write_level_name(level),
        deleted,
    };
    (status, headers, Json(body)).into_response()
}

async fn put_key(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let key = key(&state, path)?;
    let limit = state.store.config.limits.max_value_bytes;
    let value = body.map_err(|e| body_error(e, &headers, limit, "value"))?;
    check_value(&value, limit)?;
    let command = Command::Put {
        key,
        value: value.to_vec(),
        precondition: precondition(&headers)?,
    };
    let (level, outcome) = run_write(&state, &headers, command).await?;
    Ok(write_response(&state, level, outcome))
}

/// A body over the limit is cut off by axum before we see all of it.
pub fn body_error(
    e: BytesRejection,
    headers: &HeaderMap,
    limit: usize,
    what: &'static str,
) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let len = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        Error::BodyTooLarge { what, len, limit }
    } else {
        Error::InvalidBody(e.body_text())
    }
}

async fn delete_key(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let key = key(&state, path)?;
    let command = Command::Delete {
        key,
        precondition: precondition(&headers)?,
    };
    let (level, outcome) = run_write(&state, &headers, command).await?;
    Ok(write_response(&state, level, outcome))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
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
    more: bool,
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let Query(q) = query.map_err(|e| Error::InvalidQuery(e.body_text()))?;
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
    let level = read_level(&headers)?;
    let (meta, pairs, more) = state.store.scan(&q.prefix, limit, level).await?;
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
    let headers = read_headers(&meta, level);
    Ok((headers, Json(ListBody { items, more })).into_response())
}
