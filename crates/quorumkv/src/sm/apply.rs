//! Applying requests to the state machine's tree: every change of one apply
//! call is collected in a [`Changes`] overlay (later entries see earlier ones)
//! and written as one unit, whole to readers and after a crash
//! ([`redo`](crate::sm::redo)). Preconditions, transaction compares and
//! idempotency checks all happen here, in log order.

use std::collections::HashMap;

use crate::command::{Command, CommandResult, OpResult, Precondition, Request, Txn, TxnOp};
use crate::kv::{answer_bytes, Key, Versioned};
use crate::sm::capture::Captures;
use crate::sm::history::{self, Stored};
use crate::sm::idempotency::{self, Policy};
use crate::sm::lease;
use crate::sm::redo::Change;
use crate::sm::tree::SmTree;
use crate::sm::{data_key, read_u64, CLOCK, DATA_BYTES};

/// Pending writes of one apply call, read through to the tree.
pub struct Changes<'a> {
    tree: &'a sled::Tree,
    pending: HashMap<Vec<u8>, Option<Vec<u8>>>,
    policy: Policy,
    /// The state machine's clock for the request being applied.
    clock: u64,
    /// The index being applied and the next history record number in it.
    history_seq: (u64, u32),
}

impl<'a> Changes<'a> {
    pub fn new(tree: &'a sled::Tree, policy: Policy) -> Self {
        Changes {
            tree,
            pending: HashMap::new(),
            policy,
            clock: 0,
            history_seq: (0, 0),
        }
    }

    /// The tree under the overlay (for scans; pending changes are not in it).
    pub fn tree(&self) -> &sled::Tree {
        self.tree
    }

