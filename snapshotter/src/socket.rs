//! Listening on a unix socket the way a daemon should: private directory, stale socket removed,
//! a live one left alone.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::path::Path;

use tokio::net::UnixListener;

/// Binds `path`. Creates its directory with mode 0700 when missing; removes a stale socket file
/// (nobody accepts on it); refuses when another process is serving there or the path is not a
/// socket.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let ctx = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| ctx("failed to create the directory of socket", e))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "another process is serving on {}; stop it or choose another address",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path).map_err(|e| ctx("failed to remove stale socket", e))?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; refusing to replace it",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ctx("failed to inspect", e)),
    }
    UnixListener::bind(path).map_err(|e| ctx("failed to listen on", e))
}
