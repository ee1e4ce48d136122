//! The exec op: runs a process as a containerd container and task on a snapshot prepared on its
//! root input, with bind, cache, tmpfs and secret mounts and secret env, streams its output into
//! the step's log, and commits the root (and read-write bind mounts with outputs) as its outputs.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use oxkit_containerd::{
    Labels, Mount as CdMount, Mounter, Network, NewContainer, SpecBuilder, SpecMount, StdioPipes,
    RUNC_GROUP_ANNOTATION,
};
use oxkit_llb::op::{CacheSharing, ExecOp as LlbExecOp, Mount, MountKind, NetMode};
use oxkit_solver::{CacheMap, Op, OpContext, OpError, OutputRef, Stream};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::cache_mount::{self, CacheUse};
use crate::error::{Context as _, WorkerError};
use crate::names::unique;
use crate::secret;
use crate::session::sessions;
use crate::stubs::Stubs;
use crate::tail::{LogWriter, Tail};
use crate::user::{is_numeric, parse_group, parse_passwd, resolve_user, ResolvedUser};
use crate::worker::{snapshot_inputs, SnapshotRef, Worker};

/// The digest of an exec op's semantic fields — what its cache key is made of:
/// args, env, cwd, user, network (`host` and the default sandbox are the same here), hostname,
/// valid exit codes, extra hosts, ulimits, secret env names, and per mount its destination,
/// read-only flag, output index and kind (bind: input index and selector; cache: id, sharing,
/// input and selector; tmpfs: size; secret: id, owner, mode, optional).
///
/// Left out, because they do not change the result: the proxy environment (as BuildKit does),
/// the content-cache hint of bind mounts, and everything in the vertex metadata (description,
/// custom name, progress group). A cache mount's content is not keyed either: it is a cache.
/// Nor are secrets' values, which the op does not carry: as in BuildKit, a new value of a secret
/// does not invalidate the step (and no value can be recovered from a key).
pub fn exec_cache_digest(op: &LlbExecOp) -> String {
    let mounts: Vec<_> = op
        .mounts
        .iter()
        .map(|m| {
            let kind = match &m.kind {
                MountKind::Bind {
                    input, selector, ..
                } => json!({"bind": {"input": input, "selector": selector}}),
                MountKind::Cache {
                    id,
                    sharing,
                    input,
                    selector,
                } => json!({"cache": {"id": id, "sharing": format!("{sharing:?}"),
                    "input": input, "selector": selector}}),
                MountKind::Tmpfs { size } => json!({"tmpfs": {"size": size}}),
                MountKind::Secret(s) => json!({"secret": {"id": s.id, "uid": s.uid, "gid": s.gid,
                    "mode": s.mode, "optional": s.optional}}),
            };
            json!({"dest": m.dest, "readonly": m.readonly, "output": m.output, "kind": kind})
        })
        .collect();
    let network = match op.network {
        NetMode::Sandbox | NetMode::Host => "host",
        NetMode::None => "none",
    };
    let meta = &op.meta;
    let doc = json!({
        "args": meta.args,
        "env": meta.env,
        "cwd": meta.cwd,
        "user": meta.user,
        "hostname": meta.hostname,
        "valid_exit_codes": meta.valid_exit_codes,
        "extra_hosts": meta.extra_hosts.iter().map(|h| [&h.host, &h.ip]).collect::<Vec<_>>(),
        "ulimits": meta.ulimits.iter().map(|u| json!([u.name, u.soft, u.hard])).collect::<Vec<_>>(),
        "secret_env": op.secret_env.iter().map(|s| json!([s.id, s.name, s.optional])).collect::<Vec<_>>(),
        "remove_mount_stubs_recursive": meta.remove_mount_stubs_recursive,
        "network": network,
        "mounts": mounts,
    });
    let hash = Sha256::digest(doc.to_string().as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("oxkit.exec.v1:sha256:{hex}")
}

/// The exec op. One output per mount with an output index: the root's committed snapshot, and
/// those of read-write bind mounts.
pub struct ExecOp {
    worker: Worker,
    op: LlbExecOp,
}

impl ExecOp {
    /// The exec op `op` on `worker`.
    pub fn new(worker: Worker, op: LlbExecOp) -> Self {
        Self { worker, op }
    }

    /// Rejects what this worker cannot run, before any work.
    fn check(&self) -> Result<(), WorkerError> {
        check_op(&self.op)
    }
}

/// Rejects what the worker cannot run (extra hosts, ulimits, read-only or non-bind roots,
/// selectors on the root, outputs of read-only/cache/tmpfs/secret mounts, secret env without a
/// secret id or a variable name).
fn check_op(op: &LlbExecOp) -> Result<(), WorkerError> {
    {
        let meta = &op.meta;
        let unsupported = |what: &str| {
            Err(WorkerError::Unsupported {
                what: what.to_owned(),
            })
        };
        if meta.args.is_empty() {
            return Err(WorkerError::InvalidOp(
                "the exec op has no arguments".into(),
            ));
        }
        if !meta.extra_hosts.is_empty() {
            return unsupported("extra /etc/hosts entries (add-host) in a run step");
        }
        if !meta.ulimits.is_empty() {
            return unsupported("ulimits in a run step");
        }
        for e in &op.secret_env {
            if e.id.is_empty() {
                return Err(WorkerError::InvalidOp(format!(
                    "secret id missing for environment variable {:?}",
                    e.name
                )));
            }
            if e.name.is_empty() || e.name.contains('=') {
                return Err(WorkerError::InvalidOp(format!(
                    "secret {:?} has an invalid environment variable name {:?}",
                    e.id, e.name
                )));
            }
        }
        let roots = op.mounts.iter().filter(|m| m.dest == "/").count();
        if roots != 1 {
            return Err(WorkerError::InvalidOp(format!(
                "the exec op has {roots} root mounts; it needs exactly one"
            )));
        }
        for m in &op.mounts {
            match &m.kind {
                MountKind::Secret(s) if m.dest == "/" => {
                    return unsupported(&format!("secret {:?} as the root mount", s.id))
                }
                MountKind::Secret(s) if m.output.is_some() => {
                    return Err(WorkerError::InvalidOp(format!(
                        "secret mount {:?} at {} has an output",
                        s.id, m.dest
                    )));
                }
                MountKind::Bind { selector, .. } if m.dest == "/" => {
                    if !matches!(selector.as_str(), "" | "/") {
                        return unsupported("a selector on the root mount");
                    }
                    if m.readonly {
                        return unsupported("a read-only root file system");
                    }
                }
                MountKind::Bind { .. } if m.readonly && m.output.is_some() => {
                    return Err(WorkerError::InvalidOp(format!(
                        "read-only mount {} has an output",
                        m.dest
                    )));
                }
                MountKind::Cache { .. } | MountKind::Tmpfs { .. } if m.dest == "/" => {
                    return unsupported("a cache or tmpfs root mount");
                }
                MountKind::Cache { .. } | MountKind::Tmpfs { .. } if m.output.is_some() => {
                    return Err(WorkerError::InvalidOp(format!(
                        "cache or tmpfs mount {} has an output",
                        m.dest
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// What a running step holds: snapshots to commit or remove, host mount points to unmount (its
/// secrets tmpfs among them), and cache uses. Cleaned up by [`Held::release`]; if the step's
/// future is dropped first, the same cleanup is spawned on the runtime.
struct Held {
    worker: Worker,
    /// Active snapshots and views, with the output index each becomes (if any).
    snapshots: Vec<(String, Option<usize>)>,
    /// Host mount points, in mount order: snapshots, and the tmpfs holding the step's secret
    /// files (so a secret leaves the host with the step, whichever way it ends).
    mounted: Vec<PathBuf>,
    caches: Vec<CacheUse>,
    /// The step's container, once created: a cancelled step's cleanup waits for it to be gone
    /// (`Tasks::run` deletes it in the background) before removing its root snapshot.
    container: Option<String>,
    released: bool,
}

impl Held {
    fn new(worker: Worker) -> Self {
        Self {
            worker,
            snapshots: Vec::new(),
            mounted: Vec::new(),
            caches: Vec::new(),
            container: None,
            released: false,
        }
    }

    /// Unmounts every mount point, then commits the snapshots with outputs (when `commit`) and
    /// removes the rest. Returns the outputs' committed names by index.
    async fn release(&mut self, commit: bool) -> Result<Vec<(usize, String)>, WorkerError> {
        self.released = true;
        // A snapshot still mounted on the host must not be committed; on an unmount error the
        // step's snapshots are removed instead (containerd refuses what is busy; the lease keeps
        // the rest until it is released).
        let unmounted = unmount_all(self.worker.mounter(), std::mem::take(&mut self.mounted)).await;
        let commit = commit && unmounted.is_ok();
        let mut first_error = unmounted.err();
        let snapshots = self.worker.client().snapshots();
        let mut outputs = Vec::new();
        for (key, output) in std::mem::take(&mut self.snapshots).into_iter().rev() {
            match output.filter(|_| commit) {
                Some(index) => {
                    let name = unique("oxkit-exec");
                    match snapshots.commit(&name, &key, &Labels::new()).await {
                        Ok(()) => outputs.push((index, name)),
                        Err(source) => {
                            let _ = snapshots.remove(&key).await;
                            first_error.get_or_insert(WorkerError::Containerd {
                                action: format!("commit the result of the step ({key})"),
                                source,
                            });
                        }
                    }
                }
                None => {
                    if let Err(e) = snapshots.remove(&key).await {
                        if !e.is_not_found() {
                            tracing::warn!(key, error = %e, "could not remove a step's snapshot");
                        }
                    }
                }
            }
        }
        self.caches.clear();
        match first_error {
            Some(e) => Err(e),
            None => Ok(outputs),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let worker = self.worker.clone();
        let mounted = std::mem::take(&mut self.mounted);
        let snapshots = std::mem::take(&mut self.snapshots);
        let container = self.container.take();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let client = worker.client();
                if let Some(id) = &container {
                    for _ in 0..CLEANUP_ROUNDS {
                        match client.containers().get(id).await {
                            Err(e) if e.is_not_found() => break,
                            _ => tokio::time::sleep(CLEANUP_PAUSE).await,
                        }
                    }
                }
                let _ = unmount_all(worker.mounter(), mounted).await;
                for (key, _) in snapshots.into_iter().rev() {
                    for _ in 0..CLEANUP_ROUNDS {
                        match client.snapshots().remove(&key).await {
                            Ok(()) => break,
                            Err(e) if e.is_not_found() => break,
                            Err(_) => tokio::time::sleep(CLEANUP_PAUSE).await,
                        }
                    }
                }
            });
        } else {
            tracing::warn!(?snapshots, "a cancelled step's snapshots are left behind");
        }
    }
}

/// How often, and how far apart, a cancelled step's cleanup retries (the task is still being
/// killed meanwhile).
const CLEANUP_ROUNDS: usize = 40;
const CLEANUP_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// Unmounts and removes `dirs` in reverse order; the first error is returned after trying all.
pub(crate) async fn unmount_all(
    mounter: Arc<dyn Mounter>,
    dirs: Vec<PathBuf>,
) -> Result<(), WorkerError> {
    if dirs.is_empty() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || {
        let mut result = Ok(());
        for dir in dirs.into_iter().rev() {
            match mounter.unmount(&dir) {
                Ok(()) => {
                    let _ = std::fs::remove_dir(&dir);
                }
                Err(source) => {
                    if result.is_ok() {
                        result = Err(WorkerError::Containerd {
                            action: format!("unmount {}", dir.display()),
                            source,
                        });
                    }
                }
            }
        }
        result
    })
    .await
    .unwrap_or_else(|e| {
        Err(WorkerError::Io {
            action: "unmount (the unmount task failed)",
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })
    })
}

/// Mounts `mounts` on a new dir under the worker's scratch dir (blocking work off the runtime).
pub(crate) async fn mount_at(
    worker: &Worker,
    name: &str,
    mounts: Vec<CdMount>,
) -> Result<PathBuf, WorkerError> {
    let dir = worker.mount_dir(name);
    let mounter = worker.mounter();
    let target = dir.clone();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&target).map_err(|source| WorkerError::Io {
            action: "create a mount point",
            path: target.clone(),
            source,
        })?;
        mounter.mount(&mounts, &target).map_err(|source| {
            let _ = std::fs::remove_dir(&target);
            WorkerError::Containerd {
                action: format!("mount a snapshot on {}", target.display()),
                source,
            }
        })
    })
    .await
    .map_err(|e| WorkerError::Io {
        action: "mount (the mount task failed)",
        path: dir.clone(),
        source: std::io::Error::other(e),
    })??;
    Ok(dir)
}

/// `root` joined with `selector`, refusing `..` and symlinks on the way: a bind mount's source is
/// resolved on the host, where a symlink in the snapshot would point outside it.
pub(crate) fn resolve_in_root(root: &Path, selector: &str) -> Result<PathBuf, WorkerError> {
    let bad = |reason: &str| WorkerError::Selector {
        selector: selector.to_owned(),
        reason: reason.to_owned(),
    };
    let mut path = root.to_path_buf();
    for component in Path::new(selector).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => {
                path.push(part);
                match std::fs::symlink_metadata(&path) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        return Err(bad(
                            "it passes through a symlink, which is not supported yet",
                        ))
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(bad("no such file or directory in the mounted input"))
                    }
                    Err(source) => {
                        return Err(WorkerError::Io {
                            action: "inspect",
                            path,
                            source,
                        })
                    }
                }
            }
            Component::ParentDir | Component::Prefix(_) => {
                return Err(bad("it must not contain `..`"))
            }
        }
    }
    Ok(path)
}

