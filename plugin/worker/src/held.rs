//! [`Held`]: what a running file or merge op holds in containerd and on the host (active
//! snapshots, views, mounts, the snapshots it committed), released when the op ends, fails or is
//! cancelled.

use std::path::PathBuf;

use oxkit_containerd::{Labels, Mount};

use crate::error::{Context as _, WorkerError};
use crate::exec::{mount_at, unmount_all};
use crate::names::unique;
use crate::worker::Worker;

/// What a running op holds: mount points, empty dirs, active snapshots and views, and the
/// snapshots it committed. [`Held::cleanup`] releases them all (removing the committed ones
/// only on failure); if the op's future is dropped first, the same cleanup is spawned.
pub(crate) struct Held {
    worker: Worker,
    /// The prefix of the keys and names it creates (`oxkit-file`, `oxkit-merge`).
    prefix: &'static str,
    mounted: Vec<PathBuf>,
    /// The mounts behind each directory [`Held::attach`] mounted.
    mounts: std::collections::HashMap<PathBuf, Vec<Mount>>,
    dirs: Vec<PathBuf>,
    snapshots: Vec<String>,
    pub(crate) committed: Vec<String>,
    done: bool,
}

impl Held {
    /// Holds nothing yet; what it creates is named `<prefix>-…`.
    pub(crate) fn new(worker: Worker, prefix: &'static str) -> Self {
        Self {
            worker,
            prefix,
            mounted: Vec::new(),
            mounts: std::collections::HashMap::new(),
            dirs: Vec::new(),
            snapshots: Vec::new(),
            committed: Vec::new(),
            done: false,
        }
    }

    /// Prepares (writable) or views `parent` under a new key and mounts it.
    pub(crate) async fn attach(
        &mut self,
        parent: Option<&str>,
        writable: bool,
    ) -> Result<(String, PathBuf), WorkerError> {
        let snapshots = self.worker.client().snapshots();
        let key = unique(self.prefix);
        let mounts = if writable || parent.is_none() {
            snapshots.prepare(&key, parent, &Labels::new()).await
        } else {
            snapshots.view(&key, parent, &Labels::new()).await
        }
        .doing(|| format!("prepare a snapshot of {}", parent.unwrap_or("scratch")))?;
        self.snapshots.push(key.clone());
        let dir = mount_at(&self.worker, &key, mounts.clone()).await?;
        self.mounted.push(dir.clone());
        self.mounts.insert(dir.clone(), mounts);
        Ok((key, dir))
    }

    /// The mounts of directory `dir`, mounted by [`Held::attach`] and still mounted.
    pub(crate) fn mounts_of(&self, dir: &PathBuf) -> Option<&[Mount]> {
        self.mounts.get(dir).map(Vec::as_slice)
    }

    /// Views committed snapshot `parent` under a new key without mounting it; returns the key
    /// and the view's mounts.
    pub(crate) async fn view(&mut self, parent: &str) -> Result<(String, Vec<Mount>), WorkerError> {
        let key = unique(self.prefix);
        let mounts = self
            .worker
            .client()
            .snapshots()
            .view(&key, Some(parent), &Labels::new())
            .await
            .doing(|| format!("view snapshot {parent}"))?;
        self.snapshots.push(key.clone());
        Ok((key, mounts))
    }

    /// Removes active snapshot or view `key` (no longer mounted).
    pub(crate) async fn remove(&mut self, key: &str) -> Result<(), WorkerError> {
        self.snapshots.retain(|k| k != key);
        match self.worker.client().snapshots().remove(key).await {
            Err(e) if !e.is_not_found() => Err(WorkerError::Containerd {
                action: format!("remove snapshot {key}"),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Unmounts `dir` (mounted by [`Held::attach`]).
    pub(crate) async fn detach_mount(&mut self, dir: &PathBuf) -> Result<(), WorkerError> {
        self.mounted.retain(|d| d != dir);
        self.mounts.remove(dir);
        unmount_all(self.worker.mounter(), vec![dir.clone()]).await
    }

    /// Unmounts `dir` and removes snapshot `key`.
    pub(crate) async fn detach(&mut self, key: &str, dir: &PathBuf) -> Result<(), WorkerError> {
        self.detach_mount(dir).await?;
        self.remove(key).await
    }

    /// Unmounts `dir` and commits active snapshot `key`; returns the committed name.
    pub(crate) async fn commit(&mut self, key: &str, dir: &PathBuf) -> Result<String, WorkerError> {
        self.detach_mount(dir).await?;
        let name = unique(self.prefix);
        self.worker
            .client()
            .snapshots()
            .commit(&name, key, &Labels::new())
            .await
            .doing(|| format!("commit snapshot {key}"))?;
        self.snapshots.retain(|k| k != key);
        self.committed.push(name.clone());
        Ok(name)
    }

    /// An empty directory (a scratch filesystem to read from).
    pub(crate) fn empty_dir(&mut self) -> Result<PathBuf, WorkerError> {
        let dir = self.worker.mount_dir(&unique("oxkit-empty"));
        std::fs::create_dir_all(&dir).map_err(|source| WorkerError::Io {
            action: "create an empty directory",
            path: dir.clone(),
            source,
        })?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// Unmounts everything, removes the empty dirs, the active snapshots and views, and, when
    /// `failed`, the committed snapshots (newest first: children before their parents).
    pub(crate) async fn cleanup(&mut self, failed: bool) {
        self.done = true;
        let mounted = std::mem::take(&mut self.mounted);
        let dirs = std::mem::take(&mut self.dirs);
        let committed = std::mem::take(&mut self.committed);
        let remove = removal_order(
            std::mem::take(&mut self.snapshots),
            if failed { committed } else { Vec::new() },
        );
        release(self.worker.clone(), mounted, dirs, remove).await;
    }
}

/// Active snapshots and views newest first, then committed ones newest first: a snapshot is
/// removed before its parent (containerd refuses to remove a parent).
fn removal_order(active: Vec<String>, committed: Vec<String>) -> Vec<String> {
    active
        .into_iter()
        .rev()
        .chain(committed.into_iter().rev())
        .collect()
}

/// Unmounts `mounted`, removes the empty `dirs`, then removes the snapshots `remove` in order.
async fn release(worker: Worker, mounted: Vec<PathBuf>, dirs: Vec<PathBuf>, remove: Vec<String>) {
    if let Err(e) = unmount_all(worker.mounter(), mounted).await {
        tracing::warn!(error = %e, "could not unmount an op's snapshot");
    }
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
    let snapshots = worker.client().snapshots();
    for key in remove {
        if let Err(e) = snapshots.remove(&key).await {
            if !e.is_not_found() {
                tracing::warn!(key, error = %e, "could not remove an op's snapshot");
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let worker = self.worker.clone();
        let mounted = std::mem::take(&mut self.mounted);
        let dirs = std::mem::take(&mut self.dirs);
        let remove = removal_order(
            std::mem::take(&mut self.snapshots),
            std::mem::take(&mut self.committed),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(release(worker, mounted, dirs, remove));
            }
            Err(_) => tracing::warn!(?remove, "a cancelled op's snapshots are left behind"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_removed_before_their_parents() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            removal_order(v(&["view1", "active2"]), v(&["c0", "c1"])),
            v(&["active2", "view1", "c1", "c0"])
        );
    }
}
