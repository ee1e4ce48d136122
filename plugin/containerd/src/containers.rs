//! Container records in containerd's metadata: a runtime spec, a runtime, and the snapshot that is
//! the container's root. A container does not run anything; its [`crate::Task`] does.

use std::time::SystemTime;

use containerd_client::services::v1 as pb;

use crate::convert::{labels_from_pb, labels_to_pb, time_from_pb};
use crate::error::CallResult;
use crate::{Client, ContainerdError, Labels};

/// The runtime build steps run with.
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";

/// The spec annotation by which containerd's runc v2 shim groups containers: every container
/// whose spec names the same group shares one shim process, which exits with its last container.
pub const RUNC_GROUP_ANNOTATION: &str = "io.containerd.runc.v2.group";

/// The type URL containerd stores a runtime spec under (as JSON, like its Go client's typeurl).
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// A container to create.
#[derive(Debug, Clone)]
pub struct NewContainer {
    /// Its id; unique in the namespace (and, because runc keeps state per namespace and id, on the
    /// machine).
    pub id: String,
    /// The OCI runtime spec as JSON (see [`crate::SpecBuilder`]).
    pub spec: serde_json::Value,
    /// The runtime; [`RUNC_RUNTIME`] for build steps.
    pub runtime: String,
    /// The snapshotter of its root snapshot.
    pub snapshotter: String,
    /// Its root snapshot's key (an active snapshot): containerd's garbage collector keeps the
    /// snapshot while the container exists. Empty for none.
    pub snapshot_key: String,
    /// The image it was made from, if any (informational).
    pub image: String,
    /// Its labels.
    pub labels: Labels,
}

impl NewContainer {
    /// A runc container `id` with `spec`, rooted on active snapshot `snapshot_key` of the oxkit
    /// snapshotter.
    pub fn new(
        id: impl Into<String>,
        spec: serde_json::Value,
        snapshot_key: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            spec,
            runtime: RUNC_RUNTIME.to_owned(),
            snapshotter: crate::DEFAULT_SNAPSHOTTER.to_owned(),
            snapshot_key: snapshot_key.into(),
            image: String::new(),
            labels: Labels::new(),
        }
    }
}

/// A container record as containerd keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    /// Its id.
    pub id: String,
    /// Its labels.
    pub labels: Labels,
    /// The image it was made from, if recorded.
    pub image: String,
    /// Its runtime.
    pub runtime: String,
    /// Its runtime spec, if it has one stored as JSON.
    pub spec: Option<serde_json::Value>,
    /// The snapshotter of its root snapshot.
    pub snapshotter: String,
    /// Its root snapshot's key.
    pub snapshot_key: String,
    /// When it was created.
    pub created_at: Option<SystemTime>,
}

/// containerd's Containers service.
#[derive(Debug, Clone)]
pub struct Containers {
    client: Client,
}

impl Containers {
    pub(crate) fn new(client: Client) -> Self {
        Self { client }
    }

    /// Creates the container record; AlreadyExists if the id is taken. Nothing runs yet.
    pub async fn create(&self, container: &NewContainer) -> Result<ContainerInfo, ContainerdError> {
        let spec = serde_json::to_vec(&container.spec).map_err(ContainerdError::Spec)?;
        let request = pb::CreateContainerRequest {
            container: Some(pb::Container {
                id: container.id.clone(),
                labels: labels_to_pb(&container.labels),
                image: container.image.clone(),
                runtime: Some(pb::container::Runtime {
                    name: container.runtime.clone(),
                    options: None,
                }),
                spec: Some(prost_types::Any {
                    type_url: SPEC_TYPE_URL.to_owned(),
                    value: spec,
                }),
                snapshotter: container.snapshotter.clone(),
                snapshot_key: container.snapshot_key.clone(),
                ..Default::default()
            }),
        };
        let created = self
            .client
            .containers_rpc()
            .create(self.client.request(request))
            .await
            .call("Containers.Create")?
            .container
            .ok_or(ContainerdError::MissingField {
                call: "Containers.Create",
                field: "container",
            })?;
        Ok(info_from_pb(created))
    }

    /// The container `id`; NotFound if there is none.
    pub async fn get(&self, id: &str) -> Result<ContainerInfo, ContainerdError> {
        let request = pb::GetContainerRequest { id: id.to_owned() };
        let container = self
            .client
            .containers_rpc()
            .get(self.client.request(request))
            .await
            .call("Containers.Get")?
            .container
            .ok_or(ContainerdError::MissingField {
                call: "Containers.Get",
                field: "container",
            })?;
        Ok(info_from_pb(container))
    }

    /// The containers of the namespace, filtered with containerd's filter syntax (e.g.
    /// `labels."oxkit/step"`); all of them when `filters` is empty.
    pub async fn list(&self, filters: &[&str]) -> Result<Vec<ContainerInfo>, ContainerdError> {
        let request = pb::ListContainersRequest {
            filters: filters.iter().map(|f| (*f).to_owned()).collect(),
        };
        let containers = self
            .client
            .containers_rpc()
            .list(self.client.request(request))
            .await
            .call("Containers.List")?
            .containers;
        Ok(containers.into_iter().map(info_from_pb).collect())
    }

    /// Deletes the container record. FailedPrecondition while it has a task (containerd itself
    /// does not check; its Go client does, and so does this): delete the task first. Its root
    /// snapshot stays. NotFound if there is no such container.
    pub async fn delete(&self, id: &str) -> Result<(), ContainerdError> {
        let get = containerd_client::services::v1::GetRequest {
            container_id: id.to_owned(),
            exec_id: String::new(),
        };
        match self.client.tasks_rpc().get(self.client.request(get)).await {
            Ok(_) => {
                return Err(ContainerdError::FailedPrecondition {
                    call: "Containers.Delete",
                    message: format!("container {id} still has a task; delete the task first"),
                })
            }
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => return Err(ContainerdError::from_status("Tasks.Get", status)),
        }
        let request = pb::DeleteContainerRequest { id: id.to_owned() };
        self.client
            .containers_rpc()
            .delete(self.client.request(request))
            .await
            .call("Containers.Delete")
            .map(drop)
    }
}

fn info_from_pb(c: pb::Container) -> ContainerInfo {
    let spec = c
        .spec
        .filter(|any| any.type_url.ends_with("/Spec"))
        .and_then(|any| serde_json::from_slice(&any.value).ok());
    ContainerInfo {
        id: c.id,
        labels: labels_from_pb(c.labels),
        image: c.image,
        runtime: c.runtime.map(|r| r.name).unwrap_or_default(),
        spec,
        snapshotter: c.snapshotter,
        snapshot_key: c.snapshot_key,
        created_at: time_from_pb(c.created_at),
    }
}
