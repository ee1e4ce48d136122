//! `--export-cache` and `--import-cache` as `buildctl` spells them: a type and attributes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oxkit_layer::Compression;

use crate::error::CacheError;

/// Which records an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Only those of the result's own layers (BuildKit's default).
    #[default]
    Min,
    /// Every step's, intermediate stages included.
    Max,
}

/// Where an exported cache goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    /// A registry reference (`host/repo:tag`): a manifest whose config is the cache document.
    Registry {
        /// The reference.
        reference: String,
    },
    /// An OCI image layout directory on the daemon's host, under a tag in its `index.json`.
    Local {
        /// The directory.
        dest: PathBuf,
        /// The tag.
        tag: String,
    },
    /// The exported image's config.
    Inline,
}

/// One `--export-cache`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    /// Where it goes.
    pub target: ExportTarget,
    /// Which records.
    pub mode: Mode,
    /// How layers the build wrote are compressed.
    pub compression: Compression,
    /// Whether a failed export only warns (`ignore-error=true`).
    pub ignore_error: bool,
}

/// Where an imported cache comes from (one `--import-cache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheImport {
    /// A registry reference: a cache manifest, or an image with an inline cache.
    Registry {
        /// The reference.
        reference: String,
    },
    /// An OCI image layout directory on the daemon's host.
    Local {
        /// The directory.
        src: PathBuf,
        /// The tag in its `index.json`.
        tag: String,
    },
}

/// Attributes BuildKit's cache exporters take that mean nothing here (oxkit always writes an
/// OCI image manifest).
const ACCEPTED: &[&str] = &["oci-mediatypes", "image-manifest"];

impl CacheExport {
    /// Parses `type` and its attributes (`ref=`, `dest=`, `tag=`, `mode=min|max`,
    /// `compression=`, `compression-level=`, `ignore-error=`).
    pub fn parse(kind: &str, attrs: &BTreeMap<String, String>) -> Result<Self, CacheError> {
        let bad = |key: &str, reason: String| CacheError::InvalidOption {
            what: "export",
            key: key.to_owned(),
            reason,
        };
        let mut mode = Mode::Min;
        let mut ignore_error = false;
        let (mut reference, mut dest, mut tag) = (None, None, None);
        for (key, value) in attrs {
            match key.as_str() {
                "mode" => {
                    mode = match value.as_str() {
                        "min" => Mode::Min,
                        "max" => Mode::Max,
                        other => return Err(bad(key, format!("{other:?}; expected min or max"))),
                    }
                }
                "ignore-error" => {
                    ignore_error = match value.as_str() {
                        "true" | "" => true,
                        "false" => false,
                        other => {
                            return Err(bad(key, format!("{other:?}; expected true or false")))
                        }
                    }
                }
                "ref" if kind == "registry" => reference = Some(value.clone()),
                "dest" if kind == "local" => dest = Some(PathBuf::from(value)),
                "tag" if kind == "local" => tag = Some(value.clone()),
                "compression" | "compression-level" => {}
                k if ACCEPTED.contains(&k) => {}
                _ => return Err(bad(key, format!("not an option of type={kind}"))),
            }
        }
        let compression = oxkit_exporter::parse_compression(
            "cache",
            attrs.get("compression").map(String::as_str),
            attrs.get("compression-level").map(String::as_str),
        )
        .map_err(|e| bad("compression", e.to_string()))?;
        let target = match kind {
            "registry" => ExportTarget::Registry {
                reference: reference.ok_or_else(|| bad("ref", "is required".into()))?,
            },
            "local" => ExportTarget::Local {
                dest: absolute(dest.ok_or_else(|| bad("dest", "is required".into()))?)
                    .map_err(|reason| bad("dest", reason))?,
                tag: tag.unwrap_or_else(|| "latest".into()),
            },
            "inline" => ExportTarget::Inline,
            other => {
                return Err(CacheError::InvalidOption {
                    what: "export",
                    key: "type".into(),
                    reason: format!("{other:?}; expected registry, local or inline"),
                })
            }
        };
        Ok(CacheExport {
            target,
            mode,
            compression,
            ignore_error,
        })
    }
}

