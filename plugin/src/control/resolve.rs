//! `ResolveImageConfig`: the digest and config of an image in the daemon's store (pulled from its
//! registry when the store lacks it), read the way the image source reads it ([`Worker::resolve_image`]), for clients that describe a build from
//! an image's config.

use oxkit_llb::op::Platform;
use oxkit_llb::source::{ImageRef, ResolveMode};
use oxkit_registry::RegistryError;
use oxkit_worker::{log_pull, Worker, WorkerError};
use tonic::Status;

use crate::proto;

/// Answers `request` from `worker`'s image store; reads only.
pub(super) async fn resolve_image_config(
    worker: &Worker,
    request: proto::ResolveImageConfigRequest,
) -> Result<proto::ResolveImageConfigResponse, Status> {
    let image = ImageRef::parse(&request.reference).map_err(|e| {
        Status::invalid_argument(format!(
            "invalid image reference {:?}: {e}",
            request.reference
        ))
    })?;
    let platform = request
        .platform
        .map(|p| Platform {
            os: p.os,
            architecture: p.architecture,
            variant: p.variant,
            ..Default::default()
        })
        .unwrap_or_else(Platform::host);
    let resolved = worker
        .resolve_image(&image, &platform, ResolveMode::Default, &[], &log_pull)
        .await
        .map_err(|e| match &e {
            WorkerError::ImageNotInStore { .. } => Status::not_found(e.to_string()),
            WorkerError::Registry(r) => match r {
                RegistryError::NotFound { .. } => Status::not_found(e.to_string()),
                RegistryError::Unauthorized { .. } => Status::permission_denied(e.to_string()),
                RegistryError::InvalidReference { .. } => Status::invalid_argument(e.to_string()),
                _ => Status::unavailable(e.to_string()),
            },
            WorkerError::BadImage { .. } => Status::failed_precondition(e.to_string()),
            _ => Status::unavailable(e.to_string()),
        })?;
    Ok(proto::ResolveImageConfigResponse {
        digest: resolved.target.digest.to_string(),
        config: resolved.manifest.config_bytes,
        manifest_digest: resolved.manifest.descriptor.digest.to_string(),
    })
}
