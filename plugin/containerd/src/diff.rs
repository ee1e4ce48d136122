//! Applying layer blobs from the content store onto mounts with containerd's Diff service (the
//! applier that unpacks image layers into snapshots; containerd 1.6 has no Transfer service).

use containerd_client::services::v1 as pb;

use crate::convert::{descriptor_from_pb, descriptor_to_pb, mounts_to_pb};
use crate::error::CallResult;
use crate::{Client, ContainerdError, Descriptor, Mount};

/// containerd's Diff service.
#[derive(Debug, Clone)]
pub struct Diff {
    client: Client,
}

impl Diff {
    pub(crate) fn new(client: Client) -> Self {
        Self { client }
    }

    /// Applies `layer` (a blob in the content store; tar, gzip or zstd per its media type) onto
    /// `mounts` (an active snapshot's) and returns the descriptor of what was applied: the
    /// uncompressed tar, whose digest is the layer's diff ID. containerd mounts and unmounts
    /// `mounts` itself; the blob must be in the client's namespace (NotFound otherwise).
    pub async fn apply(
        &self,
        layer: &Descriptor,
        mounts: &[Mount],
    ) -> Result<Descriptor, ContainerdError> {
        let request = pb::ApplyRequest {
            diff: Some(descriptor_to_pb(layer)),
            mounts: mounts_to_pb(mounts),
            payloads: Default::default(),
            sync_fs: false,
        };
        let applied = self
            .client
            .diff_rpc()
            .apply(self.client.request(request))
            .await
            .call("Diff.Apply")?
            .applied
            .ok_or(ContainerdError::MissingField {
                call: "Diff.Apply",
                field: "applied",
            })?;
        descriptor_from_pb(applied)
    }
}
