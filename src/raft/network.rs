//! Client side of peer RPC: openraft's messages, and the store's own node-to-node
//! calls (forwarded writes, read index), as bincode over pooled keep-alive HTTP
//! connections to `<peer>/raft/*`.

use std::future::Future;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::raft::{
    decode, encode, AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
    InstallSnapshotResponse, NodeId, Snapshot, SnapshotMeta, SnapshotResponse, TypeConfig, Vote,
    VoteRequest, VoteResponse,
};

/// Why a peer call failed, split the way callers must treat it.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request never reached the peer (connection refused or reset before sending).
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The request may or may not have been processed.
    #[error("peer call failed: {0}")]
    Failed(String),
}

/// A pooled HTTP client for `/raft/*` calls; clone freely.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
}

impl PeerClient {
    /// `source`: the address peer connections leave from (the node's listen
    /// IP), so that whoever sits between two nodes can tell them apart.
    pub fn new(source: Option<std::net::IpAddr>) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .local_address(source)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(500))
            .build()?;
        Ok(PeerClient { http })
    }

    /// POSTs `req` to `<addr>/raft/<path>` and decodes the bincode answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let body = encode(req).map_err(|e| CallError::Unreachable(format!("encode: {e}")))?;
        let url = format!("{}/raft/{}", addr.trim_end_matches('/'), path);
        let resp = self
            .http
            .post(&url)
            .timeout(timeout)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    CallError::Unreachable(format!("{url}: {e}"))
                } else {
                    CallError::Failed(format!("{url}: {e}"))
                }
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| CallError::Failed(format!("{url}: {e}")))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(CallError::Failed(format!("{url}: {status}: {text}")));
        }
        decode(&bytes).map_err(|e| CallError::Failed(format!("{url}: decode: {e}")))
    }
}

/// Builds a [`Network`] per peer; openraft keeps one per replication target.
#[derive(Clone)]
pub struct NetworkFactory {
    pub client: PeerClient,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Network {
        Network {
            client: self.client.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

pub struct Network {
    client: PeerClient,
    target: NodeId,
    addr: String,
}

/// The whole-snapshot message for `/raft/snapshot`.
#[derive(Serialize, serde::Deserialize)]
pub struct FullSnapshot {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

impl Network {
    async fn rpc<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<NodeId, E>> = self
            .client
            .call(&self.addr, path, req, option.hard_ttl())
            .await
            .map_err(|e| match e {
                CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&Msg(m))),
                CallError::Failed(m) => RPCError::Network(NetworkError::new(&Msg(m))),
            })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
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

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.rpc("install_snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc("vote", &rpc, &option).await
    }

    /// Sends the whole snapshot in one request (they are single buffers here).
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let req = FullSnapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot.into_inner(),
        };
        let call = self
            .client
            .call::<_, Result<SnapshotResponse, Fatal<NodeId>>>(
                &self.addr,
                "snapshot",
                &req,
                option.hard_ttl(),
            );
        let answer = tokio::select! {
            r = call => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        match answer {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(fatal)) => Err(StreamingError::RemoteError(RemoteError::new(
                self.target,
                fatal,
            ))),
            Err(CallError::Unreachable(m)) => {
                Err(StreamingError::Unreachable(Unreachable::new(&Msg(m))))
            }
            Err(CallError::Failed(m)) => Err(StreamingError::Network(NetworkError::new(&Msg(m)))),
        }
    }
}
