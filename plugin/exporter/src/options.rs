//! The image exporter's options, parsed before any work (`--output type=image,name=…,…`).

use std::collections::BTreeMap;

use oxkit_layer::Compression;

use crate::ExportError;

/// What `type=image` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageExportOptions {
    /// Image names (`name=a,b` or repeated `name`), normalised by the caller.
    pub names: Vec<String>,
    /// Layer compression.
    pub compression: Compression,
}

impl ImageExportOptions {
    /// Parses BuildKit's image exporter attributes: `name` (comma-separated), `compression`
    /// (`gzip`, `zstd`, `uncompressed`), `compression-level`. Unknown keys are refused by name,
    /// and so is `push=true` (registries come with a later issue).
    pub fn parse(attrs: &BTreeMap<String, String>) -> Result<Self, ExportError> {
        let bad = |key: &str, reason: String| ExportError::InvalidOption {
            key: key.into(),
            reason,
        };
        let mut names = Vec::new();
        let mut kind = "gzip".to_string();
        let mut level: Option<i64> = None;
        for (key, value) in attrs {
            match key.as_str() {
                "name" => names.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(String::from),
                ),
                "compression" => kind = value.clone(),
                "compression-level" => {
                    level = Some(
                        value
                            .parse()
                            .map_err(|e| bad(key, format!("{value:?} is not a number: {e}")))?,
                    )
                }
                "push" if value == "false" => {}
                "push" => {
                    return Err(bad(
                        key,
                        "pushing to a registry is not supported yet".into(),
                    ))
                }
                _ => {
                    return Err(bad(
                        key,
                        "unknown option; expected name, compression, compression-level".into(),
                    ))
                }
            }
        }
        if names.is_empty() {
            return Err(bad(
                "name",
                "the image exporter needs at least one name".into(),
            ));
        }
        let compression = match kind.as_str() {
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
        };
        Ok(ImageExportOptions { names, compression })
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
            &[("name", "a"), ("push", "true")],
            &[("name", "a"), ("oci-mediatypes", "true")],
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                matches!(err, ExportError::InvalidOption { .. }),
                "{bad:?}: {err}"
            );
        }
    }
}
