//! Image configs from the daemon's store for a build description: `BuildClient`'s
//! `resolve_image_config`, and [`BlockingImageResolver`], the builder API's
//! [`ImageMetaResolver`] over it for synchronous programs.

use std::sync::Mutex;

use oxkit_llb::op::Platform;
use oxkit_llb::{ImageMetaResolver, ResolvedImageConfig};

use super::{BuildClient, ClientError};
use crate::proto;

impl BuildClient {
    /// The digest of image `reference` in the daemon's store (what its record points at) and its
    /// config blob for `platform` (`None`: the daemon's host), read as the image source reads it.
    pub async fn resolve_image_config(
        &mut self,
        reference: &str,
        platform: Option<&Platform>,
    ) -> Result<ResolvedImageConfig, ClientError> {
        let request = proto::ResolveImageConfigRequest {
            reference: reference.into(),
            platform: platform.map(|p| proto::ResolvePlatform {
                os: p.os.clone(),
                architecture: p.architecture.clone(),
                variant: p.variant.clone(),
            }),
        };
        let r = self.inner.resolve_image_config(request).await?.into_inner();
        Ok(ResolvedImageConfig {
            digest: r.digest,
            config: r.config,
        })
    }
}

/// An [`ImageMetaResolver`] that asks oxkitd, for programs that describe builds synchronously
/// (`oxkit_llb::image_with` with `meta_resolver`). It runs its own small runtime, so it must not
/// be used from inside an async runtime (call [`BuildClient::resolve_image_config`] there).
pub struct BlockingImageResolver {
    runtime: tokio::runtime::Runtime,
    client: Mutex<BuildClient>,
}

impl BlockingImageResolver {
    /// Connects to oxkitd at `address` (as [`BuildClient::connect`]).
    pub fn connect(address: &str) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ClientError::Runtime { source })?;
        let client = runtime.block_on(BuildClient::connect(address))?;
        Ok(BlockingImageResolver {
            runtime,
            client: Mutex::new(client),
        })
    }
}

impl ImageMetaResolver for BlockingImageResolver {
    fn resolve_image_config(
        &self,
        reference: &str,
        platform: Option<&Platform>,
    ) -> Result<ResolvedImageConfig, Box<dyn std::error::Error + Send + Sync>> {
        let mut client = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(self
            .runtime
            .block_on(client.resolve_image_config(reference, platform))?)
    }
}
