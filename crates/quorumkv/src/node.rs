//! Running one node: open sled, start Raft, form or resume the cluster, serve
//! HTTP until the shutdown future resolves, then stop Raft.

use std::future::Future;
use std::sync::Arc;

use openraft::async_runtime::WatchReceiver as _;
use openraft::storage::RaftLogStorage;
use openraft::SnapshotPolicy;

use crate::api::{self, AppState};
use crate::bootstrap::{initialize_if_new, Start};
use crate::config::Config;
use crate::listener;
use crate::peer::cluster_id::{ClusterId, ClusterIdCell};
use crate::peer::identity::Identity;
use crate::peer::PeerClient;
use crate::raft::durable::Durable;
use crate::raft::log_store::LogStore;
use crate::raft::network::NetworkFactory;
use crate::raft::snapshot::SnapshotFile;
use crate::raft::state_machine::StateMachine;
use crate::raft::Raft;
use crate::sm::tree::SmTree;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    /// Opening or reading sled, the log store or the snapshot file.
    #[error("storage: {0}")]
    Storage(String),
    #[error("raft config: {0}")]
    RaftConfig(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    #[error("--join: {0}")]
    Join(String),
    #[error("{0}")]
    Replaced(String),
}

impl From<sled::Error> for NodeError {
    fn from(e: sled::Error) -> Self {
        NodeError::Storage(e.to_string())
    }
}

fn storage(e: std::io::Error) -> NodeError {
    NodeError::Storage(e.to_string())
}

fn raft_config(c: &Config) -> Result<Arc<openraft::Config>, NodeError> {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let rc = openraft::Config {
        cluster_name: "quorumkv".into(),
        heartbeat_interval: ms(c.heartbeat),
        election_timeout_min: ms(c.election_timeout.0),
        election_timeout_max: ms(c.election_timeout.1),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_every),
        max_in_snapshot_log_to_keep: c.keep_logs,
        install_snapshot_timeout: 30_000,
        // A node that cannot win (partitioned, restarted, short log) asks
        // first whether a quorum would vote for it, instead of bumping its
        // term and deposing a healthy leader when it reconnects.
        enable_pre_vote: Some(true),
        // Replicate entries as soon as `append` has handed them to the log,
        // while the leader's own fdatasync is still in flight; the leader's
        // copy counts towards the quorum only once flushed.
        broadcast_submitted_on_append: Some(true),
        // A follower restarted with an empty data dir rejoins: the leader
        // replicates to it from scratch (0.9's `loosen-follower-log-revert`).
        allow_log_reversion: Some(true),
        // 0.10 defaults to letting a restarted leader resume without an
        // election. Keep 0.9's behaviour: a restarted node always goes through
        // an election, so a read index never comes from a leader whose applied
        // state (not fsync'd on apply) went back in the crash.
        enable_leader_restore: Some(false),
        // An entry carries at most 4 MiB of writes (the proposer's batch), so
        // an append-entries stays under the peer routes' body limit.
        max_payload_entries: crate::peer::router::MAX_APPEND_ENTRIES,
        ..Default::default()
    };
    let rc = rc
        .validate()
        .map_err(|e| NodeError::RaftConfig(e.to_string()))?;
    Ok(Arc::new(rc))
}

/// One node's parts, opened from its data dir: the Raft handle and the store
/// that the API serves. Not yet listening, not yet part of a cluster.
pub struct Node {
    pub config: Arc<Config>,
    pub raft: Raft,
    pub store: Arc<Store>,
    /// Unknown only for a node with no state and no --initial-cluster, until
    /// a leader adds it.
    pub cluster_id: Arc<ClusterIdCell>,
}

/// Where the Raft log lives in a data dir ([`LogStore`]).
const WAL_DIR: &str = "wal";
/// Where the Raft log lived before it moved to raft-log (a sled database).
const SLED_LOG_DIR: &str = "log";

