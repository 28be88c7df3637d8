//! Which sled tree is the state machine's: a snapshot install replaces the
//! whole state, so it fills a new tree a frame at a time and then switches
//! to it in one step, instead of holding the snapshot in one batch.
//!
//! The current tree's name is kept in the database's default tree
//! (`sm:current`; absent means `sm`, the first one). An install fills
//! `sm.<n>`, makes it durable, and only then writes the new name: a crash
//! before that leaves the old state whole and the half-filled tree is dropped
//! at the next open. Readers load the current tree for each read
//! ([`SmTree::load`]), so a read sees the old state or the new, never a mix.
//! The old tree is dropped after a grace period, once reads that loaded it
//! just before the switch are done.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::sm::redo::{Change, Redo};

const CURRENT: &[u8] = b"sm:current";
/// How long a replaced tree stays readable after a switch.
const GRACE: Duration = Duration::from_secs(30);

fn is_sm_tree(name: &[u8]) -> bool {
    name == crate::sm::TREE.as_bytes() || name.starts_with(b"sm.")
}

/// The state machine's current tree; cheap to clone.
#[derive(Clone)]
pub struct SmTree {
    db: sled::Db,
    current: Arc<ArcSwap<sled::Tree>>,
    /// How applies write to it and reads see them whole.
    redo: Arc<Redo>,
}

impl SmTree {
    /// Opens the current tree of `db` and drops any other state-machine
    /// tree (an install a crash cut short, or a replaced one).
    pub fn open(db: &sled::Db) -> Result<SmTree, sled::Error> {
        let name = match db.get(CURRENT)? {
            Some(n) => n.to_vec(),
            None => crate::sm::TREE.as_bytes().to_vec(),
        };
        for other in db.tree_names() {
            if is_sm_tree(&other) && other != name {
                db.drop_tree(other)?;
            }
        }
        let tree = db.open_tree(&name)?;
        let redo = Redo::open(db)?;
        redo.recover(&tree)?;
        Ok(SmTree {
            db: db.clone(),
            current: Arc::new(ArcSwap::from_pointee(tree)),
            redo: Arc::new(redo),
        })
    }

    /// The tree for one apply, or a read that needs no consistency across
    /// keys ([`SmTree::read`] for those).
    pub fn load(&self) -> Arc<sled::Tree> {
        self.current.load_full()
    }

    /// Runs `read` on the current tree, seeing every apply whole or not at all.
    pub fn read<T>(
        &self,
        read: impl Fn(&sled::Tree) -> Result<T, sled::Error>,
    ) -> Result<T, sled::Error> {
        self.redo.read(&self.load(), read)
    }

    /// Writes an apply's changes to `tree` (the one [`SmTree::load`] gave).
    pub fn write(&self, tree: &sled::Tree, changes: &[Change]) -> Result<(), sled::Error> {
        self.redo.write(tree, changes)
    }

    /// A new, empty tree to fill with a snapshot.
    pub fn stage(&self) -> Result<sled::Tree, sled::Error> {
        let current = self.load();
        let n = current
            .name()
            .strip_prefix(b"sm.")
            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let name = format!("sm.{}", n + 1);
        self.db.drop_tree(&name)?;
        self.db.open_tree(&name)
    }

    /// Makes `staged` the current tree. The caller has made `staged` durable
    /// and makes the switch durable after. The old tree is dropped after
    /// [`GRACE`] (or at the next open).
    pub fn switch(&self, staged: sled::Tree) -> Result<(), sled::Error> {
        self.db.insert(CURRENT, staged.name())?;
        let old = self.current.swap(Arc::new(staged));
        let db = self.db.clone();
        let drop_old = move || {
            if let Err(e) = db.drop_tree(old.name()) {
                tracing::warn!(error = %e, "dropping the state machine's replaced tree");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(GRACE).await;
                    let _ = tokio::task::spawn_blocking(drop_old).await;
                });
            }
            Err(_) => drop_old(),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_survives_a_reopen_and_an_unfinished_stage_does_not() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let t = SmTree::open(&db).unwrap();
            t.load().insert("k", "old").unwrap();
            let staged = t.stage().unwrap();
            staged.insert("k", "new").unwrap();
            t.switch(staged).unwrap();
            assert_eq!(t.load().get("k").unwrap().unwrap(), "new");
            // A second install, cut short by a "crash".
            t.stage().unwrap().insert("k", "half").unwrap();
            db.flush().unwrap();
        }
        let db = sled::open(dir.path()).unwrap();
        let t = SmTree::open(&db).unwrap();
        assert_eq!(t.load().get("k").unwrap().unwrap(), "new");
        let names: Vec<_> = db
            .tree_names()
            .into_iter()
            .filter(|n| is_sm_tree(n))
            .collect();
        assert_eq!(
            names,
            vec![t.load().name()],
            "only the current tree is left"
        );
    }
}
