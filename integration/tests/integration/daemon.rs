//! oxkitd as a process: its config file and flags, its sockets, its shutdown. These need no
//! containerd: they start `oxkitd` on its own in a temp dir.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oxkit_integration::{eventually, locate_oxkitd, TestResult};

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("oxd-")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

/// A running oxkitd, killed if a test fails before it calls [`terminate`].
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn oxkitd(args: &[&str]) -> Running {
    let child = Command::new(locate_oxkitd().expect("oxkitd binary"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start oxkitd");
    Running(Some(child))
}

fn wait_serving(sock: &Path) -> TestResult {
    eventually(
        format!("oxkitd serving on {}", sock.display()),
        Duration::from_secs(10),
        || {
            UnixStream::connect(sock)
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
}

/// SIGTERM, then the exit status and what oxkitd printed.
fn terminate(mut running: Running) -> (std::process::ExitStatus, String) {
    let child = running.0.take().expect("running");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let out = child.wait_with_output().expect("wait for oxkitd");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_file_sits_between_defaults_and_flags() -> TestResult {
    let dir = tmp();
    let d = dir.path();
    let config = d.join("oxkitd.toml");
    std::fs::write(
        &config,
        format!(
            "root = \"{0}/from-file\"\nlog_level = \"warn\"\n[snapshotter]\naddress = \"{0}/file.sock\"\n",
            d.display()
        ),
    )
    .unwrap();
    let flag_root = d.join("from-flag");
    let child = oxkitd(&[
        "--config",
        config.to_str().unwrap(),
        "--root",
        flag_root.to_str().unwrap(),
    ]);
    wait_serving(&d.join("file.sock"))?;
    assert!(
        flag_root.join("metadata.redb").is_file(),
        "the --root flag must override the file's root"
    );
    assert!(
        !d.join("from-file").exists(),
        "the file's root must not be used when --root is given"
    );
    let (status, log) = terminate(child);
    assert!(
        status.success(),
        "oxkitd must exit 0 on SIGTERM; it said:\n{log}"
    );
    assert!(
        !log.contains("INFO"),
        "log_level = warn from the file applies:\n{log}"
    );
    assert!(
        !d.join("file.sock").exists(),
        "the socket is removed on shutdown"
    );
    Ok(())
}

#[test]
fn a_bad_config_file_is_refused_with_its_key() {
    let dir = tmp();
    let config = dir.path().join("oxkitd.toml");
    std::fs::write(&config, "root = \"/x\"\nsnapshoter = 1\n").unwrap();
    let out = Command::new(locate_oxkitd().unwrap())
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("snapshoter") && err.contains("oxkitd.toml"),
        "{err}"
    );
}

#[test]
fn socket_dir_is_private_and_stale_sockets_are_replaced() -> TestResult {
    let dir = tmp();
    let sock_dir = dir.path().join("run/oxkit");
    let sock = sock_dir.join("snapshotter.sock");
    let root = dir.path().join("root");
    let args = [
        "snapshotter",
        "--root",
        root.to_str().unwrap(),
        "--address",
        sock.to_str().unwrap(),
    ];

    let first = oxkitd(&args);
    wait_serving(&sock)?;
    let mode = std::fs::metadata(&sock_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "socket directory mode");
    // A second daemon on the same socket must not steal it from a live one.
    let second = Command::new(locate_oxkitd().unwrap())
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && err.contains("another process is serving"),
        "{err}"
    );
    UnixStream::connect(&sock).expect("the first daemon still serves");
    // Nor share its root through another socket.
    let other = dir.path().join("other.sock");
    let third = Command::new(locate_oxkitd().unwrap())
        .args([
            "snapshotter",
            "--root",
            root.to_str().unwrap(),
            "--address",
            other.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&third.stderr);
    assert!(
        !third.status.success() && err.contains("in use by another process"),
        "{err}"
    );
    assert!(
        !other.exists(),
        "a daemon that failed to start leaves no socket behind"
    );
    UnixStream::connect(&sock).expect("the first daemon still serves");
    let (status, log) = terminate(first);
    assert!(status.success(), "{log}");

    // A socket file nobody listens on (a crash leaves one) is replaced.
    drop(UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let child = oxkitd(&args);
    wait_serving(&sock)?;
    let (status, log) = terminate(child);
    assert!(status.success(), "{log}");
    Ok(())
}
