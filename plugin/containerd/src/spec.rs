//! The OCI runtime spec of a build step: Docker's default (capabilities, writable root, /proc, /dev,
//! /dev/pts, /dev/shm, /dev/mqueue, read-only /sys, masked and read-only proc paths), with the
//! step's process, user, hostname, network and extra mounts.

use std::path::PathBuf;

use serde_json::{json, Value};

/// The capabilities Docker and BuildKit give a container by default.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The `PATH` a process gets when its environment has none (Docker's and BuildKit's default).
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// /proc and /sys paths hidden from the container (Docker's list).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// /proc paths the container may read but not write (Docker's list).
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A build step's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network namespace (no namespace of its own).
    #[default]
    Host,
    /// A network namespace of its own with only the loopback interface.
    None,
}

/// A mount in the container besides the root file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecMount {
    /// A (recursive) bind mount of a host path.
    Bind {
        /// The host path.
        source: PathBuf,
        /// Where in the container.
        destination: String,
        /// Read-only.
        read_only: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Where in the container.
        destination: String,
        /// Its size limit in bytes; none when `None`.
        size: Option<u64>,
    },
}

/// Builds the runtime spec of a build step. Starts from Docker's default for root in `/` with
/// host networking; each setter replaces what it sets.
#[derive(Debug, Clone)]
pub struct SpecBuilder {
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    uid: u32,
    gid: u32,
    additional_gids: Vec<u32>,
    hostname: String,
    network: Network,
    mounts: Vec<SpecMount>,
    capabilities: Vec<String>,
    cgroups_path: Option<String>,
    annotations: std::collections::BTreeMap<String, String>,
    root_path: Option<String>,
}

impl SpecBuilder {
    /// A spec running `args` (`args[0]` is looked up in the container's `PATH` by runc).
    pub fn new<S: Into<String>>(args: impl IntoIterator<Item = S>) -> Self {
        Self {
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            hostname: "oxkit".into(),
            network: Network::Host,
            mounts: Vec::new(),
            capabilities: DEFAULT_CAPABILITIES
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            cgroups_path: None,
            annotations: Default::default(),
            root_path: None,
        }
    }

    /// The environment, `KEY=value` each. [`DEFAULT_PATH_ENV`] is added if it has no `PATH`.
    pub fn env<S: Into<String>>(mut self, env: impl IntoIterator<Item = S>) -> Self {
        self.env = env.into_iter().map(Into::into).collect();
        self
    }

