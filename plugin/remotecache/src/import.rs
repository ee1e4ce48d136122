//! Importing caches: reading a cache's document (from a registry or a local OCI layout, as a
//! cache manifest or an image's inline cache) and serving its records to the solver
//! ([`ImportedCache`], a [`RemoteCache`]): a record's layers are fetched — only those whose
//! snapshot is missing, and only when the solver asks for that record — and unpacked into
//! chain-ID snapshots.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use oxkit_containerd::{index_entry, is_index, Descriptor, Digest, Labels, LayerBlob};
use oxkit_registry::Registry;
use oxkit_solver::{CacheKey, OpContext, OutputRef, RemoteCache, Stream};
use oxkit_worker::{SnapshotRef, Worker};
use serde::Deserialize;

use crate::document::{
    CacheDocument, CacheIndex, CacheLayer, LayerChain, CACHE_CONFIG_MEDIA_TYPE, INLINE_CACHE_FIELD,
};
use crate::error::{ctr, CacheError};

/// Where an imported cache's blobs come from.
#[async_trait]
trait Origin: Send + Sync {
    /// The cache, for messages.
    fn describe(&self) -> String;

    /// Reads blob `blob` whole (a manifest or config), checked against its digest.
    async fn read(&self, blob: &Descriptor) -> Result<Vec<u8>, CacheError>;

    /// Puts blob `blob` into the worker's content store (which checks its digest) unless it
    /// is there; returns whether it was fetched.
    async fn fetch(&self, worker: &Worker, blob: &Descriptor) -> Result<bool, CacheError>;
}

/// A cache in a registry repository.
struct RegistryOrigin {
    registry: Registry,
    reference: String,
}

#[async_trait]
impl Origin for RegistryOrigin {
    fn describe(&self) -> String {
        self.reference.clone()
    }

    async fn read(&self, blob: &Descriptor) -> Result<Vec<u8>, CacheError> {
        let mut bytes = Vec::new();
        self.registry
            .fetch_blob(&self.reference, blob.digest.as_str(), blob.size, &mut bytes)
            .await?;
        checked(bytes, blob, &self.reference)
    }

    async fn fetch(&self, worker: &Worker, blob: &Descriptor) -> Result<bool, CacheError> {
        let fetched = worker
            .ensure_blob(
                &self.registry,
                &self.reference,
                blob,
                oxkit_worker::source_labels(&self.reference),
            )
            .await?;
        Ok(fetched.is_some())
    }
}

/// A cache in an OCI image layout directory.
struct LayoutOrigin {
    dir: PathBuf,
}

/// Where an OCI image layout keeps blob `digest`.
pub(crate) fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(digest.hex())
}

#[async_trait]
impl Origin for LayoutOrigin {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    async fn read(&self, blob: &Descriptor) -> Result<Vec<u8>, CacheError> {
        let path = blob_path(&self.dir, &blob.digest);
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|source| CacheError::Io {
                action: "read",
                path: path.display().to_string(),
                source,
            })?;
        checked(bytes, blob, &self.describe())
    }

    async fn fetch(&self, worker: &Worker, blob: &Descriptor) -> Result<bool, CacheError> {
        let content = worker.client().content();
        match content.info(&blob.digest).await {
            Ok(_) => return Ok(false),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(ctr(format!("look up blob {}", blob.digest))(e)),
        }
        let path = blob_path(&self.dir, &blob.digest);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|source| CacheError::Io {
                action: "open",
                path: path.display().to_string(),
                source,
            })?;
        content
            .write(
                &blob.media_type,
                Some((&blob.digest, blob.size)),
                file,
                &Labels::new(),
            )
            .await
            .map_err(ctr(format!(
                "store blob {} from {}",
                blob.digest,
                path.display()
            )))?;
        Ok(true)
    }
}

/// `bytes` if they are what `blob` describes.
fn checked(bytes: Vec<u8>, blob: &Descriptor, cache: &str) -> Result<Vec<u8>, CacheError> {
    if bytes.len() as u64 == blob.size && Digest::sha256_of(&bytes) == blob.digest {
        Ok(bytes)
    } else {
        Err(CacheError::NotACache {
            what: cache.to_owned(),
            reason: format!("blob {} does not match its digest", blob.digest),
        })
    }
}

#[derive(Deserialize)]
struct ManifestDoc {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct ImageConfigDoc {
    #[serde(default)]
    rootfs: RootFs,
    /// [`INLINE_CACHE_FIELD`] (serde takes no constant here).
    #[serde(rename = "oxkit.cache.v1")]
    cache: Option<CacheDocument>,
}

#[derive(Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// One imported cache: its records and where their blobs are.
struct Imported {
    index: CacheIndex,
    origin: Box<dyn Origin>,
}

/// The records of the caches a build imports, for the solver.
pub struct ImportedCache {
    worker: Worker,
    caches: Vec<Imported>,
}

/// What opening an import found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    /// Usable records.
    pub records: usize,
    /// Records left out as unusable.
    pub skipped: usize,
}

impl ImportedCache {
    /// No caches yet; the worker's client (leased) holds what loading fetches and unpacks.
    pub fn new(worker: Worker) -> Self {
        ImportedCache {
            worker,
            caches: Vec::new(),
        }
    }

    /// Whether no cache was added.
    pub fn is_empty(&self) -> bool {
        self.caches.is_empty()
    }

