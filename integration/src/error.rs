//! The errors of the fixture and of the image builder, each worded so a failing test says what to do.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why setting up, driving or checking the daemons failed.
#[derive(thiserror::Error)]
pub enum FixtureError {
    /// A binary the fixture starts does not exist.
    #[error("{what} not found at {}: {hint}", path.display())]
    MissingBinary {
        /// Which binary.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// How to get it there.
        hint: String,
    },
    /// A file system operation failed.
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "create".
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A program could not be started at all.
    #[error("failed to start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A daemon exited while the fixture waited for it.
    #[error("{name} exited ({status}) before it was ready; the end of its log {}:\n{log_tail}", log.display())]
    DaemonExited {
        /// `oxkitd` or `containerd`.
        name: &'static str,
        /// How it exited.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },
    /// A daemon is not running when the test needs it.
    #[error("{name} is not running")]
    NotRunning {
        /// `oxkitd` or `containerd`.
        name: &'static str,
    },
    /// A condition did not come true in time.
    #[error("timed out after {timeout:?} waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: Duration,
        /// The last observation, saying why it was not yet true.
        last: String,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status})\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard output.
        stdout: String,
        /// Its standard error.
        stderr: String,
    },
    /// A command did not finish in time and was killed.
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    CommandTimedOut {
        /// The command line.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// The repository's containerd config cannot be rendered.
    #[error("containerd config {}: {reason}", path.display())]
    Config {
        /// The template.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Output of a command did not have the expected form.
    #[error("cannot parse the output of `{command}`: {reason}\n{output}")]
    Parse {
        /// The command line.
        command: String,
        /// What is wrong.
        reason: String,
        /// The output.
        output: String,
    },
    /// Building a test image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
}

// `Debug` is what a test returning `Err` prints; make it the readable message.
impl fmt::Debug for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why building a test image failed.
#[derive(thiserror::Error)]
pub enum ImageError {
    /// A file system operation failed.
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The busybox binary cannot be used as the base image's only program.
    #[error("{} cannot be the base image's busybox: {reason}; install Debian's busybox-static or set OXKIT_BUSYBOX", path.display())]
    Busybox {
        /// The binary.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A layer entry is not a valid path inside an image.
    #[error("layer entry {path:?} is invalid: {reason}")]
    InvalidEntry {
        /// The entry's path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl fmt::Debug for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
