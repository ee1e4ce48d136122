//! The merge op (BuildKit's MergeOp): its inputs' filesystems layered bottom to top, as if their
//! layer chains were concatenated in order. The result is a new snapshot on the first input with
//! each later input's chain — every snapshot's own layer, deletions and opaque directories
//! included — replayed onto it (`oxkit_fileop::apply_upper`). A later input's files win; it
//! deletes what its own chain deleted, never what it merely lacks.

use std::sync::Arc;

use oxkit_containerd::Mount;
use oxkit_llb::op::MergeOp as LlbMergeOp;
use oxkit_solver::{CacheMap, Op, OpContext, OpError, OutputRef};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::error::{Context as _, WorkerError};
use crate::held::Held;
use crate::worker::{snapshot_inputs, SnapshotRef, Worker};

/// The merge op's cache map for a vertex with `num_inputs` inputs: the digest of the order it
/// layers its inputs in; every input is keyed by its cache key (a merge reads whole filesystems,
/// and nothing besides its inputs).
pub fn merge_cache_map(op: &LlbMergeOp, num_inputs: usize) -> Result<CacheMap, WorkerError> {
    check(op, num_inputs)?;
    let doc = json!({ "inputs": op.inputs });
    let hash = Sha256::digest(doc.to_string().as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    Ok(CacheMap::new(format!("oxkit.merge.v1:sha256:{hex}")))
}

fn check(op: &LlbMergeOp, num_inputs: usize) -> Result<(), WorkerError> {
    if op.inputs.is_empty() {
        return Err(WorkerError::InvalidOp(
            "a merge op needs at least one input".into(),
        ));
    }
    match op.inputs.iter().find(|&&i| i >= num_inputs) {
        Some(i) => Err(WorkerError::InvalidOp(format!(
            "merge input {i} is out of range: the vertex has {num_inputs} inputs"
        ))),
        None => Ok(()),
    }
}

/// The layers (bottom first) to replay for an input whose chain is `chain` onto a tree made of
/// exactly the layers `applied`: all of them, or only those above `applied` when `chain` starts
/// with it — replaying a tree's own layers onto it again changes nothing.
fn layers_to_replay<'a>(applied: &[String], chain: &'a [String]) -> &'a [String] {
    match chain.strip_prefix(applied) {
        Some(rest) => rest,
        None => chain,
    }
}

/// The merge op on a worker's snapshots. One output.
pub struct MergeOp {
    worker: Worker,
    op: LlbMergeOp,
    num_inputs: usize,
}

impl MergeOp {
    /// The merge op `op` of a vertex with `num_inputs` inputs, on `worker`.
    pub fn new(worker: Worker, op: LlbMergeOp, num_inputs: usize) -> Self {
        Self {
            worker,
            op,
            num_inputs,
        }
    }

    /// Committed snapshot `name` and its ancestors, bottom first.
    async fn chain(&self, name: &str) -> Result<Vec<String>, WorkerError> {
        let snapshots = self.worker.client().snapshots();
        let mut chain = Vec::new();
        let mut current = Some(name.to_owned());
        while let Some(name) = current {
            let info = snapshots
                .stat(&name)
                .await
                .doing(|| format!("stat snapshot {name}"))?;
            current = info.parent;
            chain.push(name);
        }
        chain.reverse();
        Ok(chain)
    }

    /// Replays the own layer of committed snapshot `layer` onto the tree mounted at `root`.
    async fn replay(
        &self,
        held: &mut Held,
        layer: &str,
        root: &std::path::Path,
    ) -> Result<(), WorkerError> {
        let (view, mounts) = held.view(layer).await?;
        let dir = Mount::layer_dir(&mounts)
            .filter(|d| d.is_dir())
            .ok_or_else(|| WorkerError::Unsupported {
                what: format!(
                    "merging snapshot {layer}, whose view ({mounts:?}) shows no layer directory \
                     (not an overlay snapshotter),"
                ),
            })?;
        let root = root.to_owned();
        tokio::task::spawn_blocking(move || oxkit_fileop::apply_upper(&dir, &root))
            .await
            .map_err(|e| WorkerError::InvalidOp(format!("the merge task failed: {e}")))??;
        held.remove(&view).await
    }

