//! The server side of every node-to-node call: the `/raft/*` routes. Bodies
//! are bincode both ways; an undecodable body gets 400 with a JSON error like
//! every other route. The router carries its own state (the store), so the
//! client API's router can merge it without this module knowing the API.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::command::Write;
use crate::error::Error;
use crate::peer::auth::{require_token, ClusterToken};
use crate::peer::cluster_id::{require_same_cluster, ClusterIdCell};
use crate::peer::identity::{check_incarnation, Identity};
use crate::peer::messages::{
    path, Challenge, JoinReply, JoinRequest, LeaseCall, LeaseReply, MemberChange, MembersReply,
    ProofReply, SnapshotHeader, WaitApplied, MAX_SNAPSHOT_HEADER_BYTES,
};
use crate::raft::snapshot::{self, SnapshotData};
use crate::raft::{
    decode, encode, AppendEntriesRequest, AppendEntriesResponse, Snapshot, TransferLeaderRequest,
    Vote, VoteRequest,
};
use crate::store::Store;

type Peer = State<Arc<Store>>;

/// The `/raft/*` routes of the peer listener; every request, to an unknown
/// path too, requires `token` when there is one, then (token first, so an
/// outsider learns nothing) this node's cluster id, then the incarnation the
/// sender is known by ([`crate::peer::identity`]).
pub fn router(
    store: Arc<Store>,
    token: Option<ClusterToken>,
    cluster: Arc<ClusterIdCell>,
    identity: Arc<Identity>,
) -> Router {
    let route = |p: &str| format!("/raft/{p}");
    // A snapshot is streamed to disk, bounded by --max-snapshot-bytes; every
    // other message is one buffer, bounded.
    let snapshot = Router::new()
        .route(&route(path::SNAPSHOT), post(full_snapshot))
        .layer(DefaultBodyLimit::disable());
    let routes = Router::new()
        .route(&route(path::APPEND), post(append))
        .route(&route(path::VOTE), post(vote))
        .route(&route(path::PRE_VOTE), post(pre_vote))
        .route(&route(path::FORWARD), post(forward))
        .route(&route(path::READ_INDEX), post(read_index))
        .route(&route(path::WAIT_APPLIED), post(wait_applied))
        .route(&route(path::PROBE), post(probe))
        .route(&route(path::MEMBERS), post(members))
        .route(&route(path::JOIN), post(join))
        .route(&route(path::PROVE), post(prove))
        .route(&route(path::TRANSFER_LEADER), post(transfer_leader))
        .route(&route(path::LEASE), post(lease))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .merge(snapshot)
        .with_state(store);
    crate::api::with_json_fallbacks(routes)
        .layer(middleware::from_fn_with_state(identity, check_incarnation))
        .layer(Extension(cluster.clone()))
        .layer(middleware::from_fn_with_state(
            cluster,
            require_same_cluster,
        ))
        .layer(middleware::from_fn_with_state(token, require_token))
}

/// Entries in one append-entries, and the body limit of every peer route but
/// the snapshot one: entries of at most 4 MiB (the proposer's batch) fit.
pub const MAX_APPEND_ENTRIES: u64 = 32;
pub const MAX_MESSAGE_BYTES: usize = (MAX_APPEND_ENTRIES as usize + 1) * 4 * 1024 * 1024;

/// How far above this node's own term a peer's term may be. Terms grow by one
/// per election (pre-vote keeps a cut-off node from raising its own), so a
/// larger jump is a forged or corrupt message; taking it would also bring the
/// term near `u64::MAX`, where openraft's `term + 1` overflows.
const MAX_TERM_STEP: u64 = 1_000_000;

/// Refuses a message whose vote names an absurd term, before openraft sees it.
fn check_term(store: &Store, vote: &Vote) -> Result<(), Error> {
    let theirs = vote.leader_id.term;
    let ours = store.current_term();
    if theirs > ours.saturating_add(MAX_TERM_STEP) {
        tracing::warn!(
            theirs,
            ours,
            "refused a peer message with an implausible term"
        );
        return Err(Error::InvalidBody(format!(
            "term {theirs} is more than {MAX_TERM_STEP} above this node's term {ours}"
        )));
    }
    Ok(())
}

type Body = Result<Bytes, BytesRejection>;

/// The message in a request body: bounded (413 past the limit) and decoded
/// with a limit (400 when it is not the message the route takes).
fn parse<T: DeserializeOwned>(body: Body) -> Result<T, Error> {
    let body =
        body.map_err(|e| Error::body_rejected(e, None, MAX_MESSAGE_BYTES, "peer message"))?;
    decode(&body).map_err(|e| Error::InvalidBody(format!("peer message: {e}")))
}

