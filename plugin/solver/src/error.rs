//! The solver's errors: [`SolveError`] names the failing vertex; [`CacheError`] is the store's.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;

use crate::vertex::VertexInfo;

/// What an op (or a loader) returns on failure: its own error type, boxed.
pub type OpError = Box<dyn StdError + Send + Sync + 'static>;

/// An op's error, shared: one execution may fail several solves that waited on it.
pub type SharedOpError = Arc<dyn StdError + Send + Sync + 'static>;

/// Why a solve failed. Every variant names the vertex (digest and name), like BuildKit's
/// `WrapVertex`; the op's own error is the [`source`](StdError::source).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SolveError {
    /// The op could not describe itself for caching (e.g. a source could not resolve a ref).
    #[error("{vertex} failed while computing its cache key")]
    CacheMap {
        /// The failing vertex.
        vertex: VertexInfo,
        /// The op's error.
        #[source]
        source: SharedOpError,
    },
    /// The op's cache map does not match the vertex's inputs: a bug in the op.
    #[error("{vertex} has {inputs} inputs but its op's cache map describes {described}")]
    BadCacheMap {
        /// The failing vertex.
        vertex: VertexInfo,
        /// How many inputs the vertex has.
        inputs: usize,
        /// How many the cache map described.
        described: usize,
    },
    /// The op failed to checksum the content it reads from an input.
    #[error("{vertex} failed while checksumming input {input}")]
    ContentChecksum {
        /// The failing vertex.
        vertex: VertexInfo,
        /// The input's position.
        input: usize,
        /// The op's error.
        #[source]
        source: SharedOpError,
    },
    /// The op's execution failed.
    #[error("{vertex} failed")]
    Exec {
        /// The failing vertex.
        vertex: VertexInfo,
        /// The op's error.
        #[source]
        source: SharedOpError,
    },
    /// An edge refers to an output the vertex did not produce.
    #[error("{vertex} produced {count} outputs, but output {index} is used")]
    MissingOutput {
        /// The producing vertex.
        vertex: VertexInfo,
        /// The output asked for.
        index: usize,
        /// How many outputs there are.
        count: usize,
    },
    /// The op's execution panicked or its task was aborted by the runtime.
    #[error("{vertex} did not complete: its task panicked or was aborted")]
    Aborted {
        /// The failing vertex.
        vertex: VertexInfo,
    },
}

impl SolveError {
    /// The vertex the error is about.
    pub fn vertex(&self) -> &VertexInfo {
        match self {
            SolveError::CacheMap { vertex, .. }
            | SolveError::BadCacheMap { vertex, .. }
            | SolveError::ContentChecksum { vertex, .. }
            | SolveError::Exec { vertex, .. }
            | SolveError::MissingOutput { vertex, .. }
            | SolveError::Aborted { vertex } => vertex,
        }
    }

    /// The op's own error, if the op failed (to downcast to the op's error type).
    pub fn op_error(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        match self {
            SolveError::CacheMap { source, .. }
            | SolveError::ContentChecksum { source, .. }
            | SolveError::Exec { source, .. } => Some(&**source),
            _ => None,
        }
    }

    /// The message and all its causes on one line, `a: b: c` (for progress events).
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cur: Option<&(dyn StdError + 'static)> = self.op_error().map(|e| e as _);
        while let Some(e) = cur {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cur = e.source();
        }
        out
    }
}

/// Why the cache store failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The database file could not be opened or created.
    #[error("failed to open the cache database {}; check that the directory exists and is writable, and that no other daemon uses it", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// redb's error (boxed: it is large).
        #[source]
        source: Box<redb::Error>,
    },
    /// A read or write transaction failed.
    #[error("cache database {op} failed")]
    Store {
        /// What was being done.
        op: &'static str,
        /// redb's error (boxed: it is large).
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored record could not be decoded.
    #[error("cache record for {key} is corrupt")]
    Corrupt {
        /// The record's key.
        key: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}
