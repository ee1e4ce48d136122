//! The cache document: what an exported cache says — layer blobs, and per cache key the chain
//! of those layers each output is. Stored as the config blob of an OCI image manifest whose
//! layers are the blobs (registry and local caches), or in an image's config with the image's
//! own layers (inline caches).

use std::collections::HashMap;

use oxkit_containerd::{chain_ids, Descriptor};
use oxkit_solver::CacheKey;
use serde::{Deserialize, Serialize};

/// The media type of the cache document as a manifest's config.
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oxkit.cache.config.v1+json";

/// The field of an image config that holds an inline cache document (without its layers: they
/// are the image's).
pub const INLINE_CACHE_FIELD: &str = "oxkit.cache.v1";

/// A cache document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheDocument {
    /// The layer blobs the records use; empty inline (the image's layers are meant).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<CacheLayer>,
    /// The records.
    pub records: Vec<CacheEntry>,
}

/// A layer blob of a cache and its diff ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheLayer {
    /// The blob.
    pub blob: Descriptor,
    /// The digest of its uncompressed tar.
    #[serde(rename = "diffID")]
    pub diff_id: String,
}

/// One cache record: a key and its outputs, each a chain of layers (indices into the
/// document's layers, bottom first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The cache key.
    pub key: String,
    /// The key by definition of a vertex that keys an input by content.
    #[serde(
        default,
        rename = "definitionKey",
        skip_serializing_if = "Option::is_none"
    )]
    pub definition_key: Option<String>,
    /// The step's name, for people reading the document.
    #[serde(default)]
    pub name: String,
    /// Per output, its layers bottom first.
    pub outputs: Vec<Vec<usize>>,
}

/// An output's layers, bottom first, with the chain ID of each (the snapshot it is unpacked as).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerChain {
    /// The layers.
    pub layers: Vec<CacheLayer>,
    /// `chain_ids` of their diff IDs.
    pub chain_ids: Vec<String>,
}

/// A document made usable: chains by cache key, and keys by definition key.
#[derive(Debug, Default)]
pub struct CacheIndex {
    /// Outputs by cache key.
    pub records: HashMap<CacheKey, Vec<LayerChain>>,
    /// Cache keys by definition key.
    pub aliases: HashMap<CacheKey, CacheKey>,
}

impl CacheIndex {
    /// Adds `document`'s usable records, with `layers` in place of the document's own when it
    /// has none (an inline cache: the image's layers). A record that points past the layers, or
    /// has a malformed key or no outputs, is left out and counted in the returned number.
    pub fn add(&mut self, document: &CacheDocument, layers: Option<&[CacheLayer]>) -> usize {
        let layers = match layers {
            Some(layers) if document.layers.is_empty() => layers,
            _ => &document.layers,
        };
        let mut skipped = 0;
        for entry in &document.records {
            let chains: Option<Vec<LayerChain>> = entry
                .outputs
                .iter()
                .map(|indices| {
                    let chain: Option<Vec<CacheLayer>> =
                        indices.iter().map(|i| layers.get(*i).cloned()).collect();
                    let chain = chain.filter(|c| !c.is_empty())?;
                    let diff_ids: Vec<String> = chain.iter().map(|l| l.diff_id.clone()).collect();
                    Some(LayerChain {
                        chain_ids: chain_ids(&diff_ids),
                        layers: chain,
                    })
                })
                .collect();
            match chains {
                Some(chains) if !chains.is_empty() && is_key(&entry.key) => {
                    let key = CacheKey::from_string(entry.key.clone());
                    if let Some(definition) = entry.definition_key.as_deref().filter(|k| is_key(k))
                    {
                        self.aliases
                            .insert(CacheKey::from_string(definition.to_owned()), key.clone());
                    }
                    self.records.insert(key, chains);
                }
                _ => skipped += 1,
            }
        }
        skipped
    }
}

/// Whether `key` looks like a cache key (`sha256:` and 64 hex digits).
fn is_key(key: &str) -> bool {
    key.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: u8) -> CacheLayer {
        let mut blob = Descriptor::of_bytes("application/vnd.oci.image.layer.v1.tar+gzip", &[n]);
        blob.size = 10 + n as u64;
        CacheLayer {
            blob,
            diff_id: format!("sha256:{}", format!("{n:x}").repeat(64).get(..64).unwrap()),
        }
    }

    fn key(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn documents_round_trip_and_index_their_records() {
        let document = CacheDocument {
            layers: vec![layer(1), layer(2)],
            records: vec![
                CacheEntry {
                    key: key('a'),
                    definition_key: Some(key('b')),
                    name: "RUN make".into(),
                    outputs: vec![vec![0, 1]],
                },
                // Past the layers, a bad key, no outputs: left out.
                CacheEntry {
                    key: key('c'),
                    definition_key: None,
                    name: String::new(),
                    outputs: vec![vec![0, 7]],
                },
                CacheEntry {
                    key: "md5:x".into(),
                    definition_key: None,
                    name: String::new(),
                    outputs: vec![vec![0]],
                },
                CacheEntry {
                    key: key('d'),
                    definition_key: None,
                    name: String::new(),
                    outputs: vec![],
                },
            ],
        };
        let json = serde_json::to_string(&document).unwrap();
        assert!(json.contains("\"diffID\"") && json.contains("\"definitionKey\""));
        let back: CacheDocument = serde_json::from_str(&json).unwrap();
        assert_eq!(back, document);

        let mut index = CacheIndex::default();
        assert_eq!(index.add(&back, None), 3);
        let chains = &index.records[&CacheKey::from_string(key('a'))];
        assert_eq!(chains.len(), 1);
        assert_eq!(chains[0].layers, [layer(1), layer(2)]);
        assert_eq!(chains[0].chain_ids[0], layer(1).diff_id);
        assert_eq!(chains[0].chain_ids.len(), 2);
        assert_eq!(
            index.aliases[&CacheKey::from_string(key('b'))],
            CacheKey::from_string(key('a'))
        );
    }

    #[test]
    fn inline_documents_use_the_image_layers() {
        let document = CacheDocument {
            layers: vec![],
            records: vec![CacheEntry {
                key: key('e'),
                definition_key: None,
                name: String::new(),
                outputs: vec![vec![0]],
            }],
        };
        let mut index = CacheIndex::default();
        assert_eq!(index.add(&document, Some(&[layer(3)])), 0);
        assert_eq!(
            index.records[&CacheKey::from_string(key('e'))][0].layers,
            [layer(3)]
        );
        // Without layers anywhere, nothing is usable.
        assert_eq!(CacheIndex::default().add(&document, None), 1);
    }
}
