//! The scheduler: resolves a vertex to its outputs by cache key, running independent vertices
//! concurrently, each cache key at most once at a time across all solves.
//!
//! Per solve, each vertex has two memoized steps: its *key* (the op's cache map plus its inputs'
//! keys, or the checksums of their content, which needs those inputs resolved) and its *result*
//! (a cache hit, or its inputs' results and an execution). A vertex whose dependent is a cache
//! hit is never resolved at all. Results are shared across solves through an in-flight map keyed
//! by (cache key, forced): a second solve that needs the same key awaits the first one's future.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures_util::future::{try_join_all, BoxFuture, FutureExt, Shared, WeakShared};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::cache::{CacheRecord, CacheStore};
use crate::cachekey::{CacheKey, KeyPart};
use crate::error::SolveError;
use crate::op::{Attachment, InputKey, OpContext, OutputRef, ResultLoader, Sessions};
use crate::progress::{Event, EventKind, Fanout};
use crate::remote::{KeyedRecord, RemoteRef};
use crate::vertex::{Edge, Vertex};

/// Settings of a [`Solver`].
#[derive(Debug, Clone)]
pub struct SolverConfig {
    /// How many ops may execute at once, across all solves (at least 1).
    pub max_parallelism: usize,
}

impl Default for SolverConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        SolverConfig {
            max_parallelism: cores,
        }
    }
}

/// Options of one solve.
#[derive(Debug, Default, Clone)]
pub struct SolveOptions {
    /// Execute every vertex, ignoring recorded results (new results are still recorded).
    pub no_cache: bool,
    /// Where this solve's progress events go, if anywhere.
    pub progress: Option<UnboundedSender<Event>>,
    /// What the solve's client lends its ops (see [`OpContext::sessions`]), if anything.
    pub session: Option<Attachment>,
    /// Records imported from elsewhere, consulted when the local store misses.
    pub remote: Option<RemoteRef>,
}

/// Runs build graphs. Cheap to clone; clones share the cache, the in-flight executions and the
/// parallelism limit.
#[derive(Clone)]
pub struct Solver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Solver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Solver").finish_non_exhaustive()
    }
}

/// A vertex's resolved outputs.
#[derive(Debug)]
struct Resolved {
    outputs: Vec<OutputRef>,
}

/// A vertex's key, and whether it must execute regardless of the cache.
#[derive(Debug)]
struct KeyInfo {
    key: CacheKey,
    /// The key by definition of a vertex that keys an input by content (see
    /// [`crate::RemoteCache::alias`]).
    definition: Option<CacheKey>,
    /// The key is an imported record's, found by the key by definition: what this daemon's
    /// inputs would give by content is not known, so a result executed here is not recorded
    /// under it.
    aliased: bool,
    /// `no_cache`, the vertex's ignore-cache flag, or an input keyed by cache key that was
    /// forced (its key is unchanged but its result may differ, so dependents must run too).
    forced: bool,
}

type ResolveResult = Result<Arc<Resolved>, SolveError>;
type SharedResolve = Shared<BoxFuture<'static, ResolveResult>>;
type SharedKey = Shared<BoxFuture<'static, Result<Arc<KeyInfo>, SolveError>>>;

struct Inner {
    store: Arc<dyn CacheStore>,
    loader: Arc<dyn ResultLoader>,
    exec_slots: Arc<Semaphore>,
    inflight: Mutex<HashMap<(CacheKey, bool), InFlight>>,
    next_generation: AtomicU64,
}

