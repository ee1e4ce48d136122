//! Transactional snapshot metadata in redb: records by key, a parent→child index, the id counter.
//!
//! Every mutation is one redb write transaction, durable when it returns: after a crash the store
//! holds either the old or the new state. Directory work that must happen atomically with a
//! mutation runs inside the transaction, before it commits (see [`MetaStore::create`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SnapshotError, StoreResultExt};
use crate::info::{Info, Kind, Usage};

/// key → JSON-encoded [`Record`].
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
/// (parent key, child key) → (), so "has children" is one range probe.
const CHILDREN: TableDefinition<(&str, &str), ()> = TableDefinition::new("children");
/// Counters and settings: `next_id`.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Settings fixed at first start: `mode`.
const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");

/// What the store keeps for one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Directory id: the snapshot lives in `snapshots/<id>`.
    pub id: u64,
    pub kind: Kind,
    /// Parent key, if any.
    pub parent: Option<String>,
    /// Ids of all ancestors, nearest first (the overlay lowerdir order).
    pub parent_ids: Vec<u64>,
    pub labels: BTreeMap<String, String>,
    pub created: Stamp,
    pub updated: Stamp,
    /// Usage measured at commit; `None` while active.
    pub usage: Option<Usage>,
}

/// A wall-clock time with nanoseconds, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamp {
    secs: u64,
    nanos: u32,
}

impl Stamp {
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Stamp {
            secs: d.as_secs(),
            nanos: d.subsec_nanos(),
        }
    }

    pub fn time(self) -> SystemTime {
        UNIX_EPOCH + Duration::new(self.secs, self.nanos)
    }
}

impl Record {
    pub fn info(&self, name: &str) -> Info {
        Info {
            name: name.to_string(),
            parent: self.parent.clone().unwrap_or_default(),
            kind: self.kind,
            created: self.created.time(),
            updated: self.updated.time(),
            labels: self.labels.clone(),
        }
    }
}

