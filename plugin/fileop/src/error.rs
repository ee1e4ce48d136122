//! The file op's one error type: every variant names the action and the path it was working on.

use std::path::PathBuf;

/// Why a file action failed. `action` is `copy`, `mkdir`, `mkfile`, `rm` or `symlink`; `path` is
/// the path as written in the action (inside the root), never a host path.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// A path named by the action does not exist.
    #[error("{action} {path}: no such file or directory in the {which}")]
    NotFound {
        /// The action.
        action: &'static str,
        /// The path inside the root.
        path: String,
        /// `source` or `destination`.
        which: &'static str,
    },
    /// A wildcard in a copy or rm source matched nothing.
    #[error("{action} {path}: no files match the wildcard in the source")]
    NoMatch {
        /// The action.
        action: &'static str,
        /// The pattern.
        path: String,
    },
    /// The path already exists (and the action does not replace it).
    #[error("{action} {path}: already exists")]
    AlreadyExists {
        /// The action.
        action: &'static str,
        /// The path inside the root.
        path: String,
    },
    /// A directory was expected where something else is (or the other way round).
    #[error("{action} {path}: {reason}")]
    WrongType {
        /// The action.
        action: &'static str,
        /// The path inside the root.
        path: String,
        /// What was expected, e.g. "cannot copy a directory onto a non-directory".
        reason: &'static str,
    },
    /// Resolving a path met more than 255 symlinks: almost surely a loop.
    #[error("{action} {path}: too many levels of symbolic links (a symlink loop?)")]
    SymlinkLoop {
        /// The action.
        action: &'static str,
        /// The path inside the root.
        path: String,
    },
    /// A path would leave its root. Resolution re-roots `..` and absolute symlinks, so legitimate
    /// input never produces this; it guards against a bug or a racing modification.
    #[error("{action} {path}: resolves outside the root")]
    EscapesRoot {
        /// The action.
        action: &'static str,
        /// The path inside the root.
        path: String,
    },
    /// The action is malformed (empty path, removing `/`, bad pattern, …).
    #[error("{action}: invalid argument: {reason}")]
    Invalid {
        /// The action.
        action: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A user or group name is not in the filesystem's `/etc/passwd` or `/etc/group`.
    #[error("{action}: unknown {kind} {name:?} (not in the image's /etc/{file})")]
    UnknownUser {
        /// The action.
        action: &'static str,
        /// `user` or `group`.
        kind: &'static str,
        /// The name looked up.
        name: String,
        /// `passwd` or `group`.
        file: &'static str,
    },
    /// An input the action refers to has no root (e.g. a user lookup in an input not mounted).
    #[error("{action}: input {input} is not available")]
    MissingInput {
        /// The action.
        action: &'static str,
        /// The input, as `Debug` of `FileInput`.
        input: String,
    },
    /// A system call failed.
    #[error("{action} {path}: {op} {host}: {source}")]
    Io {
        /// The action.
        action: &'static str,
        /// The path inside the root.
        path: String,
        /// What was attempted (`mkdir`, `open`, `chown`, …).
        op: &'static str,
        /// The host path the call was made on.
        host: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl FileOpError {
    /// Builds an [`FileOpError::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: &str,
        op: &'static str,
        host: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        FileOpError::Io {
            action,
            path: path.to_string(),
            op,
            host: host.to_path_buf(),
            source,
        }
    }
}
