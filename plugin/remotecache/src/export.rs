//! Making a cache document from a solve's records: each output snapshot's chain of layers, the
//! layer blobs (the blob a layer was applied from, or one written as the image exporter writes
//! them), and the manifest that carries them all.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use futures_util::{StreamExt as _, TryStreamExt as _};
use oxkit_containerd::{manifest_labels, Client, Descriptor};
use oxkit_exporter::ImageExporter;
use oxkit_layer::Compression;
use oxkit_solver::KeyedRecord;
use serde_json::json;

use crate::document::{CacheDocument, CacheEntry, CacheLayer, CACHE_CONFIG_MEDIA_TYPE};
use crate::error::{ctr, CacheError};
use crate::options::Mode;

/// How many layers are written at once.
const LAYER_WRITERS: usize = 4;

/// The OCI image manifest media type.
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A cache written into the content store by [`CacheExporter::write_manifest`].
#[derive(Debug, Clone)]
pub struct CacheManifest {
    /// The manifest.
    pub manifest: Descriptor,
    /// Its config: the cache document.
    pub config: Descriptor,
    /// Its layers.
    pub layers: Vec<Descriptor>,
}

/// Makes cache documents and their manifests in containerd's content store.
pub struct CacheExporter {
    client: Client,
    images: ImageExporter,
    /// Parents of the snapshots looked at so far.
    parents: tokio::sync::Mutex<HashMap<String, Option<String>>>,
}

impl CacheExporter {
    /// An exporter through `client` (leased: the blobs it writes are held), writing layer files
    /// in `scratch` as the image exporter does.
    pub fn new(client: Client, scratch: impl Into<PathBuf>) -> Self {
        CacheExporter {
            images: ImageExporter::new(client.clone(), scratch),
            client,
            parents: Default::default(),
        }
    }

