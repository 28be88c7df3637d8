//! A cluster of real `quorumkv serve` processes on loopback ports: a thin
//! wrapper over [`quorumkv_testkit::LocalCluster`], which launches, kills
//! and cleans up (see its docs), running the binary cargo built for tests.
//!
//! Helpers here panic instead of returning errors: LocalCluster's Drop keeps
//! the cluster dir and prints each node's log tail only while the thread is
//! panicking, and an `Err` returned from a test would not be seen as a panic
//! by Drop.

use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use quorumkv_testkit::{Client, LocalCluster};

pub use crate::http::Resp;
pub use quorumkv_testkit::cluster::POLL;
pub use quorumkv_testkit::{NodeId, Options};

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Runs a test body with an overall time bound. The panic happens while the
/// body (and so its `Cluster`) is still alive, so Drop keeps the logs.
pub async fn within(limit: Duration, body: impl Future<Output = ()>) {
    let bounded = std::pin::pin!(tokio::time::timeout(limit, body));
    if bounded.await.is_err() {
        panic!("test did not finish within {limit:?}");
    }
}

/// Unwraps a testkit result; the panic names what was being done.
#[track_caller]
pub fn ok<T, E: Display>(what: impl Display, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

pub struct Cluster {
    inner: LocalCluster,
    /// For raw requests: 10 s timeout, no connection reuse (a node may have
    /// been killed since the last request).
    pub http: reqwest::Client,
}

impl Cluster {
    pub async fn start(n: usize) -> Cluster {
        Self::start_opts(n, Options::default()).await
    }

    pub async fn start_with(n: usize, extra_args: &[&str]) -> Cluster {
        let extra_args = extra_args.iter().map(|s| s.to_string()).collect();
        let opts = Options {
            extra_args,
            ..Options::default()
        };
        Self::start_opts(n, opts).await
    }

    pub async fn start_opts(n: usize, opts: Options) -> Cluster {
        let opts = Options {
            dir_prefix: "quorumkv-it-".into(),
            ..opts
        };
        let bin = env!("CARGO_BIN_EXE_quorumkv");
        let inner = ok("start cluster", LocalCluster::start(bin, n, opts).await);
        let mut http = reqwest::Client::builder();
        if let Some(tls) = inner.client_tls() {
            let ca = reqwest::Certificate::from_pem(&tls.ca_pem).expect("CA");
            let identity = reqwest::Identity::from_pem(&tls.identity_pem).expect("identity");
            http = http
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca)
                .identity(identity);
        }
        let http = http
            .timeout(secs(10))
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .expect("build http client");
        let cluster = Cluster { inner, http };
        // Every test starts from a cluster with a leader: on a loaded machine
        // the first election can take longer than a request's leader wait.
        cluster.leader(secs(30)).await;
        cluster
    }

    /// The testkit cluster, for what this wrapper does not repeat.
    pub fn kit(&self) -> &LocalCluster {
        &self.inner
    }

    /// A typed client for node `id`.
    pub fn client(&self, id: NodeId) -> Client {
        ok("client", self.inner.client(id))
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.inner.ids()
    }

    pub fn dir(&self) -> &Path {
        self.inner.dir()
    }

    pub fn url(&self, id: NodeId) -> String {
        ok("url", self.inner.url(id))
    }

    /// Nodes that are running and not SIGSTOPped.
    pub fn live(&self) -> Vec<NodeId> {
        self.inner.live()
    }

    /// Wipes node `id`'s data dir and starts it again, empty, with `--join`
    /// to the other members' peer URLs (what `cluster.sh replace` does once
    /// the node has been removed and stopped).
    pub async fn rejoin_wiped(&self, id: NodeId) {
        self.kit().wipe(id).expect("wipe data dir");
        let peers = self
            .others(id)
            .into_iter()
            .map(|o| self.kit().peer_url(o).unwrap())
            .collect::<Vec<_>>()
            .join(",");
        self.kit()
            .start_replacement(id, &["--join".to_string(), peers])
            .await
            .expect("the replacement joins");
    }

    pub fn others(&self, id: NodeId) -> Vec<NodeId> {
        self.inner.others(id)
    }

    /// Pid of the quorumkv process itself (not of a wrapper such as strace).
    pub fn pid(&self, id: NodeId) -> u32 {
        ok(format!("pid of node {id}"), self.inner.pid(id))
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill9(&self, id: NodeId) {
        ok(format!("kill -9 node {id}"), self.inner.kill9(id))
    }

    pub fn stop(&self, id: NodeId) {
        ok(format!("SIGSTOP node {id}"), self.inner.stop(id))
    }

    pub fn cont(&self, id: NodeId) {
        ok(format!("SIGCONT node {id}"), self.inner.cont(id))
    }

    /// Starts a killed node again: same data dir, port and flags.
    pub async fn restart(&self, id: NodeId) {
        ok(format!("restart node {id}"), self.inner.restart(id).await)
    }

    /// The leader every live node agrees on.
    pub async fn leader(&self, timeout: Duration) -> NodeId {
        ok("leader", self.inner.leader(timeout).await)
    }

    /// Polls `/v1/cluster` on `ids` until all name the same leader, one of `ids`.
    pub async fn leader_among(&self, ids: &[NodeId], timeout: Duration) -> NodeId {
        ok("leader", self.inner.leader_among(ids, timeout).await)
    }
}
