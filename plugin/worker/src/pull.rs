//! Pulling an image from its registry into containerd: the manifest for the platform (picked from
//! an index), the blobs containerd's content store does not have yet (fetched concurrently,
//! verified by digest, written with the GC labels the exporter uses too) and the image record in
//! the worker's namespace — after which the image source finds the image in the store exactly
//! as if it had been imported.

use futures_util::{StreamExt as _, TryStreamExt as _};
use oxkit_containerd::{
    chain_ids, config_labels, distribution_source_label, index_entry, index_labels, is_index,
    manifest_labels, ContainerdError, Descriptor, Digest, Image, Labels,
};
use oxkit_llb::op::Platform;
use oxkit_llb::source::ImageRef;
use oxkit_registry::{Manifest, Registry};
use serde::Deserialize;

use crate::error::{bad_image, Context as _, WorkerError};
use crate::session::{registry_credentials, SessionRef};
use crate::worker::Worker;

/// How many blobs of one image are fetched at once.
const FETCHERS: usize = 4;

/// What a pull did, for the build's progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Blobs fetched from the registry.
    pub fetched: usize,
    /// Bytes fetched.
    pub fetched_bytes: u64,
    /// Blobs the content store had already.
    pub present: usize,
}

#[derive(Deserialize)]
struct ManifestDoc {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConfigDoc {
    rootfs: RootFs,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// A pull's progress line as a daemon log event, for resolves outside a build step (the
/// frontend's base images, `ResolveImageConfig`).
pub fn log_pull(line: String) {
    tracing::info!("{}", line.trim_end());
}

impl Worker {
    /// Pulls `image` for `platform` (OS and architecture filled in) from its registry into the
    /// worker's namespace, with the credentials the first of `sessions` has for the registry:
    /// writes what the content store lacks and creates or updates the image record named
    /// `image`. Everything written is held by the worker's lease until the record holds it.
    /// `log` hears a line per step.
    pub async fn pull_image(
        &self,
        image: &ImageRef,
        platform: &Platform,
        sessions: &[SessionRef],
        log: &(dyn Fn(String) + Send + Sync),
    ) -> Result<PullReport, WorkerError> {
        let reference = image.to_string();
        let credentials = registry_credentials(sessions, &image.domain).await;
        let registry = &self
            .registry()
            .with_credentials(&image.domain, credentials)?;
        let bad = bad_image(&reference);
        let top = registry.resolve(&reference).await?;
        let top_desc = descriptor_of(&top).map_err(bad)?;
        log(format!("resolved {reference} to {}\n", top_desc.digest));
        let (manifest, index) = if is_index(&top.media_type) {
            let entry = index_entry(
                &top.bytes,
                &top_desc.digest,
                &platform.os,
                &platform.architecture,
            )
            .map_err(|e| bad(e.to_string()))?;
            let manifest = registry
                .fetch_manifest(&reference, entry.digest.as_str())
                .await?;
            if manifest.digest != entry.digest.as_str() {
                return Err(bad(format!(
                    "the registry served manifest {} for index entry {}",
                    manifest.digest, entry.digest
                )));
            }
            (manifest, Some((top, top_desc.clone(), entry)))
        } else {
            (top, None)
        };
        let manifest_desc = descriptor_of(&manifest).map_err(bad)?;
        let doc: ManifestDoc = serde_json::from_slice(&manifest.bytes).map_err(|e| {
            bad(format!(
                "its manifest {} is not valid: {e}",
                manifest.digest
            ))
        })?;

        // The config first (it is small and says what the layers will be called as snapshots).
        let mut config_bytes = Vec::new();
        let config_present = self.has_blob(&doc.config.digest).await?;
        if config_present {
            config_bytes = self
                .client()
                .content()
                .read_to_vec(&doc.config.digest)
                .await
                .doing(|| format!("read the config {} of image {reference}", doc.config.digest))?;
        } else {
            registry
                .fetch_blob(
                    &reference,
                    doc.config.digest.as_str(),
                    doc.config.size,
                    &mut config_bytes,
                )
                .await?;
        }
        let config: ConfigDoc = serde_json::from_slice(&config_bytes).map_err(|e| {
            bad(format!(
                "its config {} is not valid: {e}",
                doc.config.digest
            ))
        })?;
        let chains = chain_ids(&config.rootfs.diff_ids);
        // Where the blobs came from, for a later push to mount them from there.
        let source = source_labels(&reference);
        let source = &source;

        let fetches = doc.layers.clone().into_iter().map(|layer| {
            let reference = reference.clone();
            async move {
                self.ensure_blob(registry, &reference, &layer, source.clone())
                    .await
            }
        });
        let fetched: Vec<Option<u64>> = futures_util::stream::iter(fetches)
            .buffer_unordered(FETCHERS)
            .try_collect()
            .await?;
        let sizes: Vec<u64> = fetched.iter().flatten().copied().collect();
        let mut report = PullReport {
            fetched: sizes.len(),
            fetched_bytes: sizes.iter().sum(),
            present: fetched.len() - sizes.len(),
        };
        self.client()
            .content()
            .write(
                &doc.config.media_type,
                Some((&doc.config.digest, doc.config.size)),
                config_bytes.as_slice(),
                &config_labels(chains.last())
                    .into_iter()
                    .chain(source.clone())
                    .collect(),
            )
            .await
            .doing(|| {
                format!(
                    "write the config {} of image {reference}",
                    doc.config.digest
                )
            })?;
        if config_present {
            report.present += 1;
        } else {
            report.fetched += 1;
            report.fetched_bytes += doc.config.size;
        }
        self.write_document(
            &manifest,
            &manifest_desc,
            &manifest_labels(&doc.config, &doc.layers),
            &reference,
        )
        .await?;
        let target = match &index {
            Some((index, index_desc, entry)) => {
                let position = index_position(&index.bytes, &entry.digest);
                let labels = index_labels(position.map(|i| (i, entry)));
                self.write_document(index, index_desc, &labels, &reference)
                    .await?;
                index_desc.clone()
            }
            None => manifest_desc,
        };
        self.client()
            .images()
            .create_or_update(&Image::new(reference.clone(), target))
            .await
            .doing(|| format!("record image {reference}"))?;
        log(format!(
            "pulled {reference}: {} blobs fetched ({} bytes), {} already in the content store\n",
            report.fetched, report.fetched_bytes, report.present
        ));
        Ok(report)
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool, WorkerError> {
        match self.client().content().info(digest).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(source) => Err(WorkerError::Containerd {
                action: format!("look up blob {digest}"),
                source,
            }),
        }
    }

