//! What a machine needs before the integration tests can run, and the skip-or-fail rule: a developer's
//! machine without it skips loudly, CI (`CI=true`) fails.

use std::env;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::image;

/// Programs the tests run, found on `PATH`.
const PROGRAMS: [&str; 4] = ["containerd", "containerd-shim-runc-v2", "runc", "ctr"];

/// One missing prerequisite and how to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prerequisite {
    /// What is missing.
    pub what: String,
    /// How to fix it.
    pub fix: &'static str,
}

impl fmt::Display for Prerequisite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.what, self.fix)
    }
}

/// Everything the integration tests need that this machine lacks; empty when they can run.
pub fn missing_prerequisites() -> Vec<Prerequisite> {
    let mut missing = Vec::new();
    if !rustix::process::geteuid().is_root() {
        missing.push(Prerequisite {
            what: "root".into(),
            fix: "containerd, runc and overlay mounts need root; run the tests as root",
        });
    }
    for program in PROGRAMS {
        if find_in_path(program).is_none() {
            missing.push(Prerequisite {
                what: format!("`{program}` on PATH"),
                fix: "apt-get install containerd runc",
            });
        }
    }
    let busybox = image::busybox_path();
    if let Err(err) = image::check_static_executable(&busybox) {
        missing.push(Prerequisite {
            what: err.to_string(),
            fix: "apt-get install busybox-static",
        });
    }
    missing
}

/// Returns `true` when the calling test must skip because a prerequisite is missing, after printing
/// a loud message that bypasses the test harness's output capture.
///
/// # Panics
/// When a prerequisite is missing and `CI=true`: on CI a missing prerequisite is a failure.
pub(crate) fn skip_for_missing_prerequisites() -> bool {
    skip_or_fail(&missing_prerequisites())
}

/// Returns `true` when the calling test must skip because of the `missing` prerequisites (none:
/// `false`), after printing a loud message that bypasses the test harness's output capture.
///
/// # Panics
/// When `missing` is not empty and `CI=true`: on CI a missing prerequisite is a failure.
pub(crate) fn skip_or_fail(missing: &[Prerequisite]) -> bool {
    if missing.is_empty() {
        return false;
    }
    let list = missing
        .iter()
        .map(|m| format!("  - {m}"))
        .collect::<Vec<_>>()
        .join("\n");
    if env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and integration test prerequisites are missing:\n{list}");
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("integration test")
        .to_owned();
    // Written to the real stderr, not with eprintln!, so that it shows even when the test passes.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!! SKIP {test}: prerequisites missing !!!!!!!!\n{list}\n\
         !!!!!!!! (set CI=true to make this a failure) !!!!!!!!\n"
    );
    true
}

/// The first executable called `name` in the directories of `PATH`.
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
