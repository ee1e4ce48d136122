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
//! The initial content (`from`) only seeds a cache snapshot when it is created. Per-process state
//! (who is using which id) is not shared between daemons.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use oxkit_llb::op::CacheSharing;
use sha2::{Digest as _, Sha256};
use tokio::sync::OwnedMutexGuard;

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
