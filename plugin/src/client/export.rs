//! Where the `oci`, `docker` and `local` exporters' output goes on the client's side, as with
//! `buildctl`: the daemon streams it back on the Solve stream, and the client writes an image
//! archive to a file (or stdout) or unpacks the result's files into a directory.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::ClientError;

/// Where an export's stream is written, from the `dest` option (which is the client's: it is
/// not sent to the daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Nothing to write: the `image` exporter, or a solve without an exporter.
    None,
    /// An image archive (`oci`, `docker`) into this file.
    ArchiveFile(PathBuf),
    /// An image archive to standard output (`dest=-`).
    ArchiveStdout,
    /// The result's files into this directory.
    LocalDir(PathBuf),
}

impl Destination {
    /// Takes `dest` out of `attrs` for `exporter`: `oci` and `docker` need `dest=FILE` or
    /// `dest=-` (stdout),
    /// `local` needs `dest=DIR`; other exporters take no `dest`.
    pub fn take(exporter: &str, attrs: &mut BTreeMap<String, String>) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::Output {
            exporter: exporter.into(),
            key: "dest".into(),
            reason: reason.into(),
        };
        let dest = attrs.remove("dest");
        match (exporter, dest.as_deref()) {
            ("oci" | "docker" | "local", None | Some("")) => {
                Err(bad("missing; say where the output goes"))
            }
            ("oci" | "docker", Some("-")) => Ok(Destination::ArchiveStdout),
            ("oci" | "docker", Some(file)) => Ok(Destination::ArchiveFile(file.into())),
            ("local", Some("-")) => Err(bad("the local exporter writes a directory, not stdout")),
            ("local", Some(dir)) => Ok(Destination::LocalDir(dir.into())),
            (_, None) => Ok(Destination::None),
            (_, Some(_)) => Err(bad(
                "only the oci, docker and local exporters take a destination",
            )),
        }
    }

    /// Whether the export goes to standard output (so nothing else may).
    pub fn is_stdout(&self) -> bool {
        *self == Destination::ArchiveStdout
    }
}

/// Writes an export stream to its [`Destination`], chunk by chunk. An OCI archive goes to a
/// temporary file beside its destination and is renamed into place by [`ExportSink::finish`], so
/// a failed build leaves no partial archive behind; the local stream is unpacked into its
/// directory as it arrives (see [`oxkit_exporter::unpack_tree`]).
pub struct ExportSink {
    inner: Sink,
}

enum Sink {
    None,
    Stdout(std::io::Stdout),
    File {
        file: std::io::BufWriter<std::fs::File>,
        partial: PathBuf,
        dest: PathBuf,
        done: bool,
    },
    Local {
        tx: Option<mpsc::Sender<Vec<u8>>>,
        unpack: Option<std::thread::JoinHandle<std::io::Result<()>>>,
        dir: PathBuf,
    },
}

impl ExportSink {
    /// Opens `dest` before the build starts, so that an unwritable destination fails first:
    /// creates the temporary archive file or the directory (and its parents). Refuses to write
    /// an archive to a terminal.
    pub fn open(dest: &Destination) -> Result<Self, ClientError> {
        let refuse = |reason: String| ClientError::Output {
            exporter: "oci/docker".into(),
            key: "dest".into(),
            reason,
        };
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| ClientError::Destination {
                action,
                path,
                source,
            }
        };
        let inner = match dest {
            Destination::None => Sink::None,
            Destination::ArchiveStdout => {
                let out = std::io::stdout();
                if out.is_terminal() {
                    return Err(refuse(
                        "refusing to write an archive to a terminal; redirect stdout or give dest=FILE".into(),
                    ));
                }
                Sink::Stdout(out)
            }
            Destination::ArchiveFile(path) => {
                let name = path
                    .file_name()
                    .ok_or_else(|| refuse(format!("{} is not a file name", path.display())))?
                    .to_string_lossy();
                let partial =
                    path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
                let file = std::fs::File::create(&partial).map_err(io("create", path))?;
                Sink::File {
                    file: std::io::BufWriter::with_capacity(1 << 20, file),
                    partial,
                    dest: path.clone(),
                    done: false,
                }
            }
            Destination::LocalDir(dir) => {
                std::fs::create_dir_all(dir).map_err(io("create the directory", dir))?;
                let (tx, rx) = mpsc::channel(16);
                let target = dir.clone();
                let unpack = std::thread::spawn(move || {
                    oxkit_exporter::unpack_tree(
                        ChannelReader {
                            rx,
                            chunk: Vec::new(),
                            pos: 0,
                        },
                        &target,
                    )
                });
                Sink::Local {
                    tx: Some(tx),
                    unpack: Some(unpack),
                    dir: dir.clone(),
                }
            }
        };
        Ok(ExportSink { inner })
    }

    /// Writes the next chunk.
    pub async fn write(&mut self, data: Vec<u8>) -> Result<(), ClientError> {
        match &mut self.inner {
            Sink::None => Err(ClientError::UnexpectedExport),
            Sink::Stdout(out) => out
                .write_all(&data)
                .map_err(|source| ClientError::Destination {
                    action: "write the archive to",
                    path: "-".into(),
                    source,
                }),
            Sink::File { file, dest, .. } => {
                file.write_all(&data)
                    .map_err(|source| ClientError::Destination {
                        action: "write",
                        path: dest.clone(),
                        source,
                    })
            }
            Sink::Local { tx, .. } => {
                let sent = match tx {
                    Some(tx) => tx.send(data).await.is_ok(),
                    None => false,
                };
                if sent {
                    return Ok(());
                }
                // The unpacking thread stopped early: its error says why.
                tx.take();
                self.finish_local().await
            }
        }
    }

    /// Completes the export once the stream has ended: flushes and renames the archive into
    /// place, or waits for the unpacking to finish.
    pub async fn finish(mut self) -> Result<(), ClientError> {
        match &mut self.inner {
            Sink::None => Ok(()),
            Sink::Stdout(out) => out.flush().map_err(|source| ClientError::Destination {
                action: "write the archive to",
                path: "-".into(),
                source,
            }),
            Sink::File {
                file,
                partial,
                dest,
                done,
            } => {
                let io = |action| {
                    let path = dest.clone();
                    move |source| ClientError::Destination {
                        action,
                        path,
                        source,
                    }
                };
                file.flush().map_err(io("write"))?;
                file.get_ref().sync_all().map_err(io("write"))?;
                std::fs::rename(&*partial, &*dest).map_err(io("rename the archive into"))?;
                *done = true;
                Ok(())
            }
            Sink::Local { tx, .. } => {
                tx.take();
                self.finish_local().await
            }
        }
    }

    async fn finish_local(&mut self) -> Result<(), ClientError> {
        let Sink::Local { unpack, dir, .. } = &mut self.inner else {
            return Ok(());
        };
        let Some(handle) = unpack.take() else {
            return Ok(());
        };
        let joined = tokio::task::spawn_blocking(move || handle.join())
            .await
            .ok()
            .and_then(Result::ok);
        let result =
            joined.unwrap_or_else(|| Err(std::io::Error::other("the unpacking thread panicked")));
        result.map_err(|source| ClientError::Destination {
            action: "unpack the result into",
            path: dir.clone(),
            source,
        })
    }
}

