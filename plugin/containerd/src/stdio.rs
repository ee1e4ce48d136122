//! [`StdioPipes`]: a task's stdout and stderr as two FIFOs whose contents are copied, while the task
//! runs, into writers of the caller's choice (files, a progress stream). containerd's shim takes a
//! `file://` URI only for stdout and sends stderr to the same file, so separate streams need FIFOs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{mknodat, FileType, Mode, CWD};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::tasks::CreatedSignal;
use crate::{ContainerdError, StdioTarget, TaskIo};

/// How many bytes one read from a FIFO takes at most.
const READ_BUF: usize = 64 * 1024;

/// Two FIFOs (`<dir>/<id>.stdout`, `<dir>/<id>.stderr`) read by background copies.
///
/// Lifecycle: [`StdioPipes::open`] (before the task is created: the shim's open of a FIFO for
/// writing blocks until a reader exists) → [`StdioPipes::task_io`] for [`crate::Tasks::create`] or
/// [`crate::Tasks::run`], which tell the pipes when the task exists → [`StdioPipes::finish`] once
/// the process has exited: the shim closes its writing end when it has copied all of the
/// process's output, so the copies end at end-of-file without waiting for the task's deletion.
/// Dropping it unfinished stops the copies and removes the FIFOs; output not yet copied is lost.
#[derive(Debug)]
pub struct StdioPipes {
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    created: Arc<watch::Sender<bool>>,
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
        let (created, _) = watch::channel(false);
        let mut pipes = Self {
            stdout_path,
            stderr_path,
            created: Arc::new(created),
            done,
            copies: Vec::new(),
        };
        let stdout_rx = open_fifo(&pipes.stdout_path)?;
        let stderr_rx = open_fifo(&pipes.stderr_path)?;
        pipes.copies.push(tokio::spawn(pump(
            stdout_rx,
            stdout,
            pipes.created.subscribe(),
            pipes.done.subscribe(),
        )));
        pipes.copies.push(tokio::spawn(pump(
            stderr_rx,
            stderr,
            pipes.created.subscribe(),
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
            created: Some(CreatedSignal(self.created.clone())),
        }
    }

    /// After the process exited (or the task could not be created): copies what is left in the
    /// FIFOs — to their end when the task was created —, flushes the writers, removes the FIFOs
    /// and returns how many bytes went to stdout and stderr.
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

/// Makes a FIFO at `path` and opens it for reading (only: the FIFO reads as ended once the
/// shim, its only writer, is done with it).
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
        .open_receiver(path)
        .map_err(|e| io_err("open the FIFO", e))
}

/// Copies from `rx` into `w`. Until the task exists the FIFO has no writer and reads as ended,
/// so nothing is read before `created`; after it, the copy runs to the end of the FIFO. Told
/// `done` first (the task was never created), it takes what is there without waiting.
async fn pump<W: AsyncWrite + Unpin>(
    mut rx: pipe::Receiver,
    mut w: W,
    mut created: watch::Receiver<bool>,
    mut done: watch::Receiver<bool>,
) -> io::Result<u64> {
    let mut buf = vec![0; READ_BUF];
    let mut total = 0u64;
    let created = tokio::select! {
        biased;
        c = created.wait_for(|c| *c) => c.is_ok(),
        _ = done.wait_for(|d| *d) => false,
    };
    if created {
        loop {
            let n = rx.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n]).await?;
            total += n as u64;
        }
    } else {
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
    }
    w.flush().await?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl AsyncWrite for Sink {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.0.lock().unwrap().extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// The shim may still be copying when the process has exited: `finish` then waits for the
    /// FIFO's end, not only for what is there already.
    #[tokio::test]
    async fn finish_takes_everything_the_writer_sends_until_it_closes() {
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (Sink::default(), Sink::default());
        let pipes = StdioPipes::open(dir.path(), "t", out.clone(), err.clone()).unwrap();
        let io = pipes.task_io();
        let StdioTarget::Fifo(stdout) = io.stdout.clone() else {
            panic!("FIFOs")
        };
        let StdioTarget::Fifo(stderr) = io.stderr.clone() else {
            panic!("FIFOs")
        };
        // The "shim": opens both FIFOs for writing, then the task counts as created.
        let mut w_out = std::fs::OpenOptions::new()
            .write(true)
            .open(&stdout)
            .unwrap();
        let w_err = std::fs::OpenOptions::new()
            .write(true)
            .open(&stderr)
            .unwrap();
        io.created.as_ref().expect("pipes ask to be told").notify();
        w_out.write_all(b"early ").unwrap();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            w_out.write_all(b"late").unwrap();
            drop(w_out);
            drop(w_err);
        });
        // Called while the writer still has more to send.
        let (n_out, n_err) = pipes.finish().await.unwrap();
        late.join().unwrap();
        assert_eq!(out.0.lock().unwrap().as_slice(), b"early late");
        assert_eq!((n_out, n_err), (10, 0));
    }

    /// A task never created: `finish` takes what is there and does not wait.
    #[tokio::test]
    async fn finish_without_a_task_returns_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let pipes = StdioPipes::open(dir.path(), "t", Sink::default(), Sink::default()).unwrap();
        let finished = tokio::time::timeout(Duration::from_secs(5), pipes.finish()).await;
        assert_eq!(finished.expect("returns at once").unwrap(), (0, 0));
    }
}
