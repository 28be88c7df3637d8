//! Forming a fresh cluster from `--initial-cluster`.
//!
//! Every founding node initialises the same membership when its data dir holds
//! no state. That is safe when all of them do: each writes the identical first
//! log entry, and openraft refuses (`NotAllowed`) once a node has any state, so
//! a restarted node simply resumes from disk.

use std::collections::BTreeMap;

use openraft::error::{InitializeError, RaftError};
use openraft::BasicNode;

use crate::raft::{NodeId, Raft};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("initialising the cluster failed: {0}")]
    Initialize(String),
}

/// How a node starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From the state in its data dir.
    Resumed,
    /// A founding member of a new cluster (`--initial-cluster`).
    Founded,
    /// With no state and nothing to found: to join, or to be added.
    Empty,
}

pub async fn initialize_if_new(
    raft: &Raft,
    initial_cluster: Option<&BTreeMap<NodeId, String>>,
) -> Result<Start, BootstrapError> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| BootstrapError::Initialize(e.to_string()))?;
    if initialized {
        tracing::info!("resuming from existing state; --initial-cluster ignored");
        return Ok(Start::Resumed);
    }
    let Some(members) = initial_cluster else {
        return Ok(Start::Empty);
    };
    let nodes: BTreeMap<NodeId, BasicNode> = members
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect();
    tracing::info!(?members, "initialising a new cluster");
    match raft.initialize(nodes).await {
        Ok(()) => Ok(Start::Founded),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(Start::Resumed),
        Err(e) => Err(BootstrapError::Initialize(e.to_string())),
    }
}
