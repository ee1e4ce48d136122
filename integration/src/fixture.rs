//! The [`Fixture`]: oxkitd and a containerd that loads it as its `oxkit` proxy snapshotter, both
//! started in one temp dir with the repository's `containerd-config.toml`, driven with `ctr`, and
//! torn down (processes, mounts, files) on drop, printing both daemons' logs if the test failed.

use std::cell::Cell;
use std::env;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::{self, RenderedPaths};
use crate::process::{self, Daemon};
use crate::{eventually, mounts, prereq, BuiltImage, FixtureError};

/// The containerd namespace oxkit's images live in.
pub const NAMESPACE: &str = "buildkit";
/// The name containerd knows oxkit's snapshotter by (`[proxy_plugins.oxkit]`).
pub const SNAPSHOTTER: &str = "oxkit";

/// How long oxkitd may take to serve its socket.
const OXKITD_READY: Duration = Duration::from_secs(30);
/// How long containerd may take to answer `ctr version`.
const CONTAINERD_READY: Duration = Duration::from_secs(60);
/// How long containerd may take, after a daemon restart, to reach oxkitd again. containerd's proxy
/// client retries a lost connection with a backoff of at most 3 s, and fails calls meanwhile.
const SNAPSHOTTER_REACHABLE: Duration = Duration::from_secs(30);
/// How long a daemon may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Default limit for one `ctr` command.
const CTR_TIMEOUT: Duration = Duration::from_secs(300);
/// oxkitd's log filter unless `OXKIT_TEST_LOG_LEVEL` says otherwise: oxkit's own events at debug,
/// without the HTTP/2 frames of the gRPC stack.
const OXKITD_LOG_LEVEL: &str = "debug,h2=info,hyper=info,hyper_util=info,tower=info,tonic=info";
/// How much of each log a failing test prints.
const LOG_TAIL_BYTES: u64 = 128 * 1024;

/// A snapshot as `ctr snapshots ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Its name in containerd (a chain ID for an unpacked layer, the container ID for a container).
    pub key: String,
    /// The name of its parent, if any.
    pub parent: Option<String>,
    /// `Active`, `Committed` or `View`.
    pub kind: String,
}

/// oxkitd and containerd running in a temp dir under `/tmp`.
///
/// Layout of the dir: `oxkit/` (oxkitd's root), `oxkit.sock`, `containerd/{root,state}`,
/// `containerd.sock`, `containerd.toml` (the rendered config), `oxkitd.log`, `containerd.log`, and
/// `images/` for test images. Unix socket paths must fit in 108 bytes, hence the short dir.
///
/// Methods that fail return a [`FixtureError`] and mark the fixture failed; on drop, a failed fixture
/// (or one dropped while a test panics) prints the end of both daemons' logs. Drop always stops both
/// daemons (SIGTERM, then SIGKILL), kills the shims containerd left, unmounts whatever is still mounted
/// in the dir and removes it, unless `OXKIT_TEST_KEEP_DIR` is set and the test failed.
pub struct Fixture {
    dir: PathBuf,
    oxkitd_bin: PathBuf,
    oxkit_root: PathBuf,
    snapshotter_socket: PathBuf,
    containerd_socket: PathBuf,
    containerd_config: PathBuf,
    oxkitd_log: PathBuf,
    containerd_log: PathBuf,
    /// oxkitd's `--config` file, once a test has given one.
    oxkitd_config: Option<PathBuf>,
    oxkitd: Option<Daemon>,
    containerd: Option<Daemon>,
    failed: Cell<bool>,
    next_id: Cell<u32>,
}

