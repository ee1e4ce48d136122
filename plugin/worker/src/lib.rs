//! oxkit's worker: adapts containerd to the solver. It owns the leased containerd client, the
//! mounter and a scratch directory; it turns LLB vertices into solver ops — the image source
//! ([`ImageSourceOp`], pulled from its registry by `oxkit-registry` when the store lacks it),
//! the local source ([`LocalSourceOp`], a client directory synced by
//! `oxkit-localsync`), the git source ([`GitSourceOp`], a commit fetched and checked out by
//! `oxkit-git`), the http(s) source ([`HttpSourceOp`], one file downloaded by `oxkit-http`),
//! the exec op ([`ExecOp`]), the file op ([`FileOpOp`], which applies
//! `oxkit-fileop`'s actions to snapshots) and the merge op ([`MergeOp`]) — whose outputs are
//! committed snapshots ([`SnapshotRef`]), and loads recorded results back ([`Worker`] is the
//! solver's `ResultLoader`). Ops reach the build's client (its secrets and local directories)
//! through a [`ClientSession`] that the daemon attaches to each solve.

mod cache_mount;
mod error;
mod exec;
mod file;
mod git;
mod held;
mod http;
mod image;
mod local;
mod merge;
mod names;
mod pull;
mod secret;
mod session;
mod shim;
mod stubs;
mod tail;
mod unpack;
mod user;
mod worker;

pub use error::WorkerError;
pub use exec::{exec_cache_digest, ExecOp};
pub use file::{file_cache_map, FileOpOp};
pub use git::GitSourceOp;
pub use http::HttpSourceOp;
pub use image::{chain_ids, ImageConfig, ImageSourceOp, ResolvedImage};
pub use local::{LocalSourceError, LocalSourceOp};
pub use merge::{merge_cache_map, MergeOp};
pub use pull::{log_pull, source_labels, PullReport};
pub use session::{registry_credentials, sessions, ClientSession, SessionError, SessionRef};
pub use user::{parse_group, parse_passwd, resolve_user, GroupEntry, PasswdEntry, ResolvedUser};
pub use worker::{OpFor, SnapshotRef, Worker, WorkerOptions};

/// The crates whose types appear in this API (LLB graphs, solver ops and outputs, containerd
/// client), for callers that do not depend on them directly.
pub use {oxkit_containerd, oxkit_llb, oxkit_localsync, oxkit_registry, oxkit_solver};

/// The channel solve progress travels on (`oxkit_solver::SolveOptions::progress`), for callers
/// without their own tokio dependency.
pub fn progress_channel() -> (
    tokio::sync::mpsc::UnboundedSender<oxkit_solver::Event>,
    tokio::sync::mpsc::UnboundedReceiver<oxkit_solver::Event>,
) {
    tokio::sync::mpsc::unbounded_channel()
}
