//! The build API's client side, for `oxctl`: connecting to oxkitd, solving, showing progress,
//! writing what the `oci` and `local` exporters stream back, and serving the build's client
//! session (secrets, local directories), and image configs from the daemon's store for build descriptions
//! ([`BlockingImageResolver`]). The wire types stay here; callers see [`SolveOptions`], [`Progress`],
//! [`DaemonInfo`], [`Destination`], [`ExportSink`] and [`SessionProvider`].

mod auth;
mod export;
mod local;
mod progress;
mod resolve;
mod session;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint};

use crate::proto::{self, control_client::ControlClient};

pub use auth::RegistryAuths;
pub use export::{Destination, ExportSink};
pub use local::{client_id, context_digest, read_dockerignore, Attachables, LocalDir, LocalDirs};
pub use progress::{ProgressMode, ProgressPrinter};
pub use resolve::BlockingImageResolver;
pub use session::{
    ClientSession, NoProvider, Offers, ProvideError, SecretSource, SecretSpec, Secrets,
    SessionProvider,
};

/// The daemon's default build API socket.
pub const DEFAULT_ADDRESS: &str = "unix:///run/oxkit/oxkitd.sock";

/// Client-side failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not `unix:///PATH` (or a plain path).
    #[error("unsupported daemon address {0:?}; use unix:///PATH")]
    Address(String),
    /// oxkitd could not be reached.
    #[error("cannot connect to oxkitd at {address}; is it running? ({source})")]
    Connect {
        /// The address.
        address: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// A `--local NAME=DIR` is malformed or unusable.
    #[error("--local {spec}: {reason}")]
    Local {
        /// The option as given.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// An `--output` option the client handles (`dest`) is missing or malformed.
    #[error("{exporter} output option {key:?}: {reason}")]
    Output {
        /// The exporter.
        exporter: String,
        /// The option.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing the export's destination failed.
    #[error("failed to {action} {}", .path.display())]
    Destination {
        /// What was being done.
        action: &'static str,
        /// The file or directory (`-` for stdout).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A `--export-cache` or `--import-cache` is malformed.
    #[error("{0}")]
    Cache(String),
    /// A `--secret` is malformed, or its value cannot be read.
    #[error("secret {spec}: {reason}")]
    Secret {
        /// The secret's spec or id.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// No random session id could be made.
    #[error("cannot make a session id from /dev/urandom: {0}")]
    SessionId(#[source] std::io::Error),
    /// The daemon sent export data for a build that asked for none.
    #[error("the daemon sent export data, but this build has no destination for it")]
    UnexpectedExport,
    /// A blocking client's own async runtime could not be started.
    #[error("failed to start the client's async runtime: {source}")]
    Runtime {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon answered with an error (a failed build, a bad definition, …).
    #[error("{message}")]
    Daemon {
        /// The gRPC code (InvalidArgument for a bad definition, Aborted for a failed step, …).
        code: tonic::Code,
        /// The daemon's message, which names the failing step.
        message: String,
    },
}

// Only the message travels: tonic's own Display repeats it with the code and metadata.
impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Daemon {
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// What a build asks for.
#[derive(Debug, Clone, Default)]
pub struct SolveOptions {
    /// The marshalled LLB definition.
    pub definition: Vec<u8>,
    /// The exporter (`image`, `oci`, `local`), or empty to solve only.
    pub exporter: String,
    /// Its attributes.
    pub exporter_attrs: BTreeMap<String, String>,
    /// Re-run every step.
    pub no_cache: bool,
    /// The client session serving the build (see [`BuildClient::open_session`]), or empty.
    pub session_id: String,
    /// A frontend that makes the definition in the daemon (`dockerfile.v0`), instead of
    /// `definition`; empty for none.
    pub frontend: String,
    /// The frontend's options (`filename`, `target`, `build-arg:NAME`, …).
    pub frontend_attrs: BTreeMap<String, String>,
    /// Cache exports (`--export-cache`): type and attributes each.
    pub cache_exports: Vec<CacheEntry>,
    /// Cache imports (`--import-cache`).
    pub cache_imports: Vec<CacheEntry>,
}

/// One `--export-cache` or `--import-cache`: a type and its attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheEntry {
    /// `registry`, `local` or `inline`.
    pub kind: String,
    /// Its attributes (`ref=`, `dest=`, `src=`, `mode=`, …).
    pub attrs: BTreeMap<String, String>,
}

impl CacheEntry {
    /// Parses buildctl's `type=T,k=v,…`; a bare `REF` is `type=registry,ref=REF`. A relative
    /// `dest=` or `src=` (of a local cache) is made absolute here: the daemon reads and writes
    /// it, on this host.
    pub fn parse(spec: &str) -> Result<Self, ClientError> {
        let mut entry = CacheEntry::default();
        if !spec.contains('=') {
            entry.kind = "registry".into();
            entry.attrs.insert("ref".into(), spec.to_owned());
            return Ok(entry);
        }
        for field in spec.split(',') {
            let (k, v) = field.split_once('=').ok_or_else(|| {
                ClientError::Cache(format!(
                    "cache option {field:?} in {spec:?} is not key=value"
                ))
            })?;
            if k == "type" {
                entry.kind = v.to_owned();
            } else {
                let v = match k {
                    "dest" | "src" if !v.is_empty() => std::path::absolute(v)
                        .map_err(|e| ClientError::Cache(format!("cache option {k}={v:?}: {e}")))?
                        .display()
                        .to_string(),
                    _ => v.to_owned(),
                };
                entry.attrs.insert(k.to_owned(), v);
            }
        }
        if entry.kind.is_empty() {
            return Err(ClientError::Cache(format!(
                "cache option {spec:?} has no type= (registry, local or inline)"
            )));
        }
        Ok(entry)
    }
}

fn cache_entries(entries: Vec<CacheEntry>) -> Vec<proto::CacheOptionsEntry> {
    entries
        .into_iter()
        .map(|e| proto::CacheOptionsEntry {
            r#type: e.kind,
            attrs: e.attrs.into_iter().collect(),
        })
        .collect()
}

/// Vertex states as the daemon reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VertexState {
    /// Running.
    Started,
    /// Taken from the cache.
    Cached,
    /// Finished.
    Completed,
    /// Failed.
    Failed,
    /// Canceled because the build failed elsewhere or was dropped.
    Canceled,
}

/// One progress event of a build.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A vertex changed state.
    Vertex {
        /// Its digest.
        digest: String,
        /// Its name.
        name: String,
        /// The new state.
        state: VertexState,
        /// When.
        time: SystemTime,
        /// For `Failed`.
        error: String,
    },
    /// Output of a running vertex.
    Log {
        /// Its digest.
        digest: String,
        /// 1 stdout, 2 stderr.
        stream: i32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The next chunk of the exporter's output (`oci`, `local`), for an [`ExportSink`].
    Export(Vec<u8>),
    /// The build finished: what the exporter reported.
    Result(BTreeMap<String, String>),
}

/// One build cache record, as `oxctl du` lists it.
#[derive(Debug, Clone)]
pub struct CacheUsage {
    /// The cache key.
    pub id: String,
    /// The step that made it.
    pub description: String,
    /// Bytes its snapshots use.
    pub size: i64,
    /// When it was recorded.
    pub created: Option<SystemTime>,
}

/// What `Info` says.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    /// oxkitd's version.
    pub version: String,
    /// The containerd it builds with.
    pub containerd_address: String,
    /// The containerd namespace of its images.
    pub namespace: String,
    /// Its snapshotter's name in containerd.
    pub snapshotter: String,
}

/// A connection to oxkitd's build API.
pub struct BuildClient {
    inner: ControlClient<Channel>,
}

impl BuildClient {
    /// Connects to `address` (`unix:///PATH`, or a plain path).
    pub async fn connect(address: &str) -> Result<Self, ClientError> {
        let path = PathBuf::from(match address.strip_prefix("unix://") {
            Some(p) => p,
            None if address.starts_with('/') => address,
            None => return Err(ClientError::Address(address.into())),
        });
        let channel = Endpoint::from_static("http://[::]:0")
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .map_err(|source| ClientError::Connect {
                address: address.into(),
                source,
            })?;
        Ok(BuildClient {
            inner: ControlClient::new(channel),
        })
    }

    /// Opens a client session serving `provider`, for builds to name in
    /// [`SolveOptions::session_id`]; it is served until the returned session is dropped.
    pub async fn open_session(
        &mut self,
        provider: Arc<dyn SessionProvider>,
    ) -> Result<ClientSession, ClientError> {
        ClientSession::open(&mut self.inner, provider).await
    }

    /// Starts a build with a client session serving `provider`: opens the session, then
    /// solves as [`solve`](Self::solve) does; the session closes when the stream ends or is
    /// dropped.
    pub async fn solve_with_session(
        &mut self,
        mut options: SolveOptions,
        provider: Arc<dyn SessionProvider>,
    ) -> Result<impl Stream<Item = Result<Progress, ClientError>>, ClientError> {
        let session = self.open_session(provider).await?;
        options.session_id = session.id().to_string();
        let events = self.solve(options).await?;
        Ok(WithSession {
            events: Box::pin(events),
            session: Some(session),
        })
    }

    /// Starts a build; the stream yields its progress, then the export stream for `oci` and
    /// `local` ([`Progress::Export`]), and ends with [`Progress::Result`], or an error carrying
    /// the build's failure.
    pub async fn solve(
        &mut self,
        options: SolveOptions,
    ) -> Result<impl tokio_stream::Stream<Item = Result<Progress, ClientError>>, ClientError> {
        let request = proto::SolveRequest {
            definition: options.definition,
            exporter: options.exporter,
            exporter_attrs: options.exporter_attrs.into_iter().collect(),
            no_cache: options.no_cache,
            session_id: options.session_id,
            frontend: options.frontend,
            frontend_attrs: options.frontend_attrs.into_iter().collect(),
            cache_exports: cache_entries(options.cache_exports),
            cache_imports: cache_entries(options.cache_imports),
        };
        let stream = self.inner.solve(request).await?.into_inner();
        Ok(stream.filter_map(|event| match event {
            Err(status) => Some(Err(ClientError::from(status))),
            Ok(e) => e.event.map(|e| Ok(progress_of(e))),
        }))
    }

    /// The build cache's records and the disk their snapshots use.
    pub async fn disk_usage(&mut self) -> Result<Vec<CacheUsage>, ClientError> {
        let r = self
            .inner
            .disk_usage(proto::DiskUsageRequest {})
            .await?
            .into_inner();
        Ok(r.records
            .into_iter()
            .map(|u| CacheUsage {
                id: u.id,
                description: u.description,
                size: u.size,
                created: u.created.and_then(|t| SystemTime::try_from(t).ok()),
            })
            .collect())
    }

    /// Drops the build cache; returns (records dropped, bytes reclaimed).
    pub async fn prune(&mut self) -> Result<(i64, i64), ClientError> {
        let r = self.inner.prune(proto::PruneRequest {}).await?.into_inner();
        Ok((r.records, r.reclaimed))
    }

    /// The daemon's info.
    pub async fn info(&mut self) -> Result<DaemonInfo, ClientError> {
        let r = self.inner.info(proto::InfoRequest {}).await?.into_inner();
        Ok(DaemonInfo {
            version: r.version,
            containerd_address: r.containerd_address,
            namespace: r.namespace,
            snapshotter: r.snapshotter,
        })
    }
}

type Events = Pin<Box<dyn Stream<Item = Result<Progress, ClientError>> + Send>>;

/// A build's events, holding its session open until they end.
struct WithSession {
    events: Events,
    session: Option<ClientSession>,
}

impl Stream for WithSession {
    type Item = Result<Progress, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.events.as_mut().poll_next(cx);
        if let Poll::Ready(None) = next {
            self.session = None;
        }
        next
    }
}

fn progress_of(e: proto::solve_event::Event) -> Progress {
    use proto::vertex_status::State;
    match e {
        proto::solve_event::Event::Vertex(v) => Progress::Vertex {
            state: match State::try_from(v.state).unwrap_or(State::Started) {
                State::Started => VertexState::Started,
                State::Cached => VertexState::Cached,
                State::Completed => VertexState::Completed,
                State::Failed => VertexState::Failed,
                State::Canceled => VertexState::Canceled,
            },
            time: v
                .time
                .and_then(|t| SystemTime::try_from(t).ok())
                .unwrap_or_else(SystemTime::now),
            digest: v.digest,
            name: v.name,
            error: v.error,
        },
        proto::solve_event::Event::Log(l) => Progress::Log {
            digest: l.digest,
            stream: l.stream,
            data: l.data,
        },
        proto::solve_event::Event::Export(c) => Progress::Export(c.data),
        proto::solve_event::Event::Result(r) => {
            Progress::Result(r.exporter_response.into_iter().collect())
        }
    }
}
