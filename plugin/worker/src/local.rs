//! The local source (`local://NAME`): a directory the build's client sends through its session.
//! Its cache map does the transfer — the client lists the directory through the source's
//! patterns, the daemon's copy for (client, name) fetches only what changed
//! (`oxkit-localsync`) — and is keyed by the content digest of what was received, so touching a
//! file or changing an excluded one keeps the cache. On a miss, exec writes the copy into a new
//! snapshot, prepared on the last one written from the same copy so that only what changed is
//! written; a snapshot written whole gets the copy's files as hard links.

use std::sync::Arc;

use oxkit_llb::source::{LocalDiffer, LocalSource};
use oxkit_localsync::{Copy, Filter, Listing, Range, Source, Store, SyncError};
use oxkit_solver::{CacheMap, Op, OpContext, OpError, OutputRef, Stream};

use crate::error::WorkerError;
use crate::held::Held;
use crate::session::{sessions, SessionError, SessionRef};
use crate::worker::{SnapshotRef, Worker};

/// Why a local source failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalSourceError {
    /// The build has no client session to ask.
    #[error(
        "local://{name} needs the build's client session; build with oxctl --local {name}=DIR"
    )]
    NoSession {
        /// The directory's name.
        name: String,
    },
    /// The client could not list the directory.
    #[error("the client could not list local://{name}: {source}")]
    List {
        /// The directory's name.
        name: String,
        /// The session's error.
        #[source]
        source: SessionError,
    },
    /// Syncing the daemon's copy failed.
    #[error("syncing local://{name} failed: {source}")]
    Sync {
        /// The directory's name.
        name: String,
        /// The sync's error.
        #[source]
        source: SyncError,
    },
    /// The directory's content changed between this build's transfer and its snapshot.
    #[error("local://{name} changed while the build ran; build again")]
    Raced {
        /// The directory's name.
        name: String,
    },
    /// Making the snapshot failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// The local source op on a worker.
pub struct LocalSourceOp {
    worker: Worker,
    source: LocalSource,
    /// The copy's key and the digest its cache map saw.
    synced: std::sync::Mutex<Option<(String, String)>>,
}

/// Reads file contents through a client session.
struct SessionSource {
    session: SessionRef,
    name: String,
}

#[async_trait::async_trait]
impl Source for SessionSource {
    async fn read(
        &self,
        ranges: Vec<Range>,
    ) -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.session.read_local(&self.name, ranges).await?)
    }
}

impl LocalSourceOp {
    /// The local source `source` on `worker`.
    pub fn new(worker: Worker, source: LocalSource) -> Self {
        Self {
            worker,
            source,
            synced: std::sync::Mutex::new(None),
        }
    }

    fn filter(&self) -> Filter {
        Filter {
            include: self.source.include_patterns.clone(),
            exclude: self.source.exclude_patterns.clone(),
            follow: self.source.follow_paths.clone(),
        }
    }

    /// Lists the directory through the first session that answers; returns that session and
    /// the checked listing.
    async fn list(&self, ctx: &OpContext) -> Result<(SessionRef, Listing), LocalSourceError> {
        let name = &self.source.name;
        let mut last = None;
        for session in sessions(ctx) {
            match session.list_local(name, &self.filter()).await {
                Ok(entries) => {
                    let listing =
                        Listing::new(entries).map_err(|source| LocalSourceError::Sync {
                            name: name.clone(),
                            source,
                        })?;
                    return Ok((session, listing));
                }
                // Another build's client may still be there.
                Err(e @ SessionError::Closed { .. }) => last = Some(e),
                Err(source) => {
                    return Err(LocalSourceError::List {
                        name: name.clone(),
                        source,
                    })
                }
            }
        }
        Err(match last {
            Some(source) => LocalSourceError::List {
                name: name.clone(),
                source,
            },
            None => LocalSourceError::NoSession { name: name.clone() },
        })
    }

    /// Lists the directory and syncs the copy of the client that answered; returns the locked
    /// copy, its key and its content digest.
    async fn sync(&self, ctx: &OpContext) -> Result<(Copy, String, String), LocalSourceError> {
        let name = &self.source.name;
        let sync_err = |source| LocalSourceError::Sync {
            name: name.clone(),
            source,
        };
        let (session, listing) = self.list(ctx).await?;
        // Per directory too: one name used for several directories keeps a copy of each.
        let hint = self.source.shared_key_hint.as_deref().unwrap_or("");
        let hint = match session.local_dir_key(name) {
            "" => hint.to_string(),
            dir => format!("{hint}\0dir={dir}"),
        };
        let key = Store::key(session.client_id(), name, &hint);
        let started = std::time::Instant::now();
        let mut copy = self
            .worker
            .local_store()
            .open(&key)
            .await
            .map_err(sync_err)?;
        let source = SessionSource {
            session: session.clone(),
            name: name.clone(),
        };
        let resend = self.source.differ == LocalDiffer::None;
        let synced = copy
            .sync(listing, &source, resend)
            .await
            .map_err(sync_err)?;
        let files = if synced.files == 1 { "file" } else { "files" };
        // The client reads this line back (`oxkit_plugin::client::context_digest`).
        ctx.log(
            Stream::Stdout,
            format!(
                "local://{name}: {} {files} sent ({} bytes) of {} entries in {:.2}s; context {}\n",
                synced.files,
                synced.bytes,
                synced.entries,
                started.elapsed().as_secs_f64(),
                synced.digest
            ),
        );
        tracing::info!(
            name,
            files = synced.files,
            bytes = synced.bytes,
            digest = synced.digest,
            "local source synced"
        );
        Ok((copy, key, synced.digest))
    }

