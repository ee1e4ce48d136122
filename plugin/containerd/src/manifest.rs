//! An image's manifest for one platform: an image record's target, followed through an OCI
//! index or a Docker manifest list to the manifest for that platform, and the manifest's config —
//! what the image source and the image exporter both start from.

use serde::Deserialize;

use crate::{Client, ContainerdError, Descriptor, Digest};

/// OCI's index media type.
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker's manifest list media type.
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A single-platform manifest read from the content store, with its config blob.
#[derive(Debug, Clone)]
pub struct ImageManifest {
    /// The manifest's own descriptor: the image's target, or the index entry picked.
    pub descriptor: Descriptor,
    /// The config's descriptor.
    pub config: Descriptor,
    /// The config blob as stored.
    pub config_bytes: Vec<u8>,
    /// The layer descriptors, bottom first.
    pub layers: Vec<Descriptor>,
}

/// Why an image's manifest could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A blob could not be read from the content store.
    #[error("failed to read its {what} {digest}: {source}")]
    Read {
        /// `index`, `manifest` or `config`.
        what: &'static str,
        /// The blob.
        digest: Digest,
        /// containerd's error (boxed: it is large).
        #[source]
        source: Box<ContainerdError>,
    },
    /// A blob is not the JSON document it should be.
    #[error("its {what} {digest} is not valid: {reason}")]
    Invalid {
        /// `index`, `manifest` or `config`.
        what: &'static str,
        /// The blob.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
    /// The index names no manifest for the platform asked for.
    #[error("its index has no manifest for {os}/{architecture}")]
    NoPlatform {
        /// The OS asked for.
        os: String,
        /// The architecture asked for.
        architecture: String,
    },
}

impl ManifestError {
    /// containerd's error and what was being done (`read the manifest sha256:…`) if reading a
    /// blob failed, so that callers keep containerd's failures apart from a bad image; else the
    /// error itself.
    pub fn into_containerd(self) -> Result<(String, ContainerdError), Self> {
        match self {
            ManifestError::Read {
                what,
                digest,
                source,
            } => Ok((format!("read the {what} {digest}"), *source)),
            other => Err(other),
        }
    }
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct IndexPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

#[derive(Deserialize)]
struct IndexEntry {
    #[serde(flatten)]
    descriptor: Descriptor,
    #[serde(default)]
    platform: Option<IndexPlatform>,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<IndexEntry>,
}

/// The manifest of the image whose record points at `target`, for `os`/`architecture` (OCI's
/// spelling: `linux`, `amd64`): `target` itself if it is a manifest, else the index entry for
/// that platform (an entry without a platform matches only when it is the only one). Reads the
/// manifest and its config from `client`'s content store; writes nothing.
pub async fn platform_manifest(
    client: &Client,
    target: &Descriptor,
    os: &str,
    architecture: &str,
) -> Result<ImageManifest, ManifestError> {
    let mut descriptor = target.clone();
    if is_index(&target.media_type) {
        let bytes = read(client, "index", &target.digest).await?;
        descriptor = index_entry(&bytes, &target.digest, os, architecture)?;
    }
    let bytes = read(client, "manifest", &descriptor.digest).await?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| ManifestError::Invalid {
            what: "manifest",
            digest: descriptor.digest.clone(),
            reason: e.to_string(),
        })?;
    let config_bytes = read(client, "config", &manifest.config.digest).await?;
    Ok(ImageManifest {
        descriptor,
        config: manifest.config,
        config_bytes,
        layers: manifest.layers,
    })
}

/// Whether `media_type` is an OCI index or a Docker manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_OCI_INDEX || media_type == MEDIA_DOCKER_LIST
}

async fn read(
    client: &Client,
    what: &'static str,
    digest: &Digest,
) -> Result<Vec<u8>, ManifestError> {
    client
        .content()
        .read_to_vec(digest)
        .await
        .map_err(|source| ManifestError::Read {
            what,
            digest: digest.clone(),
            source: Box::new(source),
        })
}

/// The entry of index (or manifest list) blob `bytes`, whose digest is `digest`, for
/// `os`/`architecture` (an entry without a platform matches only when it is the only one); pure,
/// for an index read from the content store or fetched from a registry alike.
pub fn index_entry(
    bytes: &[u8],
    digest: &Digest,
    os: &str,
    architecture: &str,
) -> Result<Descriptor, ManifestError> {
    let index: Index = serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid {
        what: "index",
        digest: digest.clone(),
        reason: e.to_string(),
    })?;
    let single = index.manifests.len() == 1;
    index
        .manifests
        .into_iter()
        .find(|m| match &m.platform {
            Some(p) => p.os == os && p.architecture == architecture,
            None => single,
        })
        .map(|m| m.descriptor)
        .ok_or_else(|| ManifestError::NoPlatform {
            os: os.into(),
            architecture: architecture.into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(hex: char, platform: Option<(&str, &str)>) -> serde_json::Value {
        let mut e = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", hex.to_string().repeat(64)),
            "size": 1,
        });
        if let Some((os, architecture)) = platform {
            e["platform"] = serde_json::json!({"os": os, "architecture": architecture});
        }
        e
    }

    fn picked(entries: &[serde_json::Value], os: &str, arch: &str) -> Result<char, String> {
        let index = serde_json::to_vec(&serde_json::json!({"manifests": entries})).unwrap();
        let digest = Digest::sha256_of(&index);
        index_entry(&index, &digest, os, arch)
            .map(|d| d.digest.hex().chars().next().unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_entry_for_the_platform_is_picked() {
        let two = [
            entry('a', Some(("linux", "arm64"))),
            entry('b', Some(("linux", "amd64"))),
        ];
        assert_eq!(picked(&two, "linux", "amd64"), Ok('b'));
        assert_eq!(picked(&two, "linux", "arm64"), Ok('a'));
        let err = picked(&two, "linux", "s390x").unwrap_err();
        assert!(err.contains("linux/s390x"), "{err}");
        assert_eq!(picked(&[entry('c', None)], "linux", "amd64"), Ok('c'));
        let unnamed = [entry('c', None), entry('d', None)];
        assert!(
            picked(&unnamed, "linux", "amd64").is_err(),
            "entries without platforms are ambiguous when there are several"
        );
        let digest = Digest::sha256_of(b"x");
        assert!(matches!(
            index_entry(b"not json", &digest, "linux", "amd64"),
            Err(ManifestError::Invalid { what: "index", .. })
        ));
    }
}
