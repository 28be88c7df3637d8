//! A node's incarnation, so that no node ever votes or acknowledges under an
//! id whose durable state it has lost.
//!
//! At its first start a node draws a random incarnation and writes it to
//! `<data-dir>/incarnation`; it lives as long as the data dir. Every peer
//! request says who sends it (`X-Quorumkv-Node: <id>:<incarnation>`) and, when
//! the sender knows it, whom it expects to reach (`X-Quorumkv-Expect`); every
//! answer says who answered. Each node remembers the incarnation of every
//! member the first time it hears from it (`<data-dir>/peers`) and forgets it
//! when the member is removed.
//!
//! So a node whose data dir was wiped (a new incarnation under an old id):
//! - is refused by every peer that knew it (`409 incarnation_mismatch`): its
//!   votes are not counted, nor are its answers to a leader's appends;
//! - learns it from the first request that expected its old incarnation, and
//!   exits, saying what to run: remove it and add it back as a new member
//!   (`scripts/cluster.sh replace <id>`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::peer::messages::path;
use crate::peer::write_durably;
use crate::raft::NodeId;

/// Who sends a request, or who answered one: `<id>:<incarnation>`.
pub const HEADER: &str = "x-quorumkv-node";
/// Whom a request expects to reach: `<id>:<incarnation>`.
pub const EXPECT: &str = "x-quorumkv-expect";

/// One node's identity as peers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incarnation {
    pub id: NodeId,
    pub incarnation: u64,
}

impl std::fmt::Display for Incarnation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{:016x}", self.id, self.incarnation)
    }
}

impl Incarnation {
    pub fn parse(s: &str) -> Option<Incarnation> {
        let (id, inc) = s.split_once(':')?;
        Some(Incarnation {
            id: id.parse().ok()?,
            incarnation: u64::from_str_radix(inc, 16).ok()?,
        })
    }

    pub fn from_header(v: Option<&HeaderValue>) -> Option<Incarnation> {
        v.and_then(|v| v.to_str().ok()).and_then(Incarnation::parse)
    }
}

/// This node's incarnation and what it knows of its peers'.
#[derive(Debug)]
pub struct Identity {
    me: Incarnation,
    dir: PathBuf,
    known: Mutex<BTreeMap<NodeId, u64>>,
    /// Set (with what to tell the operator) once a peer expected another
    /// incarnation of this node: the node must stop.
    replaced: tokio::sync::watch::Sender<Option<String>>,
}

/// A peer that is not the incarnation this node knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub known: Incarnation,
    pub seen: Incarnation,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {} is incarnation {:016x} to this cluster, not {:016x}: it lost its data dir; \
             remove it and add it back as a new member (scripts/cluster.sh replace {})",
            self.known.id, self.known.incarnation, self.seen.incarnation, self.known.id
        )
    }
}

fn random_u64() -> std::io::Result<u64> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| std::io::Error::other("no system randomness"))?;
    Ok(u64::from_be_bytes(b))
}

impl Identity {
    /// Node `id`'s identity in `dir`: its incarnation (drawn and written at
    /// the first start) and the peers' it recorded.
    pub fn open(dir: &Path, id: NodeId) -> std::io::Result<Arc<Identity>> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("incarnation");
        let incarnation = match std::fs::read_to_string(&path) {
            Ok(text) => u64::from_str_radix(text.trim(), 16).map_err(|_| {
                std::io::Error::other(format!("{}: not an incarnation", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let inc = random_u64()?;
                write_durably(dir, "incarnation", &format!("{inc:016x}\n"))?;
                inc
            }
            Err(e) => return Err(e),
        };
        let mut known = BTreeMap::new();
        match std::fs::read_to_string(dir.join("peers")) {
            Ok(text) => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let peer = Incarnation::parse(line.trim()).ok_or_else(|| {
                        std::io::Error::other(format!("{}/peers: bad line {line:?}", dir.display()))
                    })?;
                    known.insert(peer.id, peer.incarnation);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Arc::new(Identity {
            me: Incarnation { id, incarnation },
            dir: dir.to_path_buf(),
            known: Mutex::new(known),
            replaced: tokio::sync::watch::Sender::new(None),
        }))
    }

    pub fn me(&self) -> Incarnation {
        self.me
    }

    /// The incarnation of `peer` this node knows, if any.
    pub fn expected(&self, peer: NodeId) -> Option<Incarnation> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.get(&peer).map(|&incarnation| Incarnation {
            id: peer,
            incarnation,
        })
    }

    /// Checks a peer's incarnation: the one known, or, the first time, the
    /// one to remember (written down before this returns).
    pub fn check(&self, seen: Incarnation) -> Result<(), Mismatch> {
        if seen.id == self.me.id {
            return Ok(());
        }
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        match known.get(&seen.id) {
            Some(&inc) if inc == seen.incarnation => Ok(()),
            Some(&inc) => Err(Mismatch {
                known: Incarnation {
                    id: seen.id,
                    incarnation: inc,
                },
                seen,
            }),
            None => {
                known.insert(seen.id, seen.incarnation);
                if let Err(e) = write_durably(&self.dir, "peers", &Self::text(&known)) {
                    tracing::warn!(error = %e, "could not record peer {seen}");
                }
                Ok(())
            }
        }
    }

    fn text(known: &BTreeMap<NodeId, u64>) -> String {
        known
            .iter()
            .map(|(&id, &incarnation)| format!("{}\n", Incarnation { id, incarnation }))
            .collect()
    }

    /// Forgets the peers that are no longer members (a removed node may come
    /// back, as a new member, with a new incarnation).
    pub fn retain(&self, members: &[NodeId]) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let before = known.len();
        known.retain(|id, _| members.contains(id));
        if known.len() != before {
            if let Err(e) = write_durably(&self.dir, "peers", &Self::text(&known)) {
                tracing::warn!(error = %e, "could not forget removed peers");
            }
        }
    }

