//! The `oxkitd` daemon: what it serves, on which sockets, until it is told to stop.

mod config;
mod error;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use oxkit_snapshotter::{Mode, SnapshotService, Snapshotter};

pub use config::{Config, SnapshotterConfig};

use crate::control::{BuildConfig, ControlService};
pub use error::DaemonError;

/// Serves everything `config` asks for — the snapshotter on its socket, the build API on
/// `config.address` — until `shutdown` resolves, then removes its sockets.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let build = ControlService::new(BuildConfig {
        root: config.root.clone(),
        containerd_address: config.containerd_address.clone(),
        namespace: config.namespace.clone(),
        max_parallelism: config.max_parallelism,
        shim_idle: std::time::Duration::from_secs(config.shim_idle_seconds),
        registry: config.registry.clone(),
    });
    let stopper = build.stopper();
    let listener =
        oxkit_snapshotter::socket::bind(&config.address).map_err(|source| DaemonError::Listen {
            address: config.address.clone(),
            source,
        })?;
    tracing::info!(address = %config.address.display(), containerd = %config.containerd_address.display(), "serving the build API");
    build.connect_early();
    let build_server = tonic::transport::Server::builder()
        .add_service(build.into_server())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            stopped(stop_rx.clone()),
        );
    let snapshotter = serve_snapshotter(
        &config.root,
        config.snapshotter.mode,
        &config.snapshotter.address,
        stopped(stop_rx),
    );
    let signal = async {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let (built, snapped, ()) = tokio::join!(build_server, snapshotter, signal);
    stopper.stop().await;
    if let Err(e) = std::fs::remove_file(&config.address) {
        tracing::warn!(address = %config.address.display(), error = %e, "failed to remove socket");
    }
    built.map_err(|source| DaemonError::Serve {
        address: config.address.clone(),
        source,
    })?;
    snapped
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
