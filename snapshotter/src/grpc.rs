//! containerd's Snapshots gRPC service over [`Snapshotter`]: wire types in, wire types out.
//! This is the only place that sees protobuf types, and where errors become gRPC statuses.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use containerd_client::types::Mount as WireMount;
use tonic::{Request, Response, Status};

use crate::error::SnapshotError;
use crate::info::{Info, Kind, Mount};
use crate::proto::{self, snapshots_server::Snapshots};
use crate::snapshotter::Snapshotter;

pub use crate::proto::snapshots_server::SnapshotsServer;

/// How many infos one List response message carries.
const LIST_BATCH: usize = 128;

impl From<SnapshotError> for Status {
    fn from(e: SnapshotError) -> Status {
        use SnapshotError::*;
        let msg = e.to_string();
        match e {
            NotFound { .. } | ParentNotFound { .. } => Status::not_found(msg),
            AlreadyExists { .. } => Status::already_exists(msg),
            NotActive { .. } | NotMountable { .. } | HasChildren { .. } => {
                Status::failed_precondition(msg)
            }
            ParentNotCommitted { .. }
            | EmptyKey { .. }
            | ImmutableField { .. }
            | InvalidFilter { .. } => Status::invalid_argument(msg),
            ModeMismatch { .. } | RootInUse { .. } => Status::failed_precondition(msg),
            CorruptRecord { .. } => Status::data_loss(msg),
            Store { .. } | Io { .. } => Status::internal(msg),
        }
    }
}

/// The gRPC service; cheap to clone.
#[derive(Clone)]
pub struct SnapshotService {
    sn: Arc<Snapshotter>,
}

impl SnapshotService {
    /// Serves `sn`.
    pub fn new(sn: Arc<Snapshotter>) -> Self {
        SnapshotService { sn }
    }

    /// The tonic server to add to a router.
    pub fn into_server(self) -> SnapshotsServer<Self> {
        SnapshotsServer::new(self)
    }

    /// Runs a blocking snapshotter call. On a multi-threaded runtime it runs in place (the
    /// worker hands its other tasks to its siblings), which saves the hand-off to the blocking
    /// pool that otherwise dominates a metadata call's latency; elsewhere it goes to that pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Snapshotter) -> Result<T, SnapshotError> + Send + 'static,
    ) -> Result<T, Status> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let sn = self.sn.clone();
        let result = if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
            tokio::task::block_in_place(move || f(&sn))
        } else {
            tokio::task::spawn_blocking(move || f(&sn))
                .await
                .map_err(|e| Status::internal(format!("snapshotter task failed: {e}")))?
        };
        result.map_err(Status::from)
    }
}

