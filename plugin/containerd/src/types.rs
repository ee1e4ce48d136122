//! The crate's own value types shared by several services: digests, descriptors, mounts, labels.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ContainerdError;

/// Labels of a containerd object (lease, snapshot, blob, image, container).
pub type Labels = BTreeMap<String, String>;

/// A content digest, `<algorithm>:<hex>`. Only `sha256` is accepted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Self::from_sha256(Sha256::digest(bytes).as_slice())
    }

    /// The digest with the raw sha256 `hash`.
    pub(crate) fn from_sha256(hash: &[u8]) -> Self {
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("sha256:{hex}"))
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

impl FromStr for Digest {
    type Err = ContainerdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(ContainerdError::InvalidDigest {
                value: s.to_owned(),
            })
        }
    }
}

impl TryFrom<String> for Digest {
    type Error = ContainerdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> Self {
        d.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An OCI content descriptor: what a blob is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// The media type, e.g. `application/vnd.oci.image.layer.v1.tar+gzip`.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The digest of the blob.
    pub digest: Digest,
    /// The size of the blob in bytes.
    pub size: u64,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The descriptor of `bytes` with `media_type`.
    pub fn of_bytes(media_type: impl Into<String>, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.into(),
            digest: Digest::sha256_of(bytes),
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
        }
    }
}

/// A layer blob and the digest of its uncompressed tar (its diff ID): what a committed layer
/// snapshot was made from (a pulled or imported layer) or into (an exported one), kept in a
/// snapshot label as `media type|digest|size|diff ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// The blob.
    pub descriptor: Descriptor,
    /// The digest of its uncompressed content.
    pub diff_id: String,
}

/// The snapshot label naming the blob a layer snapshot was applied from ([`LayerBlob`]).
pub const LAYER_SOURCE_LABEL: &str = "oxkit.layer.source";

impl LayerBlob {
    /// The label value.
    pub fn to_label(&self) -> String {
        let d = &self.descriptor;
        format!("{}|{}|{}|{}", d.media_type, d.digest, d.size, self.diff_id)
    }

    /// Reads a label value; `None` if it is not one.
    pub fn from_label(value: &str) -> Option<Self> {
        let mut parts = value.split('|');
        let (media_type, digest, size, diff_id) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !diff_id.starts_with("sha256:") {
            return None;
        }
        Some(LayerBlob {
            descriptor: Descriptor {
                media_type: media_type.to_owned(),
                digest: digest.parse().ok()?,
                size: size.parse().ok()?,
                annotations: BTreeMap::new(),
            },
            diff_id: diff_id.to_owned(),
        })
    }
}

/// A mount as containerd describes it: how to mount a snapshot (or anything else) somewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The type: `bind`, `overlay`, `tmpfs`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The source: a directory for `bind`, the file system name otherwise.
    pub source: String,
    /// Mount options: flags (`ro`, `rbind`, `nosuid`, …) and `key=value` data (`lowerdir=…`).
    pub options: Vec<String>,
}

impl Mount {
    /// Whether the mount is read-only (has the `ro` option).
    pub fn is_read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    /// The directory holding a committed snapshot's own layer (what was its overlay upper
    /// directory), from the mounts of a view of it on an overlay snapshotter such as oxkit's: a
    /// view of a single layer is a bind mount of that directory, a view of more is an overlay
    /// whose first lower directory is the top layer. `None` for any other form.
    pub fn layer_dir(view: &[Mount]) -> Option<std::path::PathBuf> {
        let [m] = view else { return None };
        match m.kind.as_str() {
            "bind" => Some(m.source.clone().into()),
            "overlay" => m
                .options
                .iter()
                .find_map(|o| o.strip_prefix("lowerdir="))
                .and_then(|l| l.split(':').next())
                .map(Into::into),
            _ => None,
        }
    }

    /// The layer directories a read-only view of a committed snapshot on an overlay snapshotter
    /// shows, top first: the bind mount's source, or the overlay's lower directories. `None` for
    /// a writable mount or any other form.
    pub fn view_layers(view: &[Mount]) -> Option<Vec<std::path::PathBuf>> {
        let [m] = view else { return None };
        match m.kind.as_str() {
            "bind" if m.is_read_only() => Some(vec![m.source.clone().into()]),
            "overlay" if !m.options.iter().any(|o| o.starts_with("upperdir=")) => m
                .options
                .iter()
                .find_map(|o| o.strip_prefix("lowerdir="))
                .map(|l| l.split(':').map(Into::into).collect()),
            _ => None,
        }
    }

