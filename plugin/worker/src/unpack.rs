//! Layer snapshots: a layer blob applied, once, into a committed oxkit snapshot named by its
//! chain ID (as containerd's unpacker names them, so images and builds share them), labelled
//! with the blob it came from ([`LAYER_SOURCE_LABEL`]) so that an export or a cache export
//! hands on that blob instead of writing the layer again.

use std::future::Future;

use oxkit_containerd::{Labels, LayerBlob, LAYER_SOURCE_LABEL};

use crate::error::{Context as _, WorkerError};
use crate::names::unique;
use crate::worker::Worker;

impl Worker {
    /// Makes sure committed snapshot `chain` exists: reuses it (labelling it with `blob` if it
    /// has no source label yet), or awaits `fetch` (which puts `blob` in the content store) and
    /// applies the blob on `parent`. `what` names the blob's owner in errors.
    pub async fn unpack_layer<E: From<WorkerError>>(
        &self,
        chain: &str,
        parent: Option<&str>,
        blob: &LayerBlob,
        what: &str,
        fetch: impl Future<Output = Result<(), E>>,
    ) -> Result<(), E> {
        let snapshots = self.client().snapshots();
        let source = Labels::from([(LAYER_SOURCE_LABEL.to_owned(), blob.to_label())]);
        match snapshots.stat(chain).await {
            Ok(info) => {
                if !info.labels.contains_key(LAYER_SOURCE_LABEL) {
                    if let Err(e) = snapshots.update_labels(chain, &source).await {
                        tracing::debug!(chain, error = %e, "could not label a layer snapshot with its blob");
                    }
                }
                return Ok(());
            }
            Err(e) if e.is_not_found() => {}
            Err(source) => {
                return Err(WorkerError::Containerd {
                    action: format!("look up layer snapshot {chain}"),
                    source,
                }
                .into())
            }
        }
        fetch.await?;
        let layer = &blob.descriptor;
        // containerd's unpacker names its work `extract-<random> <chainID>`; so do we.
        let key = format!("{} {chain}", unique("extract"));
        let mounts = snapshots
            .prepare(&key, parent, &Labels::new())
            .await
            .doing(|| format!("prepare a snapshot for layer {}", layer.digest))?;
        let applied = async {
            self.client()
                .diff()
                .apply(layer, &mounts)
                .await
                .doing(|| format!("apply layer {} of {what}", layer.digest))?;
            snapshots
                .commit(chain, &key, &source)
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
                Err(e.into())
            }
        }
    }
}