    /// Prepares a snapshot on the first input, replays the later inputs' chains onto it and
    /// commits it; returns the committed name.
    async fn run(&self, order: &[&SnapshotRef], held: &mut Held) -> Result<String, WorkerError> {
        let base = order[0].name();
        let mut applied = self.chain(base).await?;
        let (key, root) = held.attach(Some(base), true).await?;
        for input in &order[1..] {
            let chain = self.chain(input.name()).await?;
            let todo = layers_to_replay(&applied, &chain).to_vec();
            tracing::debug!(
                input = input.name(),
                layers = todo.len(),
                skipped = chain.len() - todo.len(),
                "merge: replaying an input's layers"
            );
            for layer in &todo {
                self.replay(held, layer, &root).await?;
            }
            applied.extend(todo);
        }
        held.commit(&key, &root).await
    }
}

#[async_trait::async_trait]
impl Op for MergeOp {
    async fn cache_map(&self, _: &OpContext) -> Result<CacheMap, OpError> {
        Ok(merge_cache_map(&self.op, self.num_inputs)?)
    }

    async fn exec(&self, _: &OpContext, inputs: Vec<OutputRef>) -> Result<Vec<OutputRef>, OpError> {
        check(&self.op, inputs.len())?;
        let snapshots = snapshot_inputs(&inputs)?;
        // A merge of one input is that input.
        if let [only] = self.op.inputs[..] {
            return Ok(vec![inputs[only].clone()]);
        }
        let order: Vec<&SnapshotRef> = self.op.inputs.iter().map(|&i| &snapshots[i]).collect();
        let mut held = Held::new(self.worker.clone(), "oxkit-merge");
        let ran = self.run(&order, &mut held).await;
        held.cleanup(ran.is_err()).await;
        Ok(vec![Arc::new(SnapshotRef::new(ran?))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(inputs: &[usize]) -> LlbMergeOp {
        LlbMergeOp {
            inputs: inputs.to_vec(),
        }
    }

    #[test]
    fn the_order_of_inputs_keys_the_merge() {
        let ab = merge_cache_map(&merge(&[0, 1]), 2).unwrap().digest;
        assert!(ab.starts_with("oxkit.merge.v1:sha256:"), "{ab}");
        assert_eq!(ab, merge_cache_map(&merge(&[0, 1]), 2).unwrap().digest);
        assert_ne!(ab, merge_cache_map(&merge(&[1, 0]), 2).unwrap().digest);
        assert_ne!(ab, merge_cache_map(&merge(&[0, 1, 0]), 2).unwrap().digest);
        assert!(merge_cache_map(&merge(&[0, 1]), 2)
            .unwrap()
            .inputs
            .is_empty());
    }

    #[test]
    fn bad_inputs_are_rejected_before_any_work() {
        assert!(merge_cache_map(&merge(&[]), 0).is_err());
        assert!(merge_cache_map(&merge(&[0, 2]), 2).is_err());
    }

    #[test]
    fn only_the_layers_above_the_merged_tree_are_replayed() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // busybox, then busybox + rm: only the rm layer.
        assert_eq!(layers_to_replay(&v(&["bb"]), &v(&["bb", "rm"])), v(&["rm"]));
        // Unrelated chains: everything.
        assert_eq!(
            layers_to_replay(&v(&["bb"]), &v(&["a", "b"])),
            v(&["a", "b"])
        );
        // The tree has more on top than the input's chain shares: everything, in order.
        assert_eq!(
            layers_to_replay(&v(&["bb", "x"]), &v(&["bb", "y"])),
            v(&["bb", "y"])
        );
        // The same input again: nothing.
        assert!(layers_to_replay(&v(&["bb", "x"]), &v(&["bb", "x"])).is_empty());
    }
}
