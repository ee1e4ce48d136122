//! A real registry for the tests: Debian's `docker-registry` (the CNCF distribution registry) on
//! 127.0.0.1 with a free port — plain HTTP, or with a password (htpasswd) and optionally TLS
//! (a self-signed certificate) —, storage in a temp dir and its access log kept, so a test can
//! see which requests reached it; images are put into it with `skopeo copy`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{run, Daemon};
use crate::{eventually, FixtureError};

/// Debian's registry binary.
const REGISTRY: &str = "/usr/bin/docker-registry";
/// skopeo, which copies test images into the registry.
const SKOPEO: &str = "skopeo";
/// The user of a registry started [`Registry::with_password_or_skip`].
pub const REGISTRY_USER: &str = "oxkit";
/// Its password.
pub const REGISTRY_PASSWORD: &str = "oxkit-test-password";
/// [`REGISTRY_PASSWORD`] hashed with bcrypt (cost 4), as the registry's htpasswd file wants it.
const PASSWORD_BCRYPT: &str = "$2b$04$io3Ie3nt3Vkg68IJImO5OusDWMSnyOiP12gkDvfQ0EB1SgN.nt2FK";

/// A running registry in its own temp dir; stopped and removed when dropped.
pub struct Registry {
    dir: PathBuf,
    password: bool,
    host: String,
    log: PathBuf,
    daemon: Option<Daemon>,
}

impl Registry {
    /// Whether `docker-registry` and `skopeo` are installed.
    pub fn installed() -> bool {
        Path::new(REGISTRY).is_file() && crate::prereq::find_in_path(SKOPEO).is_some()
    }

    /// [`Registry::start`], or `Ok(None)` with a loud message when the programs are missing;
    /// under `CI=true` that panics instead.
    pub fn start_or_skip() -> Result<Option<Self>, FixtureError> {
        Self::start_or_skip_with(false, false)
    }

    /// Like [`Registry::start_or_skip`], for a registry that admits only [`REGISTRY_USER`] with
    /// [`REGISTRY_PASSWORD`] (basic auth, htpasswd); with `tls`, over HTTPS with a self-signed
    /// certificate for 127.0.0.1 made by `openssl`.
    pub fn with_password_or_skip(tls: bool) -> Result<Option<Self>, FixtureError> {
        Self::start_or_skip_with(true, tls)
    }

    fn start_or_skip_with(password: bool, tls: bool) -> Result<Option<Self>, FixtureError> {
        if !Self::installed() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and docker-registry or skopeo is missing (apt-get install docker-registry skopeo)"
            );
            eprintln!(
                "\n!!!!!!!! SKIP: docker-registry or skopeo is not installed \
                 (apt-get install docker-registry skopeo) !!!!!!!!\n"
            );
            return Ok(None);
        }
        Self::start(password, tls).map(Some)
    }

    /// Starts a registry on a free port of 127.0.0.1 (with `password`, one that admits only
    /// [`REGISTRY_USER`]; with `tls`, over HTTPS) and waits until it accepts connections.
    pub fn start(password: bool, tls: bool) -> Result<Self, FixtureError> {
        let dir = crate::fixture::kept_temp_dir("oxk-registry-")?;
        let port = free_port()?;
        let host = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {host}\n",
            dir.join("data").display()
        );
        if tls {
            let (certificate, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            let mut openssl = Command::new("openssl");
            openssl
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                ])
                .args([
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&certificate);
            run(openssl, Duration::from_secs(60))?;
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certificate.display(),
                key.display()
            ));
        }
        if password {
            let htpasswd = dir.join("htpasswd");
            write(&htpasswd, &format!("{REGISTRY_USER}:{PASSWORD_BCRYPT}\n"))?;
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: oxkit-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        write(&config, &yaml)?;
        let mut command = Command::new(REGISTRY);
        command.arg("serve").arg(&config);
        let log = dir.join("registry.log");
        let daemon = Daemon::spawn("docker-registry", command, &log)?;
        let registry = Registry {
            dir,
            password,
            host,
            log,
            daemon: Some(daemon),
        };
        eventually("the registry to listen", Duration::from_secs(30), || {
            TcpStream::connect(&registry.host)
                .map(drop)
                .map_err(|e| format!("{}: {e}", registry.host))
        })?;
        Ok(registry)
    }

    /// `127.0.0.1:PORT`, the registry part of references into it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `host/path` for a repository path and tag (`busybox:x`).
    pub fn reference(&self, path: &str) -> String {
        format!("{}/{path}", self.host)
    }

    /// Copies the OCI archive `archive` into the registry as `path` (`repo:tag`) with skopeo
    /// (with the password, for a registry that wants it); `all` keeps every manifest of an
    /// index (else skopeo picks this machine's).
    pub fn copy_in(&self, archive: &Path, path: &str, all: bool) -> Result<(), FixtureError> {
        let mut command = Command::new(SKOPEO);
        command.args(["copy", "--dest-tls-verify=false"]);
        if self.password {
            command.arg(format!("--dest-creds={REGISTRY_USER}:{REGISTRY_PASSWORD}"));
        }
        if all {
            command.arg("--all");
        }
        command
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{}", self.reference(path)));
        run(command, Duration::from_secs(120)).map(drop)
    }

    /// The registry's log so far (its access log included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many access-log lines so far contain `needle` (e.g. `"POST /v2/app/blobs/uploads/"`).
    pub fn requests(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.stop(Duration::from_secs(5));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(path: &Path, contents: &str) -> Result<(), FixtureError> {
    std::fs::write(path, contents).map_err(|source| FixtureError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    })
}

/// A port of 127.0.0.1 nobody listens on right now.
fn free_port() -> Result<u16, FixtureError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| FixtureError::Io {
        action: "bind a free port on",
        path: "127.0.0.1".into(),
        source,
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| FixtureError::Io {
            action: "read the port of",
            path: "127.0.0.1".into(),
            source,
        })
}