impl Fixture {
    /// Starts oxkitd, then containerd, and waits until both serve. Returns `Ok(None)` when the test
    /// must skip because a prerequisite is missing (see [`crate::missing_prerequisites`]); under
    /// `CI=true` that panics instead.
    ///
    /// oxkitd is `$OXKITD_BIN`, else `oxkitd` next to the test binary's profile dir, else
    /// `<workspace>/target/debug/oxkitd`.
    pub fn start() -> Result<Option<Self>, FixtureError> {
        if prereq::skip_for_missing_prerequisites() {
            return Ok(None);
        }
        let oxkitd_bin = locate_oxkitd()?;
        let dir = kept_temp_dir("oxk-")?;
        let mut fixture = Self {
            oxkitd_bin,
            oxkit_root: dir.join("oxkit"),
            snapshotter_socket: dir.join("oxkit.sock"),
            containerd_socket: dir.join("containerd.sock"),
            containerd_config: dir.join("containerd.toml"),
            oxkitd_log: dir.join("oxkitd.log"),
            containerd_log: dir.join("containerd.log"),
            oxkitd_config: None,
            dir,
            oxkitd: None,
            containerd: None,
            failed: Cell::new(false),
            next_id: Cell::new(0),
        };
        let result = fixture
            .render_config()
            .and_then(|()| fixture.start_oxkitd())
            .and_then(|()| fixture.start_containerd());
        fixture.note(result)?;
        Ok(Some(fixture))
    }

    /// oxkitd's build API socket (what `oxctl --addr unix://…` dials).
    pub fn build_address(&self) -> PathBuf {
        self.dir.join("oxkitd.sock")
    }

