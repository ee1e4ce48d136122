//! `oxkitd`: the oxkit daemon. Argument parsing and logging set-up; the work is in `oxkit_plugin`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use oxkit_plugin::daemon::{self, Config};
use oxkit_snapshotter::Mode;

/// oxkit daemon: containerd proxy snapshotter and build service.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[derive(Args)]
struct DaemonArgs {
    /// TOML config file; its settings sit between the defaults and these flags.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// State directory [default: /var/lib/oxkit].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Socket of the build API that oxctl dials [default: /run/oxkit/oxkitd.sock].
    #[arg(long, value_name = "SOCK")]
    address: Option<PathBuf>,
    /// containerd's socket, for builds [default: /run/containerd/containerd.sock].
    #[arg(long, value_name = "SOCK")]
    containerd_address: Option<PathBuf>,
    /// containerd namespace of builds and their images [default: buildkit].
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// How many build steps run at once [default: 4].
    #[arg(long, value_name = "N")]
    max_parallelism: Option<usize>,
    /// Seconds the build steps' shared runc shim outlives the last step [default: 300].
    #[arg(long, value_name = "SECONDS")]
    shim_idle_seconds: Option<u64>,
    /// Socket of the Snapshots API that containerd's proxy plugin dials [default: /run/oxkit/snapshotter.sock].
    #[arg(long, value_name = "SOCK")]
    snapshotter_address: Option<PathBuf>,
    /// Snapshot layering: overlay or native [default: overlay].
    #[arg(long, value_name = "MODE")]
    snapshotter_mode: Option<Mode>,
    /// Log filter (error, warn, info, debug, trace, or RUST_LOG syntax) [default: info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve only containerd's Snapshots API (no containerd needed); what conformance tests drive.
    Snapshotter {
        /// State directory.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/oxkit")]
        root: PathBuf,
        /// Socket to serve on.
        #[arg(
            long,
            value_name = "SOCK",
            default_value = "/run/oxkit/snapshotter.sock"
        )]
        address: PathBuf,
        /// Snapshot layering: overlay or native.
        #[arg(long, value_name = "MODE", default_value = "overlay")]
        mode: Mode,
        /// Log filter.
        #[arg(long, value_name = "LEVEL", default_value = "info")]
        log_level: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Snapshotter {
            root,
            address,
            mode,
            log_level,
        }) => {
            init_logging(&log_level);
            runtime().and_then(|rt| {
                rt.block_on(async {
                    let shutdown = shutdown_signal()?;
                    daemon::serve_snapshotter(&root, mode, &address, shutdown)
                        .await
                        .context("snapshotter failed")
                })
            })
        }
        None => run_daemon(cli.daemon),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = oxkit_cmd::error_chain(&e);
            tracing::error!("{msg}");
            eprintln!("oxkitd: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run_daemon(args: DaemonArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(v) = args.root {
        config.root = v;
    }
    if let Some(v) = args.address {
        config.address = v;
    }
    if let Some(v) = args.containerd_address {
        config.containerd_address = v;
    }
    if let Some(v) = args.namespace {
        config.namespace = v;
    }
    if let Some(v) = args.max_parallelism {
        config.max_parallelism = v;
    }
    if let Some(v) = args.shim_idle_seconds {
        config.shim_idle_seconds = v;
    }
    if let Some(v) = args.snapshotter_address {
        config.snapshotter.address = v;
    }
    if let Some(v) = args.snapshotter_mode {
        config.snapshotter.mode = v;
    }
    if let Some(v) = args.log_level {
        config.log_level = v;
    }
    config.validate()?;
    init_logging(&config.log_level);
    runtime()?.block_on(async {
        let shutdown = shutdown_signal()?;
        daemon::run(config, shutdown).await.context("daemon failed")
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("oxkitd: bad log level {filter:?} ({e}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// A future that resolves on SIGTERM or SIGINT. The handlers are installed now, before any
/// start-up work, so a signal that arrives early still shuts down cleanly.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).context("failed to install the SIGTERM handler")?;
    let mut int =
        signal(SignalKind::interrupt()).context("failed to install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
        }
    })
}
