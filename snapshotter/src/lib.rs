//! oxkit's snapshotter: overlayfs (or copy-based "native") snapshots with transactional
//! metadata, served to containerd through the Snapshots gRPC API as a proxy plugin.

mod error;
mod filter;
mod fsutil;
pub mod grpc;
mod info;
mod snapshotter;
pub mod socket;
mod store;

pub use error::{Result, SnapshotError};
pub use filter::Filter;
pub use grpc::SnapshotService;
pub use info::{Info, Kind, Mount, Usage};
pub use snapshotter::{Mode, Snapshotter};

pub mod proto {
    //! Generated types, server and client of containerd's `containerd.services.snapshots.v1`.
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("containerd.services.snapshots.v1");
}
