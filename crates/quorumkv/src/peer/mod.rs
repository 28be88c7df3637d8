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
