//! oxkit's exporters: turn a build result — a committed snapshot in containerd, on top of an
//! optional base image — into something outside the build.
//!
//! - `image`: an OCI image in containerd's store. New layers are written from the snapshots'
//!   overlay upper directories (cost proportional to the change), blobs, config and manifest
//!   carry containerd's garbage-collection labels, and every layer exists as a committed
//!   snapshot named by its chain ID, so `ctr run --snapshotter oxkit` starts it without
//!   unpacking.
//!   With `push=true` (or as `type=registry`) the image is then pushed to its registry
//!   ([`push_image`]: only the blobs the registry lacks, the manifest last).
//! - `oci`: the same image as an OCI image layout in a tar stream ([`OciArchive`]); `docker`:
//!   the same with Docker's `manifest.json` added, for `docker load` ([`ArchiveFormat`]).
//! - `local`: the result's files as a tar stream ([`LocalExporter`]), and unpacking it.
//!
//! `image`, `oci` and `docker` take image config changes (env, labels, entrypoint, cmd, workdir, user,
//! exposed ports) as attributes: [`ConfigChanges`].

mod config;
mod error;
mod filewriters;
mod image;
mod local;
mod oci;
mod options;
mod push;
mod spec;
mod writeback;

pub use config::ConfigChanges;
pub use error::ExportError;
pub use image::{BaseImage, BuiltImage, ExportedImage, ImageExporter};
pub use local::{unpack_tree, write_tree, LocalExporter};
pub use oci::{
    ArchiveFormat, BlobSource, OciArchive, CONTAINERD_NAME_ANNOTATION, REF_NAME_ANNOTATION,
};
pub use options::{
    parse_compression, ImageExportOptions, LocalExportOptions, ManifestOptions, OciExportOptions,
};
pub use oxkit_containerd::chain_ids;
pub use push::{push_image, PushReport};
pub use spec::ImageConfig;
