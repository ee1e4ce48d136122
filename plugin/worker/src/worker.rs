//! [`Worker`]: the containerd client, mounter and scratch directory the ops share; the solver's
//! [`ResultLoader`]; and the mapping of LLB vertices to solver ops.

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oxkit_containerd::{Client, Mounter};
use oxkit_fileop::KnownDigests;
use oxkit_llb::op::{Op as LlbOp, Platform};
use oxkit_llb::source::Source;
use oxkit_llb::Graph;
use oxkit_solver::{Edge, Op, OpError, Output, OutputRef, ResultLoader, Vertex};

use crate::cache_mount::CacheMounts;
use crate::error::WorkerError;
use crate::exec::ExecOp;
use crate::file::FileOpOp;
use crate::git::GitSourceOp;
use crate::http::HttpSourceOp;
use crate::image::{ImageConfig, ImageSourceOp};
use crate::local::LocalSourceOp;
use crate::merge::MergeOp;
use crate::shim::ShimGroup;

/// The output of the worker's ops: a committed snapshot in containerd (namespace of the worker's
/// client, snapshotter `oxkit`), and for an image source the image's config.
///
/// Its [`Output::id`] is the snapshot's name, followed for an image by
/// `#config=<digest>&manifest=<digest>`, so that [`Worker::load`] gives back the config too (read
/// from containerd's content store).
#[derive(Debug, Clone)]
pub struct SnapshotRef {
    id: String,
    name_len: usize,
    config: Option<Arc<ImageConfig>>,
}

const CONFIG_MARK: &str = "#config=";
const MANIFEST_MARK: &str = "&manifest=";

impl SnapshotRef {
    /// A committed snapshot without image config.
    pub fn new(name: impl Into<String>) -> Self {
        let id: String = name.into();
        Self {
            name_len: id.len(),
            id,
            config: None,
        }
    }

    /// A committed snapshot that is the root file system of an image with `config`.
    pub fn with_config(name: impl Into<String>, config: Arc<ImageConfig>) -> Self {
        let name: String = name.into();
        Self {
            name_len: name.len(),
            id: format!(
                "{name}{CONFIG_MARK}{}{MANIFEST_MARK}{}",
                config.digest, config.manifest_digest
            ),
            config: Some(config),
        }
    }

    /// The committed snapshot's name in containerd.
    pub fn name(&self) -> &str {
        &self.id[..self.name_len]
    }

    /// The image config, when the snapshot is an image's root file system.
    pub fn image_config(&self) -> Option<&ImageConfig> {
        self.config.as_deref()
    }

    /// The worker snapshot behind a solver output, if it is one.
    pub fn from_output(output: &OutputRef) -> Option<&SnapshotRef> {
        output.as_any().downcast_ref()
    }
}

/// The worker snapshots behind an op's inputs, in order; an input of another kind is
/// [`WorkerError::ForeignInput`].
pub(crate) fn snapshot_inputs(inputs: &[OutputRef]) -> Result<Vec<SnapshotRef>, WorkerError> {
    inputs
        .iter()
        .enumerate()
        .map(|(index, o)| {
            SnapshotRef::from_output(o)
                .cloned()
                .ok_or_else(|| WorkerError::ForeignInput {
                    index,
                    found: format!("{o:?}"),
                })
        })
        .collect()
}

/// Splits an output id into the snapshot name and, for an image, its config and manifest digests.
fn parse_id(id: &str) -> (&str, Option<(&str, &str)>) {
    match id.split_once(CONFIG_MARK) {
        Some((name, rest)) => match rest.split_once(MANIFEST_MARK) {
            Some((config, manifest)) => (name, Some((config, manifest))),
            None => (name, Some((rest, ""))),
        },
        None => (id, None),
    }
}

impl Output for SnapshotRef {
    fn id(&self) -> &str {
        &self.id
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Chooses the solver op of an LLB vertex (see [`Worker::solver_edge_with`]).
pub type OpFor<'a> = dyn Fn(&oxkit_llb::Vertex) -> Result<Arc<dyn Op>, WorkerError> + 'a;

/// Settings of a [`Worker`].
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// A directory of the daemon's (e.g. `<root>/worker`) for FIFOs and mount points; created if
    /// missing. It must be on the host the shims run on.
    pub scratch_dir: PathBuf,
    /// Where the copies of clients' local directories are kept between builds (e.g.
    /// `<root>/local`); created when first needed.
    pub local_dir: PathBuf,
    /// Where the shared bare repositories of git sources are kept, one per remote (e.g.
    /// `<root>/git`); created if missing.
    pub git_dir: PathBuf,
    /// Where the downloads of http sources are kept, one per URL (e.g. `<root>/http`); created
    /// when first needed.
    pub http_dir: PathBuf,
    /// How registries are reached when an image is pulled.
    pub registry: oxkit_registry::RegistryConfig,
    /// How long the steps' shared runc shim outlives the last step.
    pub shim_idle: std::time::Duration,
}

/// Runs ops on containerd snapshots. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    client: Client,
    mounter: Arc<dyn Mounter>,
    scratch: PathBuf,
    pub(crate) caches: CacheMounts,
    shims: Arc<ShimGroup>,
    local: oxkit_localsync::Store,
    git: oxkit_git::GitCache,
    http: oxkit_http::HttpCache,
    registry: oxkit_registry::Registry,
    /// The file digests of the last few snapshots written from local sources, newest last.
    digests: std::sync::Mutex<std::collections::VecDeque<(String, Arc<KnownDigests>)>>,
}