    /// `oxctl ARGS` (next to oxkitd) against this fixture's oxkitd, not started: for a test that
    /// handles the process itself (e.g. kills it mid-build). Its state (the client id, under
    /// which the daemon keeps local directories) is kept in the fixture's dir.
    pub fn oxctl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.oxkitd_bin.with_file_name("oxctl"));
        command
            .arg("--addr")
            .arg(format!("unix://{}", self.build_address().display()))
            .args(args)
            .env("XDG_STATE_HOME", self.dir.join("client-state"));
        command
    }

    /// Runs `oxctl ARGS` ([`Fixture::oxctl_command`]) with `stdin`, returning (success, stdout,
    /// stderr).
    pub fn oxctl(
        &self,
        args: &[&str],
        stdin: &[u8],
    ) -> Result<(bool, String, String), FixtureError> {
        use std::io::Write;
        let bin = self.oxkitd_bin.with_file_name("oxctl");
        let mut child = self
            .oxctl_command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|source| FixtureError::Spawn {
                program: bin.display().to_string(),
                source,
            })?;
        // oxctl may exit before reading stdin (a bad option, a secret it cannot read): its
        // output says why, so a closed pipe is not the test's error.
        match child.stdin.take().expect("piped stdin").write_all(stdin) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(FixtureError::Io {
                    action: "write the definition to",
                    path: bin.clone(),
                    source: e,
                })
            }
            _ => {}
        }
        let out = child
            .wait_with_output()
            .map_err(|source| FixtureError::Io {
                action: "wait for",
                path: bin,
                source,
            })?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// The temp dir everything lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// oxkitd's `--root`.
    pub fn oxkit_root(&self) -> &Path {
        &self.oxkit_root
    }

    /// Where oxkitd keeps one directory per snapshot (`<root>/snapshots/<id>/{fs,work}`).
    pub fn snapshots_dir(&self) -> PathBuf {
        self.oxkit_root.join("snapshots")
    }

    /// containerd's gRPC socket.
    pub fn containerd_address(&self) -> &Path {
        &self.containerd_socket
    }

    /// oxkitd's Snapshots API socket.
    pub fn snapshotter_address(&self) -> &Path {
        &self.snapshotter_socket
    }

    /// A path in the fixture's `images/` dir for a test image archive called `file`.
    pub fn image_path(&self, file: &str) -> PathBuf {
        let images = self.dir.join("images");
        let _ = fs::create_dir_all(&images);
        images.join(file)
    }

    /// An ID no other fixture or call uses, e.g. for a container: runc keeps container state in a
    /// directory shared by every containerd on the machine, keyed by namespace and ID.
    pub fn unique_id(&self, prefix: &str) -> String {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        let tag = self
            .dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        format!("{prefix}-{tag}-{n}")
    }

    /// oxkitd's process id, while it runs.
    pub fn oxkitd_pid(&self) -> Option<u32> {
        self.oxkitd.as_ref().map(Daemon::pid)
    }

    /// Starts oxkitd (if it is not running) and waits until its socket accepts connections.
    pub fn start_oxkitd(&mut self) -> Result<(), FixtureError> {
        if self.oxkitd.is_some() {
            return Ok(());
        }
        let log_level =
            env::var("OXKIT_TEST_LOG_LEVEL").unwrap_or_else(|_| OXKITD_LOG_LEVEL.into());
        let mut command = Command::new(&self.oxkitd_bin);
        command
            .arg("--root")
            .arg(&self.oxkit_root)
            .arg("--snapshotter-address")
            .arg(&self.snapshotter_socket)
            .arg("--address")
            .arg(self.build_address())
            .arg("--containerd-address")
            .arg(&self.containerd_socket)
            .args(["--log-level", &log_level])
            .env("RUST_BACKTRACE", "1");
        if let Some(config) = &self.oxkitd_config {
            command.arg("--config").arg(config);
        }
        let daemon = self.note(Daemon::spawn("oxkitd", command, &self.oxkitd_log))?;
        let daemon = self.oxkitd.insert(daemon);
        let socket = self.snapshotter_socket.clone();
        let result = wait_ready(
            daemon,
            "oxkitd to accept connections on its socket",
            OXKITD_READY,
            || {
                UnixStream::connect(&socket)
                    .map(drop)
                    .map_err(|e| format!("connect {}: {e}", socket.display()))
            },
        );
        self.note(result)
    }

    /// Restarts oxkitd with `toml` as its `--config` file (the fixture's flags still set the
    /// root and the sockets), and waits until containerd's calls reach it again (if containerd
    /// runs): a build right after the restart would otherwise race containerd's reconnection.
    pub fn restart_oxkitd_with_config(&mut self, toml: &str) -> Result<(), FixtureError> {
        let path = self.dir.join("oxkitd.toml");
        fs::write(&path, toml).map_err(|source| FixtureError::Io {
            action: "write",
            path: path.clone(),
            source,
        })?;
        self.oxkitd_config = Some(path);
        self.restart_oxkitd()?;
        if self.containerd.is_some() {
            self.wait_snapshotter_reachable()?;
        }
        Ok(())
    }

    /// Stops oxkitd with SIGTERM and returns its exit status. It is an error if SIGTERM did not stop it
    /// within 10 s (it is SIGKILLed then). Does nothing and returns `None` if oxkitd is not running.
    pub fn stop_oxkitd(&mut self) -> Result<Option<ExitStatus>, FixtureError> {
        let Some(daemon) = self.oxkitd.take() else {
            return Ok(None);
        };
        let result = stopped_by_sigterm("oxkitd", daemon);
        self.note(result).map(Some)
    }

    /// Kills oxkitd with SIGKILL, as a crash would, and reaps it.
    pub fn kill_oxkitd(&mut self) -> Result<(), FixtureError> {
        let daemon = self
            .oxkitd
            .take()
            .ok_or(FixtureError::NotRunning { name: "oxkitd" });
        self.note(daemon).map(|d| {
            d.kill();
        })
    }

    /// Stops oxkitd with SIGTERM (see [`Self::stop_oxkitd`]) and starts it again on the same root.
    pub fn restart_oxkitd(&mut self) -> Result<(), FixtureError> {
        self.stop_oxkitd()?;
        self.start_oxkitd()
    }

    /// Starts containerd with the rendered config (if it is not running) and waits until `ctr version`
    /// gets an answer.
    pub fn start_containerd(&mut self) -> Result<(), FixtureError> {
        if self.containerd.is_some() {
            return Ok(());
        }
        let log_level =
            env::var("OXKIT_TEST_CONTAINERD_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        let mut command = Command::new("containerd");
        command
            .arg("--config")
            .arg(&self.containerd_config)
            .args(["--log-level", &log_level]);
        let daemon = self.note(Daemon::spawn("containerd", command, &self.containerd_log))?;
        let daemon = self.containerd.insert(daemon);
        let mut version = Command::new("ctr");
        version.arg("--address").arg(&self.containerd_socket).args([
            "--connect-timeout",
            "1s",
            "version",
        ]);
        let result = wait_ready(
            daemon,
            "containerd to answer `ctr version`",
            CONTAINERD_READY,
            || {
                let mut probe = Command::new(version.get_program());
                probe.args(version.get_args());
                process::run(probe, Duration::from_secs(10))
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        );
        self.note(result)
    }

    /// Stops containerd with SIGTERM (SIGKILL after 10 s) and returns its exit status, or `None` if it
    /// was not running. Shims of running tasks keep running, as they would in production.
    pub fn stop_containerd(&mut self) -> Option<ExitStatus> {
        self.containerd
            .take()
            .map(|daemon| daemon.stop(STOP_GRACE).0)
    }

    /// Stops containerd and starts it again with the same config and dirs.
    pub fn restart_containerd(&mut self) -> Result<(), FixtureError> {
        self.stop_containerd();
        self.start_containerd()
    }

    /// A `ctr` command for containerd's socket and the `buildkit` namespace, followed by `args`; for
    /// running in the background. Its output is not captured.
    pub fn ctr_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(&self.containerd_socket)
            .args(["--namespace", NAMESPACE])
            .args(args);
        command
    }

    /// Runs `ctr --address <socket> --namespace buildkit <args>` and returns its standard output. A
    /// failure is an error carrying the command line, exit status, stderr and stdout.
    pub fn ctr<I, S>(&self, args: I) -> Result<String, FixtureError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.ctr_with_timeout(args, CTR_TIMEOUT)
    }

    /// Like [`Self::ctr`], with a time limit other than the default 5 minutes.
    pub fn ctr_with_timeout<I, S>(&self, args: I, timeout: Duration) -> Result<String, FixtureError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let result = process::run(self.ctr_command(args), timeout).map(|output| output.stdout);
        self.note(result)
    }

    /// Like [`Self::ctr`], but a failure is expected: returns the error without marking the fixture
    /// failed.
    pub fn try_ctr<I, S>(&self, args: I) -> Result<String, FixtureError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        process::run(self.ctr_command(args), CTR_TIMEOUT).map(|output| output.stdout)
    }

    /// Imports `image` into the `buildkit` namespace and unpacks it into the oxkit snapshotter.
    pub fn import(&self, image: &BuiltImage) -> Result<String, FixtureError> {
        let archive = image.archive.as_os_str();
        self.ctr([
            OsStr::new("images"),
            OsStr::new("import"),
            OsStr::new("--snapshotter"),
            OsStr::new(SNAPSHOTTER),
            archive,
        ])
    }

    /// Runs `args` in a new container of `image` on the oxkit snapshotter (`ctr run --rm`) and returns
    /// what it printed.
    pub fn run(&self, image: &str, args: &[&str]) -> Result<String, FixtureError> {
        let id = self.unique_id("run");
        let mut ctr_args = vec!["run", "--rm", "--snapshotter", SNAPSHOTTER, image, &id];
        ctr_args.extend_from_slice(args);
        self.ctr(ctr_args)
    }

    /// [`Fixture::start`], then the busybox base image imported as `name` (unpacked into oxkit).
    pub fn start_with_busybox(name: &str) -> Result<Option<Self>, FixtureError> {
        let Some(fx) = Self::start()? else {
            return Ok(None);
        };
        let built = crate::busybox_image(name)?.write_archive(&fx.image_path("busybox.tar"))?;
        fx.import(&built)?;
        Ok(Some(fx))
    }

    /// The keys of [`Fixture::snapshots`].
    pub fn snapshot_keys(&self) -> Result<std::collections::BTreeSet<String>, FixtureError> {
        Ok(self.snapshots()?.into_iter().map(|s| s.key).collect())
    }

    /// The oxkit snapshots of the `buildkit` namespace as containerd lists them (`ctr snapshots ls`).
    pub fn snapshots(&self) -> Result<Vec<Snapshot>, FixtureError> {
        let output = self.ctr(["snapshots", "--snapshotter", SNAPSHOTTER, "ls"])?;
        let parsed = parse_snapshot_list(&output).map_err(|reason| FixtureError::Parse {
            command: format!("ctr snapshots --snapshotter {SNAPSHOTTER} ls"),
            reason,
            output,
        });
        self.note(parsed)
    }

    /// The directories under [`Self::snapshots_dir`], sorted; none if it does not exist yet.
    pub fn snapshot_dirs(&self) -> Result<Vec<PathBuf>, FixtureError> {
        let dir = self.snapshots_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return self.note(Err(FixtureError::Io {
                    action: "list",
                    path: dir,
                    source,
                }))
            }
        };
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        Ok(dirs)
    }

    /// Waits until containerd's calls reach oxkitd (after either was restarted): containerd's proxy
    /// client reconnects with a backoff and fails calls until it has. Probes with
    /// `ctr snapshots usage`, which asks the snapshotter about each snapshot, or, if containerd lists
    /// none, by preparing and removing a probe snapshot.
    pub fn wait_snapshotter_reachable(&self) -> Result<(), FixtureError> {
        let result = eventually(
            "containerd to reach oxkitd through the proxy plugin",
            SNAPSHOTTER_REACHABLE,
            || {
                let listed = self
                    .try_ctr(["snapshots", "--snapshotter", SNAPSHOTTER, "ls"])
                    .map_err(|e| e.to_string())?;
                let probe = if listed.lines().count() > 1 {
                    self.try_ctr(["snapshots", "--snapshotter", SNAPSHOTTER, "usage"])
                        .map(drop)
                } else {
                    self.probe_snapshot()
                };
                probe.map_err(|e| e.to_string())
            },
        );
        self.note(result)
    }

    /// Runs containerd's garbage collection and waits for it, including its pass over the oxkit
    /// snapshotter (Walk, Remove of what containerd no longer references, Cleanup).
    ///
    /// containerd only passes over a snapshotter in a collection that follows a removal there, so
    /// this first prepares and removes a probe snapshot; deleting a lease with `--sync` then runs the
    /// collection and waits for it.
    pub fn collect_garbage(&self) -> Result<(), FixtureError> {
        self.note(self.probe_snapshot())?;
        let lease = self.unique_id("gc");
        self.ctr(["leases", "create", "--id", &lease])?;
        self.ctr(["leases", "rm", "--sync", &lease]).map(drop)
    }

    fn probe_snapshot(&self) -> Result<(), FixtureError> {
        let key = self.unique_id("probe");
        self.try_ctr(["snapshots", "--snapshotter", SNAPSHOTTER, "prepare", &key])?;
        self.try_ctr(["snapshots", "--snapshotter", SNAPSHOTTER, "rm", &key])
            .map(drop)
    }

    /// Polls until `ctr snapshots ls` and the directories under [`Self::snapshots_dir`] agree in
    /// number, and returns that number: after a garbage collection every directory must belong to a
    /// snapshot containerd knows (the rest were removed, or cleaned up by oxkitd).
    pub fn wait_dirs_match_snapshots(&self, timeout: Duration) -> Result<usize, FixtureError> {
        let result = eventually(
            "snapshot directories to match containerd's snapshots",
            timeout,
            || {
                let snapshots = self.snapshots().map_err(|e| e.to_string())?;
                let dirs = self.snapshot_dirs().map_err(|e| e.to_string())?;
                if snapshots.len() == dirs.len() {
                    Ok(dirs.len())
                } else {
                    Err(format!(
                    "containerd lists {} snapshots, {} has {} directories:\n  snapshots: {:?}\n  dirs: {:?}",
                    snapshots.len(),
                    self.snapshots_dir().display(),
                    dirs.len(),
                    snapshots.iter().map(|s| format!("{} ({})", s.key, s.kind)).collect::<Vec<_>>(),
                    dirs.iter().filter_map(|d| d.file_name()).collect::<Vec<_>>(),
                ))
                }
            },
        );
        self.note(result)
    }

    fn render_config(&self) -> Result<(), FixtureError> {
        let template_path = config::template_path();
        let template = fs::read_to_string(&template_path).map_err(|source| FixtureError::Io {
            action: "read",
            path: template_path.clone(),
            source,
        })?;
        let paths = RenderedPaths {
            root: self.dir.join("containerd/root"),
            state: self.dir.join("containerd/state"),
            grpc_address: self.containerd_socket.clone(),
            snapshotter_address: self.snapshotter_socket.clone(),
        };
        let rendered = config::render_containerd_config(&template, &paths).map_err(|reason| {
            FixtureError::Config {
                path: template_path,
                reason,
            }
        })?;
        fs::write(&self.containerd_config, rendered).map_err(|source| FixtureError::Io {
            action: "write",
            path: self.containerd_config.clone(),
            source,
        })
    }

    /// Marks the fixture failed if `result` is an error, so that drop prints the logs.
    fn note<T>(&self, result: Result<T, FixtureError>) -> Result<T, FixtureError> {
        if result.is_err() {
            self.failed.set(true);
        }
        result
    }

    /// Deletes tasks a failed test left running, so that their shims exit.
    fn remove_leftover_tasks(&self) {
        let timeout = Duration::from_secs(10);
        let Ok(tasks) = process::run(self.ctr_command(["tasks", "ls", "-q"]), timeout) else {
            return;
        };
        for id in tasks
            .stdout
            .lines()
            .map(str::trim)
            .filter(|id| !id.is_empty())
        {
            let _ = process::run(
                self.ctr_command(["tasks", "delete", "--force", id]),
                timeout,
            );
        }
    }

    fn print_logs(&self) {
        for (name, log) in [
            ("oxkitd", &self.oxkitd_log),
            ("containerd", &self.containerd_log),
        ] {
            eprintln!(
                "\n======== {name} log ({}) ========\n{}\n======== end of {name} log ========",
                log.display(),
                process::tail(log, LOG_TAIL_BYTES)
            );
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let failed = thread::panicking() || self.failed.get();
        if self.containerd.is_some() {
            self.remove_leftover_tasks();
        }
        self.stop_containerd();
        if let Some(oxkitd) = self.oxkitd.take() {
            oxkitd.stop(STOP_GRACE);
        }
        let killed = process::kill_processes_with_argument(&self.containerd_socket);
        // Give the killed processes a moment to release their mounts.
        if !killed.is_empty() {
            thread::sleep(Duration::from_millis(200));
        }
        let stuck = mounts::unmount_all_below(&self.dir);
        if failed {
            self.print_logs();
        }
        if !killed.is_empty() {
            eprintln!("oxkit-integration: killed leftover processes of this fixture: {killed:?}");
        }
        if !stuck.is_empty() {
            eprintln!("oxkit-integration: could not unmount: {stuck:?}");
        }
        if failed && env::var_os("OXKIT_TEST_KEEP_DIR").is_some() {
            eprintln!(
                "oxkit-integration: kept {} (OXKIT_TEST_KEEP_DIR is set)",
                self.dir.display()
            );
        } else if let Err(err) = fs::remove_dir_all(&self.dir) {
            eprintln!(
                "oxkit-integration: could not remove {}: {err}",
                self.dir.display()
            );
        }
    }
}

