//! What the solver asks of ops and of the worker that keeps their results.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::error::OpError;
use crate::progress::{EventKind, Fanout, Stream};
use crate::vertex::VertexInfo;

/// One output of a vertex, e.g. a committed snapshot. Opaque to the solver, which only records
/// its [`id`](Output::id) in the cache and hands it to dependent ops.
pub trait Output: Send + Sync + fmt::Debug + 'static {
    /// A stable identifier that the [`ResultLoader`] can turn back into this output, in this
    /// process or after a restart (e.g. a snapshot name).
    fn id(&self) -> &str;

    /// For ops to downcast to the worker's concrete type.
    fn as_any(&self) -> &dyn Any;
}

/// A shared output.
pub type OutputRef = Arc<dyn Output>;

/// How an input contributes to the cache key of the vertex that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputKey {
    /// By the input's own cache key (and output index): the default.
    #[default]
    Key,
    /// By [`Op::content_checksum`] of the input's result, instead of its key: two inputs with
    /// equal checksums give the same key, whatever built them. The input is then always
    /// resolved (loaded or built) before the key is known.
    Content,
}

/// An op's description of itself for caching.
#[derive(Debug, Clone)]
pub struct CacheMap {
    /// A digest of the op's semantic definition: everything that changes its result and nothing
    /// else (leave out descriptions, progress names, …).
    pub digest: String,
    /// How each input is keyed, by position. Empty means all [`InputKey::Key`]; otherwise it
    /// must have one entry per input.
    pub inputs: Vec<InputKey>,
}

impl CacheMap {
    /// A cache map that keys every input by its cache key.
    pub fn new(digest: impl Into<String>) -> Self {
        CacheMap {
            digest: digest.into(),
            inputs: Vec::new(),
        }
    }

    /// Sets how each input is keyed.
    pub fn with_inputs(mut self, inputs: Vec<InputKey>) -> Self {
        self.inputs = inputs;
        self
    }
}

/// What a vertex does. Implemented by the daemon's ops (exec, file, source, merge) and by tests.
///
/// An op is shared between solves and must be `Send + Sync`; its futures may be dropped at any
/// await point when every solve that needed the vertex is cancelled or fails, so whatever it
/// leaves behind on cancellation must be safe to clean up later.
#[async_trait]
pub trait Op: Send + Sync {
    /// Describes the op for its cache key. Runs once per solve that reaches the vertex, before
    /// [`exec`](Op::exec) and before the cache is looked up; it may do work (e.g. resolve a git
    /// ref to a commit) and must be deterministic for a given state of the world.
    async fn cache_map(&self, ctx: &OpContext) -> Result<CacheMap, OpError>;

    /// A checksum of exactly the content this op reads from input `index`'s `output`. Called
    /// only for inputs the cache map marks [`InputKey::Content`], after the input is resolved.
    async fn content_checksum(
        &self,
        ctx: &OpContext,
        index: usize,
        output: &OutputRef,
    ) -> Result<String, OpError> {
        let _ = (ctx, output);
        Err(
            format!("the op keys input {index} by content but does not implement content_checksum")
                .into(),
        )
    }

    /// Whether this op's results go into an exported cache. Sources whose results another
    /// daemon makes as cheaply itself (an image it pulls, a directory its client sends) say no.
    fn exportable(&self) -> bool {
        true
    }

    /// Runs the op on its inputs' outputs (one per input, in order) and returns its outputs.
    /// Runs only on a cache miss, at most once at a time per cache key, within the solver's
    /// parallelism limit. On error, nothing is recorded.
    async fn exec(
        &self,
        ctx: &OpContext,
        inputs: Vec<OutputRef>,
    ) -> Result<Vec<OutputRef>, OpError>;
}

/// Turns recorded output ids back into outputs: the worker that owns them (snapshots, …).
#[async_trait]
pub trait ResultLoader: Send + Sync {
    /// Loads the output recorded as `id`. `Ok(None)` means it is gone (e.g. pruned); the solver
    /// then drops the cache record and executes the vertex again. An error is treated the same
    /// way (and logged): a cache that cannot be loaded never fails a build.
    async fn load(&self, id: &str) -> Result<Option<OutputRef>, OpError>;
}

/// What the client of a solve lends the ops it runs (the daemon puts its client session here),
/// opaque to the solver: ops get it back, typed, from [`OpContext::sessions`].
#[derive(Clone)]
pub struct Attachment(Arc<dyn Any + Send + Sync>);

impl Attachment {
    /// Wraps `value`; ops ask for it by its type `T`.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Attachment(Arc::new(value))
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Attachment(..)")
    }
}

/// The attachments of the solves waiting on one vertex, in the order they joined.
#[derive(Default)]
pub(crate) struct Sessions {
    attached: Mutex<Vec<Attachment>>,
}

impl Sessions {
    pub(crate) fn single(session: Option<&Attachment>) -> Self {
        let sessions = Sessions::default();
        sessions.add(session);
        sessions
    }

    /// Adds a joining solve's attachment (once).
    pub(crate) fn add(&self, session: Option<&Attachment>) {
        let Some(session) = session else { return };
        let mut attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
        if !attached.iter().any(|a| Arc::ptr_eq(&a.0, &session.0)) {
            attached.push(session.clone());
        }
    }
}

/// What an op gets while it runs: who it is, where its log goes, and what its solves' clients
/// lend it.
#[derive(Clone)]
pub struct OpContext {
    vertex: VertexInfo,
    progress: Arc<Fanout>,
    sessions: Arc<Sessions>,
}

impl OpContext {
    pub(crate) fn new(vertex: VertexInfo, progress: Arc<Fanout>, sessions: Arc<Sessions>) -> Self {
        OpContext {
            vertex,
            progress,
            sessions,
        }
    }

    /// The [`Attachment`]s of type `T` of the solves waiting on this vertex, first joined
    /// first: one execution may serve several solves, and any of their clients may still be
    /// there when the op asks.
    pub fn sessions<T: Any + Clone>(&self) -> Vec<T> {
        let attached = self
            .sessions
            .attached
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        attached
            .iter()
            .filter_map(|a| a.0.downcast_ref::<T>().cloned())
            .collect()
    }

    /// The vertex being solved.
    pub fn vertex(&self) -> &VertexInfo {
        &self.vertex
    }

    /// Sends output of the step (e.g. a process's stdout) to every solve waiting on it.
    pub fn log(&self, stream: Stream, data: impl Into<Vec<u8>>) {
        self.progress.emit(EventKind::Log {
            stream,
            data: data.into(),
        });
    }

    /// Sends a status event (the solver's, not the op's).
    pub(crate) fn emit(&self, kind: EventKind) {
        self.progress.emit(kind);
    }
}

impl fmt::Debug for OpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpContext")
            .field("vertex", &self.vertex)
            .finish_non_exhaustive()
    }
}
