//! The exporters' options, parsed before any work (`--output type=image,name=…,…`,
//! `type=registry,name=…` — the image exporter with `push=true` —, `type=oci,…`,
//! `type=docker,…`, `type=local`). The image config attributes that `image`, `oci` and `docker`
//! share (`env.K`, `label.K`, `entrypoint`, `cmd`, `workdir`, `user`, `expose`, `config`) are
//! described in [`ConfigChanges`].

use std::collections::BTreeMap;

use oxkit_layer::Compression;

use crate::config::{ConfigAttrs, ConfigChanges};
use crate::{ArchiveFormat, ExportError};

/// What the unknown-option errors of `image`, `oci` and `docker` list.
const CONFIG_KEYS: &str = "env.NAME, label.NAME, entrypoint, cmd, workdir, user, expose, config, \
     source-date-epoch, oci-mediatypes, annotation.NAME";

/// How the image's manifest is written (`oci-mediatypes`, `annotation.KEY`), for `image`, `oci`
/// and `docker` alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestOptions {
    /// `oci-mediatypes` (default `true`): OCI media types for the manifest, config and layers;
    /// `false`: Docker's (image manifest v2, schema 2), as BuildKit writes them.
    pub oci_media_types: bool,
    /// `annotation.KEY=VALUE`: the manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

impl Default for ManifestOptions {
    fn default() -> Self {
        ManifestOptions {
            oci_media_types: true,
            annotations: BTreeMap::new(),
        }
    }
}

/// What `type=image` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageExportOptions {
    /// Image names (`name=a,b` or repeated `name`), normalised by the caller.
    pub names: Vec<String>,
    /// Layer compression.
    pub compression: Compression,
    /// Changes to the base image's config.
    pub config: ConfigChanges,
    /// `source-date-epoch`: no timestamp in new layers, the config or its history is later than
    /// this (seconds since 1970), so that the same build gives the same digests.
    pub source_date_epoch: Option<i64>,
    /// `push=true`: push the image to the registry of each name after recording it.
    pub push: bool,
    /// Media types and annotations of the manifest.
    pub manifest: ManifestOptions,
}

impl ImageExportOptions {
    /// Parses BuildKit's image exporter attributes: `name` (comma-separated), `compression`
    /// (`gzip`, `zstd`, `uncompressed`), `compression-level`, `push` (`true`/`false`), and the
    /// image config attributes ([`ConfigChanges`]). Unknown keys are refused by name.
    pub fn parse(attrs: &BTreeMap<String, String>) -> Result<Self, ExportError> {
        Self::parse_as("image", attrs, false)
    }

    /// Parses `type=registry`'s attributes: the image exporter's, with `push` defaulting to true
    /// (BuildKit's short form of `type=image,push=true`).
    pub fn parse_registry(attrs: &BTreeMap<String, String>) -> Result<Self, ExportError> {
        Self::parse_as("registry", attrs, true)
    }

    fn parse_as(
        exporter: &'static str,
        attrs: &BTreeMap<String, String>,
        push_default: bool,
    ) -> Result<Self, ExportError> {
        let bad = invalid(exporter);
        let mut push = push_default;
        let common = Common::parse(exporter, attrs, |key, value| {
            match key {
            "push" => {
                push = parse_bool(exporter, key, value)?;
                Ok(())
            }
            _ => Err(bad(
                key,
                format!(
                    "unknown option; expected name, push, compression, compression-level, {CONFIG_KEYS}"
                ),
            )),
        }
        })?;
        if common.names.is_empty() {
            return Err(bad(
                "name",
                "the image exporter needs at least one name".into(),
            ));
        }
        Ok(ImageExportOptions {
            names: common.names,
            compression: common.compression,
            config: common.config,
            source_date_epoch: common.source_date_epoch,
            push,
            manifest: common.manifest,
        })
    }
}

/// The attributes `type=image`, `type=oci` and `type=docker` share: names, compression, config
/// changes and how the manifest is written.
struct Common {
    names: Vec<String>,
    compression: Compression,
    config: ConfigChanges,
    source_date_epoch: Option<i64>,
    manifest: ManifestOptions,
}