struct InFlight {
    generation: u64,
    future: WeakShared<BoxFuture<'static, ResolveResult>>,
    progress: Arc<Fanout>,
    sessions: Arc<Sessions>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Solver {
    /// A solver recording results in `store` and loading them back through `loader`.
    pub fn new(
        store: Arc<dyn CacheStore>,
        loader: Arc<dyn ResultLoader>,
        config: SolverConfig,
    ) -> Self {
        Solver {
            inner: Arc::new(Inner {
                store,
                loader,
                exec_slots: Arc::new(Semaphore::new(config.max_parallelism.max(1))),
                inflight: Mutex::new(HashMap::new()),
                next_generation: AtomicU64::new(0),
            }),
        }
    }

    /// Resolves `target` to its output: from the cache where possible, executing what is
    /// missing. Dropping the returned future cancels the solve: executions no other solve waits
    /// for are aborted. The first failure cancels the rest of the solve and is returned.
    pub async fn solve(
        &self,
        target: &Edge,
        options: SolveOptions,
    ) -> Result<OutputRef, SolveError> {
        let state = self.state(options);
        let _close = CloseOnDrop(state.clone());
        state.solve(target).await
    }

    /// [`Self::solve`], and then the record in the local store of every vertex of the graph
    /// whose op is [exportable](crate::Op::exportable), targets first: what a cache export
    /// writes. A vertex the solve never resolved (a dependent was cached) is keyed now; one
    /// that cannot be keyed or has no record is left out.
    pub async fn solve_keyed(
        &self,
        target: &Edge,
        options: SolveOptions,
    ) -> Result<(OutputRef, Vec<KeyedRecord>), SolveError> {
        let state = self.state(options);
        let _close = CloseOnDrop(state.clone());
        let output = state.solve(target).await?;
        let mut records = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![target.vertex.clone()];
        while let Some(vertex) = stack.pop() {
            if !seen.insert(vertex.digest.clone()) {
                continue;
            }
            stack.extend(vertex.inputs.iter().map(|e| e.vertex.clone()));
            if !vertex.op.exportable() {
                continue;
            }
            let key = match state.key(&vertex).await {
                Ok(key) => key,
                Err(e) => {
                    tracing::warn!(vertex = %vertex.info(), error = %e.chain(), "cannot key the vertex for the cache export; left out");
                    continue;
                }
            };
            if let Some(record) = self.inner.stored(&key.key, &vertex).await {
                records.push(KeyedRecord {
                    vertex: vertex.info(),
                    key: key.key.clone(),
                    definition_key: key.definition.clone(),
                    outputs: record.outputs,
                });
            }
        }
        Ok((output, records))
    }

    fn state(&self, options: SolveOptions) -> Arc<SolveState> {
        Arc::new(SolveState {
            inner: self.inner.clone(),
            no_cache: options.no_cache,
            progress: options.progress,
            session: options.session,
            remote: options.remote,
            closed: AtomicBool::new(false),
            keys: Mutex::new(HashMap::new()),
            results: Mutex::new(HashMap::new()),
            visited: Mutex::new(HashSet::new()),
        })
    }
}

/// One solve's memo. Its futures hold the state, so it is closed (memo cleared, no new entries)
/// when the solve ends or is dropped; otherwise pending futures and the state would keep each
/// other, and the executions they hold, alive.
struct SolveState {
    inner: Arc<Inner>,
    no_cache: bool,
    progress: Option<UnboundedSender<Event>>,
    session: Option<Attachment>,
    remote: Option<RemoteRef>,
    closed: AtomicBool,
    keys: Mutex<HashMap<String, SharedKey>>,
    results: Mutex<HashMap<String, SharedResolve>>,
    /// Digests whose result this solve asked for.
    visited: Mutex<HashSet<String>>,
}

struct CloseOnDrop(Arc<SolveState>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::SeqCst);
        let keys = std::mem::take(&mut *lock(&self.0.keys));
        let results = std::mem::take(&mut *lock(&self.0.results));
        // Dropped outside the locks: dropping a future may drop other memo users.
        drop((keys, results));
    }
}

impl SolveState {
    async fn solve(self: &Arc<Self>, target: &Edge) -> Result<OutputRef, SolveError> {
        let resolved = self.result(&target.vertex).await?;
        let output = output_of(&target.vertex, &resolved, target.index)?;
        self.report_unvisited(&target.vertex);
        Ok(output)
    }

    fn memo<T: Clone>(
        &self,
        map: &Mutex<HashMap<String, T>>,
        digest: &str,
        make: impl FnOnce() -> T,
    ) -> T {
        let mut map = lock(map);
        if self.closed.load(Ordering::SeqCst) {
            return make();
        }
        map.entry(digest.to_owned()).or_insert_with(make).clone()
    }

    fn key(self: &Arc<Self>, vertex: &Arc<Vertex>) -> SharedKey {
        self.memo(&self.keys, &vertex.digest, || {
            self.clone().compute_key(vertex.clone()).boxed().shared()
        })
    }

    fn result(self: &Arc<Self>, vertex: &Arc<Vertex>) -> SharedResolve {
        self.memo(&self.results, &vertex.digest, || {
            self.clone().resolve(vertex.clone()).boxed().shared()
        })
    }

