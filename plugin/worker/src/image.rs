//! The image source (`docker-image://…`): resolves a reference in containerd's image store — pulled
//! from its registry first when the store lacks it, or always with resolve mode `pull` — to its
//! manifest and config, and applies the layers into oxkit snapshots named by chain ID, once —
//! every build (and containerd's own unpacker) shares them.

pub use oxkit_containerd::chain_ids;
use std::sync::Arc;

use oxkit_containerd::{platform_manifest, Descriptor, Image, ImageManifest, LayerBlob};
use oxkit_llb::op::Platform;
use oxkit_llb::source::{ImageRef, ResolveMode};
use oxkit_llb::ImageRunConfig;
use oxkit_solver::{CacheMap, Op, OpContext, OpError, OutputRef, Stream};
use serde::Deserialize;

use crate::error::{bad_image, WorkerError};
use crate::session::{sessions, SessionRef};
use crate::worker::{SnapshotRef, Worker};

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
#[serde(default)]
struct RootFs {
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    rootfs: RootFs,
}

impl ImageConfig {
    /// Parses an OCI (or Docker v2) image config blob.
    pub fn parse(bytes: &[u8], digest: &str, manifest_digest: &str) -> Result<Self, String> {
        let run = ImageRunConfig::parse(bytes)?;
        let file: ConfigFile =
            serde_json::from_slice(bytes).map_err(|e| format!("its config is not valid: {e}"))?;
        Ok(ImageConfig {
            digest: digest.to_owned(),
            manifest_digest: manifest_digest.to_owned(),
            env: run.env,
            user: run.user,
            working_dir: run.working_dir,
            entrypoint: run.entrypoint,
            cmd: run.cmd,
            diff_ids: file.rootfs.diff_ids,
            raw: bytes.to_vec(),
        })
    }
}

/// An image resolved in the store for one platform ([`Worker::resolve_image`]).
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// What the image record points at: the manifest, or the index it was picked from.
    pub target: Descriptor,
    /// The manifest for the platform.
    pub manifest: ImageManifest,
    /// Its config.
    pub config: ImageConfig,
}

impl Worker {
    /// The image record `image` names: the record of that exact name; for a reference pinned to
    /// a digest (`name:tag@sha256:…`, as the Dockerfile frontend pins its bases), also the
    /// record of `name:tag`, or any record of the repository, whose target is that digest.
    async fn image_record(&self, image: &ImageRef) -> Result<Image, WorkerError> {
        let client = self.client();
        let name = image.to_string();
        let looked_up = |source| WorkerError::Containerd {
            action: format!("look up image {name}"),
            source,
        };
        match client.images().get(&name).await {
            Ok(record) => return Ok(record),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(looked_up(e)),
        }
        if let Some(digest) = &image.digest {
            let repository = format!("{}/{}", image.domain, image.path);
            if let Some(tag) = &image.tag {
                match client.images().get(&format!("{repository}:{tag}")).await {
                    Ok(record) if record.target.digest.to_string() == *digest => return Ok(record),
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(looked_up(e)),
                }
            }
            let filter = format!("target.digest=={digest}");
            let records = client
                .images()
                .list(&[filter.as_str()])
                .await
                .map_err(looked_up)?;
            if let Some(record) = records.into_iter().find(|r| {
                r.name
                    .strip_prefix(&repository)
                    .is_some_and(|rest| rest.starts_with([':', '@']))
            }) {
                return Ok(record);
            }
        }
        Err(WorkerError::ImageNotInStore {
            image: name,
            namespace: client.namespace().to_owned(),
        })
    }

