//! Backup and restore, as etcd's `snapshot save` / `snapshot restore`.
//!
//! A backup is a consistent point-in-time copy of the state machine: the
//! node takes a fresh Raft snapshot (every key with its value and
//! modification index, the idempotency records, the leases and the change
//! history, as of one log index) and streams its file as it is on disk. The
//! snapshot file format ([`crate::raft::snapshot`]) is framed and ends with a
//! SHA-256, so a truncated or corrupt copy is refused; neither side holds
//! more than a frame of it in memory.
//!
//! Restore seeds a *new* cluster from it: every node of the new cluster is
//! restored from the same file with the new cluster's `--initial-cluster`,
//! then started with the same flags. Each starts from that snapshot (same
//! index, so modification indexes stay as they were and new writes continue
//! after them) with the new members as its configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::Args;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, Membership};

use crate::config::parse_initial_cluster;
use crate::error::Error;
use crate::raft::snapshot::{self, SnapshotData};
use crate::raft::{NodeId, SnapshotMeta, StoredMembership, Vote};
use crate::store::{fatal, Store};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Storage(String),
    #[error("{0}")]
    Http(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the whole backup file at `path`: its metadata and summary, or
/// what is wrong with it.
fn check(path: &Path) -> Result<(SnapshotMeta, snapshot::Summary), BackupError> {
    snapshot::verify(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => BackupError::Invalid(format!("{}: {e}", path.display())),
        _ => io(path)(e),
    })
}

/// A fresh snapshot of `store`'s state machine, covering at least every
/// entry it had applied when asked: what `GET /v1/snapshot` sends.
pub async fn take(store: &Store) -> Result<(SnapshotMeta, SnapshotData), Error> {
    let applied = store.metrics().last_applied;
    store.raft.trigger().snapshot().await.map_err(fatal)?;
    let wait = std::time::Duration::from_secs(120);
    store
        .raft
        .wait(Some(wait))
        .metrics(
            |m| m.snapshot >= applied,
            "a snapshot of everything applied",
        )
        .await
        .map_err(|e| Error::Internal(format!("snapshot not built: {e}")))?;
    let snapshot = store
        .raft
        .get_snapshot()
        .await
        .map_err(|e| Error::Internal(format!("reading the snapshot: {e}")))?
        .ok_or_else(|| Error::Internal("no snapshot after building one".into()))?;
    Ok((snapshot.meta, snapshot.snapshot))
}

#[derive(Debug, Clone, Args)]
pub struct SaveArgs {
    /// Where to write the backup.
    pub file: PathBuf,

    /// Client URLs of nodes to ask, in order, until one answers.
    #[arg(
        long,
        env = "QUORUMKV_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7001"
    )]
    pub endpoints: Vec<String>,

    /// CA certificate to trust for https:// endpoints.
    #[arg(long)]
    pub cacert: Option<PathBuf>,

    /// File holding an admin client token (with --auth-file on the nodes).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// `quorumkv snapshot save`: fetches a backup, checks it, writes it
/// atomically. Returns a one-line summary.
pub async fn save(args: &SaveArgs) -> Result<String, BackupError> {
    let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(300));
    if let Some(ca) = &args.cacert {
        let pem = std::fs::read(ca).map_err(io(ca))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| BackupError::Invalid(format!("{}: {e}", ca.display())))?;
        http = http
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert);
    }
    let http = http.build().map_err(|e| BackupError::Http(e.to_string()))?;
    let token = match &args.token_file {
        Some(p) => Some(std::fs::read_to_string(p).map_err(io(p))?.trim().to_owned()),
        None => None,
    };
    let mut failures = Vec::new();
    for ep in &args.endpoints {
        let url = format!("{}/v1/snapshot", ep.trim_end_matches('/'));
        let mut req = http.get(&url);
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let partial = args.file.with_extension("partial");
        match fetch(req, &partial).await {
            Ok(()) => {}
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                failures.push(format!("{url}: {e}"));
                continue;
            }
        }
        let (meta, summary) = match check(&partial) {
            Ok(checked) => checked,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                failures.push(format!("{url}: {e}"));
                continue;
            }
        };
        std::fs::rename(&partial, &args.file).map_err(io(&args.file))?;
        let index = meta.last_log_id.map_or(0, |l| l.index);
        return Ok(format!(
            "saved {} bytes ({} pairs) at index {index} from {ep} to {} (sha256 {})",
            summary.bytes,
            summary.pairs,
            args.file.display(),
            hex(&summary.sha256)
        ));
    }
    Err(BackupError::Http(format!(
        "no endpoint gave a backup: {}",
        failures.join("; ")
    )))
}

/// Streams the answer to `req` into `path` and syncs it.
async fn fetch(req: reqwest::RequestBuilder, path: &Path) -> Result<(), String> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("{status}: {text}"));
    }
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    file.sync_all()
        .await
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// A backup from `quorumkv snapshot save`.
    pub file: PathBuf,

    /// The new node's data directory; must not hold any state yet.
    #[arg(long)]
    pub data_dir: PathBuf,

    /// The new node's id, listed in --initial-cluster.
    #[arg(long)]
    pub id: NodeId,

    /// The new cluster's members and peer URLs, the same for every node and
    /// the same as the nodes are then started with.
    #[arg(long)]
    pub initial_cluster: String,
}

/// `quorumkv snapshot restore`: writes a data dir that starts from the
/// backup with the new cluster as its membership.
pub async fn restore(args: &RestoreArgs) -> Result<String, BackupError> {
    let (file_meta, _) = check(&args.file)?;
    let members = parse_initial_cluster(&args.initial_cluster)
        .map_err(|e| BackupError::Invalid(e.to_string()))?;
    if !members.contains_key(&args.id) {
        return Err(BackupError::Invalid(format!(
            "--initial-cluster does not list --id {}",
            args.id
        )));
    }
    let dir = &args.data_dir;
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BackupError::Invalid(format!(
            "{} is not empty: restore only into a new data dir",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let last_log_id = file_meta.last_log_id;
    let voters: BTreeSet<NodeId> = members.keys().copied().collect();
    let nodes: BTreeMap<NodeId, BasicNode> = members
        .iter()
        .map(|(id, url)| (*id, BasicNode::new(url)))
        .collect();
    let membership =
        Membership::new(vec![voters], nodes).map_err(|e| BackupError::Invalid(e.to_string()))?;
    let meta = SnapshotMeta {
        last_log_id,
        last_membership: StoredMembership::new(last_log_id, membership),
    };
    let storage = |e: std::io::Error| BackupError::Storage(e.to_string());
    let (mut log, mut sm) = crate::node::open_storage(dir, Default::default())
        .map_err(|e| BackupError::Storage(e.to_string()))?;
    let data = SnapshotData::open(&args.file).map_err(io(&args.file))?;
    sm.install_snapshot(&meta, data).await.map_err(storage)?;
    if let Some(last) = last_log_id {
        log.purge(last).await.map_err(storage)?;
        // A vote at the snapshot's term: a node's vote is never behind its
        // log, and the new cluster's first election then runs at the next term.
        let vote = Vote::new(last.leader_id.term, args.id);
        log.save_vote(&vote).await.map_err(storage)?;
    }
    let index = last_log_id.map_or(0, |l| l.index);
    Ok(format!(
        "restored node {} in {} at index {index}; start it with --initial-cluster {}",
        args.id,
        dir.display(),
        args.initial_cluster
    ))
}
