//! [`StdioPipes`]: a task's stdout and stderr as two FIFOs whose contents are copied, while the task
//! runs, into writers of the caller's choice (files, a progress stream). containerd's shim takes a
//! `file://` URI only for stdout and sends stderr to the same file, so separate streams need FIFOs.

use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{mknodat, FileType, Mode, CWD};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{ContainerdError, StdioTarget, TaskIo};

/// How many bytes one read from a FIFO takes at most.
const READ_BUF: usize = 64 * 1024;

/// Two FIFOs (`<dir>/<id>.stdout`, `<dir>/<id>.stderr`) read by background copies.
///
/// Lifecycle: [`StdioPipes::open`] (before the task is created: the shim's open of a FIFO blocks
/// until a reader exists) → [`StdioPipes::task_io`] for [`crate::Tasks::create`] or
/// [`crate::Tasks::run`] → [`StdioPipes::finish`] once the task was deleted (containerd's shim has
/// then flushed everything into the FIFOs). Dropping it unfinished stops the copies and removes the
/// FIFOs; output not yet copied is lost.
#[derive(Debug)]
pub struct StdioPipes {
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    done: watch::Sender<bool>,
    copies: Vec<JoinHandle<io::Result<u64>>>,
}

impl StdioPipes {
    /// Makes the FIFOs in `dir` (an existing directory the shim can reach, e.g. the daemon's state
    /// dir) and starts copying what the task writes to them into `stdout` and `stderr`. Must be
    /// called within a tokio runtime.
    pub fn open<O, E>(dir: &Path, id: &str, stdout: O, stderr: E) -> Result<Self, ContainerdError>
    where
        O: AsyncWrite + Send + Unpin + 'static,
        E: AsyncWrite + Send + Unpin + 'static,
    {
        let stdout_path = dir.join(format!("{id}.stdout"));
        let stderr_path = dir.join(format!("{id}.stderr"));
        let (done, _) = watch::channel(false);
        let mut pipes = Self {
            stdout_path,
            stderr_path,
            done,
            copies: Vec::new(),
        };
        let stdout_rx = open_fifo(&pipes.stdout_path)?;
        let stderr_rx = open_fifo(&pipes.stderr_path)?;
        pipes.copies.push(tokio::spawn(pump(
            stdout_rx,
            stdout,
            pipes.done.subscribe(),
        )));
        pipes.copies.push(tokio::spawn(pump(
            stderr_rx,
            stderr,
            pipes.done.subscribe(),
        )));
        Ok(pipes)
    }

    /// Like [`Self::open`], copying into the files `stdout` and `stderr` (created or truncated).
    pub fn to_files(
        dir: &Path,
        id: &str,
        stdout: &Path,
        stderr: &Path,
    ) -> Result<Self, ContainerdError> {
        let create = |path: &Path| {
            std::fs::File::create(path)
                .map(tokio::fs::File::from_std)
                .map_err(|source| ContainerdError::Io {
                    action: "create the output file",
                    path: path.to_owned(),
                    source,
                })
        };
        Self::open(dir, id, create(stdout)?, create(stderr)?)
    }

    /// The task's I/O: stdout and stderr to the FIFOs.
    pub fn task_io(&self) -> TaskIo {
        TaskIo {
            stdout: StdioTarget::Fifo(self.stdout_path.clone()),
            stderr: StdioTarget::Fifo(self.stderr_path.clone()),
        }
    }

    /// After the task was deleted: copies what is left in the FIFOs, flushes the writers, removes
    /// the FIFOs and returns how many bytes went to stdout and stderr.
    pub async fn finish(mut self) -> Result<(u64, u64), ContainerdError> {
        let _ = self.done.send(true);
        let mut counts = Vec::new();
        let paths = [self.stdout_path.clone(), self.stderr_path.clone()];
        for (copy, path) in self.copies.drain(..).zip(paths) {
            let copied = copy.await.unwrap_or_else(|e| Err(io::Error::other(e)));
            counts.push(copied.map_err(|source| ContainerdError::Io {
                action: "copy a task's output from",
                path,
                source,
            })?);
        }
        Ok((counts[0], counts[1]))
    }
}

impl Drop for StdioPipes {
    fn drop(&mut self) {
        for copy in &self.copies {
            copy.abort();
        }
        let _ = std::fs::remove_file(&self.stdout_path);
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

/// Makes a FIFO at `path` and opens it for reading. Opened read-write, so that it never reads as
/// ended before the shim opened it, and so that the shim's blocking open for writing returns.
fn open_fifo(path: &Path) -> Result<pipe::Receiver, ContainerdError> {
    let io_err = |action, source| ContainerdError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    match mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o600), 0) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(io_err("create the FIFO", e.into())),
    }
    pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
        .map_err(|e| io_err("open the FIFO", e))
}

/// Copies from `rx` into `w` until told that the writer is done, then takes what is left without
/// waiting (the FIFO never reads as ended: we hold a write end ourselves).
async fn pump<W: AsyncWrite + Unpin>(
    mut rx: pipe::Receiver,
    mut w: W,
    mut done: watch::Receiver<bool>,
) -> io::Result<u64> {
    let mut buf = vec![0; READ_BUF];
    let mut total = 0u64;
    loop {
        tokio::select! {
            biased;
            read = rx.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    break;
                }
                w.write_all(&buf[..n]).await?;
                total += n as u64;
            }
            _ = async { let _ = done.wait_for(|d| *d).await; } => {
                loop {
                    match rx.try_read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            w.write_all(&buf[..n]).await?;
                            total += n as u64;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                break;
            }
        }
    }
    w.flush().await?;
    Ok(total)
}
