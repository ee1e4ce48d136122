//! oxkit's file op: applies LLB file actions (copy, mkdir, mkfile, rm, symlink) to directory trees
//! the worker has already mounted, resolving every path inside its root so that no symlink or `..`
//! in an image or a source makes an action read or write outside it. Also computes the content
//! checksum of what a copy reads, for content-based cache keys, shares unchanged files between
//! snapshots' layers by hard links instead of copying them, and replays a snapshot's own
//! changes (its overlay upper directory) onto a tree, for the merge op, or clones it by hard
//! links into a new snapshot, for the exporter. A copy with `attempt_unpack` extracts a source
//! that is a tar archive, as Docker's `ADD` does.

mod action;
mod checksum;
mod copy;
mod error;
mod fsmeta;
mod link;
mod pattern;
mod resolve;
mod share;
mod unpack;
mod upper;
mod user;

pub use action::{apply, owner_inputs, FileOpPlan, PlannedAction};
pub use checksum::{content_checksum, content_checksum_with, ChecksumOptions, KnownDigests};
pub use error::FileOpError;
pub use fsmeta::{chmod, lchown, set_times};
pub use link::link_upper;
pub use pattern::{glob_match, ExcludeMatcher, IncludeMatcher};
pub use resolve::{resolve_in_root, resolve_parent_in_root};
pub use share::LayerPaths;
pub use upper::apply_upper;
pub use user::{resolve_owner, EtcFiles, UserLookup};

#[cfg(test)]
mod tests;
