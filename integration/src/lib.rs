//! Test support for oxkit's integration tests: a [`Fixture`] that runs a real containerd with oxkitd
//! loaded as its `oxkit` proxy snapshotter, all inside one temp dir, and an [`OciImageBuilder`] that
//! makes OCI image archives (a busybox base image from Debian's `busybox-static`, and synthetic images
//! with many layers and files) without a network.

mod config;
mod error;
mod fixture;
mod image;
mod mounts;
mod prereq;
mod process;
mod wait;

pub use config::{render_containerd_config, RenderedPaths};
pub use error::{FixtureError, ImageError};
pub use fixture::{locate_oxkitd, Fixture, Snapshot, NAMESPACE, SNAPSHOTTER};
pub use image::{busybox_image, busybox_layer, BuiltImage, Layer, OciImageBuilder};
pub use prereq::{missing_prerequisites, Prerequisite};
pub use wait::eventually;

/// What an integration test returns: `Err` fails the test with the error's message.
pub type TestResult = Result<(), FixtureError>;