/// The log store and the state machine in `dir`, as Raft finds them (also
/// what `quorumkv snapshot restore` writes into): the log in raft-log's
/// files, every flush fdatasync'd; the state machine in sled, not synced on
/// apply (it is rebuilt from the log after a crash).
pub fn open_storage(
    dir: &std::path::Path,
    retention: crate::raft::state_machine::Retention,
) -> Result<(LogStore, StateMachine), NodeError> {
    let dir_err = |source| NodeError::DataDir {
        path: dir.display().to_string(),
        source,
    };
    if dir.join(SLED_LOG_DIR).exists() {
        return Err(NodeError::Storage(format!(
            "{} holds a Raft log in the old sled format (quorumkv before commit ed37fca of 2026-12-02); \
             the log is now kept by raft-log in {WAL_DIR}/: wipe the data dir, or \
             back it up with the old binary and restore it with this one",
            dir.display()
        )));
    }
    let sm_db = Durable::open(&dir.join("sm")).map_err(dir_err)?;
    let snapshots = SnapshotFile::open(dir.join(crate::raft::snapshot::SLOT)).map_err(storage)?;
    let sm_tree = SmTree::open(sm_db.db())?;
    let log_store = LogStore::open(
        &dir.join(WAL_DIR),
        sm_db.clone(),
        sm_tree.clone(),
        Some(snapshots.clone()),
    )
    .map_err(storage)?;
    let state_machine = StateMachine::open(sm_db, sm_tree, snapshots, retention)?;
    Ok((log_store, state_machine))
}

impl Node {
    /// Opens the log, the state machine and the snapshot, and starts Raft.
    pub async fn open(config: Config) -> Result<Node, NodeError> {
        let config = Arc::new(config);
        let dir_err = |source| NodeError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(dir_err)?;
        let (mut log_store, mut state_machine) = open_storage(&config.data_dir, config.retention)?;
        let log_reader = log_store.clone();
        let log_last = log_store
            .get_log_state()
            .await
            .map_err(storage)?
            .last_log_id;
        state_machine
            .finish_interrupted_install(log_last)
            .await
            .map_err(storage)?;
        let reader = state_machine.reader();
        let cluster_id = ClusterId::resolve(
            &config.data_dir,
            config.initial_cluster.as_ref(),
            config.cluster_token.as_ref(),
        )
        .map_err(dir_err)?;
        match cluster_id {
            Some(id) => tracing::info!(cluster = %id, "cluster id"),
            None => tracing::info!("no cluster id yet: no state and no --initial-cluster"),
        }
        let cluster_id = ClusterIdCell::new(config.data_dir.clone(), cluster_id);
        let identity = Identity::open(&config.data_dir, config.id).map_err(dir_err)?;
        tracing::info!(node = %identity.me(), "incarnation");
        let peer_ip = config.peer_listen.ip();
        let peers = PeerClient::new(
            (!peer_ip.is_unspecified()).then_some(peer_ip),
            config.cluster_token.as_ref(),
            config.peer_tls.as_ref().map(|t| t.client.clone()),
            cluster_id.clone(),
            identity,
        )?;
        let network = NetworkFactory {
            client: peers.clone(),
            append_timeout: config.election_timeout.1,
        };
        let raft = Raft::new(
            config.id,
            raft_config(&config)?,
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;

        let store = Arc::new_cyclic(|me| {
            Store::new(
                config.clone(),
                raft.clone(),
                reader,
                log_reader,
                peers,
                me.clone(),
            )
        });
        Ok(Node {
            config,
            raft,
            store,
            cluster_id,
        })
    }

    /// The client API's router.
    pub fn router(&self) -> axum::Router {
        api::router(AppState {
            store: self.store.clone(),
        })
    }

    /// The peer routes' router (`/raft/*`).
    pub fn peer_router(&self) -> axum::Router {
        let token = self.config.cluster_token.clone();
        crate::peer::router::router(
            self.store.clone(),
            token,
            self.cluster_id.clone(),
            self.store.identity().clone(),
        )
    }
}

async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, NodeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { addr, source })
}

