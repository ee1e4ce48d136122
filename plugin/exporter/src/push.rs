//! Pushing an image from containerd's content store to a registry: the blobs the registry lacks
//! (asked first, uploaded a few at a time), then the config, then the manifest under the tag.

use futures_util::{StreamExt as _, TryStreamExt as _};
use oxkit_containerd::{distribution_source_label, distribution_sources, Client, Descriptor};
use oxkit_registry::Registry;
use serde::Deserialize;

use crate::error::ctr;
use crate::ExportError;

/// How many repositories a blob is tried to be mounted from (the newest it was seen in) before
/// it is uploaded: a failed mount costs a round trip.
const MOUNT_TRIES: usize = 2;

/// How many blobs are uploaded at once.
const UPLOADERS: usize = 4;

/// What a push did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Bytes uploaded.
    pub uploaded_bytes: u64,
    /// Blobs the registry had already (not uploaded).
    pub skipped: usize,
    /// Blobs mounted from another repository of the same registry (not uploaded).
    pub mounted: usize,
}

/// What happened to one blob.
enum Pushed {
    Present,
    Mounted,
    Uploaded(u64),
}

#[derive(Deserialize)]
struct ManifestDoc {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Pushes the image whose manifest is `manifest` (in `client`'s content store, with its config
/// and layers) to `reference` (`host/repo:tag`) through `registry`: layers and config the
/// registry does not have yet, then the manifest. `log` hears a line per blob. Nothing is left
/// half-tagged: the manifest goes last, so a failed push leaves the tag as it was.
pub async fn push_image(
    client: &Client,
    registry: &Registry,
    reference: &str,
    manifest: &Descriptor,
    log: &(dyn Fn(String) + Send + Sync),
) -> Result<PushReport, ExportError> {
    let bytes = client
        .content()
        .read_to_vec(&manifest.digest)
        .await
        .map_err(ctr(format!("failed to read manifest {}", manifest.digest)))?;
    let doc: ManifestDoc = serde_json::from_slice(&bytes).map_err(|e| ExportError::BaseImage {
        name: reference.to_owned(),
        reason: format!("its manifest {} is not valid: {e}", manifest.digest),
    })?;
    let (host, repository) = oxkit_registry::host_and_repository(reference)?;
    let (host, repository) = (host.as_str(), repository.as_str());
    let blobs = doc.layers.into_iter().chain([doc.config]).map(|blob| {
        let reference = reference.to_owned();
        async move {
            let digest = blob.digest.as_str();
            if registry.has_blob(&reference, digest).await? {
                log(format!("{digest}: already in the registry\n"));
                return Ok::<_, ExportError>(Pushed::Present);
            }
            // Where else on this registry the blob is known to be (it was pulled or pushed
            // there): the registry copies it from there without an upload.
            let content = client.content();
            let labels = content
                .info(&blob.digest)
                .await
                .map(|info| info.labels)
                .unwrap_or_default();
            let sources = distribution_sources(&labels, host);
            let newest = sources.iter().rev().filter(|from| *from != repository);
            for from in newest.take(MOUNT_TRIES) {
                if registry.mount_blob(&reference, from, digest).await? {
                    log(format!("{digest}: mounted from {from}\n"));
                    note_source(client, &blob.digest, &labels, host, repository).await;
                    return Ok(Pushed::Mounted);
                }
            }
            let data = content
                .read_to_vec(&blob.digest)
                .await
                .map_err(ctr(format!("failed to read blob {digest}")))?;
            registry.push_blob(&reference, digest, &data).await?;
            log(format!("{digest}: uploaded {} bytes\n", data.len()));
            note_source(client, &blob.digest, &labels, host, repository).await;
            Ok(Pushed::Uploaded(data.len() as u64))
        }
    });
    let results: Vec<Pushed> = futures_util::stream::iter(blobs)
        .buffer_unordered(UPLOADERS)
        .try_collect()
        .await?;
    let mut report = PushReport::default();
    for pushed in results {
        match pushed {
            Pushed::Present => report.skipped += 1,
            Pushed::Mounted => report.mounted += 1,
            Pushed::Uploaded(bytes) => {
                report.uploaded += 1;
                report.uploaded_bytes += bytes;
            }
        }
    }
    registry
        .push_manifest(reference, &manifest.media_type, bytes)
        .await?;
    log(format!(
        "pushed {reference} ({}): {} blobs uploaded ({} bytes), {} mounted, {} already there\n",
        manifest.digest, report.uploaded, report.uploaded_bytes, report.mounted, report.skipped
    ));
    Ok(report)
}

/// Records on blob `digest` (whose labels were `labels`) that `repository` of `host` has it
/// now, for later pushes to mount from; best effort.
async fn note_source(
    client: &Client,
    digest: &oxkit_containerd::Digest,
    labels: &oxkit_containerd::Labels,
    host: &str,
    repository: &str,
) {
    let label = distribution_source_label(labels, host, repository);
    if let Err(e) = client
        .content()
        .update_labels(digest, &[label].into_iter().collect())
        .await
    {
        tracing::debug!(%digest, error = %e, "could not record where the blob was pushed");
    }
}
