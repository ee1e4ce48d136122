//! Snapshots through containerd's Snapshots service (never the snapshotter's socket directly), so
//! that containerd knows every snapshot a build makes.

use std::time::SystemTime;

use containerd_client::services::v1::snapshots as pb;

use crate::convert::{
    field_mask, label_paths, labels_from_pb, labels_to_pb, mounts_from_pb, size_from_pb,
    time_from_pb,
};
use crate::error::CallResult;
use crate::{Client, ContainerdError, Labels, Mount};

/// The name containerd knows oxkit's snapshotter by.
pub const DEFAULT_SNAPSHOTTER: &str = "oxkit";

/// The kind of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// A read-only view of a committed snapshot.
    View,
    /// A writable snapshot that can be committed.
    Active,
    /// An immutable snapshot that others can be prepared on.
    Committed,
    /// Something containerd did not say.
    Unknown,
}

/// What containerd knows about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its key (active, view) or name (committed).
    pub name: String,
    /// Its parent's name, if any.
    pub parent: Option<String>,
    /// Its kind.
    pub kind: SnapshotKind,
    /// Its labels.
    pub labels: Labels,
    /// When it was created.
    pub created_at: Option<SystemTime>,
    /// When it was last updated.
    pub updated_at: Option<SystemTime>,
}

/// Disk usage of a snapshot (its own layer, not its parents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotUsage {
    /// Bytes.
    pub size: u64,
    /// Inodes.
    pub inodes: u64,
}

/// containerd's Snapshots service for one snapshotter.
#[derive(Debug, Clone)]
pub struct Snapshots {
    client: Client,
    snapshotter: String,
}

impl Snapshots {
    pub(crate) fn new(client: Client, snapshotter: &str) -> Self {
        Self {
            client,
            snapshotter: snapshotter.to_owned(),
        }
    }

    /// The snapshotter's name.
    pub fn snapshotter(&self) -> &str {
        &self.snapshotter
    }

    /// Snapshot `key` as the layer-directory memo names it.
    fn id(&self, key: &str) -> crate::layer_dirs::Id {
        (
            self.client.namespace().to_owned(),
            self.snapshotter.clone(),
            key.to_owned(),
        )
    }

    /// The directory holding committed snapshot `name`'s own files — what a view of it shows as
    /// its top layer ([`Mount::layer_dir`]) — if this process prepared and committed it through
    /// this client (or a clone of it) and the directory is still there; else `None`, and a view
    /// tells. Saves a view and its removal when reading a snapshot just built.
    pub fn known_layer_dir(&self, name: &str) -> Option<std::path::PathBuf> {
        self.client.layer_dirs.get(&self.id(name))
    }

