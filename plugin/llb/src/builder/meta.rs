//! Image metadata for the builder (BuildKit's `llb.WithMetaResolver`): the [`ImageMetaResolver`]
//! seam that asks someone — the daemon, a registry, a test double — for an image's digest and
//! config, and [`ImageRunConfig`], what the config says about running the image.

use serde_json::Value;

use crate::op::Platform;

/// An image's digest and config blob, as an [`ImageMetaResolver`] found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImageConfig {
    /// The digest the reference resolves to (a manifest, or an index).
    pub digest: String,
    /// The image config blob (OCI or Docker v2 JSON), as stored.
    pub config: Vec<u8>,
}

/// Resolves an image reference to its digest and config, for [`image_with`] when
/// [`ImageOptions::meta_resolver`] is set.
///
/// Called once per `image_with`, while the state is described (before anything is marshalled);
/// it reads only. An error is kept and reported by `marshal`.
///
/// [`image_with`]: super::image_with
/// [`ImageOptions::meta_resolver`]: super::ImageOptions::meta_resolver
pub trait ImageMetaResolver: Send + Sync {
    /// The digest and config of `reference` (normalized, e.g.
    /// `docker.io/library/busybox:latest`) for `platform` (`None`: the resolver's default, the
    /// host's).
    fn resolve_image_config(
        &self,
        reference: &str,
        platform: Option<&Platform>,
    ) -> Result<ResolvedImageConfig, Box<dyn std::error::Error + Send + Sync>>;
}

/// What an image config's `config` object says about running the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRunConfig {
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// `user[:group]`; empty is root.
    pub user: String,
    /// The working directory; empty is `/`.
    pub working_dir: String,
    /// The entrypoint.
    pub entrypoint: Vec<String>,
    /// The default command.
    pub cmd: Vec<String>,
}

impl ImageRunConfig {
    /// Parses the `config` object of an OCI (or Docker v2) image config blob; a missing or null
    /// object or field is empty.
    pub fn parse(blob: &[u8]) -> Result<Self, String> {
        let doc: Value =
            serde_json::from_slice(blob).map_err(|e| format!("its config is not valid: {e}"))?;
        if !doc.is_object() {
            return Err("its config is not a JSON object".into());
        }
        let run = &doc["config"];
        let strings = |field: &str| -> Result<Vec<String>, String> {
            match &run[field] {
                Value::Null => Ok(Vec::new()),
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map(String::from))
                    .collect::<Option<_>>()
                    .ok_or_else(|| format!("its config's {field} is not a list of strings")),
                _ => Err(format!("its config's {field} is not a list of strings")),
            }
        };
        let string = |field: &str| -> Result<String, String> {
            match &run[field] {
                Value::Null => Ok(String::new()),
                Value::String(s) => Ok(s.clone()),
                _ => Err(format!("its config's {field} is not a string")),
            }
        };
        Ok(ImageRunConfig {
            env: strings("Env")?,
            user: string("User")?,
            working_dir: string("WorkingDir")?,
            entrypoint: strings("Entrypoint")?,
            cmd: strings("Cmd")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_configs_parse_with_and_without_fields() {
        let c = ImageRunConfig::parse(
            br#"{"config":{"Env":["PATH=/bin"],"User":"1000:1000","WorkingDir":"/app",
                 "Entrypoint":["/e"],"Cmd":null},"rootfs":{"diff_ids":[]}}"#,
        )
        .unwrap();
        assert_eq!(c.env, ["PATH=/bin"]);
        assert_eq!(
            (c.user.as_str(), c.working_dir.as_str()),
            ("1000:1000", "/app")
        );
        assert_eq!((c.entrypoint, c.cmd), (vec!["/e".to_string()], vec![]));
        assert_eq!(
            ImageRunConfig::parse(br#"{"rootfs":{}}"#).unwrap(),
            ImageRunConfig::default()
        );
        for bad in [
            &b"nope"[..],
            b"[]",
            br#"{"config":{"Env":"A=1"}}"#,
            br#"{"config":{"User":1}}"#,
        ] {
            assert!(ImageRunConfig::parse(bad).is_err(), "{bad:?}");
        }
    }
}