fn reply<T: Serialize>(v: &T) -> Response {
    match encode(v) {
        Ok(bytes) => ([(CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => Error::Internal(format!("encode reply: {e}")).into_response(),
    }
}

async fn append(State(store): Peer, body: Body) -> Result<Response, Error> {
    let req: AppendEntriesRequest = parse(body)?;
    check_term(&store, &req.vote)?;
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

async fn vote(State(store): Peer, body: Body) -> Result<Response, Error> {
    let req: VoteRequest = parse(body)?;
    check_term(&store, &req.vote)?;
    Ok(reply(&store.raft.vote(req).await))
}

/// Pre-Vote: would this node vote for the sender at its next term? Changes
/// neither vote nor term here.
async fn pre_vote(State(store): Peer, body: Body) -> Result<Response, Error> {
    let req: VoteRequest = parse(body)?;
    check_term(&store, &req.vote)?;
    Ok(reply(&store.raft.pre_vote(req).await))
}

/// `/raft/snapshot`: the [`SnapshotHeader`], then the snapshot file,
/// streamed into a temp file beside the slot (never one buffer, at most
/// `--max-snapshot-bytes`), checked whole (framing, checksum, the header's
/// index), then installed.
async fn full_snapshot(State(store): Peer, body: axum::body::Body) -> Result<Response, Error> {
    let mut stream = body.into_data_stream();
    let mut pending = bytes::BytesMut::new();
    let header: SnapshotHeader = read_header(&mut stream, &mut pending).await?;
    check_term(&store, &header.vote)?;
    store.contact.arrived();
    let temp = snapshot::temp_beside(&store.config.data_dir.join(snapshot::SLOT));
    let received = receive_file(stream, pending, &temp, store.config.max_snapshot_bytes).await;
    let opened = match received {
        Ok(()) => check_received(&temp, &header).await,
        Err(e) => Err(e),
    };
    // The open handle keeps the file readable; the name is no longer needed.
    let _ = std::fs::remove_file(&temp);
    let snapshot = Snapshot {
        meta: header.meta,
        snapshot: opened?,
    };
    let res = store
        .raft
        .install_full_snapshot(header.vote, snapshot)
        .await;
    if res.is_ok() {
        store.contact.touch();
    }
    Ok(reply(&res))
}

type DataStream = axum::body::BodyDataStream;

/// Reads the length-prefixed header off the front of the body; what follows
/// it stays in `pending`.
async fn read_header(
    stream: &mut DataStream,
    pending: &mut bytes::BytesMut,
) -> Result<SnapshotHeader, Error> {
    use futures::StreamExt;
    let short = || Error::InvalidBody("snapshot: the body ends inside its header".into());
    let mut need = 4usize;
    let mut len = None;
    loop {
        if pending.len() >= need {
            match len {
                None => {
                    let l = u32::from_be_bytes([pending[0], pending[1], pending[2], pending[3]]);
                    if l > MAX_SNAPSHOT_HEADER_BYTES {
                        return Err(Error::InvalidBody(format!(
                            "snapshot header of {l} bytes (limit {MAX_SNAPSHOT_HEADER_BYTES})"
                        )));
                    }
                    let _ = pending.split_to(4);
                    len = Some(l as usize);
                    need = l as usize;
                    continue;
                }
                Some(l) => {
                    let header = pending.split_to(l);
                    return decode(&header)
                        .map_err(|e| Error::InvalidBody(format!("snapshot header: {e}")));
                }
            }
        }
        let chunk = stream
            .next()
            .await
            .ok_or_else(short)?
            .map_err(|e| Error::InvalidBody(format!("snapshot: {e}")))?;
        pending.extend_from_slice(&chunk);
    }
}

/// Streams the rest of the body into `path`; at most `max` bytes. Not
/// synced: the install copies it into its own file, and a crash leaves a
/// temp file the slot's next open removes.
async fn receive_file(
    mut stream: DataStream,
    pending: bytes::BytesMut,
    path: &std::path::Path,
    max: u64,
) -> Result<(), Error> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let failed = |e: std::io::Error| Error::Internal(format!("receiving a snapshot: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(failed)?;
    let mut total = pending.len() as u64;
    file.write_all(&pending).await.map_err(failed)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::InvalidBody(format!("snapshot: {e}")))?;
        total += chunk.len() as u64;
        if total > max {
            return Err(Error::BodyTooLarge {
                what: "the snapshot (--max-snapshot-bytes)",
                len: None,
                limit: max as usize,
            });
        }
        file.write_all(&chunk).await.map_err(failed)?;
    }
    file.flush().await.map_err(failed)
}

/// The received file at `path`, checked whole, opened for the install.
async fn check_received(
    path: &std::path::Path,
    header: &SnapshotHeader,
) -> Result<SnapshotData, Error> {
    let path = path.to_owned();
    let want = header.meta.last_log_id;
    tokio::task::spawn_blocking(move || {
        let (meta, _) =
            snapshot::verify(&path).map_err(|e| Error::InvalidBody(format!("snapshot: {e}")))?;
        if meta.last_log_id != want {
            return Err(Error::InvalidBody(
                "snapshot: the file's index is not the header's".into(),
            ));
        }
        SnapshotData::open(&path).map_err(|e| Error::Internal(format!("receiving a snapshot: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("receiving a snapshot: {e}")))?
}

async fn forward(State(store): Peer, body: Body) -> Result<Response, Error> {
    let req: Write = parse(body)?;
    Ok(reply(&store.leader_write(req).await))
}

async fn read_index(State(store): Peer, body: Body) -> Result<Response, Error> {
    let () = parse(body)?;
    Ok(reply(&store.leader_shared_read_index().await))
}

async fn wait_applied(State(store): Peer, body: Body) -> Result<Response, Error> {
    let req: WaitApplied = parse(body)?;
    Ok(reply(&store.follower_wait_applied(req).await))
}

async fn members(State(store): Peer, body: Body) -> Result<Response, Error> {
    let change: MemberChange = parse(body)?;
    let answer: MembersReply = store.leader_members(change).await.into();
    Ok(reply(&answer))
}

async fn lease(State(store): Peer, body: Body) -> Result<Response, Error> {
    let call: LeaseCall = parse(body)?;
    let answer: LeaseReply = store.leader_lease(call).await.into();
    Ok(reply(&answer))
}

/// Proves this node holds the cluster token, without sending it.
async fn prove(State(store): Peer, body: Body) -> Result<Response, Error> {
    let challenge: Challenge = parse(body)?;
    let answer: ProofReply = match &store.config.cluster_token {
        Some(token) => Ok(token.mac(&challenge.signed_bytes())),
        None => Err(Error::Unauthorized("this node has no cluster token".into()).to_wire()),
    };
    Ok(reply(&answer))
}

/// A new node asks to be added as a learner. Asking again with the same id
/// and URL (a joiner restarted mid-way) is not an error.
async fn join(
    State(store): Peer,
    Extension(cluster): Extension<Arc<ClusterIdCell>>,
    body: Body,
) -> Result<Response, Error> {
    let req: JoinRequest = parse(body)?;
    let Some(id) = cluster.get() else {
        return Err(Error::ClusterMismatch(
            "this node is in no cluster yet; ask a member".into(),
        ));
    };
    // The joiner sent the cluster token with its request: it holds it.
    let change = MemberChange::AddLearner {
        id: req.id,
        peer_url: req.peer_url.clone(),
        proven: true,
    };
    let result = match store.members(change).await {
        Ok(members) => Ok(members),
        // Here or forwarded from the leader.
        Err(e) if e.code() == "member_conflict" => {
            let members = store.members(MemberChange::List).await?;
            match members.iter().find(|m| m.id == req.id) {
                // A learner that asks again (restarted mid-join): nothing to do.
                Some(m) if !m.voter && m.peer_url == req.peer_url => Ok(members),
                // A node with no state under a voter's id lost that voter's
                // log and vote: it must not take its place.
                Some(m) if m.voter => Err(Error::MemberConflict(format!(
                    "node {} is already a voter of this cluster and a joining node has no state: \
                     if its disk was lost, remove it first (DELETE /v1/cluster/members/{}, \
                     or scripts/cluster.sh replace {}), then join again",
                    m.id, m.id, m.id
                ))),
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    let answer: JoinReply = result
        .map(|members| (id.to_string(), members))
        .map_err(|e| e.to_wire());
    Ok(reply(&answer))
}

async fn transfer_leader(State(store): Peer, body: Body) -> Result<Response, Error> {
    let req: TransferLeaderRequest = parse(body)?;
    let res = store.raft.handle_transfer_leader(req).await;
    Ok(reply(&res.map_err(
        openraft::error::RaftError::<crate::raft::TypeConfig>::Fatal,
    )))
}

async fn probe(State(store): Peer, body: Body) -> Result<Response, Error> {
    let () = parse(body)?;
    Ok(reply(&store.probe()))
}
