//! `oxctl build`'s frontend flags: `--frontend NAME` and its `--opt KEY=VALUE`s (as `buildctl`
//! takes them), checked before anything is sent.

use std::collections::BTreeMap;

use anyhow::bail;

/// A frontend the daemon runs to make the build's definition, and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    /// `dockerfile.v0`, or `dockerfile`.
    pub name: String,
    /// Its options; a bare `--opt KEY` has an empty value (`no-cache` for every stage).
    pub attrs: BTreeMap<String, String>,
}

impl Frontend {
    /// `--frontend` (if given) with `opts`; `--opt` without `--frontend` is refused.
    pub fn parse(name: Option<String>, opts: &[String]) -> anyhow::Result<Option<Frontend>> {
        let Some(name) = name else {
            if let Some(opt) = opts.first() {
                bail!("--opt {opt} is a frontend option; give --frontend dockerfile.v0 with it");
            }
            return Ok(None);
        };
        let attrs = opts
            .iter()
            .map(|o| match o.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                None if !o.is_empty() => Ok((o.clone(), String::new())),
                _ => bail!("--opt {o:?}: expected KEY=VALUE"),
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Some(Frontend { name, attrs }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_are_key_value_pairs_and_need_a_frontend() {
        let f = Frontend::parse(
            Some("dockerfile.v0".into()),
            &opts(&["build-arg:A=b=c", "no-cache", "target="]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(f.attrs["build-arg:A"], "b=c");
        assert_eq!(f.attrs["no-cache"], "");
        assert_eq!(f.attrs["target"], "");
        assert!(Frontend::parse(None, &[]).unwrap().is_none());
        let e = Frontend::parse(None, &opts(&["target=x"])).unwrap_err();
        assert!(e.to_string().contains("--frontend"), "{e}");
        assert!(Frontend::parse(Some("dockerfile".into()), &opts(&["=x"])).is_err());
    }
}
