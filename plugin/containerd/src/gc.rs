//! containerd's garbage-collection labels as oxkit sets them: what ties an index to its
//! manifests, a manifest to its config and layers, and a config to the snapshot of its top layer.

use crate::{Descriptor, Labels};

/// The label that makes an image config hold the oxkit snapshot of its top layer (its chain ID).
pub const GC_SNAPSHOT_LABEL: &str = "containerd.io/gc.ref.snapshot.oxkit";

/// The labels of a manifest blob: its config and each layer, in order.
pub fn manifest_labels(config: &Descriptor, layers: &[Descriptor]) -> Labels {
    let mut labels = Labels::new();
    labels.insert(
        "containerd.io/gc.ref.content.config".into(),
        config.digest.to_string(),
    );
    for (i, l) in layers.iter().enumerate() {
        labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            l.digest.to_string(),
        );
    }
    labels
}

/// The labels of an index blob for the manifests it holds in the store: `(position in the
/// index, manifest)`.
pub fn index_labels<'a>(manifests: impl IntoIterator<Item = (usize, &'a Descriptor)>) -> Labels {
    manifests
        .into_iter()
        .map(|(i, m)| {
            (
                format!("containerd.io/gc.ref.content.m.{i}"),
                m.digest.to_string(),
            )
        })
        .collect()
}

/// The labels of an image config whose top layer is snapshot `top_chain` (none without layers).
pub fn config_labels(top_chain: Option<&String>) -> Labels {
    top_chain
        .map(|chain| (GC_SNAPSHOT_LABEL.to_owned(), chain.clone()))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_what_a_blob_holds() {
        let config = Descriptor::of_bytes("c", b"c");
        let layer = Descriptor::of_bytes("l", b"l");
        let m = manifest_labels(&config, std::slice::from_ref(&layer));
        assert_eq!(
            m["containerd.io/gc.ref.content.config"],
            config.digest.to_string()
        );
        assert_eq!(
            m["containerd.io/gc.ref.content.l.0"],
            layer.digest.to_string()
        );
        let i = index_labels([(3, &layer)]);
        assert_eq!(
            i["containerd.io/gc.ref.content.m.3"],
            layer.digest.to_string()
        );
        assert!(config_labels(None).is_empty());
        assert_eq!(
            config_labels(Some(&"sha256:t".into()))[GC_SNAPSHOT_LABEL],
            "sha256:t"
        );
    }
}