    /// The working directory (absolute; runc creates it if missing).
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = cwd.into();
        self
    }

    /// The user and group ids the process runs as.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Supplementary group ids.
    pub fn additional_gids(mut self, gids: impl IntoIterator<Item = u32>) -> Self {
        self.additional_gids = gids.into_iter().collect();
        self
    }

    /// The container's hostname (default `oxkit`).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = hostname.into();
        self
    }

    /// The network (default [`Network::Host`]).
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Adds a mount (after the default ones, so it may cover them).
    pub fn mount(mut self, mount: SpecMount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// Replaces the capability set (names like `CAP_SYS_ADMIN`).
    pub fn capabilities<S: Into<String>>(mut self, caps: impl IntoIterator<Item = S>) -> Self {
        self.capabilities = caps.into_iter().map(Into::into).collect();
        self
    }

    /// The container's cgroup path (runc's default when unset).
    pub fn cgroups_path(mut self, path: impl Into<String>) -> Self {
        self.cgroups_path = Some(path.into());
        self
    }

    /// The root file system: a directory on the host, mounted by the caller, instead of the
    /// bundle's `rootfs` (which the shim mounts from the task's rootfs mounts). The task must then
    /// be created without rootfs mounts.
    pub fn root_path(mut self, path: impl Into<String>) -> Self {
        self.root_path = Some(path.into());
        self
    }

    /// Adds an annotation (read by the runtime, e.g. [`crate::RUNC_GROUP_ANNOTATION`]).
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// The spec as JSON, ready for [`crate::NewContainer::spec`].
    pub fn build(&self) -> Value {
        let mut env = self.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH_ENV.to_owned());
        }
        let mut namespaces = vec![
            json!({"type": "pid"}),
            json!({"type": "ipc"}),
            json!({"type": "uts"}),
            json!({"type": "mount"}),
        ];
        if self.network == Network::None {
            namespaces.push(json!({"type": "network"}));
        }
        let mut mounts = vec![
            mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
            mount(
                "/dev",
                "tmpfs",
                "tmpfs",
                &["nosuid", "strictatime", "mode=755", "size=65536k"],
            ),
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            ),
            mount(
                "/dev/shm",
                "tmpfs",
                "shm",
                &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            ),
            mount(
                "/dev/mqueue",
                "mqueue",
                "mqueue",
                &["nosuid", "noexec", "nodev"],
            ),
            mount(
                "/sys",
                "sysfs",
                "sysfs",
                &["nosuid", "noexec", "nodev", "ro"],
            ),
        ];
        for m in &self.mounts {
            mounts.push(match m {
                SpecMount::Bind {
                    source,
                    destination,
                    read_only,
                } => json!({
                    "destination": destination,
                    "type": "bind",
                    "source": source,
                    "options": ["rbind", if *read_only { "ro" } else { "rw" }],
                }),
                SpecMount::Tmpfs { destination, size } => {
                    let mut options = vec![
                        "nosuid".to_owned(),
                        "nodev".to_owned(),
                        "mode=1777".to_owned(),
                    ];
                    if let Some(size) = size {
                        options.push(format!("size={size}"));
                    }
                    json!({
                        "destination": destination,
                        "type": "tmpfs",
                        "source": "tmpfs",
                        "options": options,
                    })
                }
            });
        }
        let mut linux = json!({
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        });
        if let Some(path) = &self.cgroups_path {
            linux["cgroupsPath"] = json!(path);
        }
        let mut spec = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {
                    "uid": self.uid,
                    "gid": self.gid,
                    "additionalGids": self.additional_gids,
                },
                "args": self.args,
                "env": env,
                "cwd": self.cwd,
                "capabilities": {
                    "bounding": self.capabilities,
                    "effective": self.capabilities,
                    "permitted": self.capabilities,
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": false,
            },
            "root": {"path": self.root_path.as_deref().unwrap_or("rootfs"), "readonly": false},
            "hostname": self.hostname,
            "mounts": mounts,
            "linux": linux,
        });
        if !self.annotations.is_empty() {
            spec["annotations"] = json!(self.annotations);
        }
        spec
    }
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({
        "destination": destination,
        "type": kind,
        "source": source,
        "options": options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destinations(spec: &Value) -> Vec<&str> {
        spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect()
    }

    fn namespaces(spec: &Value) -> Vec<&str> {
        spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn the_default_is_dockers_writable_root_with_its_capabilities() {
        let spec = SpecBuilder::new(["sh", "-c", "true"]).build();
        assert_eq!(spec["root"]["readonly"], false);
        assert_eq!(spec["process"]["noNewPrivileges"], false);
        assert_eq!(spec["process"]["args"], json!(["sh", "-c", "true"]));
        assert_eq!(spec["process"]["env"], json!([DEFAULT_PATH_ENV]));
        assert_eq!(spec["process"]["cwd"], "/");
        assert_eq!(spec["process"]["user"]["uid"], 0);
        for set in ["bounding", "effective", "permitted"] {
            let caps = spec["process"]["capabilities"][set].as_array().unwrap();
            assert_eq!(caps.len(), 14, "{set}");
            assert!(caps.contains(&json!("CAP_NET_RAW")));
            assert!(!caps.contains(&json!("CAP_SYS_ADMIN")));
        }
        assert_eq!(
            destinations(&spec),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys"
            ]
        );
        let sys = &spec["mounts"][5];
        assert!(sys["options"].as_array().unwrap().contains(&json!("ro")));
        assert_eq!(namespaces(&spec), ["pid", "ipc", "uts", "mount"]);
        assert_eq!(spec["hostname"], "oxkit");
    }

    #[test]
    fn network_none_gets_its_own_namespace() {
        let spec = SpecBuilder::new(["true"]).network(Network::None).build();
        assert!(namespaces(&spec).contains(&"network"));
    }

    #[test]
    fn user_env_cwd_hostname_and_mounts_are_set() {
        let spec = SpecBuilder::new(["id"])
            .env(["PATH=/bin", "A=b"])
            .cwd("/work")
            .user(1000, 100)
            .additional_gids([10, 20])
            .hostname("step")
            .mount(SpecMount::Bind {
                source: "/host/ctx".into(),
                destination: "/ctx".into(),
                read_only: true,
            })
            .mount(SpecMount::Tmpfs {
                destination: "/tmp".into(),
                size: Some(1 << 20),
            })
            .build();
        assert_eq!(spec["process"]["env"], json!(["PATH=/bin", "A=b"]));
        assert_eq!(spec["process"]["cwd"], "/work");
        assert_eq!(
            spec["process"]["user"],
            json!({"uid": 1000, "gid": 100, "additionalGids": [10, 20]})
        );
        assert_eq!(spec["hostname"], "step");
        let mounts = spec["mounts"].as_array().unwrap();
        assert_eq!(
            mounts[6],
            json!({"destination": "/ctx", "type": "bind", "source": "/host/ctx", "options": ["rbind", "ro"]})
        );
        assert_eq!(mounts[7]["type"], "tmpfs");
        assert!(mounts[7]["options"]
            .as_array()
            .unwrap()
            .contains(&json!("size=1048576")));
    }
}
