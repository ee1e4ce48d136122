//! [`LayerDirs`]: the layer directories of the snapshots this process prepared and committed,
//! remembered so that reading a committed snapshot's own files (an export's layer, a clone)
//! needs no view of it — a view and its removal are two metadata writes in containerd and in
//! the snapshotter, each made durable on disk.
//!
//! An active snapshot's writes land in its upper directory ([`Mount::active_upper`]); once it
//! is committed, the same directory is the committed snapshot's own layer, which a view of it
//! would show ([`Mount::layer_dir`]). The memo is in memory only (a restarted daemon asks for
//! views again) and bounded; an entry goes when its snapshot is removed through the client,
//! and one whose directory is gone is never returned.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::Mount;

/// How many snapshots' directories are remembered; the oldest are forgotten first.
const KEPT: usize = 4096;

/// Snapshot (namespace, snapshotter, key or name) → its own layer directory.
#[derive(Debug, Default)]
pub(crate) struct LayerDirs {
    inner: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    dirs: HashMap<Id, PathBuf>,
    /// Ids in the order they were remembered, oldest first. An id forgotten since (committed
    /// under a name, removed) stays until its turn to go comes, so no call walks the queue; an
    /// id remembered again meanwhile may then be forgotten early, and a view answers for it.
    order: VecDeque<Id>,
}

/// A snapshot as containerd names it.
pub(crate) type Id = (String, String, String);

impl LayerDirs {
    /// Remembers the upper directory of active snapshot `id` from the `mounts` its prepare
    /// returned (nothing if they have none).
    pub(crate) fn prepared(&self, id: Id, mounts: &[Mount]) {
        if let Some(dir) = Mount::active_upper(mounts) {
            self.insert(id, dir);
        }
    }

    /// Active snapshot `key` was committed as `name`: the same directory, under its new name.
    pub(crate) fn committed(&self, key: &Id, name: Id) {
        let dir = self.lock().dirs.remove(key);
        if let Some(dir) = dir {
            self.insert(name, dir);
        }
    }

    /// Snapshot `id` was removed.
    pub(crate) fn removed(&self, id: &Id) {
        self.lock().dirs.remove(id);
    }

    /// The layer directory of `id`, if remembered and still a directory.
    pub(crate) fn get(&self, id: &Id) -> Option<PathBuf> {
        let dir = self.lock().dirs.get(id).cloned()?;
        dir.is_dir().then_some(dir)
    }

    fn insert(&self, id: Id, dir: PathBuf) {
        let mut kept = self.lock();
        if kept.dirs.insert(id.clone(), dir).is_none() {
            kept.order.push_back(id);
        }
        while kept.order.len() > KEPT {
            if let Some(old) = kept.order.pop_front() {
                kept.dirs.remove(&old);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: &str) -> Id {
        ("ns".into(), "oxkit".into(), key.into())
    }

    fn overlay(upper: &std::path::Path) -> Vec<Mount> {
        vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!("upperdir={}", upper.display()),
                "lowerdir=/x".into(),
                "workdir=/w".into(),
            ],
        }]
    }

    #[test]
    fn a_committed_snapshot_keeps_its_prepared_upper_dir_until_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let memo = LayerDirs::default();
        memo.prepared(id("k"), &overlay(tmp.path()));
        assert_eq!(memo.get(&id("k")), Some(tmp.path().to_path_buf()));
        memo.committed(&id("k"), id("name"));
        assert_eq!(memo.get(&id("k")), None, "the key is gone once committed");
        assert_eq!(memo.get(&id("name")), Some(tmp.path().to_path_buf()));
        memo.removed(&id("name"));
        assert_eq!(memo.get(&id("name")), None);
    }

    #[test]
    fn a_view_or_a_gone_directory_is_never_returned() {
        let tmp = tempfile::tempdir().unwrap();
        let memo = LayerDirs::default();
        let view = vec![Mount {
            kind: "bind".into(),
            source: tmp.path().display().to_string(),
            options: vec!["ro".into(), "rbind".into()],
        }];
        memo.prepared(id("view"), &view);
        assert_eq!(
            memo.get(&id("view")),
            None,
            "read-only mounts have no upper dir"
        );
        let gone = tmp.path().join("gone");
        memo.prepared(id("k"), &overlay(&gone));
        memo.committed(&id("k"), id("name"));
        assert_eq!(
            memo.get(&id("name")),
            None,
            "{} does not exist",
            gone.display()
        );
    }

    #[test]
    fn the_oldest_are_forgotten_first() {
        let tmp = tempfile::tempdir().unwrap();
        let memo = LayerDirs::default();
        for i in 0..=KEPT {
            memo.prepared(id(&i.to_string()), &overlay(tmp.path()));
        }
        assert_eq!(memo.get(&id("0")), None);
        assert!(memo.get(&id("1")).is_some());
        assert!(memo.get(&id(&KEPT.to_string())).is_some());
    }
}
