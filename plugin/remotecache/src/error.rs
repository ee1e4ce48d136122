//! What can go wrong exporting or importing a cache.

use oxkit_containerd::ContainerdError;
use oxkit_exporter::ExportError;
use oxkit_registry::RegistryError;
use oxkit_worker::WorkerError;

/// An error of a cache export or import.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A `--export-cache` or `--import-cache` attribute is unknown or malformed.
    #[error("cache {what} option {key:?}: {reason}")]
    InvalidOption {
        /// `export` or `import`.
        what: &'static str,
        /// The attribute.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A containerd call failed.
    #[error("failed to {action}")]
    Containerd {
        /// What was being done.
        action: String,
        /// containerd's error.
        #[source]
        source: ContainerdError,
    },
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Writing a layer or pushing failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Applying a layer failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// A file of a local cache could not be read or written.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// What was found is not a cache oxkit can read.
    #[error("{what} is not a usable cache: {reason}")]
    NotACache {
        /// The cache (reference or directory).
        what: String,
        /// Why.
        reason: String,
    },
}

impl CacheError {
    /// The message with its causes, on one line (what a progress line shows).
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }
}

/// Maps a containerd error to [`CacheError::Containerd`] doing `action`.
pub(crate) fn ctr(action: impl Into<String>) -> impl FnOnce(ContainerdError) -> CacheError {
    let action = action.into();
    move |source| CacheError::Containerd { action, source }
}
