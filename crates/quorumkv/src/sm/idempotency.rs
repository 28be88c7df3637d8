//! Exactly-once retries (the client sessions of the Raft dissertation, 6.3, in
//! HTTP's terms): the result of a request with an `Idempotency-Key` is recorded
//! in the state machine, replicated and kept in snapshots.
//!
//! A record stays valid while it is younger than `ttl_ms` by the state
//! machine's clock and among the `max_keys` newest records. Both rules depend
//! only on the log, so every replica agrees on them; expired records are
//! removed from disk later ([`collect_garbage`]) without changing any answer.

use serde::{Deserialize, Serialize};

use crate::command::{CommandResult, Idempotency};
use crate::raft::{decode, encode};
use crate::sm::apply::Changes;
use crate::sm::{idem_key, idem_order_key, prefixed, read_u64, CLOCK, IDEM, IDEM_ORDER, IDEM_SEQ};

/// How long results are kept; must be the same on every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub ttl_ms: u64,
    pub max_keys: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            ttl_ms: 10 * 60 * 1000,
            max_keys: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub clock: u64,
    pub fingerprint: u64,
    pub index: u64,
    pub result: CommandResult,
}

impl Policy {
    fn valid(&self, r: &Record, clock: u64, next_seq: u64) -> bool {
        r.clock.saturating_add(self.ttl_ms) >= clock
            && next_seq.saturating_sub(r.seq) <= self.max_keys
    }
}

fn to_io(e: bincode::Error) -> sled::Error {
    sled::Error::Io(std::io::Error::other(e))
}

/// The still-valid record for `key`, if any.
pub fn lookup(
    changes: &Changes<'_>,
    key: &str,
    clock: u64,
    policy: Policy,
) -> Result<Option<Record>, sled::Error> {
    let Some(raw) = changes.get_raw(&idem_key(key))? else {
        return Ok(None);
    };
    let record: Record = decode(&raw).map_err(to_io)?;
    let next_seq = read_u64(changes.get_raw(IDEM_SEQ)?);
    Ok(policy.valid(&record, clock, next_seq).then_some(record))
}

/// Records `result` as the outcome of the request with this idempotency key.
pub fn record(
    changes: &mut Changes<'_>,
    idem: &Idempotency,
    index: u64,
    clock: u64,
    result: &CommandResult,
) -> Result<(), sled::Error> {
    let seq = read_u64(changes.get_raw(IDEM_SEQ)?);
    let record = Record {
        seq,
        clock,
        fingerprint: idem.fingerprint,
        index,
        result: result.clone(),
    };
    changes.set_raw(idem_key(&idem.key), encode(&record).map_err(to_io)?);
    changes.set_raw(idem_order_key(seq), idem.key.as_bytes().to_vec());
    changes.set_raw(IDEM_SEQ.to_vec(), (seq + 1).to_be_bytes().to_vec());
    Ok(())
}

/// Removes records that can no longer be valid, oldest first, into
/// `changes`; returns how many.
pub fn collect_garbage(changes: &mut Changes<'_>, policy: Policy) -> Result<usize, sled::Error> {
    let clock = read_u64(changes.get_raw(CLOCK)?);
    let next_seq = read_u64(changes.get_raw(IDEM_SEQ)?);
    let mut removed = 0;
    let tree = changes.tree().clone();
    for item in tree.scan_prefix([IDEM_ORDER]) {
        let (order_key, key) = item?;
        let ikey = prefixed(IDEM, &key);
        if let Some(raw) = changes.get_raw(&ikey)? {
            let r: Record = decode(&raw).map_err(to_io)?;
            // A key recorded again after expiry has a newer order entry of its own.
            if idem_order_key(r.seq) == order_key.as_ref() {
                if policy.valid(&r, clock, next_seq) {
                    break;
                }
                changes.remove_raw(ikey);
            }
        }
        changes.remove_raw(order_key.to_vec());
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let t = sled::open(dir.path()).unwrap().open_tree("sm").unwrap();
        (dir, t)
    }

    fn put_record(t: &sled::Tree, policy: Policy, key: &str, index: u64, clock: u64) {
        let mut c = Changes::new(t, policy);
        let idem = Idempotency {
            key: key.into(),
            fingerprint: 7,
        };
        record(&mut c, &idem, index, clock, &CommandResult::Put).unwrap();
        c.set_raw(CLOCK.to_vec(), clock.to_be_bytes().to_vec());
        t.apply_batch(c.into_batch()).unwrap();
    }

    #[test]
    fn records_expire_by_clock_and_by_count() {
        let (_d, t) = tree();
        let policy = Policy {
            ttl_ms: 100,
            max_keys: 2,
        };
        put_record(&t, policy, "a", 1, 1_000);
        put_record(&t, policy, "b", 2, 1_050);
        let c = Changes::new(&t, policy);
        assert!(lookup(&c, "a", 1_050, policy).unwrap().is_some());
        assert!(lookup(&c, "a", 1_101, policy).unwrap().is_none(), "too old");
        drop(c);
        put_record(&t, policy, "c", 3, 1_060);
        let c = Changes::new(&t, policy);
        assert!(
            lookup(&c, "a", 1_060, policy).unwrap().is_none(),
            "pushed out"
        );
        assert!(lookup(&c, "b", 1_060, policy).unwrap().is_some());
        drop(c);
        let mut c = Changes::new(&t, policy);
        assert_eq!(collect_garbage(&mut c, policy).unwrap(), 1);
        t.apply_batch(c.into_batch()).unwrap();
        assert!(t.get(idem_key("a")).unwrap().is_none());
        assert!(t.get(idem_key("b")).unwrap().is_some());
    }
}