    /// Writes the copy the cache map synced into a new snapshot. If another build synced the
    /// copy to other content since, it syncs again (the copy is locked from then on) and fails
    /// only if the client's content itself changed.
    async fn snapshot(&self, ctx: &OpContext) -> Result<String, LocalSourceError> {
        let name = &self.source.name;
        let (key, digest) = self
            .synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| LocalSourceError::Raced { name: name.clone() })?;
        let mut copy = self
            .worker
            .local_store()
            .open(&key)
            .await
            .map_err(|source| LocalSourceError::Sync {
                name: name.clone(),
                source,
            })?;
        if copy.digest().as_deref() != Some(digest.as_str()) {
            drop(copy);
            let (again, _, now) = self.sync(ctx).await?;
            if now != digest {
                return Err(LocalSourceError::Raced { name: name.clone() });
            }
            copy = again;
        }
        // The last snapshot this copy was written into is the base of the next: only what
        // changed is written (a chain at most MAX_DEPTH deep, then the tree is written whole).
        let base = match copy.written().filter(|w| w.depth < MAX_DEPTH) {
            Some(w) if self.committed(&w.name).await => Some(w),
            _ => None,
        };
        let mut held = Held::new(self.worker.clone(), "oxkit-local");
        let made = async {
            let (snapshot, dir) = held
                .attach(base.as_ref().map(|w| w.name.as_str()), true)
                .await?;
            let target = dir.clone();
            let depth = base.as_ref().map_or(1, |w| w.depth + 1);
            // A snapshot without parent is a bind mount of its own layer: the copy's files are
            // linked there rather than written again.
            let real = held
                .mounts_of(&dir)
                .and_then(oxkit_containerd::Mount::active_upper);
            let copy = tokio::task::spawn_blocking(move || {
                match (&base, &real) {
                    (Some(w), _) => copy.materialize_onto(&target, w),
                    (None, Some(real)) => copy.materialize_linked(&target, real),
                    (None, None) => copy.materialize(&target),
                }
                .map(|()| copy)
            })
            .await
            .map_err(|e| WorkerError::InvalidOp(format!("the local copy task failed: {e}")))?
            .map_err(|source| LocalSourceError::Sync {
                name: name.clone(),
                source,
            })?;
            let committed = held.commit(&snapshot, &dir).await?;
            // A copy's checksum of this snapshot need not read its files again.
            self.worker
                .remember_digests(&committed, copy.file_digests());
            if let Err(e) = copy.set_written(&committed, depth) {
                // The next snapshot is then written whole.
                tracing::warn!(name, error = %e, "could not record the local snapshot");
            }
            Ok::<_, LocalSourceError>(committed)
        }
        .await;
        held.cleanup(made.is_err()).await;
        made
    }
}

impl LocalSourceOp {
    /// Whether snapshot `name` is still there, committed.
    async fn committed(&self, name: &str) -> bool {
        matches!(
            self.worker.client().snapshots().stat(name).await,
            Ok(info) if info.kind == oxkit_containerd::SnapshotKind::Committed
        )
    }
}

/// How many snapshots deep a local source's chain of incremental writes may grow before the
/// tree is written whole again (overlayfs stacks one lower directory per snapshot).
const MAX_DEPTH: u32 = 16;

#[async_trait::async_trait]
impl Op for LocalSourceOp {
    /// Not exported with the cache: another daemon's client sends its own directory.
    fn exportable(&self) -> bool {
        false
    }

    async fn cache_map(&self, ctx: &OpContext) -> Result<CacheMap, OpError> {
        let (_, key, digest) = self.sync(ctx).await?;
        let map = CacheMap::new(format!("oxkit.local.v1:{digest}"));
        *self.synced.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, digest));
        Ok(map)
    }

    async fn exec(&self, ctx: &OpContext, _: Vec<OutputRef>) -> Result<Vec<OutputRef>, OpError> {
        let name = self.snapshot(ctx).await?;
        Ok(vec![Arc::new(SnapshotRef::new(name)) as OutputRef])
    }
}
