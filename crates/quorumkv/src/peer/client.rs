//! The client side of every node-to-node call: bincode over pooled keep-alive
//! HTTP connections to `<peer>/raft/<path>`, and [`PeerClient::call_leader`]
//! for the store's calls that only the leader can answer.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::peer::auth::ClusterToken;
use crate::peer::cluster_id::{self, ClusterIdCell};
use crate::peer::identity::{self, Identity, Incarnation};
use crate::peer::messages::{Attempt, LeaderReply};
use crate::raft::{decode, encode, NodeId};
use std::sync::Arc;

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
    /// `Authorization` for every call, when the cluster has a token.
    auth: Option<reqwest::header::HeaderValue>,
    /// This node's cluster id, sent with every call once known.
    cluster: Arc<ClusterIdCell>,
    /// This node's incarnation and its peers' ([`identity`]).
    identity: Arc<Identity>,
}

impl PeerClient {
    /// `source`: the address peer connections leave from (the node's listen
    /// IP), so that whoever sits between two nodes can tell them apart.
    /// `token`: the cluster token every peer route requires. `tls`: the
    /// mutual-TLS config peers are called with (https:// peer URLs).
    pub fn new(
        source: Option<std::net::IpAddr>,
        token: Option<&ClusterToken>,
        tls: Option<rustls::ClientConfig>,
        cluster: Arc<ClusterIdCell>,
        identity: Arc<Identity>,
    ) -> reqwest::Result<Self> {
        let mut builder = reqwest::Client::builder();
        if let Some(tls) = tls {
            builder = builder.use_preconfigured_tls(tls);
        }
        let http = builder
            .local_address(source)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(500))
            .build()?;
        Ok(PeerClient {
            http,
            auth: token.map(ClusterToken::header_value),
            cluster,
            identity,
        })
    }

    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// [`PeerClient::call`] to node `to`: the request says which incarnation
    /// of it is expected, so a node that lost its data learns it and stops.
    pub async fn call_to<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        to: NodeId,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        self.post(addr, Some(to), path, req, timeout, true).await
    }

    /// POSTs `req` to `<addr>/raft/<path>` and decodes the bincode answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        self.post(addr, None, path, req, timeout, true).await
    }

    /// [`PeerClient::call`] without the cluster token or id: for a node not
    /// yet known to hold them (`/raft/prove`).
    pub async fn call_stranger<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        self.post(addr, None, path, req, timeout, false).await
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        to: Option<NodeId>,
        path: &str,
        req: &Req,
        timeout: Duration,
        credentials: bool,
    ) -> Result<Resp, CallError> {
        let body = encode(req).map_err(|e| CallError::Unreachable(format!("encode: {e}")))?;
        self.post_body(addr, to, path, body.into(), timeout, credentials)
            .await
    }

    /// [`PeerClient::call_to`] with a body streamed from `body` (a snapshot).
    pub async fn stream_to<Resp: DeserializeOwned>(
        &self,
        addr: &str,
        to: NodeId,
        path: &str,
        body: reqwest::Body,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        self.post_body(addr, Some(to), path, body, timeout, true)
            .await
    }

    async fn post_body<Resp: DeserializeOwned>(
        &self,
        addr: &str,
        to: Option<NodeId>,
        path: &str,
        body: reqwest::Body,
        timeout: Duration,
        credentials: bool,
    ) -> Result<Resp, CallError> {
        let url = format!("{}/raft/{}", addr.trim_end_matches('/'), path);
        let mut post = self.http.post(&url);
        if let (Some(auth), true) = (&self.auth, credentials) {
            post = post.header(reqwest::header::AUTHORIZATION, auth.clone());
        }
        if let (Some(cluster), true) = (self.cluster.get(), credentials) {
            post = post.header(cluster_id::HEADER, cluster.to_string());
        }
        if credentials {
            post = post.header(identity::HEADER, self.identity.me().to_string());
            if let Some(expected) = to.and_then(|id| self.identity.expected(id)) {
                post = post.header(identity::EXPECT, expected.to_string());
            }
        }
        let resp = post
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
        if credentials {
            self.check_answerer(&resp)
                .map_err(|m| CallError::Failed(format!("{url}: {m}")))?;
        }
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

impl PeerClient {
    /// An answer counts only from the incarnation of its node this node
    /// knows; one that says this node is not the incarnation the cluster
    /// knows makes this node stop ([`identity`]).
    fn check_answerer(&self, resp: &reqwest::Response) -> Result<(), String> {
        let me = self.identity.me();
        if let Some(expected) = Incarnation::from_header(resp.headers().get(identity::EXPECT)) {
            if expected.id == me.id && expected.incarnation != me.incarnation {
                self.identity.replaced_by_cluster(expected);
                return Err(format!(
                    "this node ({me}) was replaced: the cluster knows {expected}"
                ));
            }
        }
        match Incarnation::from_header(resp.headers().get(identity::HEADER)) {
            Some(answerer) => self.identity.check(answerer).map_err(|m| m.to_string()),
            None => Ok(()),
        }
    }

    /// Calls `path` on the node believed to lead. Its "not leader" answer and a
    /// call that never reached it are [`Attempt::Retry`] (nothing was done, ask
    /// the new leader); an error it answered is passed on; a call that failed on
    /// the way, so may or may not have been processed, becomes `failed(reason)`.
    pub async fn call_leader<Req: Serialize, T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
        failed: impl FnOnce(String) -> Error,
    ) -> Result<Attempt<T>, Error> {
        match self
            .call::<_, LeaderReply<T>>(addr, path, req, timeout)
            .await
        {
            Ok(reply) => reply.into_attempt(),
            Err(CallError::Unreachable(_)) => Ok(Attempt::Retry),
            Err(CallError::Failed(e)) => Err(failed(e)),
        }
    }
}
