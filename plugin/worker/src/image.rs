//! The image source (`docker-image://…`): resolves a reference in containerd's image store to its
//! manifest and config, and applies the layers into oxkit snapshots named by chain ID, once —
//! every build (and containerd's own unpacker) shares them.

pub use oxkit_containerd::chain_ids;
use std::sync::Arc;

use oxkit_containerd::{Descriptor, Digest, Labels};
use oxkit_llb::op::Platform;
use oxkit_llb::source::ImageRef;
use oxkit_solver::{CacheMap, Op, OpContext, OpError, OutputRef};
use serde::Deserialize;

use crate::error::{Context as _, WorkerError};
use crate::names::unique;
use crate::worker::{SnapshotRef, Worker};

const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What an image's config says about running it and about its layers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    /// Digest of the config blob.
    pub digest: String,
    /// Digest of the manifest the config belongs to.
    pub manifest_digest: String,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// `user[:group]`; empty is root.
    pub user: String,
    /// Working directory; empty is `/`.
    pub working_dir: String,
    /// Entrypoint.
    pub entrypoint: Vec<String>,
    /// Cmd.
    pub cmd: Vec<String>,
    /// The layers' diff IDs (digests of the uncompressed tars), bottom first.
    pub diff_ids: Vec<String>,
    /// The whole config as written, for exporters that build on it.
    pub raw: Vec<u8>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RunConfig {
    env: Option<Vec<String>>,
    user: Option<String>,
    working_dir: Option<String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RootFs {
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
    #[serde(default)]
    rootfs: RootFs,
}

impl ImageConfig {
    /// Parses an OCI (or Docker v2) image config blob.
    pub fn parse(bytes: &[u8], digest: &str, manifest_digest: &str) -> Result<Self, String> {
        let file: ConfigFile =
            serde_json::from_slice(bytes).map_err(|e| format!("its config is not valid: {e}"))?;
        let run = file.config.unwrap_or_default();
        Ok(ImageConfig {
            digest: digest.to_owned(),
            manifest_digest: manifest_digest.to_owned(),
            env: run.env.unwrap_or_default(),
            user: run.user.unwrap_or_default(),
            working_dir: run.working_dir.unwrap_or_default(),
            entrypoint: run.entrypoint.unwrap_or_default(),
            cmd: run.cmd.unwrap_or_default(),
            diff_ids: file.rootfs.diff_ids,
            raw: bytes.to_vec(),
        })
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

/// An image resolved in the store.
struct Resolved {
    manifest_digest: Digest,
    layers: Vec<Descriptor>,
    config: ImageConfig,
}

/// The image source op: one output, the image's top layer snapshot with its config.
///
/// Cache map: the manifest digest the image record resolves to, so re-tagging the name to another
/// image re-runs the op while the same image under any name is cached.
pub struct ImageSourceOp {
    worker: Worker,
    image: ImageRef,
    platform: Platform,
}

impl ImageSourceOp {
    /// The source of `image` (looked up by its normalized name in the worker's namespace) for
    /// `platform` (used to pick a manifest from an index).
    pub fn new(worker: Worker, image: ImageRef, platform: Platform) -> Self {
        Self {
            worker,
            image,
            platform,
        }
    }

    fn bad(&self, problem: impl Into<String>) -> WorkerError {
        WorkerError::BadImage {
            image: self.image.to_string(),
            problem: problem.into(),
        }
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        digest: &Digest,
    ) -> Result<(T, Vec<u8>), WorkerError> {
        let bytes = self
            .worker
            .client()
            .content()
            .read_to_vec(digest)
            .await
            .doing(|| format!("read the {what} {digest} of image {}", self.image))?;
        let parsed = serde_json::from_slice(&bytes)
            .map_err(|e| self.bad(format!("its {what} {digest} is not valid: {e}")))?;
        Ok((parsed, bytes))
    }

    /// Image record → (index →) manifest → config.
    async fn resolve(&self) -> Result<Resolved, WorkerError> {
        let client = self.worker.client();
        let name = self.image.to_string();
        let record = match client.images().get(&name).await {
            Ok(record) => record,
            Err(e) if e.is_not_found() => {
                return Err(WorkerError::ImageNotInStore {
                    image: name,
                    namespace: client.namespace().to_owned(),
                })
            }
            Err(source) => {
                return Err(WorkerError::Containerd {
                    action: format!("look up image {name}"),
                    source,
                })
            }
        };
        let mut target = record.target;
        if target.media_type == MEDIA_OCI_INDEX || target.media_type == MEDIA_DOCKER_LIST {
            let (index, _): (Index, _) = self.read_json("index", &target.digest).await?;
            let os = if self.platform.os.is_empty() {
                "linux"
            } else {
                &self.platform.os
            };
            let host = Platform::host();
            let arch = if self.platform.architecture.is_empty() {
                host.architecture.as_str()
            } else {
                self.platform.architecture.as_str()
            };
            let single = index.manifests.len() == 1;
            let entry = index
                .manifests
                .into_iter()
                .find(|m| match &m.platform {
                    Some(p) => p.os == os && p.architecture == arch,
                    None => single,
                })
                .ok_or_else(|| self.bad(format!("its index has no manifest for {os}/{arch}")))?;
            target = entry.descriptor;
        }
        let (manifest, _): (Manifest, _) = self.read_json("manifest", &target.digest).await?;
        let (_, raw): (serde_json::Value, _) =
            self.read_json("config", &manifest.config.digest).await?;
        let config = ImageConfig::parse(
            &raw,
            manifest.config.digest.as_str(),
            target.digest.as_str(),
        )
        .map_err(|p| self.bad(p))?;
        if config.diff_ids.len() != manifest.layers.len() {
            return Err(self.bad(format!(
                "its manifest has {} layers but its config {} diff IDs",
                manifest.layers.len(),
                config.diff_ids.len()
            )));
        }
        Ok(Resolved {
            manifest_digest: target.digest,
            layers: manifest.layers,
            config,
        })
    }

    /// Makes sure committed snapshot `chain` exists: reuses it, or applies `layer` on `parent`.
    async fn ensure_layer(
        &self,
        chain: &str,
        parent: Option<&str>,
        layer: &Descriptor,
    ) -> Result<(), WorkerError> {
        let snapshots = self.worker.client().snapshots();
        match snapshots.stat(chain).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => {}
            Err(source) => {
                return Err(WorkerError::Containerd {
                    action: format!("look up layer snapshot {chain}"),
                    source,
                })
            }
        }
        // containerd's unpacker names its work `extract-<random> <chainID>`; so do we.
        let key = format!("{} {chain}", unique("extract"));
        let mounts = snapshots
            .prepare(&key, parent, &Labels::new())
            .await
            .doing(|| format!("prepare a snapshot for layer {}", layer.digest))?;
        let applied = async {
            self.worker
                .client()
                .diff()
                .apply(layer, &mounts)
                .await
                .doing(|| format!("apply layer {} of image {}", layer.digest, self.image))?;
            snapshots
                .commit(chain, &key, &Labels::new())
                .await
                .map_err(|source| WorkerError::Containerd {
                    action: format!("commit layer snapshot {chain}"),
                    source,
                })
        }
        .await;
        match applied {
            Ok(()) => Ok(()),
            // Another build applied the same layer meanwhile: use theirs.
            Err(WorkerError::Containerd { source, .. }) if source.is_already_exists() => {
                let _ = snapshots.remove(&key).await;
                Ok(())
            }
            Err(e) => {
                let _ = snapshots.remove(&key).await;
                Err(e)
            }
        }
    }
}

#[async_trait::async_trait]
impl Op for ImageSourceOp {
    async fn cache_map(&self, _: &OpContext) -> Result<CacheMap, OpError> {
        let resolved = self.resolve().await?;
        Ok(CacheMap::new(format!(
            "oxkit.image.v1:{}",
            resolved.manifest_digest
        )))
    }

    async fn exec(&self, _: &OpContext, _: Vec<OutputRef>) -> Result<Vec<OutputRef>, OpError> {
        let resolved = self.resolve().await?;
        let chains = chain_ids(&resolved.config.diff_ids);
        if chains.is_empty() {
            return Err(WorkerError::Unsupported {
                what: format!("image {} without layers", self.image),
            }
            .into());
        }
        let mut parent: Option<&str> = None;
        for (chain, layer) in chains.iter().zip(&resolved.layers) {
            self.ensure_layer(chain, parent, layer).await?;
            parent = Some(chain);
        }
        let top = chains.last().expect("not empty").clone();
        Ok(vec![Arc::new(SnapshotRef::with_config(
            top,
            Arc::new(resolved.config),
        ))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = "sha256:aaaa".to_owned();
        let b = "sha256:bbbb".to_owned();
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        let hash = Sha256::digest(b"sha256:aaaa sha256:bbbb");
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(chains[1], format!("sha256:{hex}"));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn configs_parse_with_and_without_a_run_config() {
        let raw = br#"{"architecture":"amd64","os":"linux",
            "config":{"Env":["PATH=/bin"],"User":"1000:1000","WorkingDir":"/app","Entrypoint":["/e"],"Cmd":["sh"]},
            "rootfs":{"type":"layers","diff_ids":["sha256:01"]}}"#;
        let c = ImageConfig::parse(raw, "sha256:c", "sha256:m").unwrap();
        assert_eq!(c.env, ["PATH=/bin"]);
        assert_eq!(
            (c.user.as_str(), c.working_dir.as_str()),
            ("1000:1000", "/app")
        );
        assert_eq!(
            (c.entrypoint.clone(), c.cmd.clone()),
            (vec!["/e".to_owned()], vec!["sh".to_owned()])
        );
        assert_eq!(c.diff_ids, ["sha256:01"]);
        let bare = ImageConfig::parse(br#"{"rootfs":{"diff_ids":[]}}"#, "d", "m").unwrap();
        assert!(bare.env.is_empty() && bare.cmd.is_empty());
        assert!(ImageConfig::parse(b"nope", "d", "m").is_err());
    }
}