impl Common {
    /// Parses the shared attributes of `exporter`'s `attrs`; hands every other key to `other`.
    fn parse(
        exporter: &'static str,
        attrs: &BTreeMap<String, String>,
        mut other: impl FnMut(&str, &str) -> Result<(), ExportError>,
    ) -> Result<Self, ExportError> {
        let bad = invalid(exporter);
        let mut names = Vec::new();
        let mut compression = CompressionOptions::default();
        let mut config = ConfigAttrs::default();
        let mut source_date_epoch = None;
        let mut manifest = ManifestOptions::default();
        for (key, value) in attrs {
            if config.take(key, value).map_err(|(k, r)| bad(&k, r))? {
                continue;
            }
            if let Some(name) = key.strip_prefix("annotation.") {
                if name.is_empty() {
                    return Err(bad(
                        key,
                        "the annotation needs a name: annotation.NAME".into(),
                    ));
                }
                manifest.annotations.insert(name.into(), value.clone());
                continue;
            }
            match key.as_str() {
                "oci-mediatypes" => manifest.oci_media_types = parse_bool(exporter, key, value)?,
                "name" => names.extend(split_names(value)),
                "compression" | "compression-level" => compression.set(key, value),
                "source-date-epoch" => {
                    let epoch = value.trim().parse::<i64>().ok().filter(|e| *e >= 0);
                    source_date_epoch = Some(epoch.ok_or_else(|| {
                        bad(
                            key,
                            format!("{value:?} is not a number of seconds since 1970"),
                        )
                    })?);
                }
                _ => other(key, value)?,
            }
        }
        let compression = compression.resolve(exporter)?;
        if !manifest.oci_media_types && matches!(compression, Compression::Zstd { .. }) {
            return Err(bad(
                "oci-mediatypes",
                "Docker's media types have no zstd layer; use oci-mediatypes=true with zstd".into(),
            ));
        }
        Ok(Common {
            names,
            compression,
            config: config.finish(),
            source_date_epoch,
            manifest,
        })
    }
}

/// What `type=oci` or `type=docker` was asked for: an image archive, the same but for its
/// layout. (`dest` is the client's: it writes the archive it receives.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciExportOptions {
    /// The archive's layout: `oci`, or `docker` (the OCI layout plus Docker's `manifest.json`).
    pub format: ArchiveFormat,
    /// Names for the image in the archive's index (`name=a,b` or repeated `name`); may be empty.
    pub names: Vec<String>,
    /// Layer compression.
    pub compression: Compression,
    /// Changes to the base image's config.
    pub config: ConfigChanges,
    /// As [`ImageExportOptions::source_date_epoch`].
    pub source_date_epoch: Option<i64>,
    /// Media types and annotations of the manifest.
    pub manifest: ManifestOptions,
}

impl OciExportOptions {
    /// Parses the OCI archive exporter's attributes: `name` (optional, comma-separated; becomes
    /// the index entries' `org.opencontainers.image.ref.name` and `io.containerd.image.name`
    /// annotations), `compression`, `compression-level`, and the image config attributes
    /// ([`ConfigChanges`]). Unknown keys are refused by name.
    pub fn parse(attrs: &BTreeMap<String, String>) -> Result<Self, ExportError> {
        Self::parse_as(ArchiveFormat::Oci, attrs)
    }

    /// Parses the docker archive exporter's attributes: the OCI archive exporter's, where the
    /// names that have a tag also become the `RepoTags` of Docker's `manifest.json`.
    pub fn parse_docker(attrs: &BTreeMap<String, String>) -> Result<Self, ExportError> {
        Self::parse_as(ArchiveFormat::Docker, attrs)
    }

    fn parse_as(
        format: ArchiveFormat,
        attrs: &BTreeMap<String, String>,
    ) -> Result<Self, ExportError> {
        let exporter = format.exporter();
        let bad = invalid(exporter);
        let common = Common::parse(exporter, attrs, |key, _| {
            Err(bad(
                key,
                format!("unknown option; expected name, compression, compression-level, {CONFIG_KEYS} (and dest, which the client keeps)"),
            ))
        })?;
        Ok(OciExportOptions {
            format,
            names: common.names,
            compression: common.compression,
            config: common.config,
            source_date_epoch: common.source_date_epoch,
            manifest: common.manifest,
        })
    }
}

/// What `type=local` was asked for: nothing yet beyond the client's `dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalExportOptions {}

impl LocalExportOptions {
    /// Parses the local exporter's attributes: none are known on the daemon's side (`dest` is
    /// the client's), so every key is refused by name.
    pub fn parse(attrs: &BTreeMap<String, String>) -> Result<Self, ExportError> {
        match attrs.keys().next() {
            None => Ok(LocalExportOptions {}),
            Some(key) => Err(invalid("local")(
                key,
                "unknown option; the local exporter takes only dest, which the client keeps".into(),
            )),
        }
    }
}

fn invalid(exporter: &'static str) -> impl Fn(&str, String) -> ExportError {
    move |key, reason| ExportError::InvalidOption {
        exporter,
        key: key.into(),
        reason,
    }
}

/// A boolean option: `true` (or given without a value) or `false`.
fn parse_bool(exporter: &'static str, key: &str, value: &str) -> Result<bool, ExportError> {
    match value {
        "true" | "" => Ok(true),
        "false" => Ok(false),
        other => Err(invalid(exporter)(
            key,
            format!("{other:?}; expected true or false"),
        )),
    }
}

