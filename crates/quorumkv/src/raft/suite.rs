//! openraft's storage conformance suite, run against our sled log store and
//! state machine on a real temporary directory.

use openraft::testing::log::{StoreBuilder, Suite};

use crate::raft::durable::Durable;
use crate::raft::log_store::LogStore;
use crate::raft::snapshot::SnapshotFile;
use crate::raft::state_machine::StateMachine;
use crate::raft::TypeConfig;
use crate::sm::tree::SmTree;

/// The suite still reports openraft's `StorageError`; our stores speak `io::Error`.
type SuiteError = openraft::StorageError<TypeConfig>;

struct SledBuilder;

fn io_err(e: impl std::error::Error + Send + Sync + 'static) -> SuiteError {
    SuiteError::from_io_error(
        openraft::ErrorSubject::Store,
        openraft::ErrorVerb::Write,
        std::io::Error::other(e),
    )
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), SuiteError> {
        let dir = tempfile::tempdir().map_err(io_err)?;
        let sm_db = Durable::open(&dir.path().join("sm")).map_err(io_err)?;
        // No snapshot guard: the suite purges logs without building snapshots.
        let tree = SmTree::open(sm_db.db()).map_err(io_err)?;
        let log = LogStore::open(&dir.path().join("wal"), sm_db.clone(), tree.clone(), None)
            .map_err(io_err)?;
        let snapshots = SnapshotFile::open(dir.path().join("snapshot")).map_err(io_err)?;
        let sm = StateMachine::open(sm_db, tree, snapshots, Default::default()).map_err(io_err)?;
        Ok((dir, log, sm))
    }
}

#[tokio::test]
async fn openraft_storage_suite() -> Result<(), SuiteError> {
    Suite::test_all(SledBuilder).await
}
