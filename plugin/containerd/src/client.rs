//! [`Client`]: a connection to containerd in one namespace, optionally scoped to a lease; the entry
//! point to every service of this crate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient, diff_client::DiffClient,
    images_client::ImagesClient, introspection_client::IntrospectionClient,
    leases_client::LeasesClient, snapshots::snapshots_client::SnapshotsClient,
    tasks_client::TasksClient,
};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::{
    ContainerdError, Containers, Content, Diff, Images, Lease, Leases, Snapshots, Tasks,
    DEFAULT_SNAPSHOTTER,
};

/// The namespace oxkit's builds and images live in.
pub const DEFAULT_NAMESPACE: &str = "buildkit";

const NAMESPACE_HEADER: &str = "containerd-namespace";
const LEASE_HEADER: &str = "containerd-lease";

/// A connection to containerd in one namespace. Cheap to clone (clones share the connection).
///
/// Every call made through it carries the namespace; a client returned by [`Client::with_lease`]
/// also carries the lease, so that what its calls create (snapshots, content, ingests) is held by
/// that lease until the lease is deleted.
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
    namespace: MetadataValue<tonic::metadata::Ascii>,
    lease: Option<(String, MetadataValue<tonic::metadata::Ascii>)>,
    /// containerd's blob directory, when it is on this machine and shares blobs: asked once.
    pub(crate) local_blobs: Arc<tokio::sync::OnceCell<Option<PathBuf>>>,
    /// The layer directories of the snapshots prepared and committed through this client and
    /// its clones ([`crate::Snapshots::known_layer_dir`]).
    pub(crate) layer_dirs: Arc<crate::layer_dirs::LayerDirs>,
}

impl Client {
    /// Connects to containerd's gRPC socket at `address`, for calls in `namespace`.
    pub async fn connect(
        address: impl AsRef<Path>,
        namespace: &str,
    ) -> Result<Self, ContainerdError> {
        let address = address.as_ref();
        let namespace = header_value("namespace", namespace)?;
        let channel = containerd_client::connect(address)
            .await
            .map_err(|source| ContainerdError::Connect {
                address: address.to_owned(),
                source,
            })?;
        Ok(Self {
            channel,
            namespace,
            lease: None,
            local_blobs: Arc::default(),
            layer_dirs: Arc::default(),
        })
    }

    /// The namespace every call is made in.
    pub fn namespace(&self) -> &str {
        self.namespace.to_str().unwrap_or_default()
    }

    /// The lease every call carries, if this client is scoped to one.
    pub fn lease_id(&self) -> Option<&str> {
        self.lease.as_ref().map(|(id, _)| id.as_str())
    }

    /// A client like this one whose calls all carry `lease`. The lease itself is not affected:
    /// delete it with [`Lease::delete`] when the work it holds may be collected.
    pub fn with_lease(&self, lease: &Lease) -> Self {
        self.with_lease_id(lease.id())
            .expect("a Lease's id was checked when it was created")
    }

    /// Like [`Self::with_lease`], for a lease known only by its id (e.g. one recorded before a restart).
    pub fn with_lease_id(&self, id: &str) -> Result<Self, ContainerdError> {
        let value = header_value("lease id", id)?;
        Ok(Self {
            lease: Some((id.to_owned(), value)),
            ..self.clone()
        })
    }

    /// A client like this one that carries no lease.
    pub fn without_lease(&self) -> Self {
        Self {
            lease: None,
            ..self.clone()
        }
    }

    /// The Leases service.
    pub fn leases(&self) -> Leases {
        Leases::new(self.clone())
    }

    /// The Snapshots service for the `oxkit` snapshotter.
    pub fn snapshots(&self) -> Snapshots {
        Snapshots::new(self.clone(), DEFAULT_SNAPSHOTTER)
    }

    /// The Snapshots service for the snapshotter containerd knows as `snapshotter`.
    pub fn snapshots_of(&self, snapshotter: &str) -> Snapshots {
        Snapshots::new(self.clone(), snapshotter)
    }

    /// The Content service.
    pub fn content(&self) -> Content {
        Content::new(self.clone())
    }

    /// The Images service.
    pub fn images(&self) -> Images {
        Images::new(self.clone())
    }

    /// The Diff service.
    pub fn diff(&self) -> Diff {
        Diff::new(self.clone())
    }

    /// The Containers service.
    pub fn containers(&self) -> Containers {
        Containers::new(self.clone())
    }

    /// The Tasks service.
    pub fn tasks(&self) -> Tasks {
        Tasks::new(self.clone())
    }

    /// `message` as a request carrying the namespace and, if any, the lease.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert(NAMESPACE_HEADER, self.namespace.clone());
        if let Some((_, lease)) = &self.lease {
            metadata.insert(LEASE_HEADER, lease.clone());
        }
        request
    }

    pub(crate) fn leases_rpc(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }

    pub(crate) fn snapshots_rpc(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    pub(crate) fn content_rpc(&self) -> ContentClient<Channel> {
        // Blobs and reads can be large: lift tonic's 4 MiB default on what we receive.
        ContentClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }

    pub(crate) fn introspection_rpc(&self) -> IntrospectionClient<Channel> {
        IntrospectionClient::new(self.channel.clone())
    }

    pub(crate) fn images_rpc(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    pub(crate) fn diff_rpc(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }

    pub(crate) fn containers_rpc(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    pub(crate) fn tasks_rpc(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }
}

/// `value` as a header value, or an error naming `what`.
pub(crate) fn header_value(
    what: &'static str,
    value: &str,
) -> Result<MetadataValue<tonic::metadata::Ascii>, ContainerdError> {
    let invalid = || ContainerdError::InvalidHeader {
        what,
        value: value.to_owned(),
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    value.parse().map_err(|_| invalid())
}
