//! Cache keys: a vertex's key is a hash of its op's cache-map digest and, per input, that
//! input's key and output index or the checksum of the content the op reads from it.

use std::fmt;

use sha2::{Digest, Sha256};

/// A vertex's cache key, `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

/// One input's contribution to a key.
#[derive(Debug, Clone)]
pub(crate) enum KeyPart {
    /// Output `index` of a vertex with key `key`.
    Key(CacheKey, usize),
    /// A content checksum.
    Content(String),
}

impl CacheKey {
    /// Wraps a key as stored (e.g. read back from a database).
    pub fn from_string(key: String) -> Self {
        CacheKey(key)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of an op with cache-map digest `digest` and these inputs, in order. Every field
    /// is tagged and length-prefixed, so distinct inputs never hash alike by concatenation.
    pub(crate) fn compute(digest: &str, inputs: &[KeyPart]) -> Self {
        let mut h = Sha256::new();
        h.update(b"oxkit.solver.cachekey.v1\0");
        put(&mut h, digest.as_bytes());
        h.update((inputs.len() as u64).to_le_bytes());
        for part in inputs {
            match part {
                KeyPart::Key(key, index) => {
                    h.update(b"k");
                    put(&mut h, key.0.as_bytes());
                    h.update((*index as u64).to_le_bytes());
                }
                KeyPart::Content(sum) => {
                    h.update(b"c");
                    put(&mut h, sum.as_bytes());
                }
            }
        }
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256:");
        for b in h.finalize() {
            out.push_str(&format!("{b:02x}"));
        }
        CacheKey(out)
    }
}

fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_key() {
        let a = CacheKey::compute("op", &[]);
        let k = |s: &str, i| KeyPart::Key(CacheKey(s.into()), i);
        let variants = [
            CacheKey::compute("op2", &[]),
            CacheKey::compute("op", &[k("x", 0)]),
            CacheKey::compute("op", &[k("x", 1)]),
            CacheKey::compute("op", &[k("y", 0)]),
            CacheKey::compute("op", &[KeyPart::Content("x".into())]),
            CacheKey::compute("op", &[k("x", 0), k("y", 0)]),
            CacheKey::compute("op", &[k("y", 0), k("x", 0)]),
            CacheKey::compute(
                "op",
                &[KeyPart::Content("ab".into()), KeyPart::Content("c".into())],
            ),
            CacheKey::compute(
                "op",
                &[KeyPart::Content("a".into()), KeyPart::Content("bc".into())],
            ),
        ];
        let mut all: Vec<_> = variants.iter().chain([&a]).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), variants.len() + 1);
        assert_eq!(a, CacheKey::compute("op", &[]));
        assert!(a.as_str().starts_with("sha256:") && a.as_str().len() == 71);
    }
}
