//! The disk quota, as etcd's `--quota-backend-bytes`: past `--quota-bytes`
//! of user keys and values, the node raises an alarm (logged, and shown in
//! `/v1/cluster`) and its leader refuses writes that may store more
//! (`507 quota_exceeded`); deletes and reads still work. Once deletes bring
//! the data under the quota the alarm clears by itself.
//!
//! The measure is the state machine's own count of key and value bytes
//! (`m:data_bytes`, kept by every apply), the same on every replica at the
//! same index, so it does not depend on how sled lays out its files.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Weak;
use std::time::Duration;

use crate::command::Command;
use crate::error::Error;
use crate::store::Store;

/// How often the alarm is looked at when no write asks.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Whether the alarm is raised, so that only its changes are logged.
#[derive(Default)]
pub struct Alarm(AtomicBool);

impl Store {
    /// Bytes of user data stored and whether that is at or past the quota;
    /// logs the alarm's raising and clearing.
    pub fn quota_state(&self) -> Result<(u64, bool), Error> {
        let bytes = self.reader.data_bytes()?;
        let quota = self.config.quota_bytes;
        let over = bytes >= quota;
        if self.quota_alarm.0.swap(over, Ordering::Relaxed) != over {
            if over {
                tracing::warn!(
                    bytes,
                    quota,
                    "quota alarm raised: writes that store more are refused until data is deleted"
                );
            } else {
                tracing::info!(bytes, quota, "quota alarm cleared");
            }
        }
        Ok((bytes, over))
    }

    /// Refuses `command` when it may store more and the quota is reached.
    pub(super) fn check_quota(&self, command: &Command) -> Result<(), Error> {
        if !command.adds_data() {
            return Ok(());
        }
        let (bytes, over) = self.quota_state()?;
        if over {
            return Err(Error::QuotaExceeded(format!(
                "{bytes} bytes of keys and values stored, quota {}",
                self.config.quota_bytes
            )));
        }
        Ok(())
    }
}

/// Looks at the alarm every second, so that it is raised or cleared (and
/// logged) on a node that takes no writes too.
pub(super) fn start(me: Weak<Store>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let Some(store) = me.upgrade() else { return };
            let _ = store.quota_state();
        }
    });
}
