//! BuildKit as the reference: Debian's `docker.io` dockerd (20.10, which embeds BuildKit) started
//! in a temp dir of its own (`--data-root`, `--exec-root`, its own socket, no iptables, no
//! bridge), with oxkit's busybox base image loaded under the same name and config, so the same
//! Dockerfile can be built by both and the results compared.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{run, Daemon};
use crate::{eventually, BuiltImage, FixtureError};

/// Debian's docker client (20.10 speaks BuildKit by itself; a newer one on PATH would want buildx).
const DOCKER: &str = "/usr/bin/docker";
/// Debian's dockerd.
const DOCKERD: &str = "/usr/sbin/dockerd";

/// A running dockerd in its own temp dir; stopped (with whatever it started) when dropped.
pub struct Dockerd {
    dir: PathBuf,
    daemon: Option<Daemon>,
}

impl Dockerd {
    /// Whether Debian's dockerd and docker client are installed.
    pub fn installed() -> bool {
        Path::new(DOCKER).is_file() && Path::new(DOCKERD).is_file()
    }

    /// Starts dockerd ([`Dockerd::start`]) if Debian's docker.io is installed; if not, says so
    /// loudly (as a missing prerequisite) and returns `None` for the calling test to skip.
    ///
    /// # Panics
    /// When docker.io is missing and `CI=true`: on CI a missing prerequisite is a failure.
    pub fn start_if_installed() -> Result<Option<Self>, FixtureError> {
        if Self::installed() {
            return Self::start().map(Some);
        }
        crate::prereq::skip_or_fail(&[crate::Prerequisite {
            what: format!("Debian's docker.io ({DOCKERD}, {DOCKER})"),
            fix: "apt-get install docker.io",
        }]);
        Ok(None)
    }

    /// Starts dockerd with its state under a new temp dir and waits until it answers.
    pub fn start() -> Result<Self, FixtureError> {
        let dir = crate::fixture::kept_temp_dir("oxk-dockerd-")?;
        std::fs::create_dir_all(dir.join("config")).map_err(|source| FixtureError::Io {
            action: "create",
            path: dir.join("config"),
            source,
        })?;
        std::fs::write(dir.join("daemon.json"), "{}").map_err(|source| FixtureError::Io {
            action: "write",
            path: dir.join("daemon.json"),
            source,
        })?;
        let mut command = Command::new(DOCKERD);
        command
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--userland-proxy=false",
                "--log-level=warn",
            ]);
        let daemon = Daemon::spawn("dockerd", command, &dir.join("dockerd.log"))?;
        let dockerd = Dockerd {
            dir,
            daemon: Some(daemon),
        };
        eventually("dockerd to answer", Duration::from_secs(60), || {
            dockerd
                .docker(&["version"], Duration::from_secs(10))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        Ok(dockerd)
    }

    /// `docker ARGS` against this dockerd with BuildKit on, killed after `timeout`; its stdout.
    pub fn docker(&self, args: &[&str], timeout: Duration) -> Result<String, FixtureError> {
        let mut command = Command::new(DOCKER);
        command
            .args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.join("docker.sock").display()),
            )
            .env("DOCKER_CONFIG", self.dir.join("config"))
            .env("DOCKER_BUILDKIT", "1");
        run(command, timeout).map(|o| o.stdout)
    }

    /// Loads `image` (an OCI archive oxkit's tests made, one platform) as a docker archive with
    /// the same config and layers, under its name: its image ID is the same config digest.
    pub fn load(&self, image: &BuiltImage) -> Result<(), FixtureError> {
        let archive = self.dir.join("base.docker.tar");
        crate::oci_tree::oci_to_docker_archive(&image.archive, &archive, &image.name).map_err(
            |e| FixtureError::Io {
                action: "convert to a docker archive",
                path: image.archive.clone(),
                source: std::io::Error::other(e.to_string()),
            },
        )?;
        let path = archive.display().to_string();
        self.docker(&["load", "-i", &path], Duration::from_secs(120))
            .map(|_| ())
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.stop(Duration::from_secs(15));
        }
        // What dockerd started and left (its containerd, shims): every process whose command
        // line names the temp dir.
        let marker = self.dir.display().to_string();
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
                    continue;
                };
                if String::from_utf8_lossy(&cmdline).contains(&marker) {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
        }
        // Mounts dockerd left under the dir, deepest first, then the dir.
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut under: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(1))
                .filter(|m| m.starts_with(&marker))
                .collect();
            under.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in under {
                let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
