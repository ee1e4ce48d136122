//! The snapshotter's typed errors: each names the snapshot or path involved and says what to do.

use std::path::PathBuf;

/// Every way a snapshotter operation can fail. [`crate::grpc`] maps each variant to exactly
/// one gRPC code, which containerd's unpacker and metadata layer depend on.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The key names no snapshot.
    #[error("snapshot {key:?} does not exist")]
    NotFound {
        /// The missing key.
        key: String,
    },
    /// The parent named by a Prepare or View does not exist.
    #[error("parent snapshot {parent:?} does not exist")]
    ParentNotFound {
        /// The missing parent key.
        parent: String,
    },
    /// A snapshot with this key or name already exists.
    #[error("snapshot {key:?} already exists")]
    AlreadyExists {
        /// The duplicate key.
        key: String,
    },
    /// Only committed snapshots can be parents.
    #[error(
        "parent {parent:?} is not a committed snapshot; commit it before preparing on top of it"
    )]
    ParentNotCommitted {
        /// The parent key.
        parent: String,
    },
    /// Commit was asked of a view or committed snapshot.
    #[error("snapshot {key:?} is not active; only active snapshots can be committed")]
    NotActive {
        /// The key.
        key: String,
    },
    /// Mounts was asked of a committed snapshot.
    #[error("snapshot {key:?} is committed; only active snapshots and views have mounts")]
    NotMountable {
        /// The key.
        key: String,
    },
    /// Remove was asked of a snapshot that other snapshots build on.
    #[error("cannot remove snapshot {key:?}: it has children; remove them first")]
    HasChildren {
        /// The key.
        key: String,
    },
    /// A required key or name was empty.
    #[error("{what} must not be empty")]
    EmptyKey {
        /// Which argument was empty ("key", "name").
        what: &'static str,
    },
    /// Update was asked to change a field that cannot change.
    #[error("cannot update field {field:?} of snapshot {key:?}: only labels are mutable")]
    ImmutableField {
        /// The snapshot.
        key: String,
        /// The requested field path.
        field: String,
    },
    /// A List filter did not parse.
    #[error("invalid filter {filter:?}: {reason}")]
    InvalidFilter {
        /// The filter as given.
        filter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The root holds snapshots of another mode; they cannot be reused.
    #[error("{root} holds {found} snapshots but {wanted} mode was requested; use another root or the same mode")]
    ModeMismatch {
        /// The snapshotter root.
        root: PathBuf,
        /// The mode recorded in the metadata.
        found: String,
        /// The mode requested.
        wanted: String,
    },
    /// Another process (another oxkitd) has the metadata database open.
    #[error("{path} is in use by another process; is another oxkitd running with the same root?")]
    RootInUse {
        /// The metadata database.
        path: PathBuf,
    },
    /// The metadata store failed.
    #[error("metadata store: {op} failed: {source}")]
    Store {
        /// What was being done.
        op: &'static str,
        /// The store's error (boxed: redb's error is large, and this enum is on every path).
        #[source]
        source: Box<redb::Error>,
    },
    /// A metadata record does not decode.
    #[error("metadata record of snapshot {key:?} is corrupt: {source}")]
    CorruptRecord {
        /// The snapshot.
        key: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A filesystem operation failed.
    #[error("failed to {op} {path}: {source}")]
    Io {
        /// What was being done ("create snapshot directory").
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Result with [`SnapshotError`].
pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

impl SnapshotError {
    pub(crate) fn store(op: &'static str) -> impl FnOnce(redb::Error) -> Self {
        move |source| SnapshotError::Store {
            op,
            source: Box::new(source),
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| SnapshotError::Io { op, path, source }
    }
}

/// Converts any redb error into the umbrella error for [`SnapshotError::Store`].
pub(crate) trait StoreResultExt<T> {
    fn store(self, op: &'static str) -> Result<T>;
}

impl<T, E: Into<redb::Error>> StoreResultExt<T> for std::result::Result<T, E> {
    fn store(self, op: &'static str) -> Result<T> {
        self.map_err(|e| SnapshotError::store(op)(e.into()))
    }
}