/// Reads `/etc/passwd` and `/etc/group` of a mounted root (empty when missing or symlinked).
fn read_user_db(root: &Path) -> (String, String) {
    let read = |rel: &str| {
        resolve_in_root(root, rel)
            .ok()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    (read("etc/passwd"), read("etc/group"))
}

impl ExecOp {
    /// The step's user and groups; reads `/etc/passwd` and `/etc/group` under `root` (the
    /// mounted root file system) when the user is not `uid:gid`.
    async fn resolve_user(&self, root: &Path) -> Result<ResolvedUser, WorkerError> {
        let spec = self.op.meta.user.clone();
        let fail = |reason: String| WorkerError::User {
            user: spec.clone(),
            reason,
        };
        if spec.is_empty() {
            return Ok(ResolvedUser::default());
        }
        // `uid:gid` needs no files; anything else may need the primary group or supplementary
        // groups from them.
        let ids_only = is_numeric(&spec) && spec.split(':').filter(|p| !p.is_empty()).count() == 2;
        let (passwd, group) = if !ids_only {
            let root = root.to_owned();
            tokio::task::spawn_blocking(move || read_user_db(&root))
                .await
                .map_err(|e| fail(e.to_string()))?
        } else {
            Default::default()
        };
        resolve_user(&spec, &parse_passwd(&passwd), &parse_group(&group)).map_err(fail)
    }

    fn input<'a>(
        &self,
        inputs: &'a [SnapshotRef],
        index: usize,
    ) -> Result<&'a SnapshotRef, WorkerError> {
        inputs.get(index).ok_or_else(|| {
            WorkerError::InvalidOp(format!(
                "a mount uses input {index}, but the vertex has {} inputs",
                inputs.len()
            ))
        })
    }

    /// Prepares (read-write) or views (read-only) `parent` and mounts it on the host; returns
    /// the host path of `selector` in it.
    async fn attach(
        &self,
        held: &mut Held,
        parent: Option<&str>,
        readonly: bool,
        selector: &str,
        output: Option<usize>,
    ) -> Result<PathBuf, WorkerError> {
        let snapshots = self.worker.client().snapshots();
        let key = unique("oxkit-mount");
        let mounts = if readonly && parent.is_some() {
            snapshots.view(&key, parent, &Labels::new()).await
        } else {
            snapshots.prepare(&key, parent, &Labels::new()).await
        }
        .doing(|| format!("prepare a snapshot of {}", parent.unwrap_or("scratch")))?;
        held.snapshots.push((key.clone(), output));
        let dir = mount_at(&self.worker, &key, mounts).await?;
        held.mounted.push(dir.clone());
        let selector = selector.to_owned();
        tokio::task::spawn_blocking(move || resolve_in_root(&dir, &selector))
            .await
            .map_err(|e| WorkerError::InvalidOp(e.to_string()))?
    }

    /// Whether `dest` lies inside a non-root mount other than a secret's (where the runtime
    /// creates its mount stub, not in the root).
    fn under_other_mount(&self, dest: &str) -> bool {
        self.op.mounts.iter().any(|m| {
            m.dest != "/"
                && m.dest != dest
                && !matches!(m.kind, MountKind::Secret(_))
                && Path::new(dest).starts_with(&m.dest)
        })
    }

    /// Starts a use of cache mount `id`, creating its snapshot on first use, and mounts it.
    ///
    /// A new cache starts with the content of `seed` (a snapshot) at `selector`: prepared on the
    /// seed itself when the selector is its root, else created empty and filled by
    /// [`cache_mount::seed`] from a read-only view of the seed. An existing cache keeps its
    /// content; a busy `private` use's temporary snapshot is seeded the same way. If seeding
    /// fails, the half-filled snapshot is removed with the step's others.
    async fn attach_cache(
        &self,
        held: &mut Held,
        id: &str,
        sharing: CacheSharing,
        seed: Option<&str>,
        selector: &str,
    ) -> Result<PathBuf, WorkerError> {
        let whole = cache_mount::is_whole(selector);
        let cache = self
            .worker
            .caches()
            .acquire(&cache_mount::identity(id, seed, selector), sharing, || {
                unique("cache-private")
            })
            .await;
        let key = cache.key.clone();
        let temporary = cache.temporary;
        held.caches.push(cache);
        let snapshots = self.worker.client().snapshots();
        let parent = if whole { seed } else { None };
        let (mounts, created) = match snapshots.mounts(&key).await {
            Ok(m) if !temporary => (m, false),
            _ => match snapshots.prepare(&key, parent, &Labels::new()).await {
                Ok(m) => (m, true),
                // A concurrent shared user created it first.
                Err(e) if e.is_already_exists() => (
                    snapshots
                        .mounts(&key)
                        .await
                        .doing(|| format!("mount cache {id:?}"))?,
                    false,
                ),
                Err(source) => {
                    return Err(WorkerError::Containerd {
                        action: format!("create the snapshot of cache {id:?}"),
                        source,
                    })
                }
            },
        };
        if temporary {
            held.snapshots.push((key.clone(), None));
        }
        let dir = mount_at(&self.worker, &unique("oxkit-cache"), mounts).await?;
        held.mounted.push(dir.clone());
        if let (true, false, Some(seed)) = (created, whole, seed) {
            let filled = self.fill_cache(held, &dir, seed, selector).await;
            if let Err(e) = filled {
                if !temporary {
                    held.snapshots.push((key, None));
                }
                return Err(e);
            }
        }
        Ok(dir)
    }

    /// Copies `selector` of snapshot `seed` into the new cache mounted at `dir`.
    async fn fill_cache(
        &self,
        held: &mut Held,
        dir: &Path,
        seed: &str,
        selector: &str,
    ) -> Result<(), WorkerError> {
        let seed_root = self.attach(held, Some(seed), true, "", None).await?;
        let (dir, selector) = (dir.to_owned(), selector.to_owned());
        tokio::task::spawn_blocking(move || cache_mount::seed(&dir, &seed_root, &selector))
            .await
            .map_err(|e| WorkerError::InvalidOp(e.to_string()))?
    }

    async fn run(
        &self,
        ctx: &OpContext,
        inputs: &[SnapshotRef],
        held: &mut Held,
    ) -> Result<(), WorkerError> {
        let meta = &self.op.meta;
        // Secrets first: a missing one fails the step before any snapshot work.
        let sessions = sessions(ctx);
        let secret_files = secret::load_files(&sessions, &self.op.mounts).await?;
        let secret_env = secret::env_vars(&sessions, &self.op.secret_env).await?;
        let root = self
            .op
            .mounts
            .iter()
            .find(|m| m.dest == "/")
            .expect("checked");
        let parent = match &root.kind {
            MountKind::Bind { input: Some(i), .. } => Some(self.input(inputs, *i)?.name()),
            _ => None,
        };
        let snapshots = self.worker.client().snapshots();
        let root_key = unique("oxkit-step");
        let rootfs = snapshots
            .prepare(&root_key, parent, &Labels::new())
            .await
            .doing(|| {
                format!(
                    "prepare the root snapshot on {}",
                    parent.unwrap_or("scratch")
                )
            })?;
        held.snapshots.push((root_key.clone(), root.output));
        // Mounted here rather than by the shim: the step is over when its process has exited
        // and this mount is gone, without waiting for containerd to delete the task (see
        // `Tasks::run_to_exit`).
        let root_dir = mount_at(&self.worker, &root_key, rootfs).await?;
        held.mounted.push(root_dir.clone());
        let user = self.resolve_user(&root_dir).await?;

        let mut env = meta.env.clone();
        if let Some(proxy) = &meta.proxy_env {
            for (k, v) in [
                ("HTTP_PROXY", &proxy.http_proxy),
                ("HTTPS_PROXY", &proxy.https_proxy),
                ("FTP_PROXY", &proxy.ftp_proxy),
                ("NO_PROXY", &proxy.no_proxy),
                ("ALL_PROXY", &proxy.all_proxy),
            ] {
                if !v.is_empty() {
                    env.push(format!("{k}={v}"));
                }
            }
        }
        // Secret env goes last, as in BuildKit. The values travel to runc in the container's
        // spec — containerd keeps it in the container record, which is deleted with the step.
        env.extend(secret_env);
        let mut spec = SpecBuilder::new(meta.args.clone())
            .root_path(root_dir.display().to_string())
            .env(env)
            .cwd(if meta.cwd.is_empty() { "/" } else { &meta.cwd })
            .user(user.uid, user.gid)
            .additional_gids(user.additional_gids)
            .network(match self.op.network {
                NetMode::None => Network::None,
                NetMode::Sandbox | NetMode::Host => Network::Host,
            });
        if !meta.hostname.is_empty() {
            spec = spec.hostname(meta.hostname.clone());
        }
        // Held until the task is gone: the shared shim outlives it.
        let shim_group = self.worker.shims().join().await;
        if let Some(group) = shim_group.group() {
            spec = spec.annotation(RUNC_GROUP_ANNOTATION, group);
        }
        let secret_paths =
            secret::materialize(&self.worker, secret_files, &mut held.mounted).await?;
        let stubs = Stubs::record(
            &root_dir,
            secret_paths
                .iter()
                .map(|(dest, _)| dest.as_str())
                .filter(|dest| !self.under_other_mount(dest)),
        );
        // Parents before children, so that a mount inside another one lands on top of it.
        let mut mounts: Vec<&Mount> = self.op.mounts.iter().filter(|m| m.dest != "/").collect();
        mounts.sort_by_key(|m| Path::new(&m.dest).components().count());
        for m in mounts {
            let spec_mount = match &m.kind {
                MountKind::Bind {
                    input, selector, ..
                } => {
                    let parent = match input {
                        Some(i) => Some(self.input(inputs, *i)?.name().to_owned()),
                        None => None,
                    };
                    let source = self
                        .attach(held, parent.as_deref(), m.readonly, selector, m.output)
                        .await?;
                    SpecMount::Bind {
                        source,
                        destination: m.dest.clone(),
                        read_only: m.readonly,
                    }
                }
                MountKind::Cache {
                    id,
                    sharing,
                    input,
                    selector,
                } => {
                    let seed = match input {
                        Some(i) => Some(self.input(inputs, *i)?.name().to_owned()),
                        None => None,
                    };
                    let id = if id.is_empty() { &m.dest } else { id };
                    let source = self
                        .attach_cache(held, id, *sharing, seed.as_deref(), selector)
                        .await?;
                    SpecMount::Bind {
                        source,
                        destination: m.dest.clone(),
                        read_only: m.readonly,
                    }
                }
                MountKind::Tmpfs { size } => SpecMount::Tmpfs {
                    destination: m.dest.clone(),
                    size: *size,
                },
                MountKind::Secret(_) => match secret_paths.iter().find(|(d, _)| *d == m.dest) {
                    Some((_, source)) => SpecMount::Bind {
                        source: source.clone(),
                        destination: m.dest.clone(),
                        read_only: true,
                    },
                    // An optional secret the client does not have: no mount.
                    None => continue,
                },
            };
            spec = spec.mount(spec_mount);
        }

        let id = unique("oxkit-exec");
        let tail = Tail::default();
        let writer = |stream| LogWriter {
            ctx: ctx.clone(),
            stream,
            tail: tail.clone(),
        };
        let pipes = StdioPipes::open(
            &self.worker.fifo_dir(),
            &id,
            writer(Stream::Stdout),
            writer(Stream::Stderr),
        )
        .doing(|| "open the step's output pipes".to_owned())?;
        // No snapshot key: the root is mounted above, and the lease keeps the snapshot.
        let container = NewContainer::new(&id, spec.build(), "");
        held.container = Some(id.clone());
        let (status, exited) = self
            .worker
            .client()
            .tasks()
            .run_to_exit(&container, &[], &pipes.task_io())
            .await
            .doing(|| format!("run {:?}", meta.args))?;
        // Deleting the task closes its output pipes; the rest of containerd's clean-up (and the
        // container's deletion) need not hold up the build.
        self.worker.shims().finish(exited, shim_group);
        if let Err(e) = tokio::task::spawn_blocking(move || stubs.remove()).await {
            tracing::warn!(error = %e, "could not remove the step's mount stubs");
        }
        pipes
            .finish()
            .await
            .doing(|| "copy the step's output".to_owned())?;
        let valid = if meta.valid_exit_codes.is_empty() {
            status.code == 0
        } else {
            meta.valid_exit_codes
                .iter()
                .any(|c| i64::from(*c) == i64::from(status.code))
        };
        if !valid {
            return Err(WorkerError::ExitCode {
                args: meta.args.clone(),
                code: status.code,
                tail: tail.text(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Op for ExecOp {
    async fn cache_map(&self, _: &OpContext) -> Result<CacheMap, OpError> {
        self.check()?;
        Ok(CacheMap::new(exec_cache_digest(&self.op)))
    }

    async fn exec(
        &self,
        ctx: &OpContext,
        inputs: Vec<OutputRef>,
    ) -> Result<Vec<OutputRef>, OpError> {
        self.check()?;
        let inputs = snapshot_inputs(&inputs)?;
        let mut held = Held::new(self.worker.clone());
        let ran = self.run(ctx, &inputs, &mut held).await;
        let released = held.release(ran.is_ok()).await;
        ran?;
        let mut outputs = released?;
        outputs.sort();
        Ok(outputs
            .into_iter()
            .map(|(_, name)| Arc::new(SnapshotRef::new(name)) as OutputRef)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxkit_llb::op::{ContentCache, ExecMeta, ProxyEnv, SecretEnv, SecretMount};

    fn base() -> LlbExecOp {
        LlbExecOp {
            meta: ExecMeta {
                args: vec!["sh".into(), "-c".into(), "true".into()],
                env: vec!["A=1".into()],
                cwd: "/".into(),
                ..Default::default()
            },
            mounts: vec![Mount {
                dest: "/".into(),
                kind: MountKind::Bind {
                    input: Some(0),
                    selector: String::new(),
                    content_cache: ContentCache::Default,
                },
                readonly: false,
                output: Some(0),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn semantic_fields_change_the_cache_digest() {
        let d = exec_cache_digest(&base());
        type Change = Box<dyn Fn(&mut LlbExecOp)>;
        let changes: Vec<(&str, Change)> = vec![
            ("args", Box::new(|o| o.meta.args.push("x".into()))),
            ("env", Box::new(|o| o.meta.env.push("B=2".into()))),
            ("cwd", Box::new(|o| o.meta.cwd = "/tmp".into())),
            ("user", Box::new(|o| o.meta.user = "1000".into())),
            ("network", Box::new(|o| o.network = NetMode::None)),
            ("hostname", Box::new(|o| o.meta.hostname = "h".into())),
            (
                "exit codes",
                Box::new(|o| o.meta.valid_exit_codes = vec![1]),
            ),
            ("readonly", Box::new(|o| o.mounts[0].readonly = true)),
            ("output", Box::new(|o| o.mounts[0].output = None)),
            ("dest", Box::new(|o| o.mounts[0].dest = "/x".into())),
            (
                "selector",
                Box::new(|o| {
                    o.mounts[0].kind = MountKind::Bind {
                        input: Some(0),
                        selector: "/sub".into(),
                        content_cache: ContentCache::Default,
                    }
                }),
            ),
            (
                "extra mount",
                Box::new(|o| {
                    o.mounts.push(Mount {
                        dest: "/cache".into(),
                        kind: MountKind::Cache {
                            id: "c".into(),
                            sharing: CacheSharing::Locked,
                            input: None,
                            selector: String::new(),
                        },
                        readonly: false,
                        output: None,
                    })
                }),
            ),
            (
                "tmpfs",
                Box::new(|o| {
                    o.mounts.push(Mount {
                        dest: "/t".into(),
                        kind: MountKind::Tmpfs { size: Some(1) },
                        readonly: false,
                        output: None,
                    })
                }),
            ),
        ];
        for (what, change) in changes {
            let mut op = base();
            change(&mut op);
            assert_ne!(exec_cache_digest(&op), d, "{what} must change the digest");
        }
    }

    #[test]
    fn non_semantic_fields_do_not_change_the_cache_digest() {
        let d = exec_cache_digest(&base());
        let mut op = base();
        op.meta.proxy_env = Some(ProxyEnv {
            http_proxy: "http://proxy:3128".into(),
            ..Default::default()
        });
        op.mounts[0].kind = MountKind::Bind {
            input: Some(0),
            selector: String::new(),
            content_cache: ContentCache::On,
        };
        assert_eq!(exec_cache_digest(&op), d);
        let mut sandbox = base();
        sandbox.network = NetMode::Sandbox;
        let mut host = base();
        host.network = NetMode::Host;
        assert_eq!(exec_cache_digest(&sandbox), exec_cache_digest(&host));
    }

    fn secret_mount(dest: &str, secret: SecretMount) -> Mount {
        Mount {
            dest: dest.into(),
            kind: MountKind::Secret(secret),
            readonly: false,
            output: None,
        }
    }

    fn with_secrets() -> LlbExecOp {
        let mut op = base();
        op.mounts.push(secret_mount(
            "/run/secrets/tok",
            SecretMount {
                id: "tok".into(),
                uid: 0,
                gid: 0,
                mode: 0o400,
                optional: false,
            },
        ));
        op.secret_env.push(SecretEnv {
            id: "tok".into(),
            name: "TOKEN".into(),
            optional: false,
        });
        op
    }

    #[test]
    fn secret_ids_and_options_change_the_cache_digest() {
        let d = exec_cache_digest(&with_secrets());
        assert_ne!(d, exec_cache_digest(&base()));
        type Change = Box<dyn Fn(&mut LlbExecOp)>;
        // A change of the secret mount's options.
        let secret = |f: fn(&mut SecretMount)| -> Change {
            Box::new(move |o| {
                if let MountKind::Secret(s) = &mut o.mounts[1].kind {
                    f(s)
                }
            })
        };
        let changes: Vec<(&str, Change)> = vec![
            (
                "dest",
                Box::new(|o| o.mounts[1].dest = "/run/secrets/x".into()),
            ),
            ("id", secret(|s| s.id = "other".into())),
            ("uid", secret(|s| s.uid = 1000)),
            ("gid", secret(|s| s.gid = 1000)),
            ("mode", secret(|s| s.mode = 0o444)),
            ("optional", secret(|s| s.optional = true)),
            ("env id", Box::new(|o| o.secret_env[0].id = "other".into())),
            ("env name", Box::new(|o| o.secret_env[0].name = "T".into())),
            (
                "env optional",
                Box::new(|o| o.secret_env[0].optional = true),
            ),
        ];
        for (what, change) in changes {
            let mut op = with_secrets();
            change(&mut op);
            assert_ne!(exec_cache_digest(&op), d, "{what} must change the digest");
        }
    }

    /// The key is made of the op alone, which names secrets but never carries their values: the
    /// same op keys the same whatever the client serves (see the integration test
    /// `secret::a_secret_reaches_its_step_and_nowhere_else`), and shows no secret material.
    #[test]
    fn the_cache_digest_names_secrets_and_holds_no_value() {
        assert_eq!(
            exec_cache_digest(&with_secrets()),
            exec_cache_digest(&with_secrets())
        );
        let digest = exec_cache_digest(&with_secrets());
        assert!(digest.starts_with("oxkit.exec.v1:sha256:"));
        assert_eq!(digest.len(), "oxkit.exec.v1:sha256:".len() + 64);
    }

    #[test]
    fn secrets_pass_the_check_and_misuses_are_rejected() {
        assert!(check_only(&with_secrets()).is_ok());
        let mut op = with_secrets();
        op.secret_env[0].id.clear();
        let err = check_only(&op).unwrap_err().to_string();
        assert!(
            err.contains("secret id missing") && err.contains("TOKEN"),
            "{err}"
        );
        let mut op = with_secrets();
        op.secret_env[0].name = "A=B".into();
        assert!(check_only(&op).is_err());
        let mut op = with_secrets();
        op.mounts[1].output = Some(1);
        assert!(check_only(&op)
            .unwrap_err()
            .to_string()
            .contains("has an output"));
        let mut op = with_secrets();
        op.mounts[0] = secret_mount("/", SecretMount::default());
        assert!(check_only(&op).is_err());
    }

    #[test]
    fn unsupported_fields_are_rejected_before_any_work() {
        let mut op = base();
        op.mounts.clear();
        assert!(check_only(&op)
            .unwrap_err()
            .to_string()
            .contains("0 root mounts"));
        let mut op = base();
        op.meta.args.clear();
        assert!(check_only(&op).is_err());
    }

    fn check_only(op: &LlbExecOp) -> Result<(), WorkerError> {
        check_op(op)
    }

    #[test]
    fn selectors_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("a/link")).unwrap();
        assert_eq!(
            resolve_in_root(dir.path(), "/a/b").unwrap(),
            dir.path().join("a/b")
        );
        assert_eq!(resolve_in_root(dir.path(), "").unwrap(), dir.path());
        for bad in [
            "/a/link",
            "/a/link/passwd",
            "../x",
            "/a/../../x",
            "/missing",
        ] {
            assert!(resolve_in_root(dir.path(), bad).is_err(), "{bad}");
        }
    }
}