    /// Adds the cache at `reference` (normalized `host/repo:tag`) in a registry reached through
    /// `registry` (with the client's credentials): a cache manifest, or an image (or index:
    /// the entry for `os`/`architecture`) with an inline cache.
    pub async fn add_registry(
        &mut self,
        registry: Registry,
        reference: &str,
        os: &str,
        architecture: &str,
    ) -> Result<ImportSummary, CacheError> {
        let mut manifest = registry.resolve(reference).await?;
        if is_index(&manifest.media_type) {
            let digest: Digest = manifest.digest.parse().map_err(|_| CacheError::NotACache {
                what: reference.to_owned(),
                reason: format!("index digest {:?}", manifest.digest),
            })?;
            let entry = index_entry(&manifest.bytes, &digest, os, architecture).map_err(|e| {
                CacheError::NotACache {
                    what: reference.to_owned(),
                    reason: e.to_string(),
                }
            })?;
            manifest = registry
                .fetch_manifest(reference, entry.digest.as_str())
                .await?;
        }
        let origin = RegistryOrigin {
            registry,
            reference: reference.to_owned(),
        };
        self.add(Box::new(origin), &manifest.bytes).await
    }

    /// Adds the cache tagged `tag` in the OCI image layout at `dir`.
    pub async fn add_layout(&mut self, dir: &Path, tag: &str) -> Result<ImportSummary, CacheError> {
        let manifest = crate::layout::find(dir, tag).await?;
        let origin = LayoutOrigin {
            dir: dir.to_owned(),
        };
        let bytes = origin.read(&manifest).await?;
        self.add(Box::new(origin), &bytes).await
    }

    async fn add(
        &mut self,
        origin: Box<dyn Origin>,
        manifest: &[u8],
    ) -> Result<ImportSummary, CacheError> {
        let what = origin.describe();
        let not_a_cache = |reason: String| CacheError::NotACache {
            what: what.clone(),
            reason,
        };
        let manifest: ManifestDoc = serde_json::from_slice(manifest)
            .map_err(|e| not_a_cache(format!("its manifest does not parse: {e}")))?;
        let config = origin.read(&manifest.config).await?;
        let mut index = CacheIndex::default();
        let skipped = if manifest.config.media_type == CACHE_CONFIG_MEDIA_TYPE {
            let document: CacheDocument = serde_json::from_slice(&config)
                .map_err(|e| not_a_cache(format!("its cache document does not parse: {e}")))?;
            index.add(&document, None)
        } else {
            let image: ImageConfigDoc = serde_json::from_slice(&config)
                .map_err(|e| not_a_cache(format!("its config does not parse: {e}")))?;
            let document = image.cache.ok_or_else(|| {
                not_a_cache(format!(
                    "neither a cache manifest nor an image with an inline cache ({INLINE_CACHE_FIELD})"
                ))
            })?;
            if image.rootfs.diff_ids.len() != manifest.layers.len() {
                return Err(not_a_cache(
                    "the image's layers and diff IDs differ in number".into(),
                ));
            }
            let layers: Vec<CacheLayer> = manifest
                .layers
                .into_iter()
                .zip(image.rootfs.diff_ids)
                .map(|(blob, diff_id)| CacheLayer { blob, diff_id })
                .collect();
            index.add(&document, Some(&layers))
        };
        let summary = ImportSummary {
            records: index.records.len(),
            skipped,
        };
        self.caches.push(Imported { index, origin });
        Ok(summary)
    }

    /// Makes `chain` local: each layer's snapshot, fetching the blobs of the missing ones.
    async fn unpack(
        &self,
        chain: &LayerChain,
        origin: &dyn Origin,
        ctx: &OpContext,
    ) -> Result<OutputRef, CacheError> {
        let what = format!("cache {}", origin.describe());
        let mut parent: Option<&str> = None;
        for (layer, id) in chain.layers.iter().zip(&chain.chain_ids) {
            let blob = LayerBlob {
                descriptor: layer.blob.clone(),
                diff_id: layer.diff_id.clone(),
            };
            let fetch = async {
                if origin.fetch(&self.worker, &layer.blob).await? {
                    ctx.log(
                        Stream::Stderr,
                        format!(
                            "imported layer {} ({} bytes) from {}\n",
                            layer.blob.digest,
                            layer.blob.size,
                            origin.describe()
                        ),
                    );
                }
                Ok::<_, CacheError>(())
            };
            self.worker
                .unpack_layer(id, parent, &blob, &what, fetch)
                .await?;
            parent = Some(id);
        }
        let top = chain.chain_ids.last().expect("chains are never empty");
        Ok(Arc::new(SnapshotRef::new(top.clone())))
    }
}

#[async_trait]
impl RemoteCache for ImportedCache {
    fn alias(&self, definition_key: &CacheKey) -> Option<CacheKey> {
        self.caches
            .iter()
            .find_map(|c| c.index.aliases.get(definition_key).cloned())
    }

    async fn load(&self, key: &CacheKey, ctx: &OpContext) -> Option<Vec<OutputRef>> {
        for cache in &self.caches {
            let Some(chains) = cache.index.records.get(key) else {
                continue;
            };
            let mut outputs = Vec::with_capacity(chains.len());
            let mut failed = None;
            for chain in chains {
                match self.unpack(chain, cache.origin.as_ref(), ctx).await {
                    Ok(output) => outputs.push(output),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                None => return Some(outputs),
                Some(e) => {
                    let message = e.chain();
                    tracing::warn!(vertex = %ctx.vertex(), cache = cache.origin.describe(), error = message, "imported cache record unusable; skipped");
                    ctx.log(
                        Stream::Stderr,
                        format!(
                            "warning: the record from cache {} is unusable, skipped: {message}\n",
                            cache.origin.describe()
                        ),
                    );
                }
            }
        }
        None
    }
}
