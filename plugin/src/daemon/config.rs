//! `oxkitd`'s settings: defaults, then the TOML file, then command-line flags, then `validate()`.

use std::path::{Path, PathBuf};

use oxkit_registry::RegistryConfig;
use oxkit_snapshotter::Mode;
use serde::Deserialize;

use super::DaemonError;

/// The daemon's configuration file (see the commented example in the README).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where oxkit keeps its state: snapshot layers (`snapshots/`) and their metadata.
    pub root: PathBuf,
    /// Log filter, as `RUST_LOG` takes it: `info`, `debug`, `oxkit_snapshotter=trace`.
    pub log_level: String,
    /// The build API socket `oxctl --addr unix://…` dials.
    pub address: PathBuf,
    /// containerd's socket, for builds.
    pub containerd_address: PathBuf,
    /// The containerd namespace builds and their images live in.
    pub namespace: String,
    /// How many build steps run at once.
    pub max_parallelism: usize,
    /// How long, in seconds, the shared runc shim of build steps outlives the last step: a
    /// build started within it pays no shim start for its first step.
    pub shim_idle_seconds: u64,
    /// The snapshotter containerd loads as proxy plugin `oxkit`.
    pub snapshotter: SnapshotterConfig,
    /// How registries are reached (plain-HTTP and insecure hosts, CA files, mirrors).
    pub registry: RegistryConfig,
}

/// Settings of the snapshotter service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotterConfig {
    /// The unix socket containerd's `[proxy_plugins.oxkit]` address points at.
    pub address: PathBuf,
    /// `overlay` (default) or `native` (copies; for filesystems without overlayfs).
    pub mode: Mode,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: "/var/lib/oxkit".into(),
            log_level: "info".into(),
            address: "/run/oxkit/oxkitd.sock".into(),
            containerd_address: "/run/containerd/containerd.sock".into(),
            namespace: "buildkit".into(),
            max_parallelism: 4,
            shim_idle_seconds: 300,
            snapshotter: SnapshotterConfig::default(),
            registry: RegistryConfig::default(),
        }
    }
}

impl Default for SnapshotterConfig {
    fn default() -> Self {
        SnapshotterConfig {
            address: "/run/oxkit/snapshotter.sock".into(),
            mode: Mode::Overlay,
        }
    }
}

impl Config {
    /// Defaults overlaid with the file at `path`.
    pub fn load(path: &Path) -> Result<Self, DaemonError> {
        let text = std::fs::read_to_string(path).map_err(|source| DaemonError::ReadConfig {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|source| DaemonError::ParseConfig {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Defaults overlaid with TOML text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks settings that no type can: paths must be absolute.
    pub fn validate(&self) -> Result<(), DaemonError> {
        let ca_files = self
            .registry
            .ca_files
            .iter()
            .map(|f| ("registry.ca_files", f));
        for (key, value) in [
            ("root", &self.root),
            ("address", &self.address),
            ("containerd_address", &self.containerd_address),
            ("snapshotter.address", &self.snapshotter.address),
        ]
        .into_iter()
        .chain(ca_files)
        {
            if !value.is_absolute() {
                return Err(DaemonError::RelativePath {
                    key,
                    value: value.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn the_shipped_example_is_the_defaults() {
        let example = include_str!("../../../cmd/oxkitd.toml");
        assert_eq!(Config::parse(example).unwrap(), Config::default());
    }

    #[test]
    fn file_overrides_defaults() {
        let c = Config::parse(
            "root = \"/srv/ox\"\nshim_idle_seconds = 5\n[snapshotter]\nmode = \"native\"\n",
        )
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/srv/ox"));
        assert_eq!(c.shim_idle_seconds, 5);
        assert_eq!(Config::default().shim_idle_seconds, 300);
        assert_eq!(c.snapshotter.mode, Mode::Native);
        assert_eq!(c.snapshotter.address, SnapshotterConfig::default().address);
    }

    #[test]
    fn registry_settings_are_read_per_host() {
        let c = Config::parse(
            "[registry]\nplain_http = [\"reg.lan:5000\"]\ninsecure = [\"self.signed\"]\n\
             ca_files = [\"/etc/oxkit/ca.pem\"]\n[registry.mirrors]\n\
             \"docker.io\" = [\"mirror.lan:5000\"]\n",
        )
        .unwrap();
        assert_eq!(c.registry.plain_http, ["reg.lan:5000"]);
        assert_eq!(c.registry.insecure, ["self.signed"]);
        assert_eq!(c.registry.mirrors["docker.io"], ["mirror.lan:5000"]);
        c.validate().unwrap();
        let err = Config::parse("[registry]\nplain = []")
            .unwrap_err()
            .to_string();
        assert!(err.contains("plain"), "{err}");
        let relative = Config::parse("[registry]\nca_files = [\"ca.pem\"]").unwrap();
        assert!(matches!(
            relative.validate(),
            Err(DaemonError::RelativePath {
                key: "registry.ca_files",
                ..
            })
        ));
    }

    #[test]
    fn unknown_keys_and_modes_are_rejected() {
        let err = Config::parse("roots = \"/x\"").unwrap_err().to_string();
        assert!(err.contains("roots"), "{err}");
        let err = Config::parse("[snapshotter]\nmode = \"zfs\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("zfs"), "{err}");
    }

    #[test]
    fn relative_paths_fail_validation() {
        let c = Config {
            root: "relative".into(),
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(DaemonError::RelativePath { key: "root", .. })
        ));
    }
}
