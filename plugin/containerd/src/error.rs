//! [`ContainerdError`]: everything this crate's calls can fail with. gRPC statuses are mapped by code
//! (NotFound, AlreadyExists, FailedPrecondition, InvalidArgument, Unavailable each keep their own
//! variant) so that callers can tell "missing" from "exists" from "containerd is down".

use std::path::PathBuf;

/// An error from containerd, from mounting, or from this crate's own checks.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    /// The socket could not be connected to.
    #[error("cannot connect to containerd at {address}: {source}; check that containerd runs and the address is its gRPC socket")]
    Connect {
        /// The socket path.
        address: PathBuf,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// A namespace or lease id that cannot travel as a gRPC header.
    #[error("invalid {what} {value:?}: it must be printable ASCII")]
    InvalidHeader {
        /// `namespace` or `lease id`.
        what: &'static str,
        /// The rejected value.
        value: String,
    },
    /// containerd answered NotFound.
    #[error("{call}: not found: {message}")]
    NotFound {
        /// The containerd call, e.g. `Snapshots.Stat`.
        call: &'static str,
        /// containerd's message.
        message: String,
    },
    /// containerd answered AlreadyExists.
    #[error("{call}: already exists: {message}")]
    AlreadyExists {
        /// The containerd call.
        call: &'static str,
        /// containerd's message.
        message: String,
    },
    /// containerd answered FailedPrecondition (e.g. a task that is still running, a digest mismatch
    /// at commit, a snapshot that is not active).
    #[error("{call}: failed precondition: {message}")]
    FailedPrecondition {
        /// The containerd call.
        call: &'static str,
        /// containerd's message.
        message: String,
    },
    /// containerd answered InvalidArgument.
    #[error("{call}: invalid argument: {message}")]
    InvalidArgument {
        /// The containerd call.
        call: &'static str,
        /// containerd's message.
        message: String,
    },
    /// containerd (or a plugin behind it, such as oxkit's snapshotter) is unavailable.
    #[error("{call}: containerd unavailable: {message}; check that containerd (and oxkitd) run")]
    Unavailable {
        /// The containerd call.
        call: &'static str,
        /// containerd's message.
        message: String,
    },
    /// containerd answered with any other gRPC status.
    #[error("{call} failed ({code:?}): {message}")]
    Rpc {
        /// The containerd call.
        call: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// containerd's message.
        message: String,
    },
    /// containerd's answer lacked a field it always sends.
    #[error("{call}: containerd's answer has no {field}")]
    MissingField {
        /// The containerd call.
        call: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A digest string that is not `<algorithm>:<lowercase hex>`.
    #[error("invalid digest {value:?}: expected sha256:<64 hex digits>")]
    InvalidDigest {
        /// The rejected value.
        value: String,
    },
    /// Written content did not match the digest or size it was expected to have.
    #[error("content written as {expected} does not match: got {actual} ({size} bytes, expected {expected_size:?})")]
    ContentMismatch {
        /// The expected digest.
        expected: String,
        /// The digest of what was read.
        actual: String,
        /// How many bytes were read.
        size: u64,
        /// The expected size, if one was given.
        expected_size: Option<u64>,
    },
    /// A task's stdio that containerd's shim cannot serve.
    #[error("invalid task I/O: {reason}")]
    InvalidTaskIo {
        /// What is wrong.
        reason: &'static str,
    },
    /// A runtime spec could not be encoded, or a spec given as JSON is not valid JSON.
    #[error("invalid runtime spec: {0}")]
    Spec(#[source] serde_json::Error),
    /// A local I/O operation failed (reading a blob's source, writing a blob's destination, making a
    /// mount point).
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what (empty when not a path, e.g. a reader).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A mount could not be made; the target was left unmounted.
    #[error("failed to mount {kind} {source_path} on {}: {reason}", target.display())]
    Mount {
        /// The mount type (`bind`, `overlay`, …).
        kind: String,
        /// The mount source.
        source_path: String,
        /// The target directory.
        target: PathBuf,
        /// Why.
        reason: String,
    },
    /// A mount type or option this crate does not know how to mount.
    #[error("cannot mount type {kind:?} with options {options:?}: {reason}")]
    UnsupportedMount {
        /// The mount type.
        kind: String,
        /// Its options.
        options: Vec<String>,
        /// What is unsupported.
        reason: String,
    },
    /// Unmounting failed; the target may still be mounted.
    #[error("failed to unmount {}: {source}", target.display())]
    Unmount {
        /// The target directory.
        target: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ContainerdError {
    /// Maps a gRPC status from `call` onto the variant for its code.
    pub(crate) fn from_status(call: &'static str, status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            tonic::Code::NotFound => Self::NotFound { call, message },
            tonic::Code::AlreadyExists => Self::AlreadyExists { call, message },
            tonic::Code::FailedPrecondition => Self::FailedPrecondition { call, message },
            tonic::Code::InvalidArgument => Self::InvalidArgument { call, message },
            tonic::Code::Unavailable => Self::Unavailable { call, message },
            code => Self::Rpc {
                call,
                code,
                message,
            },
        }
    }

    /// Whether containerd said the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Whether containerd said the thing already exists.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::AlreadyExists { .. })
    }

    /// Whether containerd refused because of the thing's state.
    pub fn is_failed_precondition(&self) -> bool {
        matches!(self, Self::FailedPrecondition { .. })
    }

    /// Whether containerd (or a plugin behind it) could not be reached.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Connect { .. })
    }
}

/// Turns a tonic result into ours, naming the call.
pub(crate) trait CallResult<T> {
    /// Maps the status of a failed `call`.
    fn call(self, call: &'static str) -> Result<T, ContainerdError>;
}

impl<T> CallResult<T> for Result<tonic::Response<T>, tonic::Status> {
    fn call(self, call: &'static str) -> Result<T, ContainerdError> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| ContainerdError::from_status(call, status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_distinguishable_variants() {
        let of = |code| ContainerdError::from_status("X.Y", tonic::Status::new(code, "m"));
        assert!(of(tonic::Code::NotFound).is_not_found());
        assert!(of(tonic::Code::AlreadyExists).is_already_exists());
        assert!(of(tonic::Code::FailedPrecondition).is_failed_precondition());
        assert!(of(tonic::Code::Unavailable).is_unavailable());
        assert!(matches!(
            of(tonic::Code::InvalidArgument),
            ContainerdError::InvalidArgument { .. }
        ));
        assert!(matches!(
            of(tonic::Code::Internal),
            ContainerdError::Rpc {
                code: tonic::Code::Internal,
                ..
            }
        ));
        assert_eq!(of(tonic::Code::NotFound).to_string(), "X.Y: not found: m");
    }
}