/// How many snapshots' file digests the worker keeps (about 100 bytes a file each).
const KNOWN_DIGESTS: usize = 8;

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("namespace", &self.inner.client.namespace())
            .field("lease", &self.inner.client.lease_id())
            .field("scratch", &self.inner.scratch)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker on `client` (its namespace, normally `buildkit`, and its lease: everything the
    /// ops create — layer and step snapshots, cache mounts — is held by that lease) that mounts
    /// with `mounter`. Creates the scratch dir.
    pub fn new(
        client: Client,
        mounter: Arc<dyn Mounter>,
        options: WorkerOptions,
    ) -> Result<Self, WorkerError> {
        for dir in ["fifo", "mnt"] {
            let path = options.scratch_dir.join(dir);
            std::fs::create_dir_all(&path).map_err(|source| WorkerError::Io {
                action: "create the worker's scratch dir",
                path,
                source,
            })?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                shims: Arc::new(ShimGroup::new(
                    client.clone(),
                    &options.scratch_dir,
                    options.shim_idle,
                )),
                client,
                mounter,
                scratch: options.scratch_dir,
                caches: CacheMounts::default(),
                local: oxkit_localsync::Store::new(options.local_dir),
                git: oxkit_git::GitCache::new(options.git_dir, Default::default())?,
                http: oxkit_http::HttpCache::new(options.http_dir, Default::default())?,
                registry: oxkit_registry::Registry::new(options.registry)?,
                digests: Default::default(),
            }),
        })
    }

    /// The containerd client (namespace and lease) the ops use.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    pub(crate) fn mounter(&self) -> Arc<dyn Mounter> {
        self.inner.mounter.clone()
    }

    /// The shim group exec steps join (see [`crate::shim`]).
    pub(crate) fn shims(&self) -> &Arc<ShimGroup> {
        &self.inner.shims
    }

    /// Waits for the background deletion of finished steps' containers, then stops what the
    /// worker keeps running between steps (the shared runc shim). Steps started after this still
    /// run (the shim is made again).
    pub async fn shutdown(&self) {
        self.inner.shims.shutdown().await;
    }

    pub(crate) fn fifo_dir(&self) -> PathBuf {
        self.inner.scratch.join("fifo")
    }

    pub(crate) fn mount_dir(&self, name: &str) -> PathBuf {
        self.inner.scratch.join("mnt").join(name)
    }

    /// The copies of clients' local directories.
    pub(crate) fn local_store(&self) -> &oxkit_localsync::Store {
        &self.inner.local
    }

    /// Remembers the content digests of the files of committed snapshot `name` (known when it
    /// was written), for checksums of it ([`Worker::known_digests`]); the oldest are forgotten.
    pub(crate) fn remember_digests(&self, name: &str, digests: KnownDigests) {
        let mut kept = self.inner.digests.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|(n, _)| n != name);
        kept.push_back((name.to_string(), Arc::new(digests)));
        while kept.len() > KNOWN_DIGESTS {
            kept.pop_front();
        }
    }

    /// The file digests remembered for committed snapshot `name`.
    pub(crate) fn known_digests(&self, name: &str) -> Option<Arc<KnownDigests>> {
        let kept = self.inner.digests.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().find(|(n, _)| n == name).map(|(_, d)| d.clone())
    }

    /// The shared bare repositories of git sources.
    pub(crate) fn git(&self) -> &oxkit_git::GitCache {
        &self.inner.git
    }

    /// The downloads of http sources.
    pub(crate) fn http(&self) -> &oxkit_http::HttpCache {
        &self.inner.http
    }

    /// The registry client image pulls (and the exporter's pushes) use.
    pub fn registry(&self) -> &oxkit_registry::Registry {
        &self.inner.registry
    }

    pub(crate) fn caches(&self) -> &CacheMounts {
        &self.inner.caches
    }

    /// The solver op of `vertex`: an [`ImageSourceOp`] for `docker-image://` sources, a
    /// [`LocalSourceOp`] for `local://` sources, a [`GitSourceOp`] for git sources, an
    /// [`HttpSourceOp`] for `http://` and `https://` sources, an [`ExecOp`] for exec ops, a
    /// [`FileOpOp`] for file ops and a [`MergeOp`] for merge ops.
    pub fn op(&self, vertex: &oxkit_llb::Vertex) -> Result<Arc<dyn Op>, WorkerError> {
        match &vertex.op {
            LlbOp::Source(source) => match &source.source {
                Source::Image(image) => Ok(Arc::new(ImageSourceOp::new(
                    self.clone(),
                    image.reference.clone(),
                    vertex.platform.clone().unwrap_or_else(Platform::host),
                    image.resolve_mode,
                ))),
                Source::Local(local) => {
                    Ok(Arc::new(LocalSourceOp::new(self.clone(), local.clone())))
                }
                Source::Git(git) => Ok(Arc::new(GitSourceOp::new(self.clone(), git.clone())?)),
                Source::Http(http) => Ok(Arc::new(HttpSourceOp::new(self.clone(), http.clone()))),
            },
            LlbOp::Exec(exec) => Ok(Arc::new(ExecOp::new(self.clone(), exec.clone()))),
            LlbOp::File(file) => Ok(Arc::new(FileOpOp::new(
                self.clone(),
                file.clone(),
                vertex.inputs.len(),
            ))),
            LlbOp::Merge(merge) => Ok(Arc::new(MergeOp::new(
                self.clone(),
                merge.clone(),
                vertex.inputs.len(),
            ))),
        }
    }

    /// The solver graph of `graph` with [`Worker::op`] for every vertex, ending in the edge of its
    /// result; `Ok(None)` for a definition without a result.
    pub fn solver_edge(&self, graph: &Graph) -> Result<Option<Edge>, WorkerError> {
        self.solver_edge_with(graph, &|v| self.op(v))
    }

    /// Like [`Worker::solver_edge`] with `op_for` choosing each vertex's op (the daemon's mapping
    /// of file and merge ops goes here).
    pub fn solver_edge_with(
        &self,
        graph: &Graph,
        op_for: &OpFor<'_>,
    ) -> Result<Option<Edge>, WorkerError> {
        let mut built: HashMap<String, Arc<Vertex>> = HashMap::new();
        // Vertices come after their inputs.
        for v in graph.vertices() {
            let inputs = v
                .inputs
                .iter()
                .map(|e| {
                    built
                        .get(e.digest.as_str())
                        .map(|dep| Edge::new(dep.clone(), e.output))
                        .ok_or_else(|| {
                            WorkerError::InvalidOp(format!(
                                "vertex {} uses {} before it is defined",
                                v.digest, e.digest
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let vertex = Vertex::new(v.digest.as_str(), v.name(), op_for(v)?)
                .with_inputs(inputs)
                .with_ignore_cache(v.metadata.ignore_cache);
            built.insert(v.digest.as_str().to_owned(), Arc::new(vertex));
        }
        Ok(graph
            .result()
            .map(|r| Edge::new(built[r.digest.as_str()].clone(), r.output)))
    }

    /// The scratch dir (FIFOs under `fifo/`, mount points under `mnt/`). Steps clean up after
    /// themselves; what a crash leaves there is the daemon's to remove at start-up (after
    /// unmounting anything still mounted under `mnt/`).
    pub fn scratch_dir(&self) -> &Path {
        &self.inner.scratch
    }
}

#[async_trait::async_trait]
impl ResultLoader for Worker {
    /// Stats the committed snapshot the id names (and reads the image config it names, if any);
    /// a snapshot or config that is gone is `Ok(None)`.
    async fn load(&self, id: &str) -> Result<Option<OutputRef>, OpError> {
        let (name, image) = parse_id(id);
        match self.client().snapshots().stat(name).await {
            Ok(info) if info.kind == oxkit_containerd::SnapshotKind::Committed => {}
            Ok(_) => return Ok(None),
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(Box::new(e)),
        }
        let Some((config_digest, manifest_digest)) = image else {
            return Ok(Some(Arc::new(SnapshotRef::new(name))));
        };
        let digest: oxkit_containerd::Digest = match config_digest.parse() {
            Ok(d) => d,
            Err(_) => return Ok(None),
        };
        let raw = match self.client().content().read_to_vec(&digest).await {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(Box::new(e)),
        };
        let config = ImageConfig::parse(&raw, config_digest, manifest_digest)?;
        Ok(Some(Arc::new(SnapshotRef::with_config(
            name,
            Arc::new(config),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_image_config_and_round_trip() {
        let plain = SnapshotRef::new("oxkit-exec-1");
        assert_eq!((plain.id(), plain.name()), ("oxkit-exec-1", "oxkit-exec-1"));
        assert_eq!(parse_id(plain.id()), ("oxkit-exec-1", None));
        let config = ImageConfig {
            digest: "sha256:c".into(),
            manifest_digest: "sha256:m".into(),
            ..Default::default()
        };
        let image = SnapshotRef::with_config("sha256:top", Arc::new(config));
        assert_eq!(image.name(), "sha256:top");
        assert_eq!(image.id(), "sha256:top#config=sha256:c&manifest=sha256:m");
        assert_eq!(
            parse_id(image.id()),
            ("sha256:top", Some(("sha256:c", "sha256:m")))
        );
    }
}