/// Polls `probe` until it succeeds, failing early with the daemon's log if the daemon exits.
fn wait_ready(
    daemon: &mut Daemon,
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<(), String>,
) -> Result<(), FixtureError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = daemon.exited() {
            return Err(daemon.exited_error(status));
        }
        match probe() {
            Ok(()) => return Ok(()),
            Err(last) if Instant::now() >= deadline => {
                return Err(FixtureError::Timeout {
                    what: what.to_owned(),
                    timeout,
                    last,
                })
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Stops `daemon` with SIGTERM; an error if it needed SIGKILL.
fn stopped_by_sigterm(name: &'static str, daemon: Daemon) -> Result<ExitStatus, FixtureError> {
    match daemon.stop(STOP_GRACE) {
        (status, true) => Ok(status),
        (status, false) => Err(FixtureError::Timeout {
            what: format!("{name} to exit after SIGTERM"),
            timeout: STOP_GRACE,
            last: format!("still running; SIGKILLed ({status})"),
        }),
    }
}

/// A new directory `/tmp/<prefix>…` that outlives its handle (its owner removes it).
pub(crate) fn kept_temp_dir(prefix: &str) -> Result<PathBuf, FixtureError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .map(tempfile::TempDir::keep)
        .map_err(|source| FixtureError::Io {
            action: "create a temp dir in",
            path: "/tmp".into(),
            source,
        })
}

/// Finds the oxkitd binary: `$OXKITD_BIN`, else next to the profile dir the test binary was built in
/// (`target/<profile>/deps/<test>` → `target/<profile>/oxkitd`), else `<workspace>/target/debug/oxkitd`.
pub fn locate_oxkitd() -> Result<PathBuf, FixtureError> {
    if let Some(path) = env::var_os("OXKITD_BIN").map(PathBuf::from) {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(FixtureError::MissingBinary {
                what: "oxkitd",
                path,
                hint: "OXKITD_BIN names a file that does not exist".into(),
            })
        };
    }
    let beside_tests = env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("oxkitd")));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/oxkitd");
    let candidates: Vec<PathBuf> = beside_tests.into_iter().chain([workspace]).collect();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| FixtureError::MissingBinary {
        what: "oxkitd",
        path: candidates[0].clone(),
        hint: format!(
            "build it first with `cargo build --bin oxkitd` (same profile as the tests), or set OXKITD_BIN; also looked at {:?}",
            &candidates[1..]
        ),
    })
}