    /// The document of `records` (a solve's, [`oxkit_solver::Solver::solve_keyed`]) whose
    /// result is snapshot `top`: with [`Mode::Min`] only the records whose outputs are layers of
    /// the result, with [`Mode::Max`] all. Layers are those the snapshots were applied from, or
    /// written with `compression`.
    pub async fn document(
        &self,
        records: &[KeyedRecord],
        top: &str,
        mode: Mode,
        compression: Compression,
    ) -> Result<CacheDocument, CacheError> {
        let top_chain: BTreeSet<String> = self.chain(top).await?.into_iter().collect();
        let mut chains: Vec<(&KeyedRecord, Vec<Vec<String>>)> = Vec::new();
        'records: for record in records {
            let mut outputs = Vec::new();
            for id in &record.outputs {
                match self.chain(snapshot_name(id)).await {
                    Ok(chain) => outputs.push(chain),
                    // Its snapshot went (pruned meanwhile): the record is left out.
                    Err(e) => {
                        tracing::warn!(vertex = %record.vertex, error = %e.chain(), "cache export: a record's snapshot is gone; left out");
                        continue 'records;
                    }
                }
            }
            let keep = match mode {
                Mode::Max => true,
                Mode::Min => outputs
                    .iter()
                    .all(|chain| chain.last().is_some_and(|s| top_chain.contains(s))),
            };
            if keep && !outputs.is_empty() {
                chains.push((record, outputs));
            }
        }
        // Each snapshot's layer once, in first-use order.
        let mut position: HashMap<&str, usize> = HashMap::new();
        let mut snapshots: Vec<&str> = Vec::new();
        for (_, outputs) in &chains {
            for snapshot in outputs.iter().flatten() {
                position.entry(snapshot).or_insert_with(|| {
                    snapshots.push(snapshot);
                    snapshots.len() - 1
                });
            }
        }
        // Owned names: a stream of borrowed ones makes the future not `Send` for every lifetime.
        let owned: Vec<String> = snapshots.iter().map(|s| s.to_string()).collect();
        let layers: Vec<CacheLayer> = futures_util::stream::iter(owned)
            .map(|snapshot| async move {
                let (blob, diff_id) = self.images.layer(&snapshot, compression).await?;
                Ok::<_, CacheError>(CacheLayer { blob, diff_id })
            })
            .buffered(LAYER_WRITERS)
            .try_collect()
            .await?;
        let records = chains
            .iter()
            .map(|(record, outputs)| CacheEntry {
                key: record.key.to_string(),
                definition_key: record.definition_key.as_ref().map(|k| k.to_string()),
                name: record.vertex.name.clone(),
                outputs: outputs
                    .iter()
                    .map(|chain| chain.iter().map(|s| position[s.as_str()]).collect())
                    .collect(),
            })
            .collect();
        Ok(CacheDocument { layers, records })
    }

    /// The inline document of `records` for an image of snapshot `top`: the records whose
    /// outputs are layers of the image, each output the image's first layers (the image's
    /// layers are one per snapshot of `top`'s chain).
    pub async fn inline_document(
        &self,
        records: &[KeyedRecord],
        top: &str,
    ) -> Result<CacheDocument, CacheError> {
        let depth: HashMap<String, usize> = self
            .chain(top)
            .await?
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s, i + 1))
            .collect();
        let records = records
            .iter()
            .filter_map(|record| {
                let outputs: Option<Vec<Vec<usize>>> = record
                    .outputs
                    .iter()
                    .map(|id| depth.get(snapshot_name(id)).map(|d| (0..*d).collect()))
                    .collect();
                Some(CacheEntry {
                    key: record.key.to_string(),
                    definition_key: record.definition_key.as_ref().map(|k| k.to_string()),
                    name: record.vertex.name.clone(),
                    outputs: outputs.filter(|o| !o.is_empty())?,
                })
            })
            .collect();
        Ok(CacheDocument {
            layers: Vec::new(),
            records,
        })
    }

    /// Writes `document` as the config of an OCI image manifest whose layers are its layers,
    /// into the content store (with containerd's GC labels).
    pub async fn write_manifest(
        &self,
        document: &CacheDocument,
    ) -> Result<CacheManifest, CacheError> {
        let content = self.client.content();
        let bytes = serde_json::to_vec(document).expect("a cache document always serialises");
        let config = content
            .write_bytes(CACHE_CONFIG_MEDIA_TYPE, &bytes, &Default::default())
            .await
            .map_err(ctr("write the cache document"))?
            .descriptor;
        let layers: Vec<Descriptor> = document.layers.iter().map(|l| l.blob.clone()).collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config,
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest).expect("a JSON value always serialises");
        let manifest = content
            .write_bytes(
                MANIFEST_MEDIA_TYPE,
                &bytes,
                &manifest_labels(&config, &layers),
            )
            .await
            .map_err(ctr("write the cache manifest"))?
            .descriptor;
        Ok(CacheManifest {
            manifest,
            config,
            layers,
        })
    }

    /// `snapshot`'s chain, bottom first (itself last).
    async fn chain(&self, snapshot: &str) -> Result<Vec<String>, CacheError> {
        let mut parents = self.parents.lock().await;
        let mut chain = Vec::new();
        let mut current = Some(snapshot.to_owned());
        while let Some(name) = current {
            let parent = match parents.get(&name) {
                Some(parent) => parent.clone(),
                None => {
                    let info = self
                        .client
                        .snapshots()
                        .stat(&name)
                        .await
                        .map_err(ctr(format!("stat snapshot {name}")))?;
                    parents.insert(name.clone(), info.parent.clone());
                    info.parent
                }
            };
            chain.push(name);
            current = parent;
        }
        chain.reverse();
        Ok(chain)
    }
}

/// The snapshot of a recorded output id (the worker's ids may carry an image config after `#`).
fn snapshot_name(id: &str) -> &str {
    id.split('#').next().unwrap_or(id)
}

impl CacheExporter {
    /// Writes the cache `manifest` into the OCI image layout at `dir` under `tag`; returns
    /// how many blobs were written (the others were there already).
    pub async fn write_layout(
        &self,
        dir: &std::path::Path,
        tag: &str,
        manifest: &CacheManifest,
    ) -> Result<usize, CacheError> {
        let blobs: Vec<Descriptor> = manifest
            .layers
            .iter()
            .chain([&manifest.config])
            .cloned()
            .collect();
        crate::layout::write(dir, tag, &self.client.content(), &manifest.manifest, &blobs).await
    }

    /// Pushes the cache whose manifest is `manifest` to `reference` through `registry`: the
    /// blobs the registry lacks, then the manifest. `log` hears a line per blob.
    pub async fn push(
        &self,
        registry: &oxkit_registry::Registry,
        reference: &str,
        manifest: &Descriptor,
        log: &(dyn Fn(String) + Send + Sync),
    ) -> Result<oxkit_exporter::PushReport, CacheError> {
        Ok(oxkit_exporter::push_image(&self.client, registry, reference, manifest, log).await?)
    }
}
