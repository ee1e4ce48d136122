//! Child processes: long-running daemons with their output in a log file, and commands run to
//! completion with a time limit.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::process::{kill_process, Pid, Signal};

use crate::FixtureError;

/// A daemon started by the fixture; its stdout and stderr are appended to `log`.
///
/// Dropping it kills the process (SIGKILL) if it is still running.
pub(crate) struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `command` with its output appended to `log`, after a line that says what starts when.
    pub(crate) fn spawn(
        name: &'static str,
        mut command: Command,
        log: &Path,
    ) -> Result<Self, FixtureError> {
        let io_err = |action, source| FixtureError::Io {
            action,
            path: log.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| io_err("open", e))?;
        writeln!(
            file,
            "==== oxkit-integration: {} starting: {}",
            utc_now(),
            display_command(&command)
        )
        .map_err(|e| io_err("write", e))?;
        let stderr = file.try_clone().map_err(|e| io_err("duplicate", e))?;
        command.stdin(Stdio::null()).stdout(file).stderr(stderr);
        let child = command.spawn().map_err(|source| FixtureError::Spawn {
            program: display_command(&command),
            source,
        })?;
        Ok(Self {
            name,
            child,
            log: log.to_owned(),
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The error for a daemon that exited while it should have been starting or running.
    pub(crate) fn exited_error(&self, status: ExitStatus) -> FixtureError {
        FixtureError::DaemonExited {
            name: self.name,
            status,
            log: self.log.clone(),
            log_tail: tail(&self.log, 4096),
        }
    }

    /// Sends SIGTERM and waits up to `grace` for the process to exit, then SIGKILLs it.
    /// Returns the exit status and whether SIGTERM alone stopped it.
    pub(crate) fn stop(mut self, grace: Duration) -> (ExitStatus, bool) {
        self.signal(Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return (status, true);
            }
            thread::sleep(Duration::from_millis(20));
        }
        (self.kill(), false)
    }

    /// SIGKILLs the process and reaps it.
    pub(crate) fn kill(mut self) -> ExitStatus {
        self.kill_and_wait()
    }

    fn kill_and_wait(&mut self) -> ExitStatus {
        if let Some(status) = self.exited() {
            return status;
        }
        self.signal(Signal::KILL);
        self.child
            .wait()
            .expect("waiting for a child that was just killed")
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) {
            // ESRCH (already gone but not reaped) is fine: wait() reaps it.
            let _ = kill_process(pid, signal);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill_and_wait();
    }
}

/// The current time as RFC 3339 UTC with milliseconds, like the daemons' own log lines.
fn utc_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (days, secs) = (now.as_secs() / 86_400, now.as_secs() % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        now.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// What a command printed, after it exited successfully.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub(crate) stdout: String,
}

/// Runs `command` to completion with no stdin, killing it after `timeout`; a non-zero exit is a
/// [`FixtureError::CommandFailed`] that carries both output streams.
pub(crate) fn run(mut command: Command, timeout: Duration) -> Result<Output, FixtureError> {
    let line = display_command(&command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| FixtureError::Spawn {
            program: line.clone(),
            source,
        })?;
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(FixtureError::CommandTimedOut {
                    command: line,
                    timeout,
                });
            }
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(Output { stdout })
    } else {
        Err(FixtureError::CommandFailed {
            command: line,
            status,
            stdout,
            stderr,
        })
    }
}

fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A command line as a shell would show it, for error messages.
pub(crate) fn display_command(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|arg| {
            let arg = arg.to_string_lossy();
            if !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
            {
                arg.into_owned()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// SIGKILLs every process, other than this one, that has `path` as one of its arguments, and returns
/// their ids. The fixture passes a socket path unique to its temp dir, so this finds only what the
/// fixture's daemons started: containerd's shims (`-address <socket>`) and stray `ctr` clients.
pub(crate) fn kill_processes_with_argument(path: &Path) -> Vec<u32> {
    let own = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == path.as_os_str().as_bytes())
        {
            if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                if kill_process(p, Signal::KILL).is_ok() {
                    killed.push(pid);
                }
            }
        }
    }
    killed
}

/// The last `max_bytes` of a log file (from a line start), or a note that it cannot be read.
pub(crate) fn tail(path: &Path, max_bytes: u64) -> String {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return "<not started>".into(),
        Err(err) => return format!("<cannot read {}: {err}>", path.display()),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::new();
    if len > max_bytes {
        use std::io::{Seek, SeekFrom};
        let _ = file.seek(SeekFrom::Start(len - max_bytes));
    }
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    if len > max_bytes {
        let start = text.find('\n').map_or(0, |i| i + 1);
        format!(
            "<... {} bytes before this ...>\n{}",
            len - max_bytes,
            &text[start..]
        )
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_days_since_the_epoch_to_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn quotes_arguments_a_shell_would_split() {
        let mut command = Command::new("ctr");
        command.args(["run", "/bin/sh", "-c", "echo it's"]);
        assert_eq!(
            display_command(&command),
            r"ctr run /bin/sh -c 'echo it'\''s'"
        );
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo out; echo oops >&2; exit 3"]);
        let err = run(command, Duration::from_secs(10))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("oops") && err.contains("out") && err.contains("exit status: 3"),
            "{err}"
        );
    }

    #[test]
    fn a_command_past_its_time_limit_is_killed() {
        let mut command = Command::new("sleep");
        command.arg("30");
        let started = Instant::now();
        let err = run(command, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, FixtureError::CommandTimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