    /// Records that the cluster knows another incarnation of this node.
    pub fn replaced_by_cluster(&self, expected: Incarnation) {
        let message = format!(
            "the cluster knows node {id} as incarnation {:016x}, but this data dir is incarnation \
             {:016x}: its state was lost or replaced, and it must not vote or acknowledge as node {id}. \
             Remove it and add it back as a new member: `scripts/cluster.sh replace {id}`, or \
             `quorumkv members remove {id}`, wipe the data dir, start it with --join <peer URLs>, \
             then `quorumkv members promote {id}`",
            expected.incarnation,
            self.me.incarnation,
            id = self.me.id,
        );
        self.replaced.send_if_modified(|m| {
            if m.is_none() {
                *m = Some(message);
                true
            } else {
                false
            }
        });
    }

    /// Resolves with the message once this node learned it was replaced.
    pub async fn wait_replaced(&self) -> String {
        let mut rx = self.replaced.subscribe();
        loop {
            if let Some(m) = rx.borrow_and_update().clone() {
                return m;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Middleware of the peer routes: refuses a request from an incarnation of a
/// member other than the one this node knows, and one that expected another
/// incarnation of this node (which then stops); stamps every answer with
/// this node's incarnation.
pub async fn check_incarnation(
    State(identity): State<Arc<Identity>>,
    req: Request,
    next: Next,
) -> Response {
    let me = identity.me();
    // A joining node is checked by the join itself; a stranger proving the
    // token says nothing of itself.
    let uri = req.uri().path();
    if path::is(uri, path::JOIN) || path::is(uri, path::PROVE) {
        return stamped(&identity, next.run(req).await);
    }
    if let Some(expected) = Incarnation::from_header(req.headers().get(EXPECT)) {
        if expected.id == me.id && expected.incarnation != me.incarnation {
            identity.replaced_by_cluster(expected);
            return stamped(
                &identity,
                Error::IncarnationMismatch(format!(
                    "this is node {me}; the request expected {expected}: this node lost its data and must be replaced"
                ))
                .into_response(),
            );
        }
    }
    if let Some(sender) = Incarnation::from_header(req.headers().get(HEADER)) {
        if let Err(m) = identity.check(sender) {
            let known = m.known;
            static REFUSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = REFUSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n % 100 == 1 {
                tracing::warn!(refused = n, "refused a peer request: {m}");
            }
            // Tell the sender which incarnation of it this node knows: a
            // sender that lost its data learns it from this and stops.
            let mut resp = Error::IncarnationMismatch(m.to_string()).into_response();
            if let Ok(v) = HeaderValue::from_str(&known.to_string()) {
                resp.headers_mut().insert(EXPECT, v);
            }
            return stamped(&identity, resp);
        }
    }
    stamped(&identity, next.run(req).await)
}

fn stamped(identity: &Identity, mut resp: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&identity.me().to_string()) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_are_kept_checked_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::open(dir.path(), 1).unwrap();
        let again = Identity::open(dir.path(), 1).unwrap();
        assert_eq!(a.me(), again.me(), "kept across restarts");
        let other = tempfile::tempdir().unwrap();
        assert_ne!(Identity::open(other.path(), 1).unwrap().me(), a.me());

        let p2 = Incarnation {
            id: 2,
            incarnation: 7,
        };
        assert_eq!(a.check(p2), Ok(()));
        let wiped = Incarnation {
            id: 2,
            incarnation: 8,
        };
        assert!(a.check(wiped).is_err());
        // Written down: a restart still refuses it.
        let a = Identity::open(dir.path(), 1).unwrap();
        assert_eq!(a.expected(2), Some(p2));
        assert!(a.check(wiped).is_err());
        // Removed from the cluster: forgotten, and a new incarnation is taken.
        a.retain(&[1, 3]);
        assert_eq!(Identity::open(dir.path(), 1).unwrap().expected(2), None);
        assert_eq!(a.check(wiped), Ok(()));
        assert_eq!(Incarnation::parse(&wiped.to_string()), Some(wiped));
    }
}
