//! Persistent cache mounts (`--mount=type=cache`): one active snapshot per cache id, kept between
//! builds under the stable key `cache-<sha256(id)[..32]>` (held by the worker's lease), and the
//! sharing modes:
//!
//! - `shared`: every step mounts the same snapshot at once.
//! - `locked`: steps using the id take turns (a per-id async mutex, held for the whole step).
//! - `private`: a step gets the persistent snapshot if no one else uses it; otherwise a fresh
//!   temporary snapshot (on the same initial content) that is removed after the step — unlike
//!   BuildKit, which keeps such extra copies in a pool.
//!
//! The initial content (the mount's input, at its selector) only seeds a cache snapshot when it is
//! created ([`seed`] copies a selected subtree in); and, as in BuildKit, it is part of the cache's
//! identity ([`identity`]). Per-process state (who is using which id) is not shared between
//! daemons.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use oxkit_llb::op::{CacheSharing, Copy, FileAction, FileActionKind, FileInput};
use sha2::{Digest as _, Sha256};
use tokio::sync::OwnedMutexGuard;

use crate::error::WorkerError;

/// Usage of one cache id in this process.
#[derive(Default)]
struct Entry {
    lock: Arc<tokio::sync::Mutex<()>>,
    users: AtomicUsize,
}

/// The cache ids in use by this worker.
#[derive(Default)]
pub(crate) struct CacheMounts {
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

/// A step's use of a cache id; dropping it ends the use (and releases a `locked` turn).
pub(crate) struct CacheUse {
    /// The snapshot key to mount: the persistent one, or a temporary private one.
    pub(crate) key: String,
    /// Whether `key` is temporary (to be removed after the step).
    pub(crate) temporary: bool,
    entry: Arc<Entry>,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl Drop for CacheUse {
    fn drop(&mut self) {
        if !self.temporary {
            self.entry.users.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The persistent snapshot key of cache `id`.
pub(crate) fn cache_key(id: &str) -> String {
    let hash = Sha256::digest(id.as_bytes());
    let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("cache-{hex}")
}

/// What a cache is known by: its `id`, plus — when it has initial content — the seed's snapshot
/// and selector. BuildKit keys a cache directory `cache-dir:<id>:<seed ref id>`, so one id seeded
/// from different content names different caches; the selector is added here because only the
/// selected subtree is copied in (BuildKit keeps the whole seed and mounts the subtree).
pub(crate) fn identity(id: &str, seed: Option<&str>, selector: &str) -> String {
    match seed {
        None => id.to_owned(),
        Some(snapshot) => format!("{id}\0{snapshot}\0{}", selector.trim_end_matches('/')),
    }
}

/// Whether `selector` names the whole seed (the cache snapshot is then prepared on it).
pub(crate) fn is_whole(selector: &str) -> bool {
    selector.trim_matches('/').is_empty()
}

/// Fills a new, empty cache directory `cache_root` from `selector` in the seed mounted at
/// `seed_root`: the directory's contents are copied in, and its owner and mode become the cache
/// root's. The selector is resolved inside `seed_root` (a symlink in the seed never leads out of
/// it). A missing selector is an error naming it, as in BuildKit (whose bind mount of the missing
/// path fails); so is one that is not a directory.
pub(crate) fn seed(cache_root: &Path, seed_root: &Path, selector: &str) -> Result<(), WorkerError> {
    let bad = |reason: &str| WorkerError::Selector {
        selector: selector.to_owned(),
        reason: reason.to_owned(),
    };
    let resolved = oxkit_fileop::resolve_in_root(seed_root, selector, true)?;
    let meta = match std::fs::metadata(&resolved) {
        Ok(meta) if meta.is_dir() => meta,
        Ok(_) => {
            return Err(bad(
                "the initial content of a cache mount must be a directory",
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(bad(
                "no such file or directory in the cache mount's initial content",
            ))
        }
        Err(source) => {
            return Err(WorkerError::Io {
                action: "inspect",
                path: resolved,
                source,
            })
        }
    };
    // The source is the resolved directory, so no symlink is followed twice; the entries' own
    // symlinks are copied as they are.
    let dir = resolved
        .strip_prefix(seed_root)
        .map(|rel| format!("/{}", rel.display()))
        .unwrap_or_else(|_| selector.to_owned());
    let copy = FileAction {
        input: FileInput::Scratch,
        secondary_input: FileInput::Input(0),
        output: None,
        kind: FileActionKind::Copy(Copy {
            src: format!("{}/", dir.trim_end_matches('/')),
            dest: "/".into(),
            dir_copy_contents: true,
            ..Default::default()
        }),
    };
    oxkit_fileop::apply(
        cache_root,
        &copy,
        Some(seed_root),
        &oxkit_fileop::EtcFiles::new(),
        // A cache mount is written in place by the steps that use it: never share its files
        // with a layer.
        None,
    )?;
    let io = |action, source| WorkerError::Io {
        action,
        path: cache_root.to_owned(),
        source,
    };
    oxkit_fileop::lchown(cache_root, meta.uid(), meta.gid()).map_err(|e| io("chown", e))?;
    oxkit_fileop::chmod(cache_root, meta.mode() & 0o7777).map_err(|e| io("chmod", e))?;
    Ok(())
}

impl CacheMounts {
    /// Starts a use of cache `id` with `sharing`; waits for its turn when `locked`.
    /// `temporary_key` names the snapshot a busy `private` use gets instead.
    pub(crate) async fn acquire(
        &self,
        id: &str,
        sharing: CacheSharing,
        temporary_key: impl FnOnce() -> String,
    ) -> CacheUse {
        let entry = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone();
        let key = cache_key(id);
        let turn = match sharing {
            CacheSharing::Shared => None,
            CacheSharing::Locked => Some(entry.lock.clone().lock_owned().await),
            CacheSharing::Private => {
                let free = entry.users.load(Ordering::SeqCst) == 0;
                match entry.lock.clone().try_lock_owned() {
                    Ok(turn) if free => Some(turn),
                    _ => {
                        return CacheUse {
                            key: temporary_key(),
                            temporary: true,
                            entry,
                            _turn: None,
                        }
                    }
                }
            }
        };
        entry.users.fetch_add(1, Ordering::SeqCst);
        CacheUse {
            key,
            temporary: false,
            entry,
            _turn: turn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_seed_is_part_of_the_cache_identity() {
        assert_eq!(
            identity("x", None, ""),
            "x",
            "unseeded caches keep their key"
        );
        assert_ne!(
            identity("x", Some("snap-a"), ""),
            identity("x", Some("snap-b"), "")
        );
        assert_ne!(
            identity("x", Some("a"), "/p"),
            identity("x", Some("a"), "/q")
        );
        assert_eq!(
            identity("x", Some("a"), "/p/"),
            identity("x", Some("a"), "/p")
        );
        assert!(is_whole("") && is_whole("/") && !is_whole("/cache"));
    }

    #[test]
    fn seeding_copies_the_selected_directory_inside_the_seed_only() {
        use std::os::unix::fs::{symlink, PermissionsExt as _};
        let seed_root = tempfile::tempdir().unwrap();
        let s = seed_root.path();
        std::fs::create_dir_all(s.join("seed/sub")).unwrap();
        std::fs::write(s.join("seed/file"), "seeded").unwrap();
        std::fs::write(s.join("seed/sub/deep"), "deep").unwrap();
        std::fs::set_permissions(s.join("seed"), std::fs::Permissions::from_mode(0o750)).unwrap();
        // An absolute symlink in the seed resolves inside it, never on the host.
        symlink("/", s.join("up")).unwrap();

        let cache = tempfile::tempdir().unwrap();
        seed(cache.path(), s, "/up/seed").unwrap();
        let c = cache.path();
        assert_eq!(std::fs::read_to_string(c.join("file")).unwrap(), "seeded");
        assert_eq!(std::fs::read_to_string(c.join("sub/deep")).unwrap(), "deep");
        let meta = std::fs::metadata(c).unwrap();
        assert_eq!(
            meta.mode() & 0o7777,
            0o750,
            "the directory's mode is the cache root's"
        );
        assert_eq!(meta.uid(), std::fs::metadata(s.join("seed")).unwrap().uid());
        assert!(
            !c.join("seed").exists(),
            "the contents are copied, not the directory"
        );
    }

    #[test]
    fn seeding_from_a_missing_path_names_it() {
        let seed_root = tempfile::tempdir().unwrap();
        std::fs::write(seed_root.path().join("plain"), "x").unwrap();
        let cache = tempfile::tempdir().unwrap();
        for selector in ["/missing", "/../../etc"] {
            let e = seed(cache.path(), seed_root.path(), selector).unwrap_err();
            assert!(
                matches!(&e, WorkerError::Selector { selector: s, .. } if s == selector),
                "{selector}: {e}"
            );
        }
        let e = seed(cache.path(), seed_root.path(), "/plain").unwrap_err();
        assert!(e.to_string().contains("must be a directory"), "{e}");
    }

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(cache_key("/root/.cache"), cache_key("/root/.cache"));
        assert_ne!(cache_key("a"), cache_key("b"));
        assert!(cache_key("a").starts_with("cache-"));
    }

    #[test]
    fn shared_uses_overlap_and_a_busy_private_use_gets_a_temporary_snapshot() {
        block_on(async {
            let caches = CacheMounts::default();
            let a = caches
                .acquire("x", CacheSharing::Shared, || unreachable!())
                .await;
            let b = caches
                .acquire("x", CacheSharing::Shared, || unreachable!())
                .await;
            assert_eq!(a.key, b.key);
            let p = caches
                .acquire("x", CacheSharing::Private, || "tmp".into())
                .await;
            assert!(p.temporary);
            assert_eq!(p.key, "tmp");
            drop((a, b, p));
            let p = caches
                .acquire("x", CacheSharing::Private, || "tmp".into())
                .await;
            assert!(!p.temporary, "a free cache goes to the private user");
        });
    }

    #[test]
    fn locked_uses_take_turns() {
        block_on(async {
            let caches = CacheMounts::default();
            let first = caches
                .acquire("y", CacheSharing::Locked, || unreachable!())
                .await;
            let second = caches.acquire("y", CacheSharing::Locked, || unreachable!());
            let waited = tokio::time::timeout(Duration::from_millis(50), second).await;
            assert!(waited.is_err(), "the second locked use must wait");
            drop(first);
            let again = caches
                .acquire("y", CacheSharing::Locked, || unreachable!())
                .await;
            assert!(!again.temporary);
        });
    }
}
