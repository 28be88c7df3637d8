//! Leases in the state machine: which exist, with what TTL, and which keys
//! each holds. When a lease goes (revoked by a client, or expired by the
//! leader, which proposes the revoke), its keys are deleted in that same log
//! entry, so every replica and every watcher sees the same deletes. Deadlines
//! are not here: they live on the leader only (`store::leases`).
//!
//! Layout in the `sm` tree: `l<id>` -> bincode [`Lease`]; `a<id><key>` -> ""
//! (the lease's keys); `o<key>` -> id (the key's lease). Ids are the log
//! index of the grant (grants never share an entry).

use serde::{Deserialize, Serialize};

use crate::command::CommandResult;
use crate::kv::Key;
use crate::raft::{decode, encode};
use crate::sm::apply::Changes;
use crate::sm::prefixed;

const LEASE: u8 = b'l';
const ATTACHED: u8 = b'a';
const OWNER: u8 = b'o';

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub ttl_ms: u64,
    /// The grant's log index.
    pub granted_at: u64,
    /// The token that took it (when clients authenticate).
    pub owner: Option<String>,
}

pub fn lease_key(id: u64) -> Vec<u8> {
    prefixed(LEASE, &id.to_be_bytes())
}

pub fn attached_prefix(id: u64) -> Vec<u8> {
    prefixed(ATTACHED, &id.to_be_bytes())
}

fn attached_key(id: u64, key: &str) -> Vec<u8> {
    let mut k = attached_prefix(id);
    k.extend_from_slice(key.as_bytes());
    k
}

fn owner_key(key: &str) -> Vec<u8> {
    prefixed(OWNER, key.as_bytes())
}

pub fn lease_prefix() -> [u8; 1] {
    [LEASE]
}

/// The id in an `l<id>` key.
pub fn id_of(lease_key: &[u8]) -> Option<u64> {
    lease_key
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// The key in an `a<id><key>` entry.
pub fn key_of_attachment(k: &[u8]) -> String {
    String::from_utf8_lossy(k.get(9..).unwrap_or_default()).into_owned()
}

pub fn decode_lease(raw: &[u8]) -> Option<Lease> {
    decode(raw).ok()
}

pub fn exists(c: &Changes<'_>, id: u64) -> Result<bool, sled::Error> {
    Ok(c.get_raw(&lease_key(id))?.is_some())
}

pub fn grant(c: &mut Changes<'_>, index: u64, ttl_ms: u64, owner: Option<String>) -> CommandResult {
    let lease = Lease {
        ttl_ms,
        granted_at: index,
        owner,
    };
    c.set_raw(lease_key(index), encode(&lease).unwrap_or_default());
    CommandResult::LeaseGranted { id: index, ttl_ms }
}

/// Ties `key` (just written) to lease `id`.
pub fn attach(c: &mut Changes<'_>, key: &str, id: u64) {
    c.set_raw(owner_key(key), id.to_be_bytes().to_vec());
    c.set_raw(attached_key(id, key), Vec::new());
}

/// Unties `key` from its lease, if it has one (it was overwritten or deleted).
pub fn detach(c: &mut Changes<'_>, key: &str) -> Result<(), sled::Error> {
    let owner = owner_key(key);
    if let Some(raw) = c.get_raw(&owner)? {
        if let Ok(id) = <[u8; 8]>::try_from(raw.as_slice()) {
            c.remove_raw(attached_key(u64::from_be_bytes(id), key));
        }
        c.remove_raw(owner);
    }
    Ok(())
}

/// Removes lease `id` and deletes its keys at `index`.
pub fn revoke(c: &mut Changes<'_>, index: u64, id: u64) -> Result<CommandResult, sled::Error> {
    if !exists(c, id)? {
        return Ok(CommandResult::LeaseNotFound { id });
    }
    let mut keys = c.keys_with_prefix(&attached_prefix(id))?;
    keys.sort();
    let mut deleted = 0;
    for k in &keys {
        // Keys were valid when attached; parse cannot fail on them.
        let Ok(key) = Key::parse(key_of_attachment(k), usize::MAX) else {
            continue;
        };
        if c.delete(&key, index)? {
            deleted += 1;
        }
    }
    c.remove_raw(lease_key(id));
    Ok(CommandResult::LeaseRevoked { deleted })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Request};
    use crate::sm::history::{self, Read, Want};
    use crate::sm::idempotency::Policy;

    fn key(s: &str) -> Key {
        Key::parse(s.into(), 64).unwrap()
    }

    fn apply(t: &sled::Tree, index: u64, cmd: Command) -> CommandResult {
        let mut c = Changes::new(t, Policy::default());
        let req = Request {
            command: cmd,
            ticket: None,
            idempotency: None,
            at_ms: index * 1000,
        };
        let res = c.apply(index, &req).unwrap();
        t.apply_batch(c.into_batch()).unwrap();
        res
    }

    fn leased(k: &str, lease: u64) -> Command {
        Command::PutLeased {
            key: key(k),
            value: b"v".to_vec(),
            precondition: None,
            lease,
        }
    }

    #[test]
    fn revoking_deletes_exactly_the_keys_still_held() {
        let dir = tempfile::tempdir().unwrap();
        let t = sled::open(dir.path()).unwrap().open_tree("sm").unwrap();
        assert_eq!(
            apply(
                &t,
                1,
                Command::LeaseGrant {
                    ttl_ms: 5000,
                    owner: None
                }
            ),
            CommandResult::LeaseGranted {
                id: 1,
                ttl_ms: 5000
            }
        );
        assert_eq!(
            apply(&t, 2, leased("x", 9)),
            CommandResult::LeaseNotFound { id: 9 }
        );
        apply(&t, 3, leased("a", 1));
        apply(&t, 4, leased("b", 1));
        apply(&t, 5, leased("c", 1));
        // b is overwritten without the lease, c deleted: neither is the lease's now.
        apply(
            &t,
            6,
            Command::Put {
                key: key("b"),
                value: b"mine".to_vec(),
                precondition: None,
            },
        );
        apply(
            &t,
            7,
            Command::Delete {
                key: key("c"),
                precondition: None,
            },
        );
        assert_eq!(
            apply(&t, 8, Command::LeaseRevoke { id: 1 }),
            CommandResult::LeaseRevoked { deleted: 1 }
        );
        assert_eq!(
            apply(&t, 9, Command::LeaseRevoke { id: 1 }),
            CommandResult::LeaseNotFound { id: 1 }
        );
        assert!(t.get(crate::sm::data_key("a")).unwrap().is_none());
        assert!(t.get(crate::sm::data_key("b")).unwrap().is_some());
        assert_eq!(t.scan_prefix([ATTACHED]).count(), 0);
        assert_eq!(t.scan_prefix([OWNER]).count(), 0);
        // The history holds each change once, the revoke's delete of a at 8.
        let want = Want {
            from: 1,
            prefix: "",
            key: None,
            max: 100,
            max_bytes: usize::MAX,
        };
        let Read::Page { events, through } = history::read(&t, &want, 9).unwrap() else {
            panic!("compacted")
        };
        assert_eq!(through, 9);
        let seen: Vec<(u64, &str, bool)> = events
            .iter()
            .map(|e| (e.index, e.key.as_str(), e.value.is_some()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (3, "a", true),
                (4, "b", true),
                (5, "c", true),
                (6, "b", true),
                (7, "c", false),
                (8, "a", false)
            ]
        );
    }
}
