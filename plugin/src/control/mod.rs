//! The build API's server side: `Solve` turns an LLB definition into a solver graph over the
//! worker's ops, streams the solve's progress, and exports the result — into containerd's image
//! store, or streamed back for the client to write (an OCI or docker archive, the result's
//! files) — and its build cache where the request asks (see [`remote`]); `Info`
//! says what the daemon builds with; `ResolveImageConfig` reads an image's config from the
//! store; `Session` holds a client's session open for its builds
//! (see [`session`]). The containerd connection is made at the first build
//! (containerd may start after oxkitd, as it should) and kept.

mod base;
mod cache;
mod export;
mod frontend;
mod remote;
mod resolve;
pub mod session;
mod step;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use oxkit_containerd::{Client, LeaseOptions, LinuxMounter, Mounter};
use oxkit_exporter::{
    push_image, ArchiveFormat, BaseImage, ImageConfig, ImageExportOptions, ImageExporter,
    LocalExportOptions, LocalExporter, OciArchive, OciExportOptions,
};
use oxkit_llb::source::{ImageRef, ResolveMode};
use oxkit_llb::Definition;
use oxkit_solver::{
    Attachment, Event, EventKind, RedbCacheStore, SolveOptions, Solver, SolverConfig,
};
use oxkit_worker::{
    log_pull, registry_credentials, SessionRef, SnapshotRef, Worker, WorkerOptions,
};
use tokio::sync::{mpsc, OnceCell};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::proto::{self, control_server::Control};
use step::Step;

pub use crate::proto::control_server::ControlServer;
pub use session::{SessionHandle, SessionRegistry};

/// The lease that holds every build result (snapshots, blobs) between builds; prune releases it.
const CACHE_LEASE: &str = "oxkit-build-cache";

/// What the build service needs to know.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// The daemon's root: the cache records (`cache.redb`), the worker's scratch (`worker/`),
    /// the copies of clients' local directories (`local/`), the git sources' repositories
    /// (`git/`) and the http sources' downloads (`http/`).
    pub root: PathBuf,
    /// containerd's socket.
    pub containerd_address: PathBuf,
    /// The containerd namespace builds and images live in.
    pub namespace: String,
    /// How many steps run at once.
    pub max_parallelism: usize,
    /// How long the steps' shared runc shim outlives the last step.
    pub shim_idle: std::time::Duration,
    /// How registries are reached (image pulls, pushes).
    pub registry: oxkit_registry::RegistryConfig,
}

/// The connected part: made at the first build.
struct Backend {
    worker: Worker,
    /// The worker's mounter, which the local exporter mounts the result with too.
    mounter: Arc<dyn Mounter>,
    solver: Solver,
    /// The solver's cache records, for disk usage and prune.
    store: Arc<RedbCacheStore>,
    /// Held shared by each build, exclusively by prune: prune never removes a running build's
    /// snapshots.
    builds: tokio::sync::RwLock<()>,
}

/// Stops a [`ControlService`]'s background work; see [`ControlService::stopper`].
pub struct Stopper {
    backend: Arc<OnceCell<Arc<Backend>>>,
}

impl Stopper {
    /// Stops what the worker keeps running between steps, if a build ever connected it; gives
    /// up after a few seconds (containerd may be gone already).
    pub async fn stop(self) {
        if let Some(backend) = self.backend.get() {
            let stopped =
                tokio::time::timeout(Duration::from_secs(5), backend.worker.shutdown()).await;
            if stopped.is_err() {
                tracing::warn!(
                    "containerd did not answer; the shared runc shim may be left running"
                );
            }
        }
    }
}

/// How many times (a second apart) [`ControlService::connect_early`] tries.
const EARLY_CONNECT_ATTEMPTS: u32 = 60;

/// The `Control` gRPC service.
pub struct ControlService {
    config: BuildConfig,
    backend: Arc<OnceCell<Arc<Backend>>>,
    sessions: SessionRegistry,
}