    async fn compute_key(self: Arc<Self>, vertex: Arc<Vertex>) -> Result<Arc<KeyInfo>, SolveError> {
        let ctx = OpContext::new(
            vertex.info(),
            Arc::new(Fanout::single(self.progress.as_ref(), &vertex.info())),
            Arc::new(Sessions::single(self.session.as_ref())),
        );
        let map = vertex
            .op
            .cache_map(&ctx)
            .await
            .map_err(|e| SolveError::CacheMap {
                vertex: vertex.info(),
                source: e.into(),
            })?;
        if !map.inputs.is_empty() && map.inputs.len() != vertex.inputs.len() {
            return Err(SolveError::BadCacheMap {
                vertex: vertex.info(),
                inputs: vertex.inputs.len(),
                described: map.inputs.len(),
            });
        }
        let by_content = map.inputs.contains(&InputKey::Content);
        // With an input keyed by content, the key by definition (every input by its key)
        // matches another daemon's record without resolving that input: with imported
        // records it is looked up first. That waits for the inputs' keys before any content
        // is resolved, so without imports it is computed beside the content parts instead.
        let mut definition = None;
        if by_content && self.remote.is_some() {
            let (key, forced) = self.definition_key(&vertex, &map.digest).await?;
            let alias = match &self.remote {
                Some(remote) if !forced => remote.0.alias(&key),
                _ => None,
            };
            if let Some(alias) = alias {
                tracing::debug!(vertex = %vertex.info(), key = %alias, "cache key from an imported record");
                return Ok(Arc::new(KeyInfo {
                    key: alias,
                    definition: Some(key),
                    aliased: true,
                    forced,
                }));
            }
            definition = Some(key);
        }
        let parts_of = try_join_all(vertex.inputs.iter().enumerate().map(|(i, edge)| {
            let how = map.inputs.get(i).copied().unwrap_or_default();
            let (this, ctx, vertex) = (&self, &ctx, &vertex);
            async move {
                match how {
                    InputKey::Key => {
                        let input = this.key(&edge.vertex).await?;
                        Ok::<_, SolveError>((
                            KeyPart::Key(input.key.clone(), edge.index),
                            input.forced,
                        ))
                    }
                    InputKey::Content => {
                        let resolved = this.result(&edge.vertex).await?;
                        let output = output_of(&edge.vertex, &resolved, edge.index)?;
                        let sum =
                            vertex
                                .op
                                .content_checksum(ctx, i, &output)
                                .await
                                .map_err(|e| SolveError::ContentChecksum {
                                    vertex: vertex.info(),
                                    input: i,
                                    source: e.into(),
                                })?;
                        Ok((KeyPart::Content(sum), false))
                    }
                }
            }
        }));
        let parts = if by_content && definition.is_none() {
            let (parts, (key, _)) =
                futures_util::future::try_join(parts_of, self.definition_key(&vertex, &map.digest))
                    .await?;
            definition = Some(key);
            parts
        } else {
            parts_of.await?
        };
        let forced =
            self.no_cache || vertex.ignore_cache || parts.iter().any(|(_, forced)| *forced);
        let parts: Vec<KeyPart> = parts.into_iter().map(|(part, _)| part).collect();
        let key = CacheKey::compute(&map.digest, &parts);
        tracing::debug!(vertex = %vertex.info(), %key, forced, "cache key");
        Ok(Arc::new(KeyInfo {
            key,
            definition,
            aliased: false,
            forced,
        }))
    }

    /// The key by definition of `vertex` (op digest `digest`): its inputs all by their keys
    /// (see [`crate::RemoteCache::alias`]), and whether one of them is forced.
    async fn definition_key(
        self: &Arc<Self>,
        vertex: &Arc<Vertex>,
        digest: &str,
    ) -> Result<(CacheKey, bool), SolveError> {
        let inputs = try_join_all(vertex.inputs.iter().map(|edge| async move {
            let input = self.key(&edge.vertex).await?;
            Ok::<_, SolveError>((KeyPart::Key(input.key.clone(), edge.index), input.forced))
        }))
        .await?;
        let forced = self.no_cache || vertex.ignore_cache || inputs.iter().any(|(_, f)| *f);
        let parts: Vec<KeyPart> = inputs.into_iter().map(|(part, _)| part).collect();
        Ok((
            CacheKey::compute(&format!("{digest}\0by-definition"), &parts),
            forced,
        ))
    }

    async fn resolve(self: Arc<Self>, vertex: Arc<Vertex>) -> ResolveResult {
        lock(&self.visited).insert(vertex.digest.clone());
        let key = self.key(&vertex).await?;
        let (future, progress, sessions) = self.join_inflight(&vertex, key);
        sessions.add(self.session.as_ref());
        if let Some(tx) = &self.progress {
            progress.subscribe(tx.clone(), vertex.info());
        }
        future.await
    }

