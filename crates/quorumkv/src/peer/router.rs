//! The server side of every node-to-node call: the `/raft/*` routes. Bodies
//! are bincode both ways; an undecodable body gets 400 with a JSON error like
//! every other route. The router carries its own state (the store), so the
//! client API's router can merge it without this module knowing the API.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::command::Write;
use crate::error::Error;
use crate::peer::messages::{path, FullSnapshot, WaitApplied};
use crate::raft::{decode, encode, AppendEntriesResponse, Snapshot};
use crate::store::Store;

type Peer = State<Arc<Store>>;

pub fn router(store: Arc<Store>) -> Router {
    let route = |p: &str| format!("/raft/{p}");
    Router::new()
        .route(&route(path::APPEND), post(append))
        .route(&route(path::VOTE), post(vote))
        .route(&route(path::PRE_VOTE), post(pre_vote))
        .route(&route(path::SNAPSHOT), post(full_snapshot))
        .route(&route(path::FORWARD), post(forward))
        .route(&route(path::READ_INDEX), post(read_index))
        .route(&route(path::WAIT_APPLIED), post(wait_applied))
        .route(&route(path::PROBE), post(probe))
        .with_state(store)
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

async fn append(State(store): Peer, body: Bytes) -> Result<Response, Error> {
    let req = parse(&body)?;
    store.contact.arrived();
    let res = store.raft.append_entries(req).await;
    if matches!(
        res,
        Ok(AppendEntriesResponse::Success
            | AppendEntriesResponse::PartialSuccess(_)
            | AppendEntriesResponse::Conflict)
    ) {
        store.contact.touch();
    }
    Ok(reply(&res))
}

async fn vote(State(store): Peer, body: Bytes) -> Result<Response, Error> {
    Ok(reply(&store.raft.vote(parse(&body)?).await))
}

/// Pre-Vote: would this node vote for the sender at its next term? Changes
/// neither vote nor term here.
async fn pre_vote(State(store): Peer, body: Bytes) -> Result<Response, Error> {
    Ok(reply(&store.raft.pre_vote(parse(&body)?).await))
}

async fn full_snapshot(State(store): Peer, body: Bytes) -> Result<Response, Error> {
    let req: FullSnapshot = parse(&body)?;
    store.contact.arrived();
    let snapshot = Snapshot {
        meta: req.meta,
        snapshot: std::io::Cursor::new(req.data),
    };
    let res = store.raft.install_full_snapshot(req.vote, snapshot).await;
    if res.is_ok() {
        store.contact.touch();
    }
    Ok(reply(&res))
}

async fn forward(State(store): Peer, body: Bytes) -> Result<Response, Error> {
    let req: Write = parse(&body)?;
    Ok(reply(&store.leader_write(req).await))
}

async fn read_index(State(store): Peer, body: Bytes) -> Result<Response, Error> {
    let () = parse(&body)?;
    Ok(reply(&store.leader_shared_read_index().await))
}

async fn wait_applied(State(store): Peer, body: Bytes) -> Result<Response, Error> {
    let req: WaitApplied = parse(&body)?;
    Ok(reply(&store.follower_wait_applied(req).await))
}

async fn probe(State(store): Peer, body: Bytes) -> Result<Response, Error> {
    let () = parse(&body)?;
    Ok(reply(&store.probe()))
}