impl ControlService {
    /// A service that connects to containerd when the first build comes.
    pub fn new(config: BuildConfig) -> Self {
        ControlService {
            config,
            backend: Arc::new(OnceCell::new()),
            sessions: SessionRegistry::new(),
        }
    }

    /// The open client sessions (shared with the service).
    pub fn sessions(&self) -> SessionRegistry {
        self.sessions.clone()
    }

    /// What stops the service's background work (the worker's shared shim) once serving is
    /// over; take it before [`ControlService::into_server`].
    pub fn stopper(&self) -> Stopper {
        Stopper {
            backend: self.backend.clone(),
        }
    }

    /// The tonic server to add to a router.
    pub fn into_server(self) -> ControlServer<Self> {
        ControlServer::new(self)
    }

    /// Connects to containerd in the background now, retrying every second for up to
    /// [`EARLY_CONNECT_ATTEMPTS`] seconds (containerd may start after `oxkitd`, which it needs
    /// as its proxy snapshotter), so that the first build does not wait for the connection and
    /// the worker's set-up (about half a second). A build that comes first connects itself, as
    /// it would without this; one that finds the connection under way waits for it.
    pub fn connect_early(&self) {
        let (backend, config) = (self.backend.clone(), self.config.clone());
        tokio::spawn(async move {
            for attempt in 1..=EARLY_CONNECT_ATTEMPTS {
                match backend.get_or_try_init(|| Self::connect(&config)).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::debug!(attempt, error = e.message(), "early connection failed")
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
    }

    async fn backend(&self) -> Result<Arc<Backend>, Status> {
        self.backend
            .get_or_try_init(|| Self::connect(&self.config))
            .await
            .cloned()
    }

    async fn connect(c: &BuildConfig) -> Result<Arc<Backend>, Status> {
        let started = std::time::Instant::now();
        let client = Client::connect(&c.containerd_address, &c.namespace)
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "cannot reach containerd at {}: {e}",
                    c.containerd_address.display()
                ))
            })?;
        let options = LeaseOptions {
            id: Some(CACHE_LEASE.into()),
            ..Default::default()
        };
        match client.leases().create(options).await {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => {
                return Err(Status::unavailable(format!(
                    "cannot create the build cache lease: {e}"
                )))
            }
        }
        let leased = client
            .with_lease_id(CACHE_LEASE)
            .map_err(|e| Status::internal(e.to_string()))?;
        let mounter: Arc<dyn Mounter> = Arc::new(LinuxMounter);
        let worker = Worker::new(
            leased,
            mounter.clone(),
            WorkerOptions {
                scratch_dir: c.root.join("worker"),
                local_dir: c.root.join("local"),
                git_dir: c.root.join("git"),
                http_dir: c.root.join("http"),
                registry: c.registry.clone(),
                shim_idle: c.shim_idle,
            },
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        let store = RedbCacheStore::open(&c.root.join("cache.redb"))
            .map_err(|e| Status::internal(e.to_string()))?;
        let store = Arc::new(store);
        let solver = Solver::new(
            store.clone(),
            Arc::new(worker.clone()),
            SolverConfig {
                max_parallelism: c.max_parallelism.max(1),
            },
        );
        tracing::info!(containerd = %c.containerd_address.display(), namespace = c.namespace, ms = started.elapsed().as_millis() as u64, "build service connected");
        Ok(Arc::new(Backend {
            worker,
            mounter,
            solver,
            store,
            builds: tokio::sync::RwLock::new(()),
        }))
    }
}

/// Parsed exporter settings: checked before any work is done.
#[derive(Debug, PartialEq)]
enum Export {
    None,
    /// Into containerd's image store.
    Image(ImageExportOptions),
    /// An OCI or docker archive, streamed to the client.
    Oci(OciExportOptions),
    /// A tar of the result's files, streamed to the client.
    Local(LocalExportOptions),
}

