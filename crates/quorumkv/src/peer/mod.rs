//! Everything one node says to another. openraft's own messages (append,
//! vote, snapshot) and the store's calls (forward a write, read index, wait
//! applied, probe) all travel as bincode over HTTP to `<peer>/raft/<path>`.
//!
//! ```text
//! auth.rs      the cluster token: sent with every call, required by every route
//! messages.rs  the paths, and the typed requests and answers (LeaderReply: done / not leader / failed)
//! client.rs    PeerClient: pooled keep-alive calls; call_leader for leader-only calls
//! router.rs    the /raft/* routes: the server side of every call
//! ```
//! `raft::network` adapts [`PeerClient`] to openraft's network traits.

pub mod auth;
pub mod client;
pub mod cluster_id;
pub mod identity;
pub mod messages;
pub mod router;

pub use client::{CallError, PeerClient};
pub use messages::{Attempt, LeaderReply};

/// Writes `text` to `dir/name` durably: a temp file, fsync, rename over the
/// old one, fsync of the directory (the node's small identity files).
pub(crate) fn write_durably(dir: &std::path::Path, name: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}
