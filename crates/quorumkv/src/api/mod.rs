//! The client HTTP surface: `/v1`, `/health`, `/ready` (the peer routes,
//! `/raft/*`, are served on their own listener: `peer::router`). Unknown
//! routes and methods answer JSON errors too.

pub mod auth;
pub mod cluster;
pub mod headers;
pub mod kv;
pub mod lease;
pub mod members;
pub mod ops;
pub mod txn;
pub mod watch;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{map_response, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::error::Error;
use crate::store::Store;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.store.config.limits.max_value_bytes;
    let id = state.store.id;
    let client = Router::new()
        .merge(kv::router())
        .merge(txn::router())
        .merge(cluster::router())
        .merge(members::router())
        .merge(lease::router())
        .merge(watch::router())
        .merge(cluster::backup_router())
        .merge(ops::router())
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state.clone());
    let client = client
        .layer(axum::middleware::from_fn_with_state(
            state.store.config.request_timeout,
            within_request_timeout,
        ))
        .route_layer(axum::middleware::from_fn(ops::observe))
        .layer(axum::middleware::from_fn_with_state(
            state.store.config.auth.clone(),
            auth::authenticate,
        ));
    with_json_fallbacks(client).layer(map_response(move |mut resp: Response| async move {
        // Errors too say which node answered.
        headers::add_served_by(resp.headers_mut(), id);
        resp
    }))
}

/// A whole request, its body included, within --request-timeout-ms; but not
/// the requests that last as long as they are meant to: a backup (as long as
/// the data takes), a watch (until the client goes) and a blocking read
/// (until its `wait`).
async fn within_request_timeout(
    State(timeout): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    let uri = req.uri();
    let long = match uri.path() {
        "/v1/snapshot" | "/v1/watch" => true,
        p => {
            p.starts_with("/v1/kv/")
                && req.method() == Method::GET
                && uri.query().is_some_and(|q| {
                    q.split('&')
                        .any(|kv| kv.split('=').next() == Some("wait_index"))
                })
        }
    };
    if long {
        return next.run(req).await;
    }
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => Error::RequestTimeout(timeout).into_response(),
    }
}

/// `router` with JSON answers for unknown routes and methods.
pub fn with_json_fallbacks(router: Router) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found(method: Method, uri: Uri) -> Error {
    Error::RouteNotFound(format!("{method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Error {
    Error::MethodNotAllowed(format!("{method} on {}", uri.path()))
}