    /// The in-flight resolution of `key`: an existing one, or a new one run by this solve.
    fn join_inflight(
        self: &Arc<Self>,
        vertex: &Arc<Vertex>,
        key: Arc<KeyInfo>,
    ) -> (SharedResolve, Arc<Fanout>, Arc<Sessions>) {
        let inner = &self.inner;
        let slot = (key.key.clone(), key.forced);
        let mut inflight = lock(&inner.inflight);
        if let Some(entry) = inflight.get(&slot) {
            if let Some(future) = entry.future.upgrade() {
                return (future, entry.progress.clone(), entry.sessions.clone());
            }
        }
        let generation = inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let progress = Arc::new(Fanout::default());
        let sessions = Arc::new(Sessions::default());
        let future = self
            .clone()
            .run_vertex(
                vertex.clone(),
                key,
                generation,
                progress.clone(),
                sessions.clone(),
            )
            .boxed()
            .shared();
        if let Some(weak) = future.downgrade() {
            inflight.insert(
                slot,
                InFlight {
                    generation,
                    future: weak,
                    progress: progress.clone(),
                    sessions: sessions.clone(),
                },
            );
        }
        (future, progress, sessions)
    }

    /// Looks `key` up, and on a miss resolves the inputs, executes the op and records the result.
    async fn run_vertex(
        self: Arc<Self>,
        vertex: Arc<Vertex>,
        key: Arc<KeyInfo>,
        generation: u64,
        progress: Arc<Fanout>,
        sessions: Arc<Sessions>,
    ) -> ResolveResult {
        let inner = self.inner.clone();
        let _deregister = Deregister {
            inner: &inner,
            slot: (key.key.clone(), key.forced),
            generation,
        };

        if !key.forced {
            if let Some(outputs) = inner.lookup(&key.key, &vertex).await {
                progress.emit(EventKind::Cached);
                return Ok(Arc::new(Resolved { outputs }));
            }
            if let Some(remote) = &self.remote {
                let ctx = OpContext::new(vertex.info(), progress.clone(), sessions.clone());
                if let Some(outputs) = remote.0.load(&key.key, &ctx).await {
                    inner.record(&key.key, &vertex, &outputs).await;
                    progress.emit(EventKind::Cached);
                    return Ok(Arc::new(Resolved { outputs }));
                }
            }
        }

        let inputs = try_join_all(vertex.inputs.iter().map(|edge| {
            let input = self.result(&edge.vertex);
            async move { output_of(&edge.vertex, &*input.await?, edge.index) }
        }))
        .await?;

        let op = vertex.op.clone();
        let slots = inner.exec_slots.clone();
        let ctx = OpContext::new(vertex.info(), progress.clone(), sessions);
        let started = Arc::new(AtomicBool::new(false));
        let started_in_task = started.clone();
        // A task of its own, so ops run on all threads; aborted when no solve awaits it anymore.
        let task = AbortOnDrop(tokio::spawn(async move {
            // The semaphore is never closed, so acquiring cannot fail.
            let _permit = slots.acquire_owned().await.ok();
            started_in_task.store(true, Ordering::SeqCst);
            ctx.emit(EventKind::Started);
            op.exec(&ctx, inputs).await
        }));
        // Reported here, not in the task, so that it reaches the solves before they return.
        let mut cancel_report = ReportCanceled {
            progress: &progress,
            started: &started,
            armed: true,
        };
        let joined = task.await;
        cancel_report.armed = false;
        let outputs = match joined {
            Ok(Ok(outputs)) => outputs,
            Ok(Err(e)) => {
                let err = SolveError::Exec {
                    vertex: vertex.info(),
                    source: e.into(),
                };
                progress.emit(EventKind::Failed { error: err.chain() });
                return Err(err);
            }
            Err(join) => {
                tracing::error!(vertex = %vertex.info(), error = %join, "op task did not complete");
                let err = SolveError::Aborted {
                    vertex: vertex.info(),
                };
                progress.emit(EventKind::Failed { error: err.chain() });
                return Err(err);
            }
        };
        if !key.aliased {
            inner.record(&key.key, &vertex, &outputs).await;
        }
        progress.emit(EventKind::Completed);
        Ok(Arc::new(Resolved { outputs }))
    }

