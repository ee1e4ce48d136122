//! oxkit's layer writer: turns an overlay upper directory (a snapshot's own changes) into an OCI
//! layer — a tar with OCI whiteouts, entries in a fixed order, optionally clamped timestamps —
//! compressed on the fly, with both the blob digest and the diff ID computed in the same pass.
//! Its cost is proportional to the change, not to the image.

mod hash;
mod walk;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use hash::Digest;

/// Media types of the layers this writes.
pub mod media_type {
    /// An uncompressed OCI layer.
    pub const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// A gzip OCI layer.
    pub const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// A zstd OCI layer.
    pub const TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
}

/// How the layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression: the blob is the tar.
    Uncompressed,
    /// gzip at a level 0–9.
    Gzip {
        /// Compression level.
        level: u32,
    },
    /// zstd at a level 1–19, using every core.
    Zstd {
        /// Compression level.
        level: i32,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip { level: 6 }
    }
}

impl Compression {
    /// The layer media type for this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Uncompressed => media_type::TAR,
            Compression::Gzip { .. } => media_type::TAR_GZIP,
            Compression::Zstd { .. } => media_type::TAR_ZSTD,
        }
    }
}

/// What to write.
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    /// The blob's compression.
    pub compression: Compression,
    /// When set, no timestamp in the layer is later than this (seconds since the epoch), as
    /// `SOURCE_DATE_EPOCH` asks for reproducible builds.
    pub source_date_epoch: Option<i64>,
}

/// The written layer: what an OCI manifest and config need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The layer media type.
    pub media_type: &'static str,
    /// Digest of the blob as written (compressed).
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
}

/// Why a layer could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading the upper directory failed.
    #[error("failed to read {path} for the layer: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Writing the blob failed.
    #[error("failed to write the layer: {0}")]
    Write(#[source] io::Error),
}

/// Writes the layer of the overlay upper directory `upper` to `out`.
///
/// overlayfs marks a deleted path with a character device 0/0 and a directory that replaces a
/// lower one with the `trusted.overlay.opaque` attribute; these become the OCI whiteouts
/// `.wh.NAME` and `.wh..wh..opq`. Entries are sorted by name, hard links inside the layer stay
/// links, extended attributes other than overlay's own are kept (PAX records). Nothing is
/// written to `out` beyond the blob; on error the blob is incomplete and must be discarded.
pub fn write_layer(
    upper: &Path,
    out: impl Write,
    options: &LayerOptions,
) -> Result<Layer, LayerError> {
    let blob = hash::HashingWriter::new(out);
    // `None`: the blob is the tar, whose digest is then the diff ID, computed once.
    let (blob, diff_id) = match options.compression {
        Compression::Uncompressed => (
            walk::write_tar(upper, blob, options.source_date_epoch)?,
            None,
        ),
        Compression::Gzip { level } => {
            let gz = flate2::write::GzEncoder::new(blob, flate2::Compression::new(level.min(9)));
            let tar = walk::write_tar(
                upper,
                hash::HashingWriter::new(gz),
                options.source_date_epoch,
            )?;
            let (gz, diff_id, _) = tar.finish();
            (gz.finish().map_err(LayerError::Write)?, Some(diff_id))
        }
        Compression::Zstd { level } => {
            let mut z = zstd::Encoder::new(blob, level).map_err(LayerError::Write)?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
            // Fails only when zstd was built without threads; then it compresses on one core.
            let _ = z.multithread(threads);
            let tar = walk::write_tar(
                upper,
                hash::HashingWriter::new(z),
                options.source_date_epoch,
            )?;
            let (z, diff_id, _) = tar.finish();
            (z.finish().map_err(LayerError::Write)?, Some(diff_id))
        }
    };
    let (mut out, digest, size) = blob.finish();
    out.flush().map_err(LayerError::Write)?;
    Ok(Layer {
        media_type: options.compression.media_type(),
        diff_id: diff_id.unwrap_or_else(|| digest.clone()),
        digest,
        size,
    })
}

#[cfg(test)]
mod tests;
