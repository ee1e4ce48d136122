//! OCI image config and manifest documents.

use serde_json::{json, Value};

/// OCI media types the exporter writes.
pub(crate) mod media {
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker's image manifest (v2, schema 2), for `oci-mediatypes=false`.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker's image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    /// The manifest's and the config's media types: OCI's or Docker's.
    pub fn manifest_and_config(oci: bool) -> (&'static str, &'static str) {
        if oci {
            (MANIFEST, CONFIG)
        } else {
            (DOCKER_MANIFEST, DOCKER_CONFIG)
        }
    }

    /// The Docker media type of a layer of OCI media type `oci` (the same blob); other types
    /// (Docker's already, or ones Docker has no name for) are kept.
    pub fn docker_layer(oci: &str) -> &str {
        match oci {
            oxkit_layer::media_type::TAR => DOCKER_LAYER,
            oxkit_layer::media_type::TAR_GZIP => DOCKER_LAYER_GZIP,
            other => other,
        }
    }
}

/// An image config under construction: the base image's, or an empty one for this platform.
#[derive(Debug, Clone)]
pub struct ImageConfig(pub(crate) Value);

impl ImageConfig {
    /// The config of a `FROM scratch` image for the host platform.
    pub fn scratch() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        ImageConfig(json!({
            "architecture": arch,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }))
    }

    /// The diff IDs listed in the config.
    pub fn diff_ids(&self) -> Vec<String> {
        self.0["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A config given whole (a frontend's: the base image's with the frontend's changes and one
    /// history entry per instruction); it must be a JSON object.
    pub fn from_json(value: Value) -> Result<Self, String> {
        if !value.is_object() {
            return Err("an image config must be a JSON object".into());
        }
        Ok(ImageConfig(value))
    }

    /// Adds one layer: its diff ID, and its history entry — the history's next entry that is
    /// not an `empty_layer` one (a frontend lists an entry per instruction, BuildKit's rule), its
    /// `created` filled in if unset, or a new entry when the history has none left.
    pub(crate) fn push_layer(&mut self, diff_id: &str, created: &str, created_by: &str) {
        let index = self.diff_ids().len();
        if !self.0["rootfs"].is_object() {
            self.0["rootfs"] = json!({"type": "layers", "diff_ids": []});
        }
        match self.0["rootfs"]["diff_ids"].as_array_mut() {
            Some(ids) => ids.push(json!(diff_id)),
            None => self.0["rootfs"]["diff_ids"] = json!([diff_id]),
        }
        if !self.0["history"].is_array() {
            self.0["history"] = json!([]);
        }
        let history = self.0["history"]
            .as_array_mut()
            .expect("history was made an array");
        let listed = history
            .iter_mut()
            .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
            .nth(index);
        match listed {
            Some(entry) => {
                if entry.get("created").is_none_or(Value::is_null) && entry.is_object() {
                    entry["created"] = json!(created);
                }
            }
            None => history.push(json!({"created": created, "created_by": created_by})),
        }
        self.0["created"] = json!(created);
    }

    /// Fills in `created` of the history entries that have none (a frontend's entries for
    /// instructions that made no layer).
    pub(crate) fn date_history(&mut self, created: &str) {
        if let Some(history) = self.0["history"].as_array_mut() {
            for entry in history.iter_mut().filter(|h| h.is_object()) {
                if entry.get("created").is_none_or(Value::is_null) {
                    entry["created"] = json!(created);
                }
            }
        }
    }

    /// The config as bytes.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).expect("a JSON value always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxkit_containerd::{chain_ids, rfc3339};
    use sha2::{Digest as _, Sha256};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn docker_media_types_name_the_same_blobs() {
        assert_eq!(
            media::manifest_and_config(true),
            (media::MANIFEST, media::CONFIG)
        );
        assert_eq!(
            media::manifest_and_config(false),
            (
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.container.image.v1+json"
            )
        );
        for (oci, docker) in [
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
            (
                "application/vnd.oci.image.layer.v1.tar",
                "application/vnd.docker.image.rootfs.diff.tar",
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
        ] {
            assert_eq!(media::docker_layer(oci), docker, "{oci}");
        }
    }

    fn at(secs: u64) -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let ids = chain_ids(&[d('a'), d('b')]);
        assert_eq!(ids[0], d('a'));
        let hex: String = Sha256::digest(format!("{} {}", d('a'), d('b')))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(ids[1], format!("sha256:{hex}"));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_795_000_000)), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn layers_extend_rootfs_and_history() {
        let mut c = ImageConfig::scratch();
        c.push_layer("sha256:1", "2026-01-01T00:00:00Z", "RUN a");
        c.push_layer("sha256:2", "2026-01-01T00:00:00Z", "RUN b");
        assert_eq!(c.diff_ids(), ["sha256:1", "sha256:2"]);
        assert_eq!(c.0["history"].as_array().unwrap().len(), 2);
        assert_eq!(c.0["created"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn new_layers_take_the_history_entries_a_frontend_listed() {
        let mut c = ImageConfig::from_json(json!({
            "rootfs": {"type": "layers", "diff_ids": ["sha256:base"]},
            "history": [
                {"created": "2000-01-01T00:00:00Z", "created_by": "base layer"},
                {"created_by": "ENV a=b", "empty_layer": true},
                {"created_by": "RUN x # buildkit"},
                {"created_by": "CMD [\"x\"]", "empty_layer": true},
            ],
        }))
        .unwrap();
        c.push_layer("sha256:1", "2026-01-01T00:00:00Z", "oxkit: snapshot a");
        c.push_layer("sha256:2", "2026-01-01T00:00:00Z", "oxkit: snapshot b");
        c.date_history("2026-01-01T00:00:00Z");
        let history = c.0["history"].as_array().unwrap();
        let by: Vec<&str> = history
            .iter()
            .map(|h| h["created_by"].as_str().unwrap())
            .collect();
        assert_eq!(
            by,
            [
                "base layer",
                "ENV a=b",
                "RUN x # buildkit",
                "CMD [\"x\"]",
                "oxkit: snapshot b"
            ]
        );
        assert_eq!(history[0]["created"], "2000-01-01T00:00:00Z");
        assert!(history
            .iter()
            .all(|h| h["created"] == "2026-01-01T00:00:00Z" || h["created_by"] == "base layer"));
        assert_eq!(c.diff_ids(), ["sha256:base", "sha256:1", "sha256:2"]);
        assert!(ImageConfig::from_json(json!([])).is_err());
    }
}