    pub fn get_raw(&self, k: &[u8]) -> Result<Option<Vec<u8>>, sled::Error> {
        match self.pending.get(k) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.tree.get(k)?.map(|v| v.to_vec())),
        }
    }

    pub fn set_raw(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.pending.insert(k, Some(v));
    }

    pub fn remove_raw(&mut self, k: Vec<u8>) {
        self.pending.insert(k, None);
    }

    /// The keys with this prefix, pending changes included, in no order.
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, sled::Error> {
        let mut keys = Vec::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, _) = item?;
            if !self.pending.contains_key(k.as_ref()) {
                keys.push(k.to_vec());
            }
        }
        keys.extend(
            self.pending
                .iter()
                .filter(|(k, v)| k.starts_with(prefix) && v.is_some())
                .map(|(k, _)| k.clone()),
        );
        Ok(keys)
    }

    fn get(&self, key: &Key) -> Result<Option<Versioned>, sled::Error> {
        Ok(self
            .get_raw(&data_key(key.as_str()))?
            .and_then(|b| Versioned::decode(&b)))
    }

    fn put(&mut self, key: &Key, value: &[u8], index: u64) -> Result<(), sled::Error> {
        let old = self.get(key)?;
        let record = Versioned {
            mod_index: index,
            value: value.to_vec(),
        };
        self.set_raw(data_key(key.as_str()), record.encode());
        lease::detach(self, key.as_str())?;
        self.record_change(index, key.as_str(), Some(value))?;
        self.count_bytes(key, old.as_ref(), Some(value.len()))
    }

    /// Deletes `key` (and its lease attachment); whether it existed.
    pub(crate) fn delete(&mut self, key: &Key, index: u64) -> Result<bool, sled::Error> {
        let old = self.get(key)?;
        if old.is_none() {
            return Ok(false);
        }
        self.remove_raw(data_key(key.as_str()));
        lease::detach(self, key.as_str())?;
        self.record_change(index, key.as_str(), None)?;
        self.count_bytes(key, old.as_ref(), None)?;
        Ok(true)
    }

    /// Adds a change to the history watchers read ([`history`]).
    fn record_change(
        &mut self,
        index: u64,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<(), sled::Error> {
        let seq = match self.history_seq {
            (i, next) if i == index => next,
            _ => 0,
        };
        self.history_seq = (index, seq + 1);
        let stored = Stored {
            at_ms: self.clock,
            key: key.to_string(),
            value: value.map(<[u8]>::to_vec),
        };
        self.set_raw(
            history::record_key(index, seq),
            history::encode_stored(&stored),
        );
        let len = read_u64(self.get_raw(history::LEN)?) + 1;
        self.set_raw(history::LEN.to_vec(), len.to_be_bytes().to_vec());
        Ok(())
    }

    /// Keeps `m:data_bytes` (user keys + values) up to date as `key` goes
    /// from `old` to a value of `new` bytes (`None`: deleted).
    fn count_bytes(
        &mut self,
        key: &Key,
        old: Option<&Versioned>,
        new: Option<usize>,
    ) -> Result<(), sled::Error> {
        let size = |len: usize| (key.as_str().len() + len) as u64;
        let before = old.map_or(0, |v| size(v.value.len()));
        let after = new.map_or(0, size);
        if before == after {
            return Ok(());
        }
        let total = read_u64(self.get_raw(DATA_BYTES)?);
        let total = (total + after).saturating_sub(before);
        self.set_raw(DATA_BYTES.to_vec(), total.to_be_bytes().to_vec());
        Ok(())
    }

    /// Writes the pending changes to the tree (whole: [`redo`]), through
    /// `captures`.
    pub fn commit(self, sm: &SmTree, captures: &Captures) -> Result<(), sled::Error> {
        let tree = self.tree;
        let changes: Vec<Change> = self
            .pending
            .into_iter()
            .map(|(key, value)| Change { key, value })
            .collect();
        let keys = changes.iter().map(|c| &c.key[..]);
        captures.write(keys, || sm.write(tree, &changes))
    }

    /// The pending changes as a sled batch (tests write with it).
    #[cfg(test)]
    pub fn into_batch(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (k, v) in self.pending {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        batch
    }

    /// Applies the request in the log entry at `index`.
    pub fn apply(&mut self, index: u64, req: &Request) -> Result<CommandResult, sled::Error> {
        let clock = self.advance_clock(req.at_ms)?;
        self.clock = clock;
        let Some(idem) = &req.idempotency else {
            return self.apply_command(index, &req.command);
        };
        if let Some(done) = idempotency::lookup(self, &idem.key, clock, self.policy)? {
            return Ok(if done.fingerprint == idem.fingerprint {
                CommandResult::Replayed {
                    index: done.index,
                    original: Box::new(done.result),
                }
            } else {
                CommandResult::IdempotencyConflict
            });
        }
        let result = self.apply_command(index, &req.command)?;
        idempotency::record(self, idem, index, clock, &result)?;
        Ok(result)
    }

    /// The state machine's clock: the largest proposer time seen so far, so it
    /// never goes backwards when leadership moves to a node whose clock lags.
    fn advance_clock(&mut self, at_ms: u64) -> Result<u64, sled::Error> {
        let clock = read_u64(self.get_raw(CLOCK)?).max(at_ms);
        self.set_raw(CLOCK.to_vec(), clock.to_be_bytes().to_vec());
        Ok(clock)
    }

    fn apply_command(&mut self, index: u64, cmd: &Command) -> Result<CommandResult, sled::Error> {
        match cmd {
            Command::Put {
                key,
                value,
                precondition,
            } => {
                if let Some(failed) = self.check(key, precondition)? {
                    return Ok(failed);
                }
                self.put(key, value, index)?;
                Ok(CommandResult::Put)
            }
            Command::Delete { key, precondition } => {
                if let Some(failed) = self.check(key, precondition)? {
                    return Ok(failed);
                }
                let existed = self.delete(key, index)?;
                Ok(CommandResult::Delete { existed })
            }
            Command::Txn(txn) => self.apply_txn(index, txn),
            Command::PutLeased {
                key,
                value,
                precondition,
                lease,
            } => {
                if !lease::exists(self, *lease)? {
                    return Ok(CommandResult::LeaseNotFound { id: *lease });
                }
                if let Some(failed) = self.check(key, precondition)? {
                    return Ok(failed);
                }
                self.put(key, value, index)?;
                lease::attach(self, key.as_str(), *lease);
                Ok(CommandResult::Put)
            }
            Command::LeaseGrant { ttl_ms, owner } => {
                Ok(lease::grant(self, index, *ttl_ms, owner.clone()))
            }
            Command::LeaseRevoke { id } => lease::revoke(self, index, *id),
        }
    }

    fn check(
        &self,
        key: &Key,
        precondition: &Option<Precondition>,
    ) -> Result<Option<CommandResult>, sled::Error> {
        let Some(p) = precondition else {
            return Ok(None);
        };
        let current = self.get(key)?;
        Ok(
            (!p.holds(current.as_ref())).then(|| CommandResult::PreconditionFailed {
                current: current.map(|v| v.mod_index),
            }),
        )
    }

    fn apply_txn(&mut self, index: u64, txn: &Txn) -> Result<CommandResult, sled::Error> {
        let mut succeeded = true;
        for c in &txn.compares {
            if !c.test.holds(self.get(&c.key)?.as_ref()) {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        if let Some(limit) = txn.max_get_bytes {
            let bytes = self.get_bytes(ops)?;
            if bytes > limit {
                return Ok(CommandResult::TooLarge { bytes, limit });
            }
        }
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.push(match op {
                TxnOp::Put { key, value } => {
                    self.put(key, value, index)?;
                    OpResult::Put
                }
                TxnOp::Delete { key } => OpResult::Delete {
                    existed: self.delete(key, index)?,
                },
                TxnOp::Get { key } => OpResult::Get {
                    key: key.clone(),
                    value: self.get(key)?,
                },
            });
        }
        Ok(CommandResult::Txn { succeeded, results })
    }

    /// The size of the answer `ops`' gets would give ([`answer_bytes`]),
    /// each get seeing the puts and deletes before it; changes nothing.
    fn get_bytes(&self, ops: &[TxnOp]) -> Result<u64, sled::Error> {
        let mut sizes: HashMap<&str, Option<usize>> = HashMap::new();
        let mut total = 0u64;
        for op in ops {
            match op {
                TxnOp::Put { key, value } => {
                    sizes.insert(key.as_str(), Some(value.len()));
                }
                TxnOp::Delete { key } => {
                    sizes.insert(key.as_str(), None);
                }
                TxnOp::Get { key } => {
                    let len = match sizes.get(key.as_str()) {
                        Some(len) => *len,
                        None => self.get(key)?.map(|v| v.value.len()),
                    };
                    let bytes = answer_bytes(key.as_str().len(), len.unwrap_or(0));
                    total = total.saturating_add(bytes as u64);
                }
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Compare, Idempotency, Test};

    fn key(s: &str) -> Key {
        Key::parse(s.into(), 64).unwrap()
    }

    fn req(command: Command) -> Request {
        Request {
            command,
            ticket: None,
            idempotency: None,
            at_ms: 1_000,
        }
    }

    fn put(k: &str, v: &str, precondition: Option<Precondition>) -> Command {
        Command::Put {
            key: key(k),
            value: v.as_bytes().to_vec(),
            precondition,
        }
    }

    /// Applies each command at successive indexes from 1, committing each.
    fn run(tree: &sled::Tree, cmds: Vec<Request>) -> Vec<CommandResult> {
        let policy = Policy {
            ttl_ms: 60_000,
            max_keys: 100,
        };
        cmds.iter()
            .enumerate()
            .map(|(i, r)| {
                let mut c = Changes::new(tree, policy);
                let res = c.apply(i as u64 + 1, r).unwrap();
                tree.apply_batch(c.into_batch()).unwrap();
                res
            })
            .collect()
    }

    fn tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let t = db.open_tree("sm").unwrap();
        (dir, t)
    }

    #[test]
    fn preconditions_decide_in_log_order() {
        let (_d, t) = tree();
        let res = run(
            &t,
            vec![
                req(put("seat", "alice", Some(Precondition::Absent))),
                req(put("seat", "bob", Some(Precondition::Absent))),
                req(put("seat", "carol", Some(Precondition::ModIndex(1)))),
                req(put("seat", "dave", Some(Precondition::ModIndex(1)))),
                req(Command::Delete {
                    key: key("seat"),
                    precondition: Some(Precondition::ModIndex(3)),
                }),
                req(Command::Delete {
                    key: key("seat"),
                    precondition: Some(Precondition::Exists),
                }),
            ],
        );
        assert_eq!(res[0], CommandResult::Put);
        assert_eq!(
            res[1],
            CommandResult::PreconditionFailed { current: Some(1) }
        );
        assert_eq!(res[2], CommandResult::Put);
        assert_eq!(
            res[3],
            CommandResult::PreconditionFailed { current: Some(3) }
        );
        assert_eq!(res[4], CommandResult::Delete { existed: true });
        assert_eq!(res[5], CommandResult::PreconditionFailed { current: None });
    }

    #[test]
    fn txn_takes_one_branch_atomically() {
        let (_d, t) = tree();
        let transfer = |amount_ok: i64| {
            req(Command::Txn(Txn {
                compares: vec![Compare {
                    key: key("a"),
                    test: Test::AtLeast(amount_ok),
                }],
                success: vec![
                    TxnOp::Put {
                        key: key("a"),
                        value: b"70".to_vec(),
                    },
                    TxnOp::Put {
                        key: key("b"),
                        value: b"30".to_vec(),
                    },
                    TxnOp::Get { key: key("a") },
                ],
                failure: vec![TxnOp::Get { key: key("a") }],
                max_get_bytes: None,
            }))
        };
        let res = run(
            &t,
            vec![req(put("a", "100", None)), transfer(500), transfer(30)],
        );
        let CommandResult::Txn { succeeded, results } = &res[1] else {
            panic!("{:?}", res[1])
        };
        assert!(!succeeded);
        assert_eq!(
            results[0],
            OpResult::Get {
                key: key("a"),
                value: Some(Versioned {
                    mod_index: 1,
                    value: b"100".to_vec()
                })
            }
        );
        let CommandResult::Txn { succeeded, results } = &res[2] else {
            panic!("{:?}", res[2])
        };
        assert!(succeeded);
        assert_eq!(results.len(), 3);
        let b = Changes::new(&t, Policy::default()).get(&key("b")).unwrap();
        assert_eq!(b.unwrap().value, b"30");
    }

    #[test]
    fn a_txn_whose_gets_pass_its_bound_applies_nothing() {
        let (_d, t) = tree();
        let big = "x".repeat(300);
        // Each get of `big` answers 1 + 400 + 48 = 449 bytes.
        let txn = |max: u64| {
            req(Command::Txn(Txn {
                success: vec![
                    TxnOp::Put {
                        key: key("b"),
                        value: big.clone().into_bytes(),
                    },
                    TxnOp::Get { key: key("a") },
                    TxnOp::Get { key: key("b") },
                    TxnOp::Delete { key: key("a") },
                    TxnOp::Get { key: key("a") },
                ],
                max_get_bytes: Some(max),
                ..Txn::default()
            }))
        };
        // 449 + 449 + 49 (a deleted key: no value) = 947.
        let res = run(&t, vec![req(put("a", &big, None)), txn(946), txn(947)]);
        assert_eq!(
            res[1],
            CommandResult::TooLarge {
                bytes: 947,
                limit: 946
            }
        );
        let CommandResult::Txn { succeeded, .. } = &res[2] else {
            panic!("{:?}", res[2])
        };
        assert!(succeeded);
        // The refused one changed nothing; the second one deleted a.
        let c = Changes::new(&t, Policy::default());
        assert!(c.get(&key("a")).unwrap().is_none());
        assert_eq!(c.get(&key("b")).unwrap().unwrap().mod_index, 3);
    }

    #[test]
    fn data_bytes_follow_puts_overwrites_and_deletes() {
        let (_d, t) = tree();
        let bytes = || {
            read_u64(
                Changes::new(&t, Policy::default())
                    .get_raw(DATA_BYTES)
                    .unwrap(),
            )
        };
        run(&t, vec![req(put("a", "123", None))]);
        assert_eq!(bytes(), 4);
        run(
            &t,
            vec![req(put("a", "12345", None)), req(put("bb", "x", None))],
        );
        assert_eq!(bytes(), 6 + 3);
        run(
            &t,
            vec![req(Command::Delete {
                key: key("a"),
                precondition: None,
            })],
        );
        assert_eq!(bytes(), 3);
        run(
            &t,
            vec![req(Command::Delete {
                key: key("a"),
                precondition: None,
            })],
        );
        assert_eq!(bytes(), 3);
        let txn = Txn {
            success: vec![
                TxnOp::Put {
                    key: key("c"),
                    value: b"4444".to_vec(),
                },
                TxnOp::Delete { key: key("bb") },
            ],
            ..Txn::default()
        };
        run(&t, vec![req(Command::Txn(txn))]);
        assert_eq!(bytes(), 5);
    }

    #[test]
    fn idempotent_retry_replays_and_reuse_conflicts() {
        let (_d, t) = tree();
        let with_key = |cmd: Command| Request {
            idempotency: Some(Idempotency {
                key: "pay-1".into(),
                fingerprint: cmd.fingerprint(),
            }),
            ..req(cmd)
        };
        let res = run(
            &t,
            vec![
                with_key(put("x", "1", None)),
                req(put("x", "2", None)),
                with_key(put("x", "1", None)),
                with_key(put("x", "other", None)),
            ],
        );
        assert_eq!(res[0], CommandResult::Put);
        assert_eq!(
            res[2],
            CommandResult::Replayed {
                index: 1,
                original: Box::new(CommandResult::Put)
            }
        );
        assert_eq!(res[3], CommandResult::IdempotencyConflict);
        let x = Changes::new(&t, Policy::default()).get(&key("x")).unwrap();
        assert_eq!(x.unwrap().value, b"2", "the retry must not apply again");
    }
}
