//! Server side of peer RPC: the `/raft/*` routes. Bodies are bincode both ways;
//! an undecodable body gets 400 with a JSON error like every other route.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use openraft::raft::AppendEntriesResponse;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::AppState;
use crate::error::Error;
use crate::raft::network::FullSnapshot;
use crate::raft::{decode, encode, Snapshot};
use crate::store::{WaitApplied, Write};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/install_snapshot", post(install_snapshot))
        .route("/raft/snapshot", post(full_snapshot))
        .route("/raft/forward", post(forward))
        .route("/raft/read_index", post(read_index))
        .route("/raft/wait_applied", post(wait_applied))
        .route("/raft/probe", post(probe))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    decode(body).map_err(|e| Error::InvalidBody(format!("peer message: {e}")))
}

fn reply<T: Serialize>(v: &T) -> Response {
    match encode(v) {
        Ok(bytes) => ([(CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => Error::Internal(format!("encode reply: {e}")).into_response(),
    }
}

async fn append(State(s): State<AppState>, body: Bytes) -> Result<Response, Error> {
    let req = parse(&body)?;
    s.store.contact.arrived();
    let res = s.store.raft.append_entries(req).await;
    if matches!(
        res,
        Ok(AppendEntriesResponse::Success
            | AppendEntriesResponse::PartialSuccess(_)
            | AppendEntriesResponse::Conflict)
    ) {
        s.store.contact.touch();
    }
    Ok(reply(&res))
}

async fn vote(State(s): State<AppState>, body: Bytes) -> Result<Response, Error> {
    Ok(reply(&s.store.raft.vote(parse(&body)?).await))
}

async fn install_snapshot(State(s): State<AppState>, body: Bytes) -> Result<Response, Error> {
    let req = parse(&body)?;
    s.store.contact.arrived();
    Ok(reply(&s.store.raft.install_snapshot(req).await))
}

async fn full_snapshot(State(s): State<AppState>, body: Bytes) -> Result<Response, Error> {
    let req: FullSnapshot = parse(&body)?;
    s.store.contact.arrived();
    let snapshot = Snapshot {
        meta: req.meta,
        snapshot: Box::new(std::io::Cursor::new(req.data)),
    };
    let res = s.store.raft.install_full_snapshot(req.vote, snapshot).await;
    if res.is_ok() {
        s.store.contact.touch();
    }
    Ok(reply(&res))
}

async fn forward(State(s): State<AppState>, body: Bytes) -> Result<Response, Error> {
    let req: Write = parse(&body)?;
    Ok(reply(&s.store.serve_forward(req).await))
}

async fn read_index(State(s): State<AppState>, body: Bytes) -> Result<Response, Error> {
    let () = parse(&body)?;
    Ok(reply(&s.store.serve_read_index().await))
}

async fn wait_applied(State(s): State<AppState>, body: Bytes) -> Result<Response, Error> {
    let req: WaitApplied = parse(&body)?;
    Ok(reply(&s.store.serve_wait_applied(req).await))
}

async fn probe(State(s): State<AppState>, body: Bytes) -> Result<Response, Error> {
    let () = parse(&body)?;
    Ok(reply(&s.store.serve_probe()))
}
