//! oxkit's local-source sync engine, pure filesystem: the daemon keeps one persistent copy per
//! (client, directory name) ([`Store`], [`Copy`](struct@Copy)); a sync brings it up to date from
//! the client's listing ([`Entry`]), fetching through a [`Source`] only the files whose metadata
//! changed, and deleting what disappeared; the copy then fills a fresh tree with the listing's
//! metadata ([`Copy::materialize`]) and names its content ([`Synced::digest`]). The client's side
//! of the same listing is here too: [`walk`] through the patterns, [`read_range`] of a listed
//! file.

mod entry;
mod error;
mod listing;
mod materialize;
mod store;
mod walk;

pub use entry::{Entry, Kind};
pub use error::SyncError;
pub use listing::Listing;
pub use store::{Copy, Range, Source, Store, Synced, Written, CHUNK};
pub use walk::{read_range, walk, Filter, WalkError};

#[cfg(test)]
mod tests;