    /// Makes sure blob `desc` of `reference` is in the content store: `None` if it was there,
    /// else its size once fetched (streamed from the registry into containerd, which checks the
    /// digest at commit, as the registry client does at the end of the stream).
    pub async fn ensure_blob(
        &self,
        registry: &Registry,
        reference: &str,
        desc: &Descriptor,
        labels: Labels,
    ) -> Result<Option<u64>, WorkerError> {
        if self.has_blob(&desc.digest).await? {
            return Ok(None);
        }
        let (writer, reader) = tokio::io::duplex(1 << 20);
        let fetch = registry.fetch_blob(reference, desc.digest.as_str(), desc.size, writer);
        let content = self.client().content();
        let write = content.write(
            &desc.media_type,
            Some((&desc.digest, desc.size)),
            reader,
            &labels,
        );
        let (fetched, written) = tokio::join!(fetch, write);
        match (fetched, written) {
            (Ok(()), Ok(_)) => Ok(Some(desc.size)),
            // A failed fetch cuts the stream short, which the write reports as a mismatch:
            // the fetch's error is the cause.
            (Err(e), Ok(_) | Err(ContainerdError::ContentMismatch { .. })) => Err(e.into()),
            (_, Err(source)) => Err(WorkerError::Containerd {
                action: format!("write blob {} of image {reference}", desc.digest),
                source,
            }),
        }
    }

    /// Writes a manifest or index as fetched, with `labels`.
    async fn write_document(
        &self,
        document: &Manifest,
        desc: &Descriptor,
        labels: &Labels,
        reference: &str,
    ) -> Result<(), WorkerError> {
        self.client()
            .content()
            .write(
                &desc.media_type,
                Some((&desc.digest, desc.size)),
                document.bytes.as_slice(),
                labels,
            )
            .await
            .doing(|| format!("write the manifest {} of image {reference}", desc.digest))
            .map(drop)
    }
}

/// The distribution-source label of blobs fetched for `reference` (none if it does not parse).
pub fn source_labels(reference: &str) -> Labels {
    oxkit_registry::host_and_repository(reference)
        .map(|(host, repository)| {
            [distribution_source_label(
                &Labels::new(),
                &host,
                &repository,
            )]
            .into_iter()
            .collect()
        })
        .unwrap_or_default()
}

/// The descriptor of a fetched manifest or index.
fn descriptor_of(document: &Manifest) -> Result<Descriptor, String> {
    Ok(Descriptor {
        media_type: document.media_type.clone(),
        digest: document
            .digest
            .parse()
            .map_err(|e| format!("the registry gave digest {:?}: {e}", document.digest))?,
        size: document.bytes.len() as u64,
        annotations: Default::default(),
    })
}

/// Where manifest `digest` is listed in index `bytes`.
fn index_position(bytes: &[u8], digest: &Digest) -> Option<usize> {
    #[derive(Deserialize)]
    struct Index {
        manifests: Vec<Descriptor>,
    }
    let index: Index = serde_json::from_slice(bytes).ok()?;
    index.manifests.iter().position(|m| m.digest == *digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_positions_find_the_entry() {
        let a = Descriptor::of_bytes("m", b"a");
        let b = Descriptor::of_bytes("m", b"b");
        let index = serde_json::to_vec(&serde_json::json!({"manifests": [a, b]})).unwrap();
        assert_eq!(index_position(&index, &b.digest), Some(1));
        assert_eq!(index_position(&index, &Digest::sha256_of(b"c")), None);
        assert_eq!(index_position(b"nope", &a.digest), None);
    }
}