/// Runs one node until `shutdown` resolves or its Raft core stops.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let node = Node::open(config).await?;
    let (app, peer_app) = (node.router(), node.peer_router());
    let Node {
        config,
        raft,
        store,
        cluster_id,
    } = node;
    let clients = bind(config.listen).await?;
    let peers = bind(config.peer_listen).await?;
    tracing::info!(
        id = config.id,
        peer_url = %config.advertise_peer,
        client_url = %config.advertise_client,
        "listening for clients on {}, for peers on {}",
        config.listen,
        config.peer_listen
    );

    let start = initialize_if_new(&raft, config.initial_cluster.as_ref()).await?;
    tokio::spawn(reload_auth_on_sighup(config.auth.clone()));
    match (start, config.join.is_empty()) {
        (Start::Empty, false) => store
            .join(&config.join, &cluster_id)
            .await
            .map_err(|e| NodeError::Join(e.to_string()))?,
        (Start::Empty, true) => tracing::info!(
            "no state and no --initial-cluster: waiting to be added to a cluster \
             (POST /v1/cluster/members {{\"id\":..,\"peer_url\":..}} on any of its nodes)"
        ),
        _ => {}
    }
    if !config.join.is_empty() && !config.learner {
        // Also after a restart mid-way: a voter already is one and stops at once.
        let store = store.clone();
        tokio::spawn(async move { store.promote_when_caught_up().await });
    }

    // A Raft core that stopped on its own (a storage error, a bug) leaves a
    // node that can serve nothing: exit non-zero so a supervisor restarts it
    // from disk, instead of answering every request with an error forever.
    let core = raft.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let identity = store.identity().clone();
    let replaced = Arc::new(std::sync::OnceLock::<String>::new());
    let replaced_msg = replaced.clone();
    tokio::spawn(async move {
        let signalled = tokio::select! {
            () = shutdown => true,
            () = core_stopped(core) => false,
            // This node lost the state its id stands for: it must stop at
            // once, without handing over or voting again.
            msg = identity.wait_replaced() => {
                tracing::error!("{msg}");
                let _ = replaced_msg.set(msg);
                false
            }
        };
        if signalled {
            // Still serving meanwhile: requests in flight finish on the new
            // leader (a write is forwarded to it).
            store.hand_over_if_leader().await;
        }
        // Watches never end by themselves: close them so the drain can.
        store.watchers().close_all();
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let bounds = |name, tls| listener::Bounds {
        name,
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
        tls,
    };
    let client_bounds = bounds("client", config.client_tls.clone());
    let peer_tls = config.peer_tls.as_ref().map(|t| t.server.clone());
    tokio::join!(
        listener::serve(clients, app, client_bounds, stopped(stop_rx.clone())),
        listener::serve(peers, peer_app, bounds("peer", peer_tls), stopped(stop_rx)),
    );
    let fatal = core_failure(&raft);
    tracing::info!("shutting down raft");
    if let Err(e) = raft.shutdown().await {
        tracing::warn!("raft shutdown: {e}");
    }
    if let Some(msg) = replaced.get() {
        return Err(NodeError::Replaced(msg.clone()));
    }
    match fatal {
        Some(e) => Err(NodeError::Raft(format!("raft core stopped: {e}"))),
        None => Ok(()),
    }
}

/// `kill -HUP`: reads `--auth-file` again. A bad file is logged and the
/// tokens in use stay. (Without the file, SIGHUP is logged and ignored.)
async fn reload_auth_on_sighup(auth: crate::api::auth::Auth) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("no SIGHUP handler, --auth-file will not be reloaded: {e}");
            return;
        }
    };
    while hup.recv().await.is_some() {
        if !auth.is_on() {
            tracing::info!("SIGHUP: no --auth-file to reload");
            continue;
        }
        match auth.reload() {
            Ok(n) => tracing::info!(tokens = n, "SIGHUP: reloaded the auth file"),
            Err(e) => tracing::error!("SIGHUP: {e}; the tokens in use stay"),
        }
    }
}

/// Why the Raft core stopped, if it did.
fn core_failure(raft: &Raft) -> Option<String> {
    raft.metrics()
        .borrow_watched()
        .running_state
        .as_ref()
        .err()
        .map(|e| e.to_string())
}

/// Resolves once the Raft core has stopped with an error.
async fn core_stopped(raft: Raft) {
    let mut metrics = raft.metrics();
    loop {
        if let Some(e) = core_failure(&raft) {
            tracing::error!("raft core stopped: {e}; exiting");
            return;
        }
        if metrics.changed().await.is_err() {
            // The core is gone without a recorded error: leave it to the
            // shutdown signal, as before.
            std::future::pending::<()>().await;
        }
    }
}
