//! The cluster id: which cluster a node belongs to, sent with every peer
//! request (`X-Quorumkv-Cluster`) and checked by every peer route, so that a
//! node of another cluster (another `--initial-cluster` or cluster token,
//! e.g. a node pointed at the wrong peers) is refused and logged instead of
//! merged: its votes and appends never reach openraft.
//!
//! Every founding node computes the same id from what they share: the
//! SHA-256 of the sorted `--initial-cluster` and the cluster token. It is
//! written to `<data-dir>/cluster-id` at first start and read from there
//! afterwards, so later changes of the flags do not change it. A node started
//! with no state and no `--initial-cluster` (to be added as a member) has no
//! id yet: it adopts, and writes down, the id of the first peer request that
//! passed the token check (the leader that added it).

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::peer::auth::ClusterToken;
use crate::peer::messages::path;
use crate::raft::NodeId;

/// The header every peer request carries.
pub const HEADER: &str = "x-quorumkv-cluster";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterId(pub u64);

impl std::fmt::Display for ClusterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl ClusterId {
    /// The id of the cluster `members` founds, with `token`.
    pub fn of(members: &BTreeMap<NodeId, String>, token: Option<&ClusterToken>) -> ClusterId {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for (id, url) in members {
            ctx.update(format!("{id}={url},").as_bytes());
        }
        if let Some(t) = token {
            ctx.update(t.secret().as_bytes());
        }
        let digest = ctx.finish();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        ClusterId(u64::from_be_bytes(first))
    }

    pub fn parse(s: &str) -> Option<ClusterId> {
        (s.len() == 16)
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
            .map(ClusterId)
    }

    /// The id in `<dir>/cluster-id`; else the one `members` found, written
    /// there (and synced) first. `None` when neither is known.
    pub fn resolve(
        dir: &Path,
        members: Option<&BTreeMap<NodeId, String>>,
        token: Option<&ClusterToken>,
    ) -> std::io::Result<Option<ClusterId>> {
        if let Some(id) = Self::read(dir)? {
            return Ok(Some(id));
        }
        let Some(members) = members else {
            return Ok(None);
        };
        let id = ClusterId::of(members, token);
        id.write(dir)?;
        Ok(Some(id))
    }

    fn read(dir: &Path) -> std::io::Result<Option<ClusterId>> {
        let path = dir.join("cluster-id");
        match std::fs::read_to_string(&path) {
            Ok(text) => ClusterId::parse(text.trim()).map(Some).ok_or_else(|| {
                std::io::Error::other(format!("{}: not a cluster id", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the id to `<dir>/cluster-id`, durably.
    fn write(self, dir: &Path) -> std::io::Result<()> {
        crate::peer::write_durably(dir, "cluster-id", &format!("{self}\n"))
    }
}

/// This node's cluster id: known from the start, or adopted once.
#[derive(Debug)]
pub struct ClusterIdCell {
    dir: PathBuf,
    id: OnceLock<ClusterId>,
    /// Held while adopting: one id is written and kept, never two.
    adopting: std::sync::Mutex<()>,
}

impl ClusterIdCell {
    pub fn new(dir: PathBuf, id: Option<ClusterId>) -> Arc<ClusterIdCell> {
        let cell = OnceLock::new();
        if let Some(id) = id {
            let _ = cell.set(id);
        }
        Arc::new(ClusterIdCell {
            dir,
            id: cell,
            adopting: std::sync::Mutex::new(()),
        })
    }

    pub fn get(&self) -> Option<ClusterId> {
        self.id.get().copied()
    }

    /// Takes `id` as this node's, written to disk first.
    pub fn adopt(&self, id: ClusterId) -> std::io::Result<ClusterId> {
        let _one_at_a_time = self.adopting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ours) = self.get() {
            return Ok(ours);
        }
        id.write(&self.dir)?;
        tracing::info!(cluster = %id, "joined cluster {id}");
        Ok(*self.id.get_or_init(|| id))
    }
}

/// Middleware of the peer routes: a request from another cluster is refused
/// (409 cluster_mismatch) and logged, once per hundred.
pub async fn require_same_cluster(
    State(cell): State<Arc<ClusterIdCell>>,
    req: Request,
    next: Next,
) -> Response {
    // A node asking to join has no cluster id yet (the token was checked);
    // a node being added proves it holds the token (it has none yet either).
    let uri = req.uri().path();
    if path::is(uri, path::JOIN) || path::is(uri, path::PROVE) {
        return next.run(req).await;
    }
    let theirs = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(ClusterId::parse);
    let ours = match (cell.get(), theirs) {
        (Some(ours), _) => ours,
        (None, Some(theirs)) => match cell.adopt(theirs) {
            Ok(ours) => ours,
            Err(e) => {
                return Error::Storage(format!("writing the cluster id: {e}")).into_response()
            }
        },
        (None, None) => {
            return Error::ClusterMismatch(
                "neither this node nor the request has a cluster id".into(),
            )
            .into_response()
        }
    };
    if theirs == Some(ours) {
        return next.run(req).await;
    }
    static REFUSED: AtomicU64 = AtomicU64::new(0);
    let n = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
    let shown = theirs.map_or("none".to_owned(), |t| t.to_string());
    if n % 100 == 1 {
        let from = req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map_or("unknown".into(), |c| c.0.to_string());
        tracing::warn!(%from, refused = n, "refused a peer request from cluster {shown}: this node is in cluster {ours}");
    }
    Error::ClusterMismatch(format!(
        "this node is in cluster {ours}, the request came from {shown}"
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_depends_on_members_and_token_and_is_kept_on_disk() {
        let a: BTreeMap<NodeId, String> =
            [(1, "http://a:1".into()), (2, "http://b:1".into())].into();
        let b: BTreeMap<NodeId, String> =
            [(1, "http://a:1".into()), (3, "http://b:1".into())].into();
        let t = ClusterToken::parse("0123456789abcdef").unwrap();
        assert_eq!(ClusterId::of(&a, None), ClusterId::of(&a.clone(), None));
        assert_ne!(ClusterId::of(&a, None), ClusterId::of(&b, None));
        assert_ne!(ClusterId::of(&a, None), ClusterId::of(&a, Some(&t)));
        let id = ClusterId::of(&a, Some(&t));
        assert_eq!(ClusterId::parse(&id.to_string()), Some(id));
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ClusterId::resolve(dir.path(), None, None).unwrap(), None);
        assert_eq!(
            ClusterId::resolve(dir.path(), Some(&a), Some(&t)).unwrap(),
            Some(id)
        );
        // Later flags do not change it.
        assert_eq!(
            ClusterId::resolve(dir.path(), Some(&b), None).unwrap(),
            Some(id)
        );
    }
}
