//! Rendering the repository's `containerd-config.toml` into a test's temp dir: every path under
//! containerd's and oxkit's system directories is moved under the temp dir, nothing else changes.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

/// The file at the top of the repository that the tests render.
pub(crate) fn template_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../containerd-config.toml")
}

/// Where the rendered config points containerd and its oxkit proxy plugin.
#[derive(Debug, Clone)]
pub struct RenderedPaths {
    /// Replaces `/var/lib/containerd` (containerd's `root`, and paths below it).
    pub root: PathBuf,
    /// Replaces `/run/containerd` (containerd's `state`, and paths below it).
    pub state: PathBuf,
    /// Replaces `/run/containerd/containerd.sock` (the gRPC address).
    pub grpc_address: PathBuf,
    /// Replaces `/run/oxkit/snapshotter.sock` (the `oxkit` proxy plugin's address).
    pub snapshotter_address: PathBuf,
}

/// Renders `template` (the text of a containerd config) for `paths`.
///
/// Each string value that is one of the system paths the template uses, or lies below one, is moved
/// to the corresponding test path (the most specific rule wins). The result is then checked: it must
/// be a version 2 config whose root, state, gRPC address and `[proxy_plugins.oxkit]` (type
/// `snapshot`) are the test's. Comments are not kept.
pub fn render_containerd_config(template: &str, paths: &RenderedPaths) -> Result<String, String> {
    let mut config: Table = template
        .parse()
        .map_err(|e| format!("not valid TOML: {e}"))?;
    let oxkit_run = paths
        .snapshotter_address
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    // Most specific first: the socket paths lie below the state dirs.
    let rules: [(&str, &Path); 5] = [
        ("/run/containerd/containerd.sock", &paths.grpc_address),
        ("/run/oxkit/snapshotter.sock", &paths.snapshotter_address),
        ("/var/lib/containerd", &paths.root),
        ("/run/containerd", &paths.state),
        ("/run/oxkit", &oxkit_run),
    ];
    for (_, value) in config.iter_mut() {
        rewrite_paths(value, &rules);
    }
    check(&config, paths)?;
    toml::to_string(&config).map_err(|e| format!("cannot serialize the rendered config: {e}"))
}

fn rewrite_paths(value: &mut Value, rules: &[(&str, &Path)]) {
    match value {
        Value::String(s) => {
            for (prefix, target) in rules {
                if let Some(rest) = s.strip_prefix(prefix) {
                    if rest.is_empty() || rest.starts_with('/') {
                        *s = format!("{}{rest}", target.display());
                        return;
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_paths(v, rules)),
        Value::Table(table) => table.iter_mut().for_each(|(_, v)| rewrite_paths(v, rules)),
        _ => {}
    }
}

fn check(config: &Table, paths: &RenderedPaths) -> Result<(), String> {
    let get = |keys: &[&str]| -> Option<&Value> {
        let (first, rest) = keys.split_first()?;
        rest.iter().try_fold(config.get(*first)?, |v, k| v.get(*k))
    };
    let expect_str = |keys: &[&str], want: &str| -> Result<(), String> {
        match get(keys).and_then(Value::as_str) {
            Some(got) if got == want => Ok(()),
            got => Err(format!(
                "`{}` must be rendered to {want:?}, is {got:?}",
                keys.join(".")
            )),
        }
    };
    if get(&["version"]).and_then(Value::as_integer) != Some(2) {
        return Err("`version = 2` is required (containerd 1.6+ config format)".into());
    }
    expect_str(&["root"], &paths.root.to_string_lossy())?;
    expect_str(&["state"], &paths.state.to_string_lossy())?;
    expect_str(&["grpc", "address"], &paths.grpc_address.to_string_lossy())?;
    expect_str(&["proxy_plugins", "oxkit", "type"], "snapshot")?;
    expect_str(
        &["proxy_plugins", "oxkit", "address"],
        &paths.snapshotter_address.to_string_lossy(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> RenderedPaths {
        RenderedPaths {
            root: "/tmp/t/containerd/root".into(),
            state: "/tmp/t/containerd/state".into(),
            grpc_address: "/tmp/t/containerd.sock".into(),
            snapshotter_address: "/tmp/t/oxkit.sock".into(),
        }
    }

    #[test]
    fn renders_the_repository_config_into_the_test_dirs() {
        let template = std::fs::read_to_string(template_path()).unwrap();
        let rendered: Table = render_containerd_config(&template, &paths())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(rendered["root"].as_str(), Some("/tmp/t/containerd/root"));
        assert_eq!(rendered["state"].as_str(), Some("/tmp/t/containerd/state"));
        assert_eq!(
            rendered["grpc"]["address"].as_str(),
            Some("/tmp/t/containerd.sock")
        );
        assert_eq!(
            rendered["proxy_plugins"]["oxkit"]["address"].as_str(),
            Some("/tmp/t/oxkit.sock")
        );
        let disabled = rendered["disabled_plugins"].as_array().unwrap();
        assert!(disabled
            .iter()
            .any(|p| p.as_str() == Some("io.containerd.grpc.v1.cri")));
        let text = toml::to_string(&rendered).unwrap();
        for system in ["/var/lib/containerd", "/run/containerd", "/run/oxkit"] {
            assert!(
                !text.contains(&format!("\"{system}")),
                "{system} left in:\n{text}"
            );
        }
    }

    #[test]
    fn moves_paths_below_a_system_dir_but_not_lookalikes() {
        let template = r#"
            version = 2
            root = "/var/lib/containerd"
            state = "/run/containerd"
            [grpc]
            address = "/run/containerd/containerd.sock"
            [plugins."io.containerd.internal.v1.opt"]
            path = "/var/lib/containerd/opt"
            [plugins.other]
            path = "/var/lib/containerd2"
            [proxy_plugins.oxkit]
            type = "snapshot"
            address = "/run/oxkit/snapshotter.sock"
        "#;
        let rendered: Table = render_containerd_config(template, &paths())
            .unwrap()
            .parse()
            .unwrap();
        let plugins = &rendered["plugins"];
        assert_eq!(
            plugins["io.containerd.internal.v1.opt"]["path"].as_str(),
            Some("/tmp/t/containerd/root/opt")
        );
        assert_eq!(
            plugins["other"]["path"].as_str(),
            Some("/var/lib/containerd2")
        );
    }

    #[test]
    fn rejects_a_config_without_the_oxkit_proxy_plugin() {
        let template = r#"
            version = 2
            root = "/var/lib/containerd"
            state = "/run/containerd"
            [grpc]
            address = "/run/containerd/containerd.sock"
        "#;
        let err = render_containerd_config(template, &paths()).unwrap_err();
        assert!(err.contains("proxy_plugins.oxkit.type"), "{err}");
    }
}
