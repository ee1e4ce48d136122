//! oxkit's containerd client: a thin, typed layer over containerd's v1 gRPC services (leases,
//! snapshots, content, images, diff, containers, tasks) that the exec op, image source and image
//! exporter build on, plus an image's manifest for a platform, mounting snapshot mounts on the
//! host and the runtime spec of a build step.
//!
//! Every call carries the client's namespace (`containerd-namespace`) and, on a client scoped with
//! [`Client::with_lease`], the lease (`containerd-lease`), so that containerd's garbage collector
//! leaves a build's work alone. Protobuf types stay inside this crate (`convert`).

mod client;
mod containers;
mod content;
mod convert;
mod diff;
mod distribution;
mod error;
mod gc;
mod images;
mod layer_dirs;
mod leases;
mod manifest;
mod mount;
mod snapshots;
mod spec;
mod stdio;
mod tasks;
#[cfg(feature = "testing")]
pub mod testing;
mod types;

pub use client::{Client, DEFAULT_NAMESPACE};
pub use containers::{
    ContainerInfo, Containers, NewContainer, RUNC_GROUP_ANNOTATION, RUNC_RUNTIME,
};
pub use content::{Content, ContentInfo, WriteOutcome};
pub use diff::Diff;
pub use distribution::{distribution_source_key, distribution_source_label, distribution_sources};
pub use error::ContainerdError;
pub use gc::{config_labels, index_labels, manifest_labels, GC_SNAPSHOT_LABEL};
pub use images::{Image, ImageUpdate, Images};
pub use leases::{rfc3339, Lease, LeaseOptions, Leases, EXPIRE_LABEL};
pub use manifest::{
    index_entry, is_index, platform_manifest, ImageManifest, ManifestError, MEDIA_DOCKER_LIST,
    MEDIA_OCI_INDEX,
};
pub use mount::{with_temp_mount, LinuxMounter, Mounter};
pub use snapshots::{SnapshotInfo, SnapshotKind, SnapshotUsage, Snapshots, DEFAULT_SNAPSHOTTER};
pub use spec::{Network, SpecBuilder, SpecMount, DEFAULT_CAPABILITIES, DEFAULT_PATH_ENV};
pub use stdio::StdioPipes;
pub use tasks::{ExitStatus, Exited, StdioTarget, Task, TaskIo, Tasks};
pub use types::{
    chain_id, chain_ids, Descriptor, Digest, Labels, LayerBlob, Mount, LAYER_SOURCE_LABEL,
};
