//! An in-memory cache store: lost when the process exits.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{CacheRecord, CacheStore};
use crate::cachekey::CacheKey;
use crate::error::CacheError;

/// Cache records in a map, for tests and for solvers that need no persistence.
#[derive(Debug, Default)]
pub struct MemoryCacheStore {
    records: Mutex<BTreeMap<CacheKey, CacheRecord>>,
}

impl MemoryCacheStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<CacheKey, CacheRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CacheStore for MemoryCacheStore {
    fn lookup(&self, key: &CacheKey) -> Result<Option<CacheRecord>, CacheError> {
        Ok(self.map().get(key).cloned())
    }

    fn record(&self, key: &CacheKey, record: &CacheRecord) -> Result<(), CacheError> {
        self.map().insert(key.clone(), record.clone());
        Ok(())
    }

    fn remove(&self, key: &CacheKey) -> Result<(), CacheError> {
        self.map().remove(key);
        Ok(())
    }

    fn list(&self) -> Result<Vec<(CacheKey, CacheRecord)>, CacheError> {
        Ok(self
            .map()
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect())
    }
}