/// Drops labels with empty values: containerd never stores them, and setting one deletes it.
pub(crate) fn clean_labels(
    labels: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    labels.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

/// The metadata database.
pub(crate) struct MetaStore {
    db: Database,
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record> {
    serde_json::from_slice(bytes).map_err(|source| SnapshotError::CorruptRecord {
        key: key.to_string(),
        source,
    })
}

fn encode(rec: &Record) -> Vec<u8> {
    serde_json::to_vec(rec).expect("records always encode")
}

impl MetaStore {
    /// Opens (or creates) the database and its tables.
    pub fn open(path: &Path) -> Result<Self> {
        let db = match Database::create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(SnapshotError::RootInUse {
                    path: path.to_path_buf(),
                })
            }
            other => other.store("open database")?,
        };
        let txn = db.begin_write().store("begin transaction")?;
        {
            txn.open_table(SNAPSHOTS).store("open table")?;
            txn.open_table(CHILDREN).store("open table")?;
            txn.open_table(COUNTERS).store("open table")?;
            txn.open_table(SETTINGS).store("open table")?;
        }
        txn.commit().store("commit")?;
        Ok(MetaStore { db })
    }

    /// Returns the stored setting, storing `value` first if there is none.
    pub fn setting_or_init(&self, name: &str, value: &str) -> Result<String> {
        let txn = self.db.begin_write().store("begin transaction")?;
        let stored = {
            let mut t = txn.open_table(SETTINGS).store("open table")?;
            let existing = t
                .get(name)
                .store("read setting")?
                .map(|v| v.value().to_string());
            match existing {
                Some(v) => v,
                None => {
                    t.insert(name, value).store("write setting")?;
                    value.to_string()
                }
            }
        };
        txn.commit().store("commit")?;
        Ok(stored)
    }

    /// The record of `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Record>> {
        let txn = self.db.begin_read().store("begin read")?;
        let t = txn.open_table(SNAPSHOTS).store("open table")?;
        let got = t.get(key).store("read snapshot")?;
        got.map(|v| decode(key, v.value())).transpose()
    }

    /// Every snapshot, in key order.
    pub fn list(&self) -> Result<Vec<(String, Record)>> {
        let txn = self.db.begin_read().store("begin read")?;
        let t = txn.open_table(SNAPSHOTS).store("open table")?;
        let mut out = Vec::with_capacity(t.len().store("count snapshots")? as usize);
        for row in t.iter().store("iterate snapshots")? {
            let (k, v) = row.store("read snapshot")?;
            out.push((k.value().to_string(), decode(k.value(), v.value())?));
        }
        Ok(out)
    }

    /// Creates an active or view snapshot. `place(id)` runs inside the transaction once the id is
    /// allocated (it moves the prepared directory into place); if it fails, nothing is recorded.
    pub fn create(
        &self,
        key: &str,
        kind: Kind,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
        place: impl FnOnce(u64, &[u64]) -> Result<()>,
    ) -> Result<Record> {
        let txn = self.db.begin_write().store("begin transaction")?;
        let rec = {
            let mut snaps = txn.open_table(SNAPSHOTS).store("open table")?;
            if snaps.get(key).store("read snapshot")?.is_some() {
                return Err(SnapshotError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            let parent_ids = match parent {
                None => Vec::new(),
                Some(p) => {
                    let got = snaps.get(p).store("read parent")?;
                    let prec = match got {
                        Some(v) => decode(p, v.value())?,
                        None => {
                            return Err(SnapshotError::ParentNotFound {
                                parent: p.to_string(),
                            })
                        }
                    };
                    if prec.kind != Kind::Committed {
                        return Err(SnapshotError::ParentNotCommitted {
                            parent: p.to_string(),
                        });
                    }
                    std::iter::once(prec.id).chain(prec.parent_ids).collect()
                }
            };
            let id = {
                let mut counters = txn.open_table(COUNTERS).store("open table")?;
                let next = counters
                    .get("next_id")
                    .store("read id")?
                    .map(|v| v.value())
                    .unwrap_or(1);
                counters.insert("next_id", next + 1).store("write id")?;
                next
            };
            let now = Stamp::now();
            let rec = Record {
                id,
                kind,
                parent: parent.map(str::to_string),
                parent_ids,
                labels,
                created: now,
                updated: now,
                usage: None,
            };
            snaps
                .insert(key, encode(&rec).as_slice())
                .store("write snapshot")?;
            if let Some(p) = parent {
                txn.open_table(CHILDREN)
                    .store("open table")?
                    .insert((p, key), ())
                    .store("write child link")?;
            }
            place(id, &rec.parent_ids)?;
            rec
        };
        txn.commit().store("commit")?;
        Ok(rec)
    }

    /// Turns active `key` into committed `name` with fresh times, the given labels and usage.
    pub fn commit(
        &self,
        key: &str,
        name: &str,
        labels: BTreeMap<String, String>,
        usage: Usage,
    ) -> Result<Record> {
        let txn = self.db.begin_write().store("begin transaction")?;
        let rec = {
            let mut snaps = txn.open_table(SNAPSHOTS).store("open table")?;
            let mut rec = match snaps.get(key).store("read snapshot")? {
                Some(v) => decode(key, v.value())?,
                None => {
                    return Err(SnapshotError::NotFound {
                        key: key.to_string(),
                    })
                }
            };
            if snaps.get(name).store("read snapshot")?.is_some() {
                return Err(SnapshotError::AlreadyExists {
                    key: name.to_string(),
                });
            }
            if rec.kind != Kind::Active {
                return Err(SnapshotError::NotActive {
                    key: key.to_string(),
                });
            }
            let now = Stamp::now();
            rec.kind = Kind::Committed;
            rec.created = now;
            rec.updated = now;
            rec.labels = labels;
            rec.usage = Some(usage);
            snaps.remove(key).store("remove active snapshot")?;
            snaps
                .insert(name, encode(&rec).as_slice())
                .store("write snapshot")?;
            if let Some(p) = rec.parent.as_deref() {
                let mut children = txn.open_table(CHILDREN).store("open table")?;
                children.remove((p, key)).store("update child link")?;
                children.insert((p, name), ()).store("update child link")?;
            }
            rec
        };
        txn.commit().store("commit")?;
        Ok(rec)
    }

    /// Removes `key`'s record, refusing when it has children. The caller removes the directory
    /// after this returns: a crash in between leaves an orphan directory, which startup removes.
    pub fn remove(&self, key: &str) -> Result<Record> {
        let txn = self.db.begin_write().store("begin transaction")?;
        let rec = {
            let mut snaps = txn.open_table(SNAPSHOTS).store("open table")?;
            let rec = match snaps.get(key).store("read snapshot")? {
                Some(v) => decode(key, v.value())?,
                None => {
                    return Err(SnapshotError::NotFound {
                        key: key.to_string(),
                    })
                }
            };
            let mut children = txn.open_table(CHILDREN).store("open table")?;
            let has_children = children
                .range((key, "")..)
                .store("read child links")?
                .next()
                .transpose()
                .store("read child link")?
                .is_some_and(|(k, _)| k.value().0 == key);
            if has_children {
                return Err(SnapshotError::HasChildren {
                    key: key.to_string(),
                });
            }
            snaps.remove(key).store("remove snapshot")?;
            if let Some(p) = rec.parent.as_deref() {
                children.remove((p, key)).store("remove child link")?;
            }
            rec
        };
        txn.commit().store("commit")?;
        Ok(rec)
    }

    /// Applies `change` to `key`'s record and stores it with a fresh update time.
    pub fn update(
        &self,
        key: &str,
        change: impl FnOnce(&mut Record) -> Result<()>,
    ) -> Result<Record> {
        let txn = self.db.begin_write().store("begin transaction")?;
        let rec = {
            let mut snaps = txn.open_table(SNAPSHOTS).store("open table")?;
            let mut rec = match snaps.get(key).store("read snapshot")? {
                Some(v) => decode(key, v.value())?,
                None => {
                    return Err(SnapshotError::NotFound {
                        key: key.to_string(),
                    })
                }
            };
            change(&mut rec)?;
            rec.updated = Stamp::now();
            snaps
                .insert(key, encode(&rec).as_slice())
                .store("write snapshot")?;
            rec
        };
        txn.commit().store("commit")?;
        Ok(rec)
    }
}