impl Drop for ExportSink {
    fn drop(&mut self) {
        if let Sink::File {
            partial,
            done: false,
            ..
        } = &self.inner
        {
            let _ = std::fs::remove_file(partial);
        }
    }
}

/// The chunks of the local export stream as one reader, for the unpacking thread.
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(exporter: &str, pairs: &[(&str, &str)]) -> Result<(Destination, Vec<String>), String> {
        let mut attrs: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Destination::take(exporter, &mut attrs)
            .map(|d| (d, attrs.into_keys().collect()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn dest_is_the_clients_and_is_not_sent() {
        assert_eq!(
            take("oci", &[("dest", "out.tar"), ("name", "a")]).unwrap(),
            (
                Destination::ArchiveFile("out.tar".into()),
                vec!["name".into()]
            )
        );
        assert_eq!(
            take("docker", &[("dest", "out.tar"), ("name", "a")]).unwrap(),
            (
                Destination::ArchiveFile("out.tar".into()),
                vec!["name".into()]
            )
        );
        assert_eq!(
            take("docker", &[("dest", "-")]).unwrap().0,
            Destination::ArchiveStdout
        );
        assert_eq!(
            take("oci", &[("dest", "-")]).unwrap().0,
            Destination::ArchiveStdout
        );
        assert_eq!(
            take("local", &[("dest", "out")]).unwrap(),
            (Destination::LocalDir("out".into()), vec![])
        );
        assert_eq!(
            take("image", &[("name", "a")]).unwrap(),
            (Destination::None, vec!["name".into()])
        );
        for (exporter, pairs, needle) in [
            ("oci", &[][..], "missing"),
            ("docker", &[], "missing"),
            ("local", &[("dest", "")], "missing"),
            ("local", &[("dest", "-")], "directory"),
            (
                "image",
                &[("name", "a"), ("dest", "x")],
                "only the oci, docker and local",
            ),
        ] {
            let err = take(exporter, pairs).unwrap_err();
            assert!(err.contains("\"dest\"") && err.contains(needle), "{err}");
        }
    }

    #[tokio::test]
    async fn an_archive_appears_only_when_finished() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("image.tar");
        let mut sink = ExportSink::open(&Destination::ArchiveFile(dest.clone())).unwrap();
        sink.write(b"abc".to_vec()).await.unwrap();
        sink.write(b"def".to_vec()).await.unwrap();
        assert!(!dest.exists());
        sink.finish().await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"abcdef");

        let failed = tmp.path().join("failed.tar");
        let mut sink = ExportSink::open(&Destination::ArchiveFile(failed.clone())).unwrap();
        sink.write(b"abc".to_vec()).await.unwrap();
        drop(sink);
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "a dropped sink leaves nothing behind"
        );
    }

    #[tokio::test]
    async fn a_local_stream_is_unpacked_across_chunks() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("d")).unwrap();
        std::fs::write(src.path().join("d/f"), vec![b'x'; 5000]).unwrap();
        std::os::unix::fs::symlink("d/f", src.path().join("l")).unwrap();
        let stream = oxkit_exporter::write_tree(src.path(), Vec::new()).unwrap();

        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("nested/out");
        let mut sink = ExportSink::open(&Destination::LocalDir(out.clone())).unwrap();
        for chunk in stream.chunks(700) {
            sink.write(chunk.to_vec()).await.unwrap();
        }
        sink.finish().await.unwrap();
        assert_eq!(std::fs::read(out.join("l")).unwrap(), vec![b'x'; 5000]);
        assert_eq!(std::fs::read_link(out.join("l")).unwrap(), Path::new("d/f"));

        let mut sink = ExportSink::open(&Destination::LocalDir(out.join("bad"))).unwrap();
        sink.write(vec![0xff; 1024]).await.ok();
        assert!(sink.finish().await.is_err(), "a broken stream is an error");
    }
}
