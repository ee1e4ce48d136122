//! `oxctl build`'s exporter flags: `--output type=…,k=v,…` (one CSV record, as `buildctl` reads
//! it) or `--exporter TYPE --exporter-opt k=v …`, turned into the exporter and its attributes.

use std::collections::BTreeMap;

use anyhow::{bail, Context};

/// Attributes that may be given more than once; their values are joined with commas (the
/// exporter splits them again).
const LISTS: [&str; 2] = ["name", "expose"];

/// `--output type=image,name=x` or `--exporter image --exporter-opt name=x` → (type, attrs).
/// A field of `--output` that starts with `"` is a quoted CSV field, so a value may hold
/// commas: `"cmd=[""sh"",""-c"",""a, b""]"`; `name` and `expose` may repeat.
pub fn exporter_options(
    output: Option<&str>,
    exporter: Option<String>,
    opts: &[String],
) -> anyhow::Result<(String, BTreeMap<String, String>)> {
    match (output, exporter) {
        (Some(_), Some(_)) => bail!("give --output or --exporter, not both"),
        (Some(output), None) => {
            let fields = split_csv(output).context("--output is not a valid CSV record")?;
            let mut kind = None;
            let mut rest = Vec::new();
            for field in fields.iter().filter(|f| !f.is_empty()) {
                match pair(field)? {
                    (k, v) if k == "type" => kind = Some(v),
                    kv => rest.push(kv),
                }
            }
            Ok((kind.context("--output needs type=…")?, collect(rest)))
        }
        (None, Some(exporter)) => Ok((
            exporter,
            collect(opts.iter().map(|o| pair(o)).collect::<Result<_, _>>()?),
        )),
        (None, None) => Ok((String::new(), BTreeMap::new())),
    }
}

fn pair(kv: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = kv
        .split_once('=')
        .with_context(|| format!("{kv:?} is not key=value"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// The attributes as a map: a repeated list attribute collects its values, any other repeated
/// key keeps its last value.
fn collect(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::new();
    for (k, v) in pairs {
        match attrs.get_mut(&k) {
            Some(old) if LISTS.contains(&k.as_str()) => *old = format!("{old},{v}"),
            _ => {
                attrs.insert(k, v);
            }
        }
    }
    attrs
}

/// Splits one CSV record as Go's `encoding/csv` (what `buildctl` uses) does; see
/// [`oxkit_dockerfile::csv_fields`].
fn split_csv(record: &str) -> anyhow::Result<Vec<String>> {
    oxkit_dockerfile::csv_fields(record).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_split_as_buildctl_splits_them() {
        for (record, fields) in [
            ("type=image,name=a", &["type=image", "name=a"][..]),
            (
                r#"type=image,"cmd=[""sh"",""-c"",""echo a, b""]",user=1"#,
                &["type=image", r#"cmd=["sh","-c","echo a, b"]"#, "user=1"],
            ),
            (r#"cmd=["sh"],x="#, &[r#"cmd=["sh"]"#, "x="]),
            (r#""a,b""#, &["a,b"]),
            ("", &[""]),
            ("a,", &["a", ""]),
        ] {
            assert_eq!(split_csv(record).unwrap(), fields, "{record}");
        }
        for bad in [r#""open"#, r#""a"b"#] {
            assert!(split_csv(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn output_and_exporter_opts_give_the_same_attributes() {
        let output = r#"type=image,name=a,name=b,expose=80,expose=53/udp,"env.X=1,2",user=u"#;
        let (kind, attrs) = exporter_options(Some(output), None, &[]).unwrap();
        assert_eq!(kind, "image");
        let expected: BTreeMap<String, String> = [
            ("name", "a,b"),
            ("expose", "80,53/udp"),
            ("env.X", "1,2"),
            ("user", "u"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(attrs, expected);
        let opts: Vec<String> = [
            "name=a",
            "name=b",
            "expose=80",
            "expose=53/udp",
            "env.X=1,2",
            "user=u",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (kind, attrs) = exporter_options(None, Some("image".into()), &opts).unwrap();
        assert_eq!((kind.as_str(), attrs), ("image", expected));
        assert!(exporter_options(Some("name=a"), None, &[]).is_err());
        assert!(exporter_options(Some("type=image,oops"), None, &[]).is_err());
    }
}
