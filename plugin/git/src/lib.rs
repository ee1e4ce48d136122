//! oxkit's git fetcher, with one job: fetch exactly one commit of a remote into a shared bare
//! repository (one per remote under a cache root, guarded by a per-remote lock, a fetch at depth
//! 1 of only the ref that names the commit) and check its tree out into a directory. Built on
//! libgit2 (`git2`); it never runs a `git` binary.

mod cache;
mod checkout;
mod error;
mod url;

pub use cache::{
    Auth, CacheOptions, FetchProgress, Fetched, GitCache, ProgressFn, Remote, Resolved,
};
pub use checkout::CheckoutOptions;
pub use error::GitError;
pub use url::{host, redact};

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;
