//! [`WorkerError`]: what the worker's ops and loader fail with.

use oxkit_containerd::ContainerdError;

/// Why an image source, exec or file op, or the worker itself, failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A containerd call failed.
    #[error("{action}: {source}")]
    Containerd {
        /// What the worker was doing.
        action: String,
        /// containerd's error.
        #[source]
        source: ContainerdError,
    },
    /// The image is not in containerd's image store (and was not recorded by a pull).
    #[error("image {image} is not in containerd's image store (namespace {namespace})")]
    ImageNotInStore {
        /// The normalized reference.
        image: String,
        /// The namespace looked in.
        namespace: String,
    },
    /// The image's index, manifest or config could not be read.
    #[error("image {image}: {problem}")]
    BadImage {
        /// The reference.
        image: String,
        /// What is wrong.
        problem: String,
    },
    /// The process exited with a code that does not count as success.
    #[error(
        "process {args:?} did not complete successfully: exit code: {code}{}",
        tail_suffix(.tail)
    )]
    ExitCode {
        /// The argv.
        args: Vec<String>,
        /// The exit code (128 + signal if killed).
        code: u32,
        /// The last bytes of its output (stdout and stderr interleaved).
        tail: String,
    },
    /// The op uses something this worker does not support (yet).
    #[error("{what} is not supported yet")]
    Unsupported {
        /// What, as the user wrote it.
        what: String,
    },
    /// The op is malformed (e.g. an input index out of range); a bug in the definition or its parser.
    #[error("invalid op: {0}")]
    InvalidOp(String),
    /// The user of a run step could not be resolved.
    #[error("could not resolve user {user:?}: {reason}")]
    User {
        /// The `user[:group]` as written.
        user: String,
        /// Why.
        reason: String,
    },
    /// A selector path is unusable (leaves the snapshot, or passes through a symlink).
    #[error("mount selector {selector:?}: {reason}")]
    Selector {
        /// The selector.
        selector: String,
        /// Why.
        reason: String,
    },
    /// A host file system operation failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was done.
        action: &'static str,
        /// On what.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file action failed (the error names the action and its path inside the snapshot).
    #[error(transparent)]
    FileAction(#[from] oxkit_fileop::FileOpError),
    /// A step needs a secret that the build's client does not provide.
    #[error(
        "secret {id:?} is required but the build's client does not provide it; pass it with \
         `oxctl build --secret id={id},src=FILE` (or env=VAR), or make the mount optional"
    )]
    SecretNotFound {
        /// The secret's id.
        id: String,
    },
    /// Asking the build's client for a secret failed.
    #[error("could not get secret {id:?} from the build's client: {source}")]
    Secret {
        /// The secret's id.
        id: String,
        /// The session's error.
        #[source]
        source: crate::session::SessionError,
    },
    /// A secret for an environment variable is not UTF-8 text.
    #[error("secret {id:?} cannot be environment variable {name}: its value is not UTF-8 text")]
    SecretNotText {
        /// The secret's id.
        id: String,
        /// The variable.
        name: String,
    },
    /// A git source failed (resolving, fetching or checking out).
    #[error(transparent)]
    Git(#[from] oxkit_git::GitError),
    /// Talking to an image's registry failed (the error names the reference and the registry).
    #[error(transparent)]
    Registry(#[from] oxkit_registry::RegistryError),
    /// An http source's download failed (or its content is not the expected one).
    #[error(transparent)]
    Http(#[from] oxkit_http::HttpError),
    /// A git source's ref resolved to another commit than its `git.checksum`.
    #[error("git ref {git_ref:?} of {remote} is commit {actual}, not the expected {expected}")]
    GitChecksum {
        /// The remote, without credentials.
        remote: String,
        /// The ref.
        git_ref: String,
        /// The expected commit (`git.checksum`).
        expected: String,
        /// What the ref resolved to.
        actual: String,
    },
    /// An input of the op is not a snapshot of this worker.
    #[error("input {index} is not a snapshot of this worker ({found})")]
    ForeignInput {
        /// The input's position.
        index: usize,
        /// Its debug form.
        found: String,
    },
}

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; output tail:\n{tail}")
    }
}

/// Makes [`WorkerError::BadImage`]s about `image`.
pub(crate) fn bad_image(image: &str) -> impl Fn(String) -> WorkerError + Copy + '_ {
    move |problem| WorkerError::BadImage {
        image: image.to_owned(),
        problem,
    }
}

/// Wraps a containerd error with what was being done.
pub(crate) trait Context<T> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T, WorkerError>;
}

impl<T> Context<T> for Result<T, ContainerdError> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T, WorkerError> {
        self.map_err(|source| WorkerError::Containerd {
            action: action(),
            source,
        })
    }
}
