//! Pushing an image from containerd's content store to a registry: the blobs the registry lacks
//! (asked first, uploaded a few at a time), then the config, then the manifest under the tag.

use futures_util::{StreamExt as _, TryStreamExt as _};
use oxkit_containerd::{Client, Descriptor};
use oxkit_registry::Registry;
use serde::Deserialize;

use crate::error::ctr;
use crate::ExportError;

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
    let blobs = doc.layers.into_iter().chain([doc.config]).map(|blob| {
        let reference = reference.to_owned();
        async move {
            let digest = blob.digest.as_str();
            if registry.has_blob(&reference, digest).await? {
                log(format!("{digest}: already in the registry\n"));
                return Ok::<_, ExportError>(None);
            }
            let data = client
                .content()
                .read_to_vec(&blob.digest)
                .await
                .map_err(ctr(format!("failed to read blob {digest}")))?;
            registry.push_blob(&reference, digest, &data).await?;
            log(format!("{digest}: uploaded {} bytes\n", data.len()));
            Ok(Some(data.len() as u64))
        }
    });
    let results: Vec<Option<u64>> = futures_util::stream::iter(blobs)
        .buffer_unordered(UPLOADERS)
        .try_collect()
        .await?;
    let uploaded: Vec<u64> = results.iter().flatten().copied().collect();
    let report = PushReport {
        uploaded: uploaded.len(),
        uploaded_bytes: uploaded.iter().sum(),
        skipped: results.len() - uploaded.len(),
    };
    registry
        .push_manifest(reference, &manifest.media_type, bytes)
        .await?;
    log(format!(
        "pushed {reference} ({}): {} blobs uploaded ({} bytes), {} already there\n",
        manifest.digest, report.uploaded, report.uploaded_bytes, report.skipped
    ));
    Ok(report)
}
