//! Sharing cache between daemons, the solver's side: a [`RemoteCache`] (records another daemon
//! exported, consulted when the local store misses) and the [`KeyedRecord`]s of a solve (what an
//! export of this solve's cache writes).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::cachekey::CacheKey;
use crate::op::{OpContext, OutputRef};
use crate::vertex::VertexInfo;

/// Cache records made elsewhere (e.g. imported from a registry). Results found here are made
/// local by the implementation, then recorded in the local store like any other.
#[async_trait]
pub trait RemoteCache: Send + Sync {
    /// The cache key recorded for `definition_key`: the key, by definition (its inputs' keys),
    /// of a vertex that keys an input by content. With it, such a vertex is matched without
    /// resolving that input (which would fetch the input's result).
    fn alias(&self, definition_key: &CacheKey) -> Option<CacheKey>;

    /// The outputs recorded for `key`, made local; `None` when there is no record or it cannot
    /// be used (the implementation says why in `ctx`'s log: a remote cache never fails a build).
    async fn load(&self, key: &CacheKey, ctx: &OpContext) -> Option<Vec<OutputRef>>;
}

/// A shared [`RemoteCache`], as [`SolveOptions`](crate::SolveOptions) carries it.
#[derive(Clone)]
pub struct RemoteRef(pub Arc<dyn RemoteCache>);

impl fmt::Debug for RemoteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RemoteRef(..)")
    }
}

/// One vertex of a solved graph with the record its key has in the local store: what a cache
/// export writes ([`Solver::solve_keyed`](crate::Solver::solve_keyed)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRecord {
    /// The vertex.
    pub vertex: VertexInfo,
    /// Its cache key.
    pub key: CacheKey,
    /// Its key by definition, when it keys an input by content (see [`RemoteCache::alias`]).
    pub definition_key: Option<CacheKey>,
    /// The recorded output ids, in output order.
    pub outputs: Vec<String>,
}
