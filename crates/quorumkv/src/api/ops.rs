//! What operators use: `GET /metrics` (Prometheus text), `GET /ui` (the
//! dashboard, one page embedded in the binary), and the middleware that
//! counts, times and traces every client request.

use std::time::Instant;

use axum::extract::{Extension, MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::Instrument;

use crate::api::auth::{Caller, Role};
use crate::api::AppState;
use crate::error::Error;
use crate::metrics::METRICS;
use quorumkv_proto::headers as name;

/// The dashboard: HTML, CSS and script in one file, no network needed.
const UI: &str = include_str!("ui.html");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/ui", get(ui))
}

async fn ui() -> Html<&'static str> {
    Html(UI)
}

async fn metrics(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Error> {
    caller.require(Role::Read)?;
    // One scrape at a time: the per-follower gauges are reset and set again.
    static SCRAPE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let text = {
        let _one = SCRAPE.lock().await;
        state.store.update_metrics().await;
        METRICS.encode()
    };
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

/// Counts and times each request by route, method, status and consistency
/// level, in a `request` span (at debug level: `RUST_LOG=quorumkv=debug`
/// logs one line per request).
pub async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().as_str().to_string();
    // The level asked; without the header, the one the route defaults to.
    let consistency = match req.headers().get(name::CONSISTENCY) {
        Some(v) => match v.to_str().map(str::to_ascii_lowercase) {
            Ok(c) if matches!(c.as_str(), "strong" | "eventual" | "all") => c,
            _ => "invalid".to_string(),
        },
        None if route.starts_with("/v1/kv") || route.starts_with("/v1/txn") => "strong".to_string(),
        None => "none".to_string(),
    };
    let key_len = req.uri().path().strip_prefix("/v1/kv/").map_or(0, str::len);
    let span = tracing::debug_span!(
        "request",
        %method,
        %route,
        %consistency,
        key_len,
        status = tracing::field::Empty,
        latency_us = tracing::field::Empty,
    );
    let resp = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    span.record("status", status);
    span.record("latency_us", elapsed.as_micros() as u64);
    span.in_scope(|| tracing::debug!("request done"));
    METRICS
        .http_requests
        .with_label_values(&[&route, &method, &status.to_string(), &consistency])
        .inc();
    METRICS
        .http_seconds
        .with_label_values(&[&route, &method, &consistency])
        .observe(elapsed.as_secs_f64());
    resp
}