impl CacheImport {
    /// Parses `type` and its attributes (`ref=`; `src=`, `tag=`).
    pub fn parse(kind: &str, attrs: &BTreeMap<String, String>) -> Result<Self, CacheError> {
        let bad = |key: &str, reason: String| CacheError::InvalidOption {
            what: "import",
            key: key.to_owned(),
            reason,
        };
        let (mut reference, mut src, mut tag) = (None, None, None);
        for (key, value) in attrs {
            match key.as_str() {
                "ref" if kind == "registry" => reference = Some(value.clone()),
                "src" if kind == "local" => src = Some(PathBuf::from(value)),
                "tag" if kind == "local" => tag = Some(value.clone()),
                _ => return Err(bad(key, format!("not an option of type={kind}"))),
            }
        }
        match kind {
            "registry" => Ok(CacheImport::Registry {
                reference: reference.ok_or_else(|| bad("ref", "is required".into()))?,
            }),
            "local" => Ok(CacheImport::Local {
                src: absolute(src.ok_or_else(|| bad("src", "is required".into()))?)
                    .map_err(|reason| bad("src", reason))?,
                tag: tag.unwrap_or_else(|| "latest".into()),
            }),
            other => Err(bad(
                "type",
                format!("{other:?}; expected registry or local"),
            )),
        }
    }

    /// How the import is named in progress: `ref` or `src`.
    pub fn describe(&self) -> String {
        match self {
            CacheImport::Registry { reference } => reference.clone(),
            CacheImport::Local { src, tag } => format!("{}:{tag}", src.display()),
        }
    }
}

/// The daemon reads and writes local caches itself: their paths must not depend on its working
/// directory (oxctl makes them absolute).
fn absolute(path: PathBuf) -> Result<PathBuf, String> {
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!(
            "{} is relative; the daemon needs an absolute path",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn exports_parse_as_buildctl_spells_them() {
        let e = CacheExport::parse(
            "registry",
            &attrs(&[("ref", "r:5000/c:x"), ("mode", "max")]),
        )
        .unwrap();
        assert_eq!(
            e.target,
            ExportTarget::Registry {
                reference: "r:5000/c:x".into()
            }
        );
        assert_eq!(e.mode, Mode::Max);
        assert_eq!(e.compression, Compression::Gzip { level: 6 });
        let e = CacheExport::parse(
            "local",
            &attrs(&[
                ("dest", "/tmp/c"),
                ("compression", "zstd"),
                ("oci-mediatypes", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(
            e.target,
            ExportTarget::Local {
                dest: "/tmp/c".into(),
                tag: "latest".into()
            }
        );
        assert_eq!(e.mode, Mode::Min);
        assert!(matches!(e.compression, Compression::Zstd { .. }));
        assert_eq!(
            CacheExport::parse("inline", &attrs(&[])).unwrap().target,
            ExportTarget::Inline
        );
        for (kind, pairs, needle) in [
            ("registry", &[][..], "\"ref\": is required"),
            ("registry", &[("ref", "a"), ("mode", "all")], "\"all\""),
            ("local", &[("dest", "rel/dir")], "relative"),
            (
                "local",
                &[("dest", "/d"), ("ref", "x")],
                "\"ref\": not an option",
            ),
            ("gha", &[], "\"gha\""),
            ("inline", &[("compression", "lz4")], "lz4"),
        ] {
            let e = CacheExport::parse(kind, &attrs(pairs))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{kind} {pairs:?}: {e}");
        }
    }

    #[test]
    fn imports_parse_as_buildctl_spells_them() {
        assert_eq!(
            CacheImport::parse("registry", &attrs(&[("ref", "h/c:1")])).unwrap(),
            CacheImport::Registry {
                reference: "h/c:1".into()
            }
        );
        assert_eq!(
            CacheImport::parse("local", &attrs(&[("src", "/c"), ("tag", "t")])).unwrap(),
            CacheImport::Local {
                src: "/c".into(),
                tag: "t".into()
            }
        );
        for (kind, pairs) in [
            ("registry", &[][..]),
            ("local", &[("dest", "/c")]),
            ("inline", &[]),
        ] {
            assert!(CacheImport::parse(kind, &attrs(pairs)).is_err(), "{kind}");
        }
    }
}
