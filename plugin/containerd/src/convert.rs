//! Maps between containerd's protobuf types and this crate's own; the only module besides the
//! service modules' request building that touches prost structs.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::types as pb;

use crate::{ContainerdError, Descriptor, Digest, Labels, Mount};

pub(crate) fn labels_to_pb(labels: &Labels) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn labels_from_pb(labels: HashMap<String, String>) -> Labels {
    labels.into_iter().collect()
}

pub(crate) fn mount_to_pb(mount: &Mount) -> pb::Mount {
    pb::Mount {
        r#type: mount.kind.clone(),
        source: mount.source.clone(),
        target: String::new(),
        options: mount.options.clone(),
    }
}

pub(crate) fn mounts_to_pb(mounts: &[Mount]) -> Vec<pb::Mount> {
    mounts.iter().map(mount_to_pb).collect()
}

pub(crate) fn mounts_from_pb(mounts: Vec<pb::Mount>) -> Vec<Mount> {
    mounts
        .into_iter()
        .map(|m| Mount {
            kind: m.r#type,
            source: m.source,
            options: m.options,
        })
        .collect()
}

pub(crate) fn descriptor_to_pb(d: &Descriptor) -> pb::Descriptor {
    pb::Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.to_string(),
        size: size_to_pb(d.size),
        annotations: d
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

pub(crate) fn descriptor_from_pb(d: pb::Descriptor) -> Result<Descriptor, ContainerdError> {
    Ok(Descriptor {
        media_type: d.media_type,
        digest: d.digest.parse::<Digest>()?,
        size: size_from_pb(d.size),
        annotations: d.annotations.into_iter().collect(),
    })
}

pub(crate) fn size_to_pb(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

pub(crate) fn size_from_pb(size: i64) -> u64 {
    u64::try_from(size).unwrap_or(0)
}

pub(crate) fn time_from_pb(t: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    let t = t?;
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

pub(crate) fn field_mask(paths: Vec<String>) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths })
}

/// `labels.<key>` for each key: a mask that sets (or, with an empty value, removes) just those.
pub(crate) fn label_paths(labels: &Labels) -> Vec<String> {
    labels.keys().map(|k| format!("labels.{k}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_round_trip() {
        let mut d = Descriptor::of_bytes("m", b"x");
        d.annotations.insert("a".into(), "b".into());
        assert_eq!(descriptor_from_pb(descriptor_to_pb(&d)).unwrap(), d);
    }

    #[test]
    fn a_bad_digest_from_containerd_is_an_error() {
        let pb = pb::Descriptor {
            digest: "md5:x".into(),
            ..Default::default()
        };
        assert!(matches!(
            descriptor_from_pb(pb),
            Err(ContainerdError::InvalidDigest { .. })
        ));
    }

    #[test]
    fn timestamps_convert() {
        let t = time_from_pb(Some(prost_types::Timestamp {
            seconds: 10,
            nanos: 5,
        }));
        assert_eq!(t, Some(UNIX_EPOCH + Duration::new(10, 5)));
        assert_eq!(time_from_pb(None), None);
    }
}
