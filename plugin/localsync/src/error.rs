//! [`SyncError`]: why a sync or a materialization failed.

use std::path::PathBuf;

/// Why syncing a local directory failed. After any of these the copy is not trusted until a
/// later sync has verified what the failed one may have touched.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The client sent a path or entry the daemon refuses (absolute, `..`, a child of a
    /// symlink, an unknown file type, …): nothing of the listing was written.
    #[error("the client's listing has a refused entry {path:?}: {reason}")]
    Refused {
        /// The entry's path as sent.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file changed on the client while it was being sent.
    #[error("{path:?} changed on the client while it was sent ({reason}); build again")]
    Changed {
        /// The file's path.
        path: String,
        /// What did not match.
        reason: String,
    },
    /// Asking the client for file contents failed (it went away, or could not read a file).
    #[error("the client could not send its files: {0}")]
    Source(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A filesystem operation on the daemon's side failed.
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The copy's record cannot be written or read back.
    #[error("the local copy's record {} is unusable: {reason}", path.display())]
    Record {
        /// The record file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl SyncError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        SyncError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
