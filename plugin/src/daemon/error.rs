//! Why the daemon could not start or stopped serving.

use std::path::PathBuf;

/// Daemon start-up and serving failures.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration file could not be read.
    #[error("failed to read config file {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for oxkitd.
    #[error("invalid config file {path}: {source}")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// A path setting must be absolute.
    #[error("{key} must be an absolute path, got {value:?}")]
    RelativePath {
        /// The setting.
        key: &'static str,
        /// Its value.
        value: PathBuf,
    },
    /// The snapshotter could not open its root.
    #[error(transparent)]
    Snapshotter(#[from] oxkit_snapshotter::SnapshotError),
    /// A socket could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The socket path.
        address: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("serving on {address} failed: {source}")]
    Serve {
        /// The socket path.
        address: PathBuf,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// A background task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}
