//! [`GitError`]: how resolving, fetching and checking out fail. Every message names the remote
//! with its credentials removed.

use std::path::PathBuf;

/// Why a git operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The remote URL cannot be used.
    #[error("invalid git remote {url}: {problem}")]
    InvalidUrl {
        /// The URL, redacted.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The remote could not be reached or did not answer (bad host, refused, timed out).
    #[error(
        "could not list the refs of {url}: {message}; check the URL and that the host is reachable"
    )]
    Connect {
        /// The URL, redacted.
        url: String,
        /// libgit2's message.
        message: String,
    },
    /// The remote refused the credentials, or asked for some and none were given.
    #[error("authentication to {url} failed: {message}; check the git auth secrets of the build")]
    Auth {
        /// The URL, redacted.
        url: String,
        /// libgit2's message.
        message: String,
    },
    /// The credentials given cannot be used.
    #[error("git auth for {url}: {problem}")]
    BadAuth {
        /// The URL, redacted.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// The ref is not on the remote.
    #[error("ref {git_ref:?} not found in {url}; check that the branch or tag exists (a commit must be given as its full 40-character hash)")]
    RefNotFound {
        /// The URL, redacted.
        url: String,
        /// The ref as given.
        git_ref: String,
    },
    /// The fetch itself failed.
    #[error("git fetch of {what} from {url} failed: {message}")]
    Fetch {
        /// The URL, redacted.
        url: String,
        /// What was fetched (a ref or a commit).
        what: String,
        /// libgit2's message.
        message: String,
    },
    /// The fetch succeeded but the commit is not in what came.
    #[error("git fetch of {what} from {url} did not bring commit {commit}: the ref moved meanwhile, or the server does not serve that commit; retry the build")]
    CommitMissing {
        /// The URL, redacted.
        url: String,
        /// What was fetched.
        what: String,
        /// The commit wanted.
        commit: String,
    },
    /// The operation was cancelled (its build went away).
    #[error("git operation on {url} cancelled")]
    Cancelled {
        /// The URL, redacted.
        url: String,
    },
    /// The commit has no such subdirectory.
    #[error("commit {commit} has no directory {subdir:?}: {problem}")]
    Subdir {
        /// The commit.
        commit: String,
        /// The subdirectory asked for.
        subdir: String,
        /// What is there instead.
        problem: String,
    },
    /// The commit's tree has an entry that cannot be checked out safely.
    #[error("commit {commit} has an entry {path:?} that cannot be checked out: {problem}")]
    BadEntry {
        /// The commit.
        commit: String,
        /// The entry's path.
        path: String,
        /// Why.
        problem: String,
    },
    /// A libgit2 operation on the local cache repository or checkout failed.
    #[error("could not {action} in {}: {message}", path.display())]
    Repo {
        /// What was done.
        action: String,
        /// The repository or checkout.
        path: PathBuf,
        /// libgit2's message.
        message: String,
    },
    /// A host file system operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl GitError {
    pub(crate) fn repo(action: impl Into<String>, path: &std::path::Path, e: git2::Error) -> Self {
        GitError::Repo {
            action: action.into(),
            path: path.to_path_buf(),
            message: e.message().to_string(),
        }
    }

    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        GitError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
