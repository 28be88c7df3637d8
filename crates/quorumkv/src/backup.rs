//! Backup and restore, as etcd's `snapshot save` / `snapshot restore`.
//!
//! A backup is a consistent point-in-time copy of the state machine: the
//! node takes a fresh Raft snapshot (every key with its value and
//! modification index, and the idempotency records, as of one log index)
//! and sends its file, framed so that a truncated or corrupt copy is refused:
//!
//! ```text
//! "QKVBACK1" | payload length (u64, big-endian) | payload | SHA-256 of payload
//! ```
//!
//! Restore seeds a *new* cluster from it: every node of the new cluster is
//! restored from the same file with the new cluster's `--initial-cluster`,
//! then started with the same flags. Each starts from that snapshot (same
//! index, so modification indexes stay as they were and new writes continue
//! after them) with the new members as its configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};

use clap::Args;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, Membership};

use crate::config::parse_initial_cluster;
use crate::error::Error;
use crate::raft::snapshot::StoredSnapshot;
use crate::raft::{decode, encode, NodeId, SnapshotMeta, StoredMembership, Vote};
use crate::store::{fatal, Store};

const MAGIC: &[u8; 8] = b"QKVBACK1";
const HEADER: usize = 16;
const TRAILER: usize = 32;

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

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A snapshot framed as a backup file; also returns the payload's SHA-256.
pub fn frame(snapshot: &StoredSnapshot) -> Result<(Vec<u8>, [u8; 32]), BackupError> {
    let payload = encode(snapshot).map_err(|e| BackupError::Storage(e.to_string()))?;
    let sum = sha256(&payload);
    let mut out = Vec::with_capacity(HEADER + payload.len() + TRAILER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&sum);
    Ok((out, sum))
}

/// The snapshot in a backup file, after checking its frame and checksum.
pub fn unframe(bytes: &[u8]) -> Result<StoredSnapshot, BackupError> {
    let bad = |m: String| Err(BackupError::Invalid(m));
    if bytes.len() < HEADER + TRAILER || &bytes[..8] != MAGIC {
        return bad("not a quorumkv backup (no QKVBACK1 header)".into());
    }
    let len = u64::from_be_bytes(bytes[8..16].try_into().unwrap_or_default()) as usize;
    if bytes.len() != HEADER.saturating_add(len).saturating_add(TRAILER) {
        return bad(format!(
            "truncated or padded: the header announces {len} bytes of payload, the file holds {}",
            bytes.len().saturating_sub(HEADER + TRAILER)
        ));
    }
    let payload = &bytes[HEADER..HEADER + len];
    if sha256(payload) != bytes[HEADER + len..] {
        return bad("checksum mismatch: the backup is corrupt".into());
    }
    decode(payload).map_err(|e| BackupError::Invalid(format!("undecodable payload: {e}")))
}

/// A fresh snapshot of `store`'s state machine, covering at least every
/// entry it had applied when asked: what `GET /v1/snapshot` sends.
pub async fn take(store: &Store) -> Result<StoredSnapshot, Error> {
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
    Ok(StoredSnapshot {
        meta: snapshot.meta,
        data: snapshot.snapshot.into_inner(),
    })
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
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{url}: {e}"));
                continue;
            }
        };
        let status = resp.status();
        let body = match resp.bytes().await {
            Ok(body) => body,
            Err(e) => {
                failures.push(format!("{url}: {e}"));
                continue;
            }
        };
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            failures.push(format!("{url}: {status}: {text}"));
            continue;
        }
        let snapshot = match unframe(&body) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{url}: {e}"));
                continue;
            }
        };
        write_atomically(&args.file, &body)?;
        let index = snapshot.meta.last_log_id.map_or(0, |l| l.index);
        let sum = hex(&body[body.len() - TRAILER..]);
        return Ok(format!(
            "saved {} bytes at index {index} from {ep} to {} (sha256 {sum})",
            body.len(),
            args.file.display()
        ));
    }
    Err(BackupError::Http(format!(
        "no endpoint gave a backup: {}",
        failures.join("; ")
    )))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::io::Write;
    let tmp = path.with_extension("partial");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
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
    let bytes = std::fs::read(&args.file).map_err(io(&args.file))?;
    let snapshot = unframe(&bytes)?;
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
    let last_log_id = snapshot.meta.last_log_id;
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
    sm.install_snapshot(&meta, Cursor::new(snapshot.data))
        .await
        .map_err(storage)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_refused() {
        let snapshot = StoredSnapshot {
            meta: SnapshotMeta::default(),
            data: vec![1, 2, 3],
        };
        let (bytes, _) = frame(&snapshot).unwrap();
        assert_eq!(unframe(&bytes).ok().map(|s| s.data), Some(vec![1, 2, 3]));
        let err = |b: &[u8]| unframe(b).err().map(|e| e.to_string()).unwrap_or_default();
        let mut corrupt = bytes.clone();
        corrupt[HEADER + 1] ^= 1;
        assert!(err(&corrupt).contains("checksum"));
        assert!(err(&bytes[..bytes.len() - 1]).contains("truncated"));
        assert!(!err(b"hello").is_empty());
    }
}
