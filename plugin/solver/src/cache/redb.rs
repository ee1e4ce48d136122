//! A persistent cache store in one redb file: every write is one durable transaction, so after
//! a crash a record is either there entirely or not at all.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use super::{CacheRecord, CacheStore};
use crate::cachekey::CacheKey;
use crate::error::CacheError;

/// cache key → JSON-encoded [`CacheRecord`].
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("cache_records");

/// Cache records in a redb database file.
pub struct RedbCacheStore {
    db: Database,
}

impl std::fmt::Debug for RedbCacheStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbCacheStore").finish_non_exhaustive()
    }
}

fn store_err<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> CacheError {
    move |e| CacheError::Store {
        op,
        source: Box::new(e.into()),
    }
}

impl RedbCacheStore {
    /// Opens the database at `path`, creating it (but not its directory) if missing.
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let open_err = |e: redb::Error| CacheError::Open {
            path: path.to_owned(),
            source: Box::new(e),
        };
        let db = Database::create(path).map_err(|e| open_err(e.into()))?;
        // Create the table up front so readers never see "table does not exist".
        let txn = db.begin_write().map_err(|e| open_err(e.into()))?;
        txn.open_table(RECORDS).map_err(|e| open_err(e.into()))?;
        txn.commit().map_err(|e| open_err(e.into()))?;
        Ok(RedbCacheStore { db })
    }
}

fn decode(key: &str, bytes: &[u8]) -> Result<CacheRecord, CacheError> {
    serde_json::from_slice(bytes).map_err(|source| CacheError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

impl CacheStore for RedbCacheStore {
    fn lookup(&self, key: &CacheKey) -> Result<Option<CacheRecord>, CacheError> {
        const OP: &str = "lookup";
        let txn = self.db.begin_read().map_err(store_err(OP))?;
        let table = txn.open_table(RECORDS).map_err(store_err(OP))?;
        let Some(value) = table.get(key.as_str()).map_err(store_err(OP))? else {
            return Ok(None);
        };
        decode(key.as_str(), value.value()).map(Some)
    }

    fn record(&self, key: &CacheKey, record: &CacheRecord) -> Result<(), CacheError> {
        const OP: &str = "record";
        // Serializing a struct of strings and a time cannot fail.
        let bytes = serde_json::to_vec(record).unwrap_or_default();
        let txn = self.db.begin_write().map_err(store_err(OP))?;
        {
            let mut table = txn.open_table(RECORDS).map_err(store_err(OP))?;
            table
                .insert(key.as_str(), bytes.as_slice())
                .map_err(store_err(OP))?;
        }
        txn.commit().map_err(store_err(OP))
    }

    fn remove(&self, key: &CacheKey) -> Result<(), CacheError> {
        const OP: &str = "remove";
        let txn = self.db.begin_write().map_err(store_err(OP))?;
        {
            let mut table = txn.open_table(RECORDS).map_err(store_err(OP))?;
            table.remove(key.as_str()).map_err(store_err(OP))?;
        }
        txn.commit().map_err(store_err(OP))
    }

    fn list(&self) -> Result<Vec<(CacheKey, CacheRecord)>, CacheError> {
        const OP: &str = "list";
        let txn = self.db.begin_read().map_err(store_err(OP))?;
        let table = txn.open_table(RECORDS).map_err(store_err(OP))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(store_err(OP))? {
            let (k, v) = entry.map_err(store_err(OP))?;
            out.push((
                CacheKey::from_string(k.value().to_owned()),
                decode(k.value(), v.value())?,
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn record(id: &str) -> CacheRecord {
        CacheRecord {
            outputs: vec![id.to_owned()],
            vertex_digest: "d".into(),
            vertex_name: "n".into(),
            created: SystemTime::now(),
        }
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.redb");
        let (a, b) = (
            CacheKey::from_string("sha256:a".into()),
            CacheKey::from_string("sha256:b".into()),
        );
        {
            let store = RedbCacheStore::open(&path).unwrap();
            assert_eq!(store.lookup(&a).unwrap(), None);
            store.record(&a, &record("1")).unwrap();
            store.record(&a, &record("2")).unwrap();
            store.record(&b, &record("3")).unwrap();
            store.remove(&b).unwrap();
        }
        let store = RedbCacheStore::open(&path).unwrap();
        assert_eq!(
            store.lookup(&a).unwrap().unwrap().outputs,
            vec!["2".to_owned()]
        );
        assert_eq!(store.lookup(&b).unwrap(), None);
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, a);
    }

    #[test]
    fn open_names_the_file_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir/cache.redb");
        let err = RedbCacheStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("missing-dir/cache.redb"), "{err}");
    }
}