impl Export {
    /// Dates the image at `epoch` (a frontend's `SOURCE_DATE_EPOCH`) unless the exporter's own
    /// `source-date-epoch` says otherwise.
    fn take_source_date_epoch(&mut self, epoch: i64) {
        match self {
            Export::Image(o) => {
                o.source_date_epoch.get_or_insert(epoch);
            }
            Export::Oci(o) => {
                o.source_date_epoch.get_or_insert(epoch);
            }
            Export::None | Export::Local(_) => {}
        }
    }

    /// The export's name in the progress (BuildKit's), or none for no export.
    fn progress_name(&self) -> Option<&'static str> {
        match self {
            Export::None => None,
            Export::Image(_) => Some("exporting to image"),
            Export::Oci(o) => Some(match o.format {
                ArchiveFormat::Oci => "exporting to oci image format",
                ArchiveFormat::Docker => "exporting to docker image format",
            }),
            Export::Local(_) => Some("copying files"),
        }
    }
}

fn parse_export(exporter: &str, attrs: &BTreeMap<String, String>) -> Result<Export, Status> {
    let parsed = match exporter {
        "" if attrs.is_empty() => Ok(Export::None),
        "" => {
            return Err(Status::invalid_argument(
                "exporter attributes given without an exporter",
            ))
        }
        "image" => ImageExportOptions::parse(attrs).map(Export::Image),
        "registry" => ImageExportOptions::parse_registry(attrs).map(Export::Image),
        "oci" => OciExportOptions::parse(attrs).map(Export::Oci),
        "docker" => OciExportOptions::parse_docker(attrs).map(Export::Oci),
        "local" => LocalExportOptions::parse(attrs).map(Export::Local),
        other => {
            return Err(Status::invalid_argument(format!(
                "exporter {other:?} is not supported; use type=image, type=registry, type=oci, \
                 type=docker or type=local"
            )))
        }
    };
    let mut parsed = parsed.map_err(|e| Status::invalid_argument(e.to_string()))?;
    // `docker load` takes tags only: a docker archive's names are normalised as BuildKit's are
    // (`app` is `docker.io/library/app:latest`, shown by Docker as `app:latest`).
    if let Export::Oci(options) = &mut parsed {
        if options.format == ArchiveFormat::Docker {
            for name in &mut options.names {
                *name = ImageRef::parse(name)
                    .map_err(|e| {
                        Status::invalid_argument(format!(
                            "docker exporter option \"name\": {name:?}: {e}"
                        ))
                    })?
                    .to_string();
            }
        }
    }
    if let Export::Image(options) = &parsed {
        if options.push {
            for name in &options.names {
                push_reference(name)?;
            }
        }
    }
    Ok(parsed)
}

type SolveStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<proto::SolveEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Control for ControlService {
    type SolveStream = SolveStream;
    type SessionStream = session::RequestStream;

    async fn solve(
        &self,
        request: Request<proto::SolveRequest>,
    ) -> Result<Response<SolveStream>, Status> {
        let r = request.into_inner();
        let frontend = match r.frontend.as_str() {
            "" => None,
            name => Some(frontend::DockerfileRequest::parse(
                name,
                &r.frontend_attrs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )?),
        };
        if frontend.is_some() && !r.definition.is_empty() {
            return Err(Status::invalid_argument(
                "a build gives either a definition or a frontend, not both",
            ));
        }
        // A definition is checked before anything waits (its session, containerd).
        let definition = match &frontend {
            None => Some(
                Definition::from_bytes(&r.definition)
                    .and_then(|d| d.parse())
                    .map_err(|e| {
                        Status::invalid_argument(format!("invalid build definition: {e}"))
                    })?,
            ),
            Some(_) => None,
        };
        let attrs: BTreeMap<String, String> = r.exporter_attrs.into_iter().collect();
        let mut export = parse_export(&r.exporter, &attrs)?;
        let caches = remote::CacheJob::parse(&r.cache_exports, &r.cache_imports)?;
        if caches.inline() && !matches!(export, Export::Image(_) | Export::Oci(_)) {
            return Err(Status::invalid_argument(
                "--export-cache type=inline puts the cache in the image's config: it needs an \
                 image output (type=image, registry, oci or docker)",
            ));
        }
        if let Some(epoch) = frontend
            .as_ref()
            .map(frontend::DockerfileRequest::source_date_epoch)
            .transpose()?
            .flatten()
        {
            export.take_source_date_epoch(epoch);
        }
        let session = match r.session_id.as_str() {
            "" => None,
            id => Some(
                self.sessions
                    .wait(id, session::ATTACH_TIMEOUT)
                    .await
                    .map_err(|e| session::status(&e))?,
            ),
        };
        let backend = self.backend().await?;
        let (graph, image_config) = match (definition, &frontend) {
            (Some(graph), _) => (graph, None),
            (None, None) => {
                return Err(Status::internal(
                    "a build with neither definition nor frontend",
                ))
            }
            (None, Some(request)) => {
                let session = session.as_ref().ok_or_else(|| {
                    Status::invalid_argument(
                        "the Dockerfile frontend reads the Dockerfile through a client session; \
                         the build has none",
                    )
                })?;
                let made = frontend::dockerfile(&backend.worker, session, request).await?;
                (made.graph, Some(made.image_config))
            }
        };
        let edge = backend
            .worker
            .solver_edge(&graph)
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            .ok_or_else(|| Status::invalid_argument("the build definition has no result"))?;
        let base = Base {
            image: base::base_image(&graph),
            config: image_config,
        };
        let (tx, rx) = mpsc::channel(256);
        let session = session.map(|h| Arc::new(h) as SessionRef);
        // The export asks the client too: for the credentials of a push.
        let sessions: Vec<SessionRef> = session.iter().cloned().collect();
        let options = SolveOptions {
            no_cache: r.no_cache,
            session: session.map(Attachment::new),
            ..Default::default()
        };
        let root = self.config.root.clone();
        tokio::spawn(async move {
            // A client that goes away cancels its build (the steps only it waits for stop; a step
            // another build shares goes on for that one).
            let result = tokio::select! {
                result = build(&backend, &edge, options, ExportJob { export, base, sessions, caches }, &root, &tx) => result,
                () = tx.closed() => {
                    tracing::info!("the client went away; its build is cancelled");
                    return;
                }
            };
            let event = match result {
                Ok(response) => Ok(proto::SolveEvent {
                    event: Some(proto::solve_event::Event::Result(proto::SolveResult {
                        exporter_response: response.into_iter().collect(),
                    })),
                }),
                Err(status) => Err(status),
            };
            let _ = tx.send(event).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn session(
        &self,
        request: Request<tonic::Streaming<proto::SessionClientMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let requests = self.sessions.serve(request.into_inner()).await?;
        Ok(Response::new(requests))
    }

    async fn disk_usage(
        &self,
        _: Request<proto::DiskUsageRequest>,
    ) -> Result<Response<proto::DiskUsageResponse>, Status> {
        let backend = self.backend().await?;
        let records = cache::disk_usage(&backend.store, &backend.worker).await?;
        Ok(Response::new(proto::DiskUsageResponse {
            records: records
                .into_iter()
                .map(|u| proto::UsageRecord {
                    id: u.id,
                    description: u.description,
                    size: u.size,
                    created: Some(prost_types::Timestamp::from(u.created)),
                })
                .collect(),
        }))
    }

    async fn prune(
        &self,
        _: Request<proto::PruneRequest>,
    ) -> Result<Response<proto::PruneResponse>, Status> {
        let backend = self.backend().await?;
        let _exclusive = backend.builds.write().await;
        let (records, reclaimed) = cache::prune(&backend.store, &backend.worker).await?;
        tracing::info!(records, reclaimed, "pruned the build cache");
        Ok(Response::new(proto::PruneResponse { records, reclaimed }))
    }

    async fn resolve_image_config(
        &self,
        request: Request<proto::ResolveImageConfigRequest>,
    ) -> Result<Response<proto::ResolveImageConfigResponse>, Status> {
        let backend = self.backend().await?;
        resolve::resolve_image_config(&backend.worker, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn info(
        &self,
        _: Request<proto::InfoRequest>,
    ) -> Result<Response<proto::InfoResponse>, Status> {
        Ok(Response::new(proto::InfoResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            containerd_address: self.config.containerd_address.display().to_string(),
            namespace: self.config.namespace.clone(),
            snapshotter: oxkit_containerd::DEFAULT_SNAPSHOTTER.into(),
        }))
    }
}

type Events = mpsc::Sender<Result<proto::SolveEvent, Status>>;

/// What happens to a build's result: the export, the image it stands on, and the build's
/// client sessions (which a push asks for credentials).
struct ExportJob {
    export: Export,
    base: Base,
    sessions: Vec<SessionRef>,
    caches: remote::CacheJob,
}

/// What the result's image config starts from.
struct Base {
    /// The image at the bottom of the result, and the platform its source picked.
    image: Option<(String, oxkit_llb::op::Platform)>,
    /// A frontend's config for the result (computed on that image), in place of the image's.
    config: Option<serde_json::Value>,
}

/// Opens the job's cache imports, solves `edge` with `solve_options` (its progress forwarded to
/// `tx`), exports, then writes the job's cache exports; returns the exporters' response.
async fn build(
    backend: &Backend,
    edge: &oxkit_solver::Edge,
    solve_options: SolveOptions,
    mut job: ExportJob,
    root: &std::path::Path,
    tx: &Events,
) -> Result<BTreeMap<String, String>, Status> {
    let _build = backend.builds.read().await;
    let (ptx, mut prx) = mpsc::unbounded_channel::<Event>();
    let forward = {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(event) = prx.recv().await {
                // A client that went away stops receiving; the build goes on to its end.
                let _ = tx.send(Ok(wire_event(event))).await;
            }
        })
    };
    let remote = match job.caches.imports.as_slice() {
        [] => None,
        imports => remote::open_imports(&backend.worker, imports, &job.sessions, tx).await,
    };
    let solve_options = SolveOptions {
        progress: Some(ptx),
        remote,
        ..solve_options
    };
    let solved = if job.caches.exports_any() {
        backend.solver.solve_keyed(edge, solve_options).await
    } else {
        backend
            .solver
            .solve(edge, solve_options)
            .await
            .map(|output| (output, Vec::new()))
    };
    let _ = forward.await;
    let (output, records) = solved.map_err(|e| Status::aborted(e.chain()))?;
    let top = SnapshotRef::from_output(&output)
        .ok_or_else(|| Status::internal("the build result is not a snapshot"))?
        .name()
        .to_string();
    let scratch = root.join("worker");
    if job.caches.inline() {
        let (field, value) =
            remote::inline_field(&backend.worker, &scratch, &records, &top).await?;
        match &mut job.export {
            Export::Image(o) => o.config.document.insert(field, value),
            Export::Oci(o) => o.config.document.insert(field, value),
            Export::None | Export::Local(_) => None,
        };
    }
    let exports = std::mem::take(&mut job.caches.exports);
    let sessions = job.sessions.clone();
    let mut response = match job.export.progress_name() {
        None => BTreeMap::new(),
        Some(name) => {
            // The export shows as one more step, as in BuildKit.
            let step = Step::new(EXPORT_VERTEX, name);
            step.started(tx).await;
            let exported = export_result(backend, &top, job, root, tx).await;
            match &exported {
                Ok(_) => step.completed(tx).await,
                Err(e) => step.failed(tx, e.message()).await,
            }
            exported?
        }
    };
    let solved = remote::Solved {
        worker: &backend.worker,
        scratch: &scratch,
        records: &records,
        top: &top,
        sessions: &sessions,
    };
    remote::export_caches(&solved, &exports, tx, &mut response).await?;
    Ok(response)
}

/// Where a push of image `name` goes: the name normalized as image references are
/// (`app:1` is `docker.io/library/app:1`).
fn push_reference(name: &str) -> Result<ImageRef, Status> {
    ImageRef::parse(name)
        .map_err(|e| Status::invalid_argument(format!("cannot push to {name:?}: {e}")))
}

/// The progress vertex of the export (not an op's digest).
const EXPORT_VERTEX: &str = "export";

/// A line of the export step's output (what a push did), best effort.
fn export_log(tx: &Events, line: String) {
    Step::new(EXPORT_VERTEX, "").log(tx, line)
}

/// Exports snapshot `top` as `export` says; returns the exporter's response.
async fn export_result(
    backend: &Backend,
    top: &str,
    job: ExportJob,
    root: &std::path::Path,
    tx: &Events,
) -> Result<BTreeMap<String, String>, Status> {
    let top = top.to_owned();
    let mut response = BTreeMap::new();
    let client = backend.worker.client();
    let scratch = root.join("worker");
    let ExportJob {
        export,
        base,
        sessions,
        caches: _,
    } = job;
    match export {
        Export::None => {}
        Export::Image(options) => {
            let base = load_base(&backend.worker, base).await?;
            let exported = ImageExporter::new(client.clone(), scratch)
                .export(&top, base.as_ref(), &options)
                .await
                .map_err(export_failed)?;
            response.insert("containerd.image.name".into(), options.names.join(","));
            if options.push {
                let log = |line: String| export_log(tx, line);
                let mut total = oxkit_exporter::PushReport::default();
                for name in &options.names {
                    let reference = push_reference(name)?;
                    let credentials = registry_credentials(&sessions, &reference.domain).await;
                    let registry = backend
                        .worker
                        .registry()
                        .with_credentials(&reference.domain, credentials)
                        .map_err(|e| Status::failed_precondition(e.to_string()))?;
                    let report = push_image(
                        client,
                        &registry,
                        &reference.to_string(),
                        &exported.manifest,
                        &log,
                    )
                    .await
                    .map_err(export_failed)?;
                    total.uploaded += report.uploaded;
                    total.skipped += report.skipped;
                    total.mounted += report.mounted;
                }
                response.insert("image.push.uploaded".into(), total.uploaded.to_string());
                response.insert("image.push.skipped".into(), total.skipped.to_string());
                response.insert("image.push.mounted".into(), total.mounted.to_string());
            }
            response.insert(
                "containerd.image.digest".into(),
                exported.manifest.digest.to_string(),
            );
            response.insert(
                "containerd.config.digest".into(),
                exported.config.to_string(),
            );
        }
        Export::Oci(options) => {
            let base = load_base(&backend.worker, base).await?;
            let built = ImageExporter::new(client.clone(), scratch)
                .build_image(
                    &top,
                    base.as_ref(),
                    options.compression,
                    &options.config,
                    options.source_date_epoch,
                    &options.manifest,
                )
                .await
                .map_err(export_failed)?;
            let archive = OciArchive::new(&built, &options.names, options.format);
            let content = client.content();
            export::stream_async(tx, |out| archive.write_to(&content, out)).await?;
            if !options.names.is_empty() {
                response.insert("image.name".into(), options.names.join(","));
            }
            response.insert(
                "containerd.image.digest".into(),
                built.manifest.digest.to_string(),
            );
            response.insert(
                "containerd.config.digest".into(),
                built.config.digest.to_string(),
            );
        }
        Export::Local(LocalExportOptions {}) => {
            let exporter = LocalExporter::new(client.clone(), backend.mounter.clone());
            export::stream_blocking(tx, |out| exporter.export(&top, out)).await?;
        }
    }
    Ok(response)
}

/// The base image of the result, read as the image source read it, with the frontend's config
/// if there is one.
async fn load_base(worker: &Worker, base: Base) -> Result<Option<BaseImage>, Status> {
    let image = match base.image {
        Some((name, platform)) => {
            let reference = ImageRef::parse(&name)
                .map_err(|e| Status::failed_precondition(format!("base image {name:?}: {e}")))?;
            let resolved = worker
                .resolve_image(&reference, &platform, ResolveMode::Default, &[], &log_pull)
                .await
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
            Some(BaseImage::from_manifest(&name, resolved.manifest).map_err(export_failed)?)
        }
        None => None,
    };
    let Some(config) = base.config else {
        return Ok(image);
    };
    let config = ImageConfig::from_json(config).map_err(Status::internal)?;
    match image {
        Some(image) => image.with_config(config),
        None => BaseImage::scratch_with(config),
    }
    .map(Some)
    .map_err(export_failed)
}

/// An export's failure as a status, with its causes (the client sees only the message).
fn export_failed(e: oxkit_exporter::ExportError) -> Status {
    let mut message = format!("export failed: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    Status::internal(message)
}

fn wire_event(e: Event) -> proto::SolveEvent {
    use proto::vertex_status::State;
    let time = Some(prost_types::Timestamp::from(e.time));
    let vertex = |state: State, error: String| {
        proto::solve_event::Event::Vertex(proto::VertexStatus {
            digest: e.vertex.digest.clone(),
            name: e.vertex.name.clone(),
            state: state as i32,
            time,
            error,
        })
    };
    let event = match e.kind {
        EventKind::Started => vertex(State::Started, String::new()),
        EventKind::Cached => vertex(State::Cached, String::new()),
        EventKind::Completed => vertex(State::Completed, String::new()),
        EventKind::Failed { ref error } => vertex(State::Failed, error.clone()),
        EventKind::Canceled => vertex(State::Canceled, String::new()),
        EventKind::Log { stream, ref data } => proto::solve_event::Event::Log(proto::VertexLog {
            digest: e.vertex.digest.clone(),
            stream: match stream {
                oxkit_solver::Stream::Stdout => 1,
                oxkit_solver::Stream::Stderr => 2,
            },
            data: data.to_vec(),
            time,
        }),
    };
    event.into()
}

impl From<proto::solve_event::Event> for proto::SolveEvent {
    fn from(event: proto::solve_event::Event) -> Self {
        proto::SolveEvent { event: Some(event) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn exporters_are_parsed_before_any_work() {
        assert_eq!(parse_export("", &attrs(&[])).unwrap(), Export::None);
        assert!(matches!(
            parse_export("oci", &attrs(&[("name", "a:1")])).unwrap(),
            Export::Oci(OciExportOptions { names, format: ArchiveFormat::Oci, .. }) if names == ["a:1"]
        ));
        assert!(matches!(
            parse_export("docker", &attrs(&[("name", "a,me/b:1")])).unwrap(),
            Export::Oci(OciExportOptions { names, format: ArchiveFormat::Docker, .. })
                if names == ["docker.io/library/a:latest", "docker.io/me/b:1"]
        ));
        assert_eq!(
            parse_export("local", &attrs(&[])).unwrap(),
            Export::Local(LocalExportOptions {})
        );
        assert!(matches!(
            parse_export("registry", &attrs(&[("name", "127.0.0.1:5000/a:1")])).unwrap(),
            Export::Image(ImageExportOptions { push: true, .. })
        ));
        for (exporter, pairs, needle) in [
            ("tar", &[][..], "\"tar\""),
            ("registry", &[("name", "a:-1")], "cannot push to \"a:-1\""),
            ("local", &[("mode", "x")], "\"mode\""),
            ("oci", &[("unpack", "true")], "\"unpack\""),
            (
                "docker",
                &[("unpack", "true")],
                "docker exporter option \"unpack\"",
            ),
            (
                "docker",
                &[("name", "Bad:1")],
                "docker exporter option \"name\"",
            ),
            ("", &[("name", "x")], "without an exporter"),
        ] {
            let status = parse_export(exporter, &attrs(pairs)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains(needle), "{}", status.message());
        }
    }
}
