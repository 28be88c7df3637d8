//! `GET /v1/watch?prefix=P|key=K&from_index=N`: a watch as server-sent
//! events ([`crate::store::watch`]).
//!
//! - `put` / `delete`: one change, `{"type","key","value","encoding","index"}`
//!   (the value is base64 when not UTF-8; a delete has none). Changes at one
//!   index (a transaction, or writes that shared an entry) come one after
//!   the other; the last of them carries the SSE `id:` (the index), so a
//!   client resumes with `from_index` = last id + 1, or `Last-Event-ID`.
//! - `progress`: `{"index"}`, every second without changes: all matching
//!   changes up to it were sent (its `id:` too).
//! - `cancelled` (too slow) and `compacted` (history trimmed): the last event,
//!   a JSON error with where to resume.

use std::convert::Infallible;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as Sse, Sse as SseBody};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use futures::{stream, Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::api::auth::Caller;
use crate::api::AppState;
use crate::command::Access;
use crate::error::Error;
use crate::sm::history::Event;
use crate::store::watch::{Filter, Item};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/watch", get(watch))
}

#[derive(Deserialize)]
struct WatchQuery {
    prefix: Option<String>,
    key: Option<String>,
    from_index: Option<String>,
}

/// A change as the stream shows it.
#[derive(Serialize)]
pub struct Change<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    index: u64,
}

impl<'a> Change<'a> {
    pub fn of(e: &'a Event) -> Self {
        let (value, encoding) = match &e.value {
            None => (None, None),
            Some(v) => match std::str::from_utf8(v) {
                Ok(s) => (Some(s.to_string()), Some("utf8")),
                Err(_) => (
                    Some(base64::engine::general_purpose::STANDARD.encode(v)),
                    Some("base64"),
                ),
            },
        };
        Change {
            kind: if e.value.is_some() { "put" } else { "delete" },
            key: &e.key,
            value,
            encoding,
            index: e.index,
        }
    }
}

/// Where the watch starts. An EventSource reconnecting sends the last id it
/// saw to the URL it first opened, so `Last-Event-ID` (resume after it) wins
/// over that URL's `from_index`.
fn from_index(q: &WatchQuery, headers: &HeaderMap) -> Result<Option<u64>, Error> {
    if let Some(v) = headers.get("last-event-id") {
        return v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .and_then(|id| id.checked_add(1))
            .map(Some)
            .ok_or_else(|| Error::InvalidHeader {
                name: "Last-Event-ID",
                reason: "must be a log index".into(),
            });
    }
    match &q.from_index {
        None => Ok(None),
        Some(raw) => raw.parse::<u64>().map(Some).map_err(|_| {
            Error::InvalidQuery(format!("from_index {raw:?} must be a non-negative integer"))
        }),
    }
}

async fn watch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<WatchQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let Query(q) = query.map_err(|e| Error::InvalidQuery(e.body_text()))?;
    let filter = match (&q.key, &q.prefix) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidQuery(
                "give key or prefix, not both".to_string(),
            ))
        }
        (Some(k), None) if k.is_empty() => {
            return Err(Error::InvalidKey("key must not be empty".into()))
        }
        (Some(k), None) => {
            caller.may(Access::Read, k)?;
            Filter::Key(k.clone())
        }
        (None, p) => {
            let p = p.clone().unwrap_or_default();
            caller.may_scan(&p)?;
            Filter::Prefix(p)
        }
    };
    let from = from_index(&q, &headers)?;
    let watch = state.store.watch(filter, from)?;
    let items = stream::unfold(watch.items, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let last = stream::once(watch.last).filter_map(|r| async move { r.ok() });
    let events = items
        .chain(last)
        .flat_map(|item| stream::iter(sse_events(item)));
    let mut resp = SseBody::new(events).into_response();
    let started = axum::http::HeaderValue::from(watch.from);
    resp.headers_mut().insert("x-watch-from", started);
    Ok(resp)
}

fn json_event(name: &str, body: &impl Serialize) -> Sse {
    Sse::default()
        .event(name)
        .json_data(body)
        .unwrap_or_else(|_| Sse::default().event(name))
}

#[derive(Serialize)]
struct Progress {
    index: u64,
}

#[derive(Serialize)]
struct Final<'a> {
    error: FinalError<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resume_from: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_index: Option<u64>,
}

#[derive(Serialize)]
struct FinalError<'a> {
    code: &'a str,
    message: String,
}

fn sse_events(item: Item) -> Vec<Result<Sse, Infallible>> {
    let events = match item {
        Item::Changes(changes) => {
            let mut out = Vec::with_capacity(changes.len());
            for (i, e) in changes.iter().enumerate() {
                let c = Change::of(e);
                let mut ev = json_event(c.kind, &c);
                // The last change of its index carries the id to resume after.
                if changes.get(i + 1).is_none_or(|n| n.index != e.index) {
                    ev = ev.id(e.index.to_string());
                }
                out.push(ev);
            }
            out
        }
        Item::Progress(index) => {
            vec![json_event("progress", &Progress { index }).id(index.to_string())]
        }
        Item::Cancelled { resume_from } => vec![json_event(
            "cancelled",
            &Final {
                error: FinalError {
                    code: "watch_too_slow",
                    message: format!(
                        "this watch fell more than --watch-max-lag indexes behind; reconnect with from_index={resume_from}"
                    ),
                },
                resume_from: Some(resume_from),
                oldest_index: None,
            },
        )],
        Item::Compacted { oldest } => vec![json_event(
            "compacted",
            &Final {
                error: FinalError {
                    code: "compacted",
                    message: format!(
                        "the changes this watch needed next are no longer kept; read the current state, then watch from its index + 1 (the oldest kept is {oldest})"
                    ),
                },
                resume_from: None,
                oldest_index: Some(oldest),
            },
        )],
    };
    events.into_iter().map(Ok).collect()
}

/// Keeps the type of the stream nameable in tests.
#[allow(dead_code)]
fn _assert_stream<S: Stream<Item = Result<Sse, Infallible>>>(_: S) {}
