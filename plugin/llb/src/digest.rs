//! Vertex ids: `sha256:` + hex of the SHA-256 of an op's marshalled bytes.

use sha2::{Digest as _, Sha256};
use std::fmt;

/// A content digest in OCI form (`sha256:<64 hex>`); an op's digest is its vertex id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let sum = Sha256::digest(bytes);
        let mut s = String::with_capacity(7 + 64);
        s.push_str("sha256:");
        for b in sum {
            s.push_str(&format!("{b:02x}"));
        }
        Digest(s)
    }

    /// Parses `sha256:<64 lowercase hex>`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("sha256:")?;
        (hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Digest(s.to_string()))
    }

    /// The full `sha256:…` form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(
            Digest::from_bytes(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_accepts_only_sha256_hex() {
        let d = Digest::from_bytes(b"x");
        assert_eq!(Digest::parse(d.as_str()), Some(d.clone()));
        assert_eq!(Digest::parse("sha256:abc"), None);
        assert_eq!(Digest::parse(&d.as_str().to_uppercase()), None);
        assert_eq!(Digest::parse(&d.as_str().replace("sha256", "sha512")), None);
    }
}
