//! openraft's network traits on top of [`PeerClient`]: one [`Network`] per
//! replication target, sending append-entries, votes and whole snapshots to
//! the peer's `/raft/*` routes (`crate::peer::router` answers them).

use std::future::Future;
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::{BasicNode, OptionalSend, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::peer::messages::{path, SnapshotHeader};
use crate::peer::{CallError, PeerClient};
use crate::raft::{
    encode, AppendEntriesRequest, AppendEntriesResponse, Fatal, NodeId, Snapshot, SnapshotData,
    SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse, TypeConfig, Vote, VoteRequest,
    VoteResponse,
};

/// What every `/raft/*` route for openraft's messages answers: the peer's
/// result, or the fatal error its Raft core stopped with.
pub type PeerResult<T> = Result<T, openraft::error::RaftError<TypeConfig>>;

/// Builds a [`Network`] per peer; openraft keeps one per replication target.
#[derive(Clone)]
pub struct NetworkFactory {
    pub client: PeerClient,
    /// How long a follower may take to accept an append-entries. openraft
    /// offers one heartbeat interval; a follower whose disk is slower than
    /// that would see every append time out and be sent again. This is the
    /// leader lease instead: a slow disk slows only its own follower.
    pub append_timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Network {
        Network {
            client: self.client.clone(),
            target,
            addr: node.addr.clone(),
            append_timeout: self.append_timeout,
        }
    }
}

pub struct Network {
    client: PeerClient,
    target: NodeId,
    addr: String,
    append_timeout: Duration,
}

impl Network {
    /// One openraft message to `/raft/<path>`. A peer whose Raft core has
    /// stopped (a remote `Fatal`) is as good as unreachable: back off from it.
    async fn rpc<Req, Resp>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let answer: PeerResult<Resp> = self
            .client
            .call_to(&self.addr, self.target, path, req, option.hard_ttl())
            .await
            .map_err(|e| match e {
                CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&Msg(m))),
                CallError::Failed(m) => RPCError::Network(NetworkError::new(&Msg(m))),
            })?;
        answer.map_err(|e| {
            let m = Msg(format!("node {} ({}): {e}", self.target, self.addr));
            RPCError::Unreachable(Unreachable::new(&m))
        })
    }
}

#[derive(Debug)]
struct Msg(String);

impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Msg {}

impl RaftNetworkV2<TypeConfig> for Network {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError<TypeConfig>> {
        let option = RPCOption::new(option.hard_ttl().max(self.append_timeout));
        self.rpc(path::APPEND, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError<TypeConfig>> {
        self.rpc(path::VOTE, &rpc, &option).await
    }

    /// Sent only with `enable_pre_vote`; the peer answers without changing
    /// its vote or term.
    async fn pre_vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError<TypeConfig>> {
        self.rpc(path::PRE_VOTE, &rpc, &option).await
    }

    /// The leader hands leadership to the target (a leader being removed does
    /// this first, so the cluster does not wait for an election timeout).
    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse, RPCError<TypeConfig>> {
        self.rpc(path::TRANSFER_LEADER, &req, &option).await
    }

    /// Streams the snapshot file in one request: the header, then the file
    /// as it is on disk, read 256 KiB at a time.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig>> {
        let header = SnapshotHeader {
            vote,
            meta: snapshot.meta,
        };
        let header = encode(&header).map_err(|e| {
            StreamingError::Unreachable(Unreachable::new(&Msg(format!("encode: {e}"))))
        })?;
        let mut first = (header.len() as u32).to_be_bytes().to_vec();
        first.extend_from_slice(&header);
        let (len, file) = snapshot.snapshot.into_stream().map_err(|e| {
            StreamingError::Unreachable(Unreachable::new(&Msg(format!("snapshot file: {e}"))))
        })?;
        // The call ends when the peer has installed it: openraft's fixed
        // bound (30 s) plus a second per 8 MiB, so that a large snapshot is
        // not cut off and resent for ever.
        let timeout = option.hard_ttl() + Duration::from_secs(len / (8 << 20));
        let first = futures::stream::once(async move { Ok(bytes::Bytes::from(first)) });
        let body = futures::StreamExt::chain(first, file);
        let call = self.client.stream_to::<Result<SnapshotResponse, Fatal>>(
            &self.addr,
            self.target,
            path::SNAPSHOT,
            reqwest::Body::wrap_stream(body),
            timeout,
        );
        let answer = tokio::select! {
            r = call => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        match answer {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(fatal)) => {
                let m = Msg(format!("node {} ({}): {fatal}", self.target, self.addr));
                Err(StreamingError::Unreachable(Unreachable::new(&m)))
            }
            Err(CallError::Unreachable(m)) => {
                Err(StreamingError::Unreachable(Unreachable::new(&Msg(m))))
            }
            Err(CallError::Failed(m)) => Err(StreamingError::Network(NetworkError::new(&Msg(m)))),
        }
    }
}