/// Parses `ctr snapshots ls`: a `KEY PARENT KIND` header, then one aligned row per snapshot. Columns
/// are cut at the header's offsets, because keys may contain spaces (containerd's unpack uses
/// `extract-<n> <chain id>`).
fn parse_snapshot_list(output: &str) -> Result<Vec<Snapshot>, String> {
    let mut lines = output.lines();
    let header = lines.next().ok_or("no header line")?;
    let parent_at = header
        .find("PARENT")
        .ok_or("no PARENT column in the header")?;
    let kind_at = header.find("KIND").ok_or("no KIND column in the header")?;
    if !(header.starts_with("KEY") && parent_at < kind_at) {
        return Err("the header is not `KEY PARENT KIND`".into());
    }
    lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (key, parent, kind) = (
                line.get(..parent_at),
                line.get(parent_at..kind_at),
                line.get(kind_at..),
            );
            match (key, parent, kind) {
                (Some(key), Some(parent), Some(kind))
                    if !key.trim().is_empty() && !kind.trim().is_empty() =>
                {
                    Ok(Snapshot {
                        key: key.trim().to_owned(),
                        parent: Some(parent.trim().to_owned()).filter(|p| !p.is_empty()),
                        kind: kind.trim().to_owned(),
                    })
                }
                _ => Err(format!("row not aligned with the header: {line:?}")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_snapshot_rows_including_keys_with_spaces() {
        let output = "\
KEY                                 PARENT     KIND
sha256:aaa                                     Committed
extract-1-x sha256:bbb              sha256:aaa Active
run-1                               sha256:bbb Active
";
        let snapshots = parse_snapshot_list(output).unwrap();
        assert_eq!(
            snapshots,
            vec![
                Snapshot {
                    key: "sha256:aaa".into(),
                    parent: None,
                    kind: "Committed".into()
                },
                Snapshot {
                    key: "extract-1-x sha256:bbb".into(),
                    parent: Some("sha256:aaa".into()),
                    kind: "Active".into()
                },
                Snapshot {
                    key: "run-1".into(),
                    parent: Some("sha256:bbb".into()),
                    kind: "Active".into()
                },
            ]
        );
    }

    #[test]
    fn an_empty_list_is_only_a_header() {
        assert_eq!(parse_snapshot_list("KEY PARENT KIND\n").unwrap(), vec![]);
    }

    #[test]
    fn rejects_output_without_the_header() {
        assert!(parse_snapshot_list("sha256:aaa Committed\n").is_err());
    }
}