    /// The directory an active snapshot's writes land in, from its mounts on an overlay
    /// snapshotter: a writable bind mount's source (no parent), or the overlay's upper
    /// directory. `None` for a read-only mount or any other form.
    pub fn active_upper(mounts: &[Mount]) -> Option<std::path::PathBuf> {
        let [m] = mounts else { return None };
        match m.kind.as_str() {
            "bind" if !m.is_read_only() => Some(m.source.clone().into()),
            "overlay" => m
                .options
                .iter()
                .find_map(|o| o.strip_prefix("upperdir="))
                .map(Into::into),
            _ => None,
        }
    }
}

/// The chain IDs of layers with `diff_ids` (bottom first), as the OCI image spec defines them:
/// `chain[0] = diff[0]`, `chain[n] = sha256(chain[n-1] + " " + diff[n])`. containerd names the
/// committed snapshot of each layer by its chain ID.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = chain_id(out.last().map(String::as_str), diff);
        out.push(next);
    }
    out
}

/// The chain ID of the layer with `diff_id` on the layer whose chain ID is `parent` (none: the
/// bottom layer), as in [`chain_ids`].
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_owned(),
        Some(parent) => Digest::sha256_of(format!("{parent} {diff_id}").as_bytes()).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_show_their_layers_and_active_mounts_their_upper_dir() {
        let mount = |kind: &str, source: &str, options: &[&str]| Mount {
            kind: kind.into(),
            source: source.into(),
            options: options.iter().map(|o| o.to_string()).collect(),
        };
        let view = [mount("bind", "/s/1/fs", &["ro", "rbind"])];
        assert_eq!(Mount::view_layers(&view), Some(vec!["/s/1/fs".into()]));
        assert_eq!(Mount::active_upper(&view), None);
        let view = [mount(
            "overlay",
            "overlay",
            &["ro", "lowerdir=/s/3/fs:/s/2/fs"],
        )];
        assert_eq!(
            Mount::view_layers(&view),
            Some(vec!["/s/3/fs".into(), "/s/2/fs".into()])
        );
        let active = [mount("bind", "/s/4/fs", &["rw", "rbind"])];
        assert_eq!(Mount::active_upper(&active), Some("/s/4/fs".into()));
        assert_eq!(Mount::view_layers(&active), None);
        let active = [mount(
            "overlay",
            "overlay",
            &["workdir=/s/5/work", "upperdir=/s/5/fs", "lowerdir=/s/3/fs"],
        )];
        assert_eq!(Mount::active_upper(&active), Some("/s/5/fs".into()));
        assert_eq!(Mount::view_layers(&active), None);
        assert_eq!(Mount::view_layers(&[]), None);
    }

    #[test]
    fn a_views_layer_dir_is_its_bind_source_or_first_lower_dir() {
        let mount = |kind: &str, source: &str, options: &[&str]| Mount {
            kind: kind.into(),
            source: source.into(),
            options: options.iter().map(|o| o.to_string()).collect(),
        };
        let bind = [mount("bind", "/s/1/fs", &["ro", "rbind"])];
        assert_eq!(Mount::layer_dir(&bind), Some("/s/1/fs".into()));
        let overlay = [mount(
            "overlay",
            "overlay",
            &["ro", "lowerdir=/s/3/fs:/s/2/fs"],
        )];
        assert_eq!(Mount::layer_dir(&overlay), Some("/s/3/fs".into()));
        assert_eq!(Mount::layer_dir(&[]), None);
        assert_eq!(Mount::layer_dir(&[mount("tmpfs", "tmpfs", &[])]), None);
        assert_eq!(Mount::layer_dir(&[bind[0].clone(), bind[0].clone()]), None);
    }

    #[test]
    fn digests_parse_only_when_sha256_lowercase_hex() {
        let good = Digest::sha256_of(b"");
        assert_eq!(
            good.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(good.as_str().parse::<Digest>().unwrap(), good);
        for bad in [
            "",
            "sha256:",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn descriptors_serialize_as_oci_json() {
        let d = Descriptor::of_bytes("application/octet-stream", b"abc");
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["mediaType"], "application/octet-stream");
        assert_eq!(json["size"], 3);
        assert!(json.get("annotations").is_none());
        let back: Descriptor = serde_json::from_value(json).unwrap();
        assert_eq!(back, d);
    }
}
