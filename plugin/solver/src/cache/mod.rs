//! Cache records: which outputs a cache key produced. [`CacheStore`] is the seam; an in-memory
//! store for tests and short-lived use, and a redb-backed one that survives restarts.

mod memory;
mod redb;

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::cachekey::CacheKey;
use crate::error::CacheError;

pub use self::memory::MemoryCacheStore;
pub use self::redb::RedbCacheStore;

/// What the store keeps for one cache key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// Output ids, in output order, for the [`ResultLoader`](crate::ResultLoader).
    pub outputs: Vec<String>,
    /// Digest of the vertex that produced them (for listing and pruning).
    pub vertex_digest: String,
    /// Name of that vertex.
    pub vertex_name: String,
    /// When the record was written.
    pub created: SystemTime,
}

/// Maps cache keys to records. Methods are synchronous and short; the solver calls them off the
/// async threads. Each call is atomic: a reader sees a record entirely or not at all.
pub trait CacheStore: Send + Sync {
    /// The record for `key`, if any.
    fn lookup(&self, key: &CacheKey) -> Result<Option<CacheRecord>, CacheError>;

    /// Records `record` under `key`, replacing any previous record; durable when it returns
    /// (for persistent stores).
    fn record(&self, key: &CacheKey, record: &CacheRecord) -> Result<(), CacheError>;

    /// Removes the record for `key`, if any.
    fn remove(&self, key: &CacheKey) -> Result<(), CacheError>;

    /// All records, in key order (for disk usage and prune).
    fn list(&self) -> Result<Vec<(CacheKey, CacheRecord)>, CacheError>;
}