    /// Creates active snapshot `key` on committed `parent` (none: empty) and returns how to mount it.
    /// AlreadyExists if `key` exists; NotFound if `parent` does not.
    pub async fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: &Labels,
    ) -> Result<Vec<Mount>, ContainerdError> {
        let request = pb::PrepareSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_owned(),
            parent: parent.unwrap_or_default().to_owned(),
            labels: labels_to_pb(labels),
        };
        let mounts = self
            .client
            .snapshots_rpc()
            .prepare(self.client.request(request))
            .await
            .call("Snapshots.Prepare")?
            .mounts;
        let mounts = mounts_from_pb(mounts);
        self.client.layer_dirs.prepared(self.id(key), &mounts);
        Ok(mounts)
    }

    /// Creates read-only view `key` of committed `parent` and returns how to mount it.
    pub async fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: &Labels,
    ) -> Result<Vec<Mount>, ContainerdError> {
        let request = pb::ViewSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_owned(),
            parent: parent.unwrap_or_default().to_owned(),
            labels: labels_to_pb(labels),
        };
        let mounts = self
            .client
            .snapshots_rpc()
            .view(self.client.request(request))
            .await
            .call("Snapshots.View")?
            .mounts;
        Ok(mounts_from_pb(mounts))
    }

    /// How to mount active snapshot or view `key`.
    pub async fn mounts(&self, key: &str) -> Result<Vec<Mount>, ContainerdError> {
        let request = pb::MountsRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_owned(),
        };
        let mounts = self
            .client
            .snapshots_rpc()
            .mounts(self.client.request(request))
            .await
            .call("Snapshots.Mounts")?
            .mounts;
        Ok(mounts_from_pb(mounts))
    }

    /// Commits active snapshot `key` as `name`; `key` is gone afterwards. AlreadyExists if `name`
    /// exists.
    pub async fn commit(
        &self,
        name: &str,
        key: &str,
        labels: &Labels,
    ) -> Result<(), ContainerdError> {
        let request = pb::CommitSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            name: name.to_owned(),
            key: key.to_owned(),
            labels: labels_to_pb(labels),
        };
        self.client
            .snapshots_rpc()
            .commit(self.client.request(request))
            .await
            .call("Snapshots.Commit")?;
        self.client
            .layer_dirs
            .committed(&self.id(key), self.id(name));
        Ok(())
    }

    /// Removes snapshot `key`. FailedPrecondition if others are prepared on it.
    pub async fn remove(&self, key: &str) -> Result<(), ContainerdError> {
        let request = pb::RemoveSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_owned(),
        };
        self.client
            .snapshots_rpc()
            .remove(self.client.request(request))
            .await
            .call("Snapshots.Remove")?;
        self.client.layer_dirs.removed(&self.id(key));
        Ok(())
    }

    /// What containerd knows about snapshot `key`.
    pub async fn stat(&self, key: &str) -> Result<SnapshotInfo, ContainerdError> {
        let request = pb::StatSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_owned(),
        };
        let info = self
            .client
            .snapshots_rpc()
            .stat(self.client.request(request))
            .await
            .call("Snapshots.Stat")?
            .info
            .ok_or(ContainerdError::MissingField {
                call: "Snapshots.Stat",
                field: "info",
            })?;
        Ok(info_from_pb(info))
    }

    /// Sets (or, with an empty value, removes) the given labels of snapshot `key`, leaving its other
    /// labels alone, and returns the updated info.
    pub async fn update_labels(
        &self,
        key: &str,
        labels: &Labels,
    ) -> Result<SnapshotInfo, ContainerdError> {
        let request = pb::UpdateSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            info: Some(pb::Info {
                name: key.to_owned(),
                labels: labels_to_pb(labels),
                ..Default::default()
            }),
            update_mask: field_mask(label_paths(labels)),
        };
        let info = self
            .client
            .snapshots_rpc()
            .update(self.client.request(request))
            .await
            .call("Snapshots.Update")?
            .info
            .ok_or(ContainerdError::MissingField {
                call: "Snapshots.Update",
                field: "info",
            })?;
        Ok(info_from_pb(info))
    }

    /// The snapshots of this snapshotter in the namespace, filtered with containerd's filter syntax
    /// (e.g. `parent==sha256:…`); all of them when `filters` is empty.
    pub async fn list(&self, filters: &[&str]) -> Result<Vec<SnapshotInfo>, ContainerdError> {
        use tokio_stream::StreamExt;
        let request = pb::ListSnapshotsRequest {
            snapshotter: self.snapshotter.clone(),
            filters: filters.iter().map(|f| (*f).to_owned()).collect(),
        };
        let mut stream = self
            .client
            .snapshots_rpc()
            .list(self.client.request(request))
            .await
            .call("Snapshots.List")?;
        let mut infos = Vec::new();
        while let Some(page) = stream.next().await {
            let page = page.map_err(|s| ContainerdError::from_status("Snapshots.List", s))?;
            infos.extend(page.info.into_iter().map(info_from_pb));
        }
        Ok(infos)
    }

    /// Disk usage of snapshot `key`.
    pub async fn usage(&self, key: &str) -> Result<SnapshotUsage, ContainerdError> {
        let request = pb::UsageRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_owned(),
        };
        let usage = self
            .client
            .snapshots_rpc()
            .usage(self.client.request(request))
            .await
            .call("Snapshots.Usage")?;
        Ok(SnapshotUsage {
            size: size_from_pb(usage.size),
            inodes: size_from_pb(usage.inodes),
        })
    }
}

fn info_from_pb(info: pb::Info) -> SnapshotInfo {
    let kind = match pb::Kind::try_from(info.kind) {
        Ok(pb::Kind::View) => SnapshotKind::View,
        Ok(pb::Kind::Active) => SnapshotKind::Active,
        Ok(pb::Kind::Committed) => SnapshotKind::Committed,
        _ => SnapshotKind::Unknown,
    };
    SnapshotInfo {
        name: info.name,
        parent: Some(info.parent).filter(|p| !p.is_empty()),
        kind,
        labels: labels_from_pb(info.labels),
        created_at: time_from_pb(info.created_at),
        updated_at: time_from_pb(info.updated_at),
    }
}
