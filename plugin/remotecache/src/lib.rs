//! oxkit's build cache export and import (BuildKit's `--export-cache` / `--import-cache`), so
//! that several daemons share one cache with no shared disk.
//!
//! A solve lists its records ([`oxkit_solver::Solver::solve_keyed`]: cache key, key by
//! definition, output snapshots). An export ([`CacheExporter`]) turns them into a
//! [`CacheDocument`] — each output a chain of layer blobs (the blob a layer was applied from,
//! or one written like the image exporter's) — and stores it as the config of an OCI image
//! manifest whose layers are the blobs: pushed to a registry (`type=registry`), written into an
//! OCI image layout directory (`type=local`), or put in the exported image's config with the
//! image's own layers (`type=inline`). An import ([`ImportedCache`]) reads such documents and
//! serves them to the solver as its [`oxkit_solver::RemoteCache`]: a record's layers are
//! fetched only when the solver asks for that record, only for the snapshots missing, and a
//! record that cannot be used is skipped with a warning.

mod document;
mod error;
mod export;
mod import;
mod layout;
mod options;

pub use document::{
    CacheDocument, CacheEntry, CacheIndex, CacheLayer, LayerChain, CACHE_CONFIG_MEDIA_TYPE,
    INLINE_CACHE_FIELD,
};
pub use error::CacheError;
pub use export::{CacheExporter, CacheManifest};
pub use import::{ImportSummary, ImportedCache};
pub use options::{CacheExport, CacheImport, ExportTarget, Mode};
