//! The `oxkitd` daemon: what it serves, on which sockets, until it is told to stop.

mod config;
mod error;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use oxkit_snapshotter::{Mode, SnapshotService, Snapshotter};

pub use config::{Config, SnapshotterConfig};
pub use error::DaemonError;

/// Serves everything `config` asks for until `shutdown` resolves, then removes its sockets.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    serve_snapshotter(
        &config.root,
        config.snapshotter.mode,
        &config.snapshotter.address,
        shutdown,
    )
    .await
}

/// Serves only containerd's Snapshots API for the snapshotter at `root`, on `address`.
pub async fn serve_snapshotter(
    root: &Path,
    mode: Mode,
    address: &Path,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    // The socket first: a daemon already serving there is the likelier mistake, and says so.
    let listener =
        oxkit_snapshotter::socket::bind(address).map_err(|source| DaemonError::Listen {
            address: address.to_path_buf(),
            source,
        })?;
    let root_owned = root.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || Snapshotter::open(root_owned, mode))
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))
        .and_then(|r| r.map_err(DaemonError::from));
    let sn = match opened {
        Ok(sn) => Arc::new(sn),
        Err(e) => {
            let _ = std::fs::remove_file(address);
            return Err(e);
        }
    };
    tracing::info!(root = %root.display(), mode = mode.as_str(), address = %address.display(), "serving snapshotter");
    let served = tonic::transport::Server::builder()
        .add_service(SnapshotService::new(sn).into_server())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            shutdown,
        )
        .await;
    if let Err(e) = std::fs::remove_file(address) {
        tracing::warn!(address = %address.display(), error = %e, "failed to remove socket");
    }
    served.map_err(|source| DaemonError::Serve {
        address: address.to_path_buf(),
        source,
    })?;
    tracing::info!("snapshotter stopped");
    Ok(())
}
