//! Test support for oxkit's integration tests: a [`Fixture`] that runs a real containerd with oxkitd
//! loaded as its `oxkit` proxy snapshotter, all inside one temp dir, and an [`OciImageBuilder`] that
//! makes OCI image archives (a busybox base image from Debian's `busybox-static`, and synthetic images
//! with many layers and files) without a network, [`read_oci_archive`], which reads an OCI
//! archive back into its config and file tree, and a real [`Registry`] on 127.0.0.1.

mod config;
mod dockerd;
mod error;
mod fixture;
mod image;
mod mounts;
mod oci_tree;
mod prereq;
mod process;
mod proxy;
mod registry;
mod wait;

pub use config::{render_containerd_config, RenderedPaths};
pub use dockerd::Dockerd;
pub use error::{FixtureError, ImageError};
pub use fixture::{locate_oxkitd, Fixture, Snapshot, NAMESPACE, SNAPSHOTTER};
pub use image::{busybox_image, busybox_layer, BuiltImage, Layer, OciImageBuilder};
pub use oci_tree::{
    oci_to_docker_archive, read_docker_archive, read_oci_archive, Node, OciImage, OciReadError,
};
pub use prereq::{missing_prerequisites, Prerequisite};
pub use proxy::CuttingProxy;
pub use registry::{Registry, REGISTRY_PASSWORD, REGISTRY_USER};
pub use wait::eventually;

/// What an integration test returns: `Err` fails the test with the error's message.
pub type TestResult = Result<(), FixtureError>;
