//! Why an export failed.

use oxkit_containerd::ContainerdError;

/// Export failures; option errors come before any work is done.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// An exporter option is unknown or malformed.
    #[error("{exporter} exporter option {key:?}: {reason}")]
    InvalidOption {
        /// The exporter (`image`, `oci`, `local`).
        exporter: &'static str,
        /// The option.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A containerd call failed.
    #[error("{what}")]
    Containerd {
        /// What was being done.
        what: String,
        /// containerd's error.
        #[source]
        source: ContainerdError,
    },
    /// Writing a layer failed.
    #[error("failed to write the layer of snapshot {snapshot:?}")]
    Layer {
        /// The snapshot.
        snapshot: String,
        /// The writer's error.
        #[source]
        source: oxkit_layer::LayerError,
    },
    /// The snapshot's mounts are not oxkit overlay mounts, so its own layer cannot be found.
    #[error("snapshot {snapshot:?} has no overlay upper directory to export ({detail}); is the oxkit snapshotter in overlay mode?")]
    NoUpperDir {
        /// The snapshot.
        snapshot: String,
        /// What its mounts looked like.
        detail: String,
    },
    /// The base image is not something this exporter can build on.
    #[error("base image {name:?}: {reason}")]
    BaseImage {
        /// The image.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing the exporter's output stream (an OCI archive, a tar of the result) failed.
    #[error("failed to write the {exporter} export stream: {what}")]
    Stream {
        /// The exporter.
        exporter: &'static str,
        /// What was being written.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Pushing to a registry failed (the error names the reference and the registry).
    #[error(transparent)]
    Registry(#[from] oxkit_registry::RegistryError),
    /// Local I/O (temporary blob files) failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn ctr(what: impl Into<String>) -> impl FnOnce(ContainerdError) -> ExportError {
    let what = what.into();
    move |source| ExportError::Containerd { what, source }
}
