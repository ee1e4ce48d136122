//! oxkit's image exporter: turns a build result — a committed snapshot in containerd, on top of
//! an optional base image — into an OCI image in containerd's store. New layers are written from
//! the snapshots' overlay upper directories (cost proportional to the change), blobs, config and
//! manifest carry containerd's garbage-collection labels, and every layer exists as a committed
//! snapshot named by its chain ID, so `ctr run --snapshotter oxkit` starts it without unpacking.

mod error;
mod image;
mod options;
mod spec;

pub use error::ExportError;
pub use image::{BaseImage, ExportedImage, ImageExporter};
pub use options::ImageExportOptions;
pub use spec::{chain_ids, ImageConfig};