fn labels(m: std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

fn wire_mounts(mounts: Vec<Mount>) -> Vec<WireMount> {
    mounts
        .into_iter()
        .map(|m| WireMount {
            r#type: m.kind,
            source: m.source,
            target: String::new(),
            options: m.options,
        })
        .collect()
}

fn wire_kind(k: Kind) -> proto::Kind {
    match k {
        Kind::View => proto::Kind::View,
        Kind::Active => proto::Kind::Active,
        Kind::Committed => proto::Kind::Committed,
    }
}

fn wire_time(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

fn wire_info(i: Info) -> proto::Info {
    proto::Info {
        name: i.name,
        parent: i.parent,
        kind: wire_kind(i.kind) as i32,
        created_at: Some(wire_time(i.created)),
        updated_at: Some(wire_time(i.updated)),
        labels: i.labels.into_iter().collect(),
    }
}

/// Only name and labels of an Update request's info are used; the rest is immutable.
fn update_info(i: proto::Info) -> Info {
    Info {
        name: i.name,
        parent: i.parent,
        kind: Kind::Active,
        created: SystemTime::UNIX_EPOCH,
        updated: SystemTime::UNIX_EPOCH,
        labels: labels(i.labels),
    }
}

#[tonic::async_trait]
impl Snapshots for SnapshotService {
    async fn prepare(
        &self,
        req: Request<proto::PrepareSnapshotRequest>,
    ) -> Result<Response<proto::PrepareSnapshotResponse>, Status> {
        let r = req.into_inner();
        let mounts = self
            .run(move |sn| sn.prepare(&r.key, &r.parent, labels(r.labels)))
            .await?;
        Ok(Response::new(proto::PrepareSnapshotResponse {
            mounts: wire_mounts(mounts),
        }))
    }

    async fn view(
        &self,
        req: Request<proto::ViewSnapshotRequest>,
    ) -> Result<Response<proto::ViewSnapshotResponse>, Status> {
        let r = req.into_inner();
        let mounts = self
            .run(move |sn| sn.view(&r.key, &r.parent, labels(r.labels)))
            .await?;
        Ok(Response::new(proto::ViewSnapshotResponse {
            mounts: wire_mounts(mounts),
        }))
    }

    async fn mounts(
        &self,
        req: Request<proto::MountsRequest>,
    ) -> Result<Response<proto::MountsResponse>, Status> {
        let r = req.into_inner();
        let mounts = self.run(move |sn| sn.mounts(&r.key)).await?;
        Ok(Response::new(proto::MountsResponse {
            mounts: wire_mounts(mounts),
        }))
    }

    async fn commit(
        &self,
        req: Request<proto::CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.run(move |sn| sn.commit(&r.name, &r.key, labels(r.labels)))
            .await?;
        Ok(Response::new(()))
    }

    async fn remove(
        &self,
        req: Request<proto::RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.run(move |sn| sn.remove(&r.key)).await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        req: Request<proto::StatSnapshotRequest>,
    ) -> Result<Response<proto::StatSnapshotResponse>, Status> {
        let r = req.into_inner();
        let info = self.run(move |sn| sn.stat(&r.key)).await?;
        Ok(Response::new(proto::StatSnapshotResponse {
            info: Some(wire_info(info)),
        }))
    }

    async fn update(
        &self,
        req: Request<proto::UpdateSnapshotRequest>,
    ) -> Result<Response<proto::UpdateSnapshotResponse>, Status> {
        let r = req.into_inner();
        let info = r
            .info
            .ok_or_else(|| Status::invalid_argument("update needs the snapshot's info"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let info = self
            .run(move |sn| sn.update(update_info(info), &paths))
            .await?;
        Ok(Response::new(proto::UpdateSnapshotResponse {
            info: Some(wire_info(info)),
        }))
    }

    type ListStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<proto::ListSnapshotsResponse, Status>>>;

    async fn list(
        &self,
        req: Request<proto::ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let r = req.into_inner();
        let infos = self.run(move |sn| sn.list(&r.filters)).await?;
        let mut batches = Vec::with_capacity(infos.len() / LIST_BATCH + 1);
        let mut infos = infos.into_iter().map(wire_info).peekable();
        while infos.peek().is_some() {
            batches.push(Ok(proto::ListSnapshotsResponse {
                info: infos.by_ref().take(LIST_BATCH).collect(),
            }));
        }
        Ok(Response::new(tokio_stream::iter(batches)))
    }

    async fn usage(
        &self,
        req: Request<proto::UsageRequest>,
    ) -> Result<Response<proto::UsageResponse>, Status> {
        let r = req.into_inner();
        let u = self.run(move |sn| sn.usage(&r.key)).await?;
        Ok(Response::new(proto::UsageResponse {
            size: u.size,
            inodes: u.inodes,
        }))
    }

    async fn cleanup(&self, _req: Request<proto::CleanupRequest>) -> Result<Response<()>, Status> {
        let removed = self.run(|sn| sn.cleanup()).await?;
        tracing::debug!(removed, "cleanup");
        Ok(Response::new(()))
    }
}
