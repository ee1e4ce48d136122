//! The build cache as the build API shows it: disk usage per record, and prune.

use std::sync::Arc;
use std::time::SystemTime;

use oxkit_solver::{CacheStore, RedbCacheStore};
use oxkit_worker::Worker;
use tonic::Status;

/// One cache record with the disk its snapshots use.
pub(super) struct Usage {
    pub id: String,
    pub description: String,
    pub size: i64,
    pub created: SystemTime,
}

/// Snapshot names of a record's outputs (an output id may carry `#…` metadata after the name).
fn snapshot_names(outputs: &[String]) -> impl Iterator<Item = &str> {
    outputs.iter().map(|o| o.split('#').next().unwrap_or(o))
}

/// Layer snapshots named by chain ID are shared with images (`ctr run` uses them); prune keeps them.
fn is_layer(name: &str) -> bool {
    name.starts_with("sha256:")
}

fn store_error(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("build cache records: {e}"))
}

/// Every record, with its snapshots' own-layer usage (a snapshot already gone counts 0).
pub(super) async fn disk_usage(
    store: &Arc<RedbCacheStore>,
    worker: &Worker,
) -> Result<Vec<Usage>, Status> {
    let store = store.clone();
    let records = tokio::task::spawn_blocking(move || store.list())
        .await
        .map_err(store_error)?
        .map_err(store_error)?;
    let mut out = Vec::with_capacity(records.len());
    for (key, record) in records {
        let mut size: u64 = 0;
        for name in snapshot_names(&record.outputs) {
            if let Ok(u) = worker.client().snapshots().usage(name).await {
                size += u.size;
            }
        }
        out.push(Usage {
            id: key.to_string(),
            description: record.vertex_name,
            size: size as i64,
            created: record.created,
        });
    }
    Ok(out)
}

/// Drops every record and removes the snapshots they held, children before parents, except
/// layer snapshots. Returns (records dropped, bytes reclaimed). The caller keeps builds out.
pub(super) async fn prune(
    store: &Arc<RedbCacheStore>,
    worker: &Worker,
) -> Result<(i64, i64), Status> {
    let s = store.clone();
    let records = tokio::task::spawn_blocking(move || s.list())
        .await
        .map_err(store_error)?
        .map_err(store_error)?;
    let mut doomed: Vec<String> = Vec::new();
    for (key, record) in &records {
        let s = store.clone();
        let k = key.clone();
        tokio::task::spawn_blocking(move || s.remove(&k))
            .await
            .map_err(store_error)?
            .map_err(store_error)?;
        doomed.extend(
            snapshot_names(&record.outputs)
                .filter(|n| !is_layer(n))
                .map(String::from),
        );
    }
    doomed.sort();
    doomed.dedup();
    let snapshots = worker.client().snapshots();
    let mut reclaimed: u64 = 0;
    // A snapshot with children refuses removal; each pass removes the leaves of what is left.
    loop {
        let mut left = Vec::new();
        let mut removed_any = false;
        for name in std::mem::take(&mut doomed) {
            let size = snapshots.usage(&name).await.map(|u| u.size).unwrap_or(0);
            match snapshots.remove(&name).await {
                Ok(()) => {
                    reclaimed += size;
                    removed_any = true;
                }
                Err(e) if e.is_not_found() => {}
                Err(e) if e.is_failed_precondition() => left.push(name),
                Err(e) => {
                    return Err(Status::internal(format!(
                        "failed to remove snapshot {name}: {e}"
                    )))
                }
            }
        }
        if left.is_empty() {
            break;
        }
        if !removed_any {
            // Snapshots outside the cache (a running build's) build on these: leave them.
            tracing::info!(
                kept = left.len(),
                "prune kept snapshots that other snapshots build on"
            );
            break;
        }
        doomed = left;
    }
    Ok((records.len() as i64, reclaimed as i64))
}