    /// Looks `image` up by its normalized name in the worker's namespace and reads its manifest
    /// for `platform` (an empty OS or architecture is the host's) and config. With
    /// [`ResolveMode::ForcePull`] the image is pulled from its registry first; with the other
    /// modes only when the store does not have it ([`Worker::pull_image`], with the credentials
    /// of `sessions`); `log` hears what a pull does.
    pub async fn resolve_image(
        &self,
        image: &ImageRef,
        platform: &Platform,
        mode: ResolveMode,
        sessions: &[SessionRef],
        log: &(dyn Fn(String) + Send + Sync),
    ) -> Result<ResolvedImage, WorkerError> {
        let client = self.client();
        let name = image.to_string();
        let bad = bad_image(&name);
        let platform = platform.or_host();
        if mode == ResolveMode::ForcePull {
            self.pull_image(image, &platform, sessions, log).await?;
        }
        let record = match self.image_record(image).await {
            Err(WorkerError::ImageNotInStore { .. }) if mode != ResolveMode::ForcePull => {
                self.pull_image(image, &platform, sessions, log).await?;
                self.image_record(image).await?
            }
            other => other?,
        };
        let manifest =
            platform_manifest(client, &record.target, &platform.os, &platform.architecture)
                .await
                .map_err(|e| match e.into_containerd() {
                    Ok((action, source)) => WorkerError::Containerd {
                        action: format!("{action} of image {name}"),
                        source,
                    },
                    Err(other) => bad(other.to_string()),
                })?;
        let config = ImageConfig::parse(
            &manifest.config_bytes,
            manifest.config.digest.as_str(),
            manifest.descriptor.digest.as_str(),
        )
        .map_err(bad)?;
        if config.diff_ids.len() != manifest.layers.len() {
            return Err(bad(format!(
                "its manifest has {} layers but its config {} diff IDs",
                manifest.layers.len(),
                config.diff_ids.len()
            )));
        }
        Ok(ResolvedImage {
            target: record.target,
            manifest,
            config,
        })
    }
}

/// The image source op: one output, the image's top layer snapshot with its config.
///
/// Cache map: the manifest digest the image record resolves to, so re-tagging the name to another
/// image re-runs the op while the same image under any name is cached.
pub struct ImageSourceOp {
    worker: Worker,
    image: ImageRef,
    platform: Platform,
    mode: ResolveMode,
    /// What the cache map resolved (and maybe pulled), so that exec does not resolve again.
    resolved: tokio::sync::OnceCell<ResolvedImage>,
}

impl ImageSourceOp {
    /// The source of `image` (looked up by its normalized name in the worker's namespace, pulled
    /// as `mode` says) for `platform` (used to pick a manifest from an index).
    pub fn new(worker: Worker, image: ImageRef, platform: Platform, mode: ResolveMode) -> Self {
        Self {
            worker,
            image,
            platform,
            mode,
            resolved: tokio::sync::OnceCell::new(),
        }
    }

    /// The image, resolved once per op; a pull's progress goes to the step's log.
    async fn resolved(&self, ctx: &OpContext) -> Result<&ResolvedImage, WorkerError> {
        self.resolved
            .get_or_try_init(|| async {
                let log = |line: String| ctx.log(Stream::Stderr, line);
                self.worker
                    .resolve_image(&self.image, &self.platform, self.mode, &sessions(ctx), &log)
                    .await
            })
            .await
    }
}

#[async_trait::async_trait]
impl Op for ImageSourceOp {
    /// Not exported with the cache: another daemon pulls the image itself.
    fn exportable(&self) -> bool {
        false
    }

    async fn cache_map(&self, ctx: &OpContext) -> Result<CacheMap, OpError> {
        let resolved = self.resolved(ctx).await?;
        Ok(CacheMap::new(format!(
            "oxkit.image.v1:{}",
            resolved.manifest.descriptor.digest
        )))
    }

    async fn exec(&self, ctx: &OpContext, _: Vec<OutputRef>) -> Result<Vec<OutputRef>, OpError> {
        let resolved = self.resolved(ctx).await?.clone();
        let chains = chain_ids(&resolved.config.diff_ids);
        if chains.is_empty() {
            return Err(WorkerError::Unsupported {
                what: format!("image {} without layers", self.image),
            }
            .into());
        }
        let mut parent: Option<&str> = None;
        let what = format!("image {}", self.image);
        for ((chain, layer), diff_id) in chains
            .iter()
            .zip(&resolved.manifest.layers)
            .zip(&resolved.config.diff_ids)
        {
            let blob = LayerBlob {
                descriptor: layer.clone(),
                diff_id: diff_id.clone(),
            };
            // The image's blobs are in the store: resolving pulled what was missing.
            self.worker
                .unpack_layer(chain, parent, &blob, &what, async {
                    Ok::<_, WorkerError>(())
                })
                .await?;
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
