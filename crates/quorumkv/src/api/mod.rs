//! The client HTTP surface: `/v1`, `/health`, `/ready` (the peer routes,
//! `/raft/*`, are served on their own listener: `peer::router`). Unknown
//! routes and methods answer JSON errors too.

pub mod auth;
pub mod cluster;
pub mod headers;
pub mod kv;
pub mod members;
pub mod txn;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::middleware::map_response;
use axum::response::Response;
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
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state.clone());
    let request_timeout = state.store.config.request_timeout;
    // A whole request, its body included, within --request-timeout-ms; but a
    // backup, which takes as long as the data takes to snapshot.
    let client = client
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    move |_: tower::BoxError| async move { Error::RequestTimeout(request_timeout) },
                ))
                .layer(tower::timeout::TimeoutLayer::new(request_timeout)),
        )
        .merge(cluster::backup_router().with_state(state.clone()))
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