fn split_names(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
}

/// The layer compression that attributes `compression` (`gzip`, `zstd`, `uncompressed`;
/// default gzip) and `compression-level` ask for, as the image exporters read them; errors name
/// `exporter`.
pub fn parse_compression(
    exporter: &'static str,
    kind: Option<&str>,
    level: Option<&str>,
) -> Result<Compression, ExportError> {
    CompressionOptions {
        kind: kind.map(str::to_owned),
        level: level.map(str::to_owned),
    }
    .resolve(exporter)
}

/// `compression` and `compression-level` as given, checked together once both are known.
#[derive(Default)]
struct CompressionOptions {
    kind: Option<String>,
    level: Option<String>,
}

impl CompressionOptions {
    fn set(&mut self, key: &str, value: &str) {
        match key {
            "compression" => self.kind = Some(value.into()),
            _ => self.level = Some(value.into()),
        }
    }

    fn resolve(self, exporter: &'static str) -> Result<Compression, ExportError> {
        let bad = invalid(exporter);
        let level: Option<i64> = self
            .level
            .map(|value| {
                value.parse().map_err(|e| {
                    bad(
                        "compression-level",
                        format!("{value:?} is not a number: {e}"),
                    )
                })
            })
            .transpose()?;
        Ok(match self.kind.as_deref().unwrap_or("gzip") {
            "gzip" => Compression::Gzip {
                level: level
                    .map_or(Ok(6), |l| {
                        u32::try_from(l).ok().filter(|l| *l <= 9).ok_or(())
                    })
                    .map_err(|()| bad("compression-level", "gzip levels are 0 to 9".into()))?,
            },
            "zstd" => Compression::Zstd {
                level: level
                    .map_or(Ok(3), |l| {
                        i32::try_from(l)
                            .ok()
                            .filter(|l| (1..=22).contains(l))
                            .ok_or(())
                    })
                    .map_err(|()| bad("compression-level", "zstd levels are 1 to 22".into()))?,
            },
            "uncompressed" => Compression::Uncompressed,
            other => {
                return Err(bad(
                    "compression",
                    format!("{other:?}; expected gzip, zstd or uncompressed"),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<ImageExportOptions, ExportError> {
        ImageExportOptions::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn table() {
        let o = parse(&[("name", "a:1, b:2")]).unwrap();
        assert_eq!(
            (o.names, o.compression),
            (
                vec!["a:1".to_string(), "b:2".into()],
                Compression::Gzip { level: 6 }
            )
        );
        let o = parse(&[
            ("name", "a"),
            ("compression", "zstd"),
            ("compression-level", "9"),
        ])
        .unwrap();
        assert_eq!(o.compression, Compression::Zstd { level: 9 });
        assert_eq!(
            parse(&[("name", "a"), ("compression", "uncompressed")])
                .unwrap()
                .compression,
            Compression::Uncompressed
        );
        for bad in [
            &[("compression", "gzip")][..],
            &[("name", "a"), ("compression", "lz4")],
            &[("name", "a"), ("compression-level", "12")],
            &[
                ("name", "a"),
                ("compression", "zstd"),
                ("compression-level", "x"),
            ],
            &[("name", "a"), ("push", "yes")],
            &[("name", "a"), ("oci-mediatypes", "yes")],
            &[("name", "a"), ("annotation.", "x")],
            &[("name", "a"), ("annotation-index.k", "x")],
            &[
                ("name", "a"),
                ("compression", "zstd"),
                ("oci-mediatypes", "false"),
            ],
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                matches!(err, ExportError::InvalidOption { .. }),
                "{bad:?}: {err}"
            );
        }
    }

    fn pairs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn push_is_asked_with_push_true_or_type_registry() {
        assert!(!parse(&[("name", "a")]).unwrap().push);
        assert!(parse(&[("name", "a"), ("push", "true")]).unwrap().push);
        let registry = |p: &[(&str, &str)]| ImageExportOptions::parse_registry(&pairs(p));
        assert!(registry(&[("name", "r:5000/a:1")]).unwrap().push);
        assert!(!registry(&[("name", "a"), ("push", "false")]).unwrap().push);
        match registry(&[("name", "a"), ("unpack", "true")]) {
            Err(ExportError::InvalidOption { exporter, key, .. }) => {
                assert_eq!((exporter, key.as_str()), ("registry", "unpack"))
            }
            other => panic!("{other:?}"),
        }
        assert!(registry(&[]).is_err(), "a push needs a name");
    }

    #[test]
    fn oci_table() {
        let o = OciExportOptions::parse(&pairs(&[])).unwrap();
        assert_eq!(
            (o.names, o.compression),
            (Vec::<String>::new(), Compression::Gzip { level: 6 })
        );
        let o = OciExportOptions::parse(&pairs(&[
            ("name", "docker.io/library/a:1,b"),
            ("compression", "zstd"),
        ]))
        .unwrap();
        assert_eq!(
            o.names,
            vec!["docker.io/library/a:1".to_string(), "b".into()]
        );
        assert_eq!(o.compression, Compression::Zstd { level: 3 });
        for (bad, key) in [
            (&[("dest", "/tmp/x.tar")][..], "dest"),
            (&[("push", "true")], "push"),
            (&[("compression", "lz4")], "compression"),
            (&[("compression-level", "99")], "compression-level"),
        ] {
            match OciExportOptions::parse(&pairs(bad)) {
                Err(ExportError::InvalidOption {
                    exporter, key: k, ..
                }) => {
                    assert_eq!((exporter, k.as_str()), ("oci", key), "{bad:?}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn config_attributes_reach_both_image_exporters() {
        let attrs = pairs(&[("name", "a"), ("env.FOO", "1"), ("workdir", "/w")]);
        let image = ImageExportOptions::parse(&attrs).unwrap().config;
        let oci = OciExportOptions::parse(&attrs).unwrap().config;
        assert_eq!(image, oci);
        assert_eq!(image.env, [("FOO".to_string(), "1".to_string())]);
        assert_eq!(image.workdir.as_deref(), Some("/w"));
        match ImageExportOptions::parse(&pairs(&[("name", "a"), ("expose", "abc/tcp")])) {
            Err(ExportError::InvalidOption { exporter, key, .. }) => {
                assert_eq!((exporter, key.as_str()), ("image", "expose"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_takes_the_oci_options_and_refuses_others_as_docker() {
        let attrs = pairs(&[
            ("name", "docker.io/library/a:1,b:2"),
            ("compression", "uncompressed"),
            ("env.FOO", "1"),
        ]);
        let docker = OciExportOptions::parse_docker(&attrs).unwrap();
        let oci = OciExportOptions::parse(&attrs).unwrap();
        assert_eq!(
            (docker.format, oci.format),
            (ArchiveFormat::Docker, ArchiveFormat::Oci)
        );
        assert_eq!(
            OciExportOptions {
                format: ArchiveFormat::Oci,
                ..docker.clone()
            },
            oci,
            "the same options but for the layout"
        );
        assert_eq!(docker.names, ["docker.io/library/a:1", "b:2"]);
        assert_eq!(docker.compression, Compression::Uncompressed);
        assert!(OciExportOptions::parse_docker(&pairs(&[]))
            .unwrap()
            .names
            .is_empty());
        for (bad, key) in [
            (&[("dest", "x.tar")][..], "dest"),
            (&[("push", "true")], "push"),
            (&[("compression", "lz4")], "compression"),
        ] {
            match OciExportOptions::parse_docker(&pairs(bad)) {
                Err(ExportError::InvalidOption {
                    exporter, key: k, ..
                }) => assert_eq!((exporter, k.as_str()), ("docker", key), "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn manifest_options_are_shared_and_default_to_oci_media_types() {
        assert_eq!(
            parse(&[("name", "a")]).unwrap().manifest,
            ManifestOptions::default()
        );
        assert!(ManifestOptions::default().oci_media_types);
        let attrs = pairs(&[
            ("name", "a"),
            ("oci-mediatypes", "false"),
            ("annotation.org.opencontainers.image.source", "https://x/y"),
            ("annotation.k", "v=w, z"),
        ]);
        let want = ManifestOptions {
            oci_media_types: false,
            annotations: [
                ("org.opencontainers.image.source", "https://x/y"),
                ("k", "v=w, z"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        assert_eq!(ImageExportOptions::parse(&attrs).unwrap().manifest, want);
        assert_eq!(OciExportOptions::parse(&attrs).unwrap().manifest, want);
        assert_eq!(
            OciExportOptions::parse_docker(&attrs).unwrap().manifest,
            want
        );
        assert!(
            parse(&[("name", "a"), ("oci-mediatypes", "true")])
                .unwrap()
                .manifest
                .oci_media_types
        );
    }

    #[test]
    fn local_takes_nothing_and_refuses_by_name() {
        assert_eq!(
            LocalExportOptions::parse(&pairs(&[])).unwrap(),
            LocalExportOptions {}
        );
        let err = LocalExportOptions::parse(&pairs(&[("compression", "zstd")])).unwrap_err();
        assert!(err.to_string().contains("\"compression\""), "{err}");
        assert!(err.to_string().starts_with("local exporter"), "{err}");
    }
}