    /// After a successful solve: vertices never resolved (a dependent was cached) are cached too.
    fn report_unvisited(&self, root: &Arc<Vertex>) {
        let Some(tx) = &self.progress else { return };
        let visited = lock(&self.visited);
        let mut seen = HashSet::new();
        let mut stack = vec![root.clone()];
        while let Some(v) = stack.pop() {
            if !seen.insert(v.digest.clone()) {
                continue;
            }
            if !visited.contains(&v.digest) {
                let _ = tx.send(Event {
                    time: SystemTime::now(),
                    vertex: v.info(),
                    kind: EventKind::Cached,
                });
            }
            stack.extend(v.inputs.iter().map(|e| e.vertex.clone()));
        }
    }
}

impl Inner {
    /// The record of `key` in the store; `None` on a miss or a store error (logged).
    async fn stored(&self, key: &CacheKey, vertex: &Vertex) -> Option<CacheRecord> {
        let store = self.store.clone();
        let k = key.clone();
        match tokio::task::spawn_blocking(move || store.lookup(&k)).await {
            Ok(Ok(record)) => record,
            Ok(Err(e)) => {
                tracing::warn!(vertex = %vertex.info(), %key, error = %e, "cache lookup failed");
                None
            }
            Err(e) => {
                tracing::warn!(vertex = %vertex.info(), %key, error = %e, "cache lookup task failed");
                None
            }
        }
    }

    /// The recorded outputs of `key`, loaded; `None` on a miss, a store error or a result that
    /// is gone (whose record is then dropped).
    async fn lookup(&self, key: &CacheKey, vertex: &Vertex) -> Option<Vec<OutputRef>> {
        let record = self.stored(key, vertex).await?;
        let loads = record.outputs.iter().map(|id| self.loader.load(id));
        let mut outputs = Vec::with_capacity(record.outputs.len());
        for (id, loaded) in record
            .outputs
            .iter()
            .zip(futures_util::future::join_all(loads).await)
        {
            match loaded {
                Ok(Some(output)) => outputs.push(output),
                Ok(None) => {
                    tracing::info!(vertex = %vertex.info(), %key, id, "cached result is gone; executing");
                    self.forget(key).await;
                    return None;
                }
                Err(e) => {
                    tracing::warn!(vertex = %vertex.info(), %key, id, error = %e, "loading cached result failed; executing");
                    self.forget(key).await;
                    return None;
                }
            }
        }
        Some(outputs)
    }

    async fn forget(&self, key: &CacheKey) {
        let store = self.store.clone();
        let k = key.clone();
        match tokio::task::spawn_blocking(move || store.remove(&k)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(%key, error = %e, "dropping cache record failed"),
            Err(e) => tracing::warn!(%key, error = %e, "dropping cache record failed"),
        }
    }

    /// Records `outputs` under `key`. A failure is logged, not returned: the build succeeded.
    async fn record(&self, key: &CacheKey, vertex: &Vertex, outputs: &[OutputRef]) {
        let record = CacheRecord {
            outputs: outputs.iter().map(|o| o.id().to_owned()).collect(),
            vertex_digest: vertex.digest.clone(),
            vertex_name: vertex.name.clone(),
            created: SystemTime::now(),
        };
        let store = self.store.clone();
        let k = key.clone();
        match tokio::task::spawn_blocking(move || store.record(&k, &record)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(vertex = %vertex.info(), %key, error = %e, "recording cache result failed")
            }
            Err(e) => {
                tracing::warn!(vertex = %vertex.info(), %key, error = %e, "recording cache result failed")
            }
        }
    }
}

/// Removes an in-flight entry when its future ends (or is dropped), unless a newer one replaced it.
struct Deregister<'a> {
    inner: &'a Inner,
    slot: (CacheKey, bool),
    generation: u64,
}

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        let mut inflight = lock(&self.inner.inflight);
        if inflight
            .get(&self.slot)
            .is_some_and(|e| e.generation == self.generation)
        {
            inflight.remove(&self.slot);
        }
    }
}

/// Reports an execution that started and was dropped before it finished as canceled.
struct ReportCanceled<'a> {
    progress: &'a Fanout,
    started: &'a AtomicBool,
    armed: bool,
}

impl Drop for ReportCanceled<'_> {
    fn drop(&mut self) {
        if self.armed && self.started.load(Ordering::SeqCst) {
            self.progress.emit(EventKind::Canceled);
        }
    }
}

/// A task handle that aborts the task when dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

fn output_of(vertex: &Vertex, resolved: &Resolved, index: usize) -> Result<OutputRef, SolveError> {
    resolved
        .outputs
        .get(index)
        .cloned()
        .ok_or_else(|| SolveError::MissingOutput {
            vertex: vertex.info(),
            index,
            count: resolved.outputs.len(),
        })
}

#[cfg(test)]
mod tests;
