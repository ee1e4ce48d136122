//! The containerd side of running steps: one runc shim for the worker's steps while they run,
//! and the deletion of finished steps' tasks and containers in the background.
//!
//! containerd starts a shim process for each task and stops it when the task is deleted: for a
//! short `RUN` step that is about half of its cost. containerd's runc v2 shim serves every
//! container whose spec names the same group ([`RUNC_GROUP_ANNOTATION`]) and exits with the last
//! of them. So while steps run, the worker keeps a *keeper* in a group: a container whose task is
//! created but never started (runc waits in `runc init` for a start that never comes; its
//! executable is an empty file that is never run). Steps join the keeper's group and share its
//! shim. The keeper is deleted once no step has run for a while (`WorkerOptions::shim_idle`;
//! oxkitd's `shim_idle_seconds`, five minutes by default: the builds of an edit-and-build
//! session find the shim running), so an idle daemon leaves nothing running in containerd.
//! Without a keeper (it could not be made) steps get no group: one shim each, never a shim that
//! is shutting down with its last container.
//!
//! A finished step's task and container are deleted in the background ([`ShimGroup::finish`]):
//! containerd 1.6 deletes a task only after its shim's clean-up, which the next step need not
//! wait for. [`ShimGroup::shutdown`] waits for those deletions, then removes the keeper.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxkit_containerd::{
    Client, ContainerdError, Exited, Labels, Mount, NewContainer, SpecBuilder, TaskIo,
    RUNC_GROUP_ANNOTATION,
};
use tokio::sync::Notify;

use crate::names::unique;

/// How long after a failed keeper the worker tries again.
const RETRY: Duration = Duration::from_secs(60);

/// The label that marks a keeper container; its value is the worker's scratch dir, so a worker
/// removes only its own leftovers.
const KEEPER_LABEL: &str = "oxkit.shim-keeper";

/// The keeper's executable, inside its root directory: never run, so an empty file will do.
const KEEPER_EXE: &str = "keep";

/// The worker's shim group: hands out the group of the live keeper to running steps.
pub(crate) struct ShimGroup {
    client: Client,
    /// The keeper's root directory.
    root: PathBuf,
    /// The worker's scratch dir (the keeper label's value).
    owner: String,
    /// How long the keeper outlives the last step.
    idle: Duration,
    /// Steps holding a [`GroupUse`].
    users: AtomicUsize,
    /// How many times `users` fell to zero: an idle timer started before the last time does
    /// not remove the keeper.
    idled: AtomicUsize,
    /// Background deletions of finished steps, and their end.
    pending: AtomicUsize,
    settled: Notify,
    /// Held while a keeper is made or removed, so no step joins a group that is going away.
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    keeper: Option<Keeper>,
    failed_at: Option<Instant>,
    /// Whether leftovers of an earlier daemon have been looked for.
    swept: bool,
}

struct Keeper {
    container_id: String,
    group: String,
}

/// A step's use of the group; the group of the keeper (if any) for its container's spec.
pub(crate) struct GroupUse {
    shims: Arc<ShimGroup>,
    group: Option<String>,
}

impl GroupUse {
    /// The value for the step's [`RUNC_GROUP_ANNOTATION`], or none: run in a shim of its own.
    pub(crate) fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }
}

impl Drop for GroupUse {
    fn drop(&mut self) {
        if self.shims.users.fetch_sub(1, Ordering::AcqRel) == 1 {
            let shims = self.shims.clone();
            let idled = shims.idled.fetch_add(1, Ordering::AcqRel) + 1;
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    tokio::time::sleep(shims.idle).await;
                    shims.release_if_idle(idled).await;
                });
            }
        }
    }
}

impl ShimGroup {
    /// The group of `client`'s steps; the keeper's root lives in `scratch`, and the keeper
    /// goes once no step has run for `idle`.
    pub(crate) fn new(client: Client, scratch: &Path, idle: Duration) -> Self {
        Self {
            client,
            root: scratch.join("keeper"),
            owner: scratch.display().to_string(),
            idle,
            users: AtomicUsize::new(0),
            idled: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            settled: Notify::new(),
            state: Default::default(),
        }
    }

    /// Joins the group, making its keeper if there is none.
    pub(crate) async fn join(self: &Arc<Self>) -> GroupUse {
        let mut state = self.state.lock().await;
        self.users.fetch_add(1, Ordering::AcqRel);
        let retry = state.failed_at.is_none_or(|t| t.elapsed() >= RETRY);
        if state.keeper.is_none() && retry {
            if !state.swept {
                state.swept = true;
                self.sweep().await;
            }
            match self.make_keeper().await {
                Ok(keeper) => {
                    state.keeper = Some(keeper);
                    state.failed_at = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not start a shared runc shim; each step starts its own");
                    state.failed_at = Some(Instant::now());
                }
            }
        }
        GroupUse {
            shims: self.clone(),
            group: state.keeper.as_ref().map(|k| k.group.clone()),
        }
    }

    /// Removes the keeper (and with it the shim) if the group has stayed idle since the fall
    /// to idle that started this timer (`idled`: the count of falls then).
    async fn release_if_idle(&self, idled: usize) {
        let mut state = self.state.lock().await;
        if self.users.load(Ordering::Acquire) == 0 && self.idled.load(Ordering::Acquire) == idled {
            if let Some(keeper) = state.keeper.take() {
                remove_keeper(&self.client, &keeper.container_id).await;
            }
        }
    }

    /// Deletes a finished step's task and container in the background, then leaves the group.
    pub(crate) fn finish(self: &Arc<Self>, exited: Exited, group: GroupUse) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let shims = self.clone();
        tokio::spawn(async move {
            if let Err(e) = exited.clean_up().await {
                tracing::warn!(error = %e, "could not delete a finished step's container");
            }
            drop(group);
            if shims.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                shims.settled.notify_waiters();
            }
        });
    }

    /// For a worker shutting down: waits for the background deletions, then removes the keeper.
    pub(crate) async fn shutdown(&self) {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.pending.load(Ordering::Acquire) == 0 {
                break;
            }
            settled.await;
        }
        let mut state = self.state.lock().await;
        if let Some(keeper) = state.keeper.take() {
            remove_keeper(&self.client, &keeper.container_id).await;
        }
    }

    async fn make_keeper(&self) -> Result<Keeper, KeeperError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || write_root(&root))
            .await
            .map_err(|e| KeeperError::Io(std::io::Error::other(e)))?
            .map_err(KeeperError::Io)?;
        let group = unique("oxkit-shim");
        let container_id = format!("{group}-keeper");
        let spec = SpecBuilder::new([format!("/{KEEPER_EXE}")])
            .annotation(RUNC_GROUP_ANNOTATION, group.clone())
            .build();
        let mut container = NewContainer::new(&container_id, spec, "");
        container.snapshotter = String::new();
        container.labels = Labels::from([(KEEPER_LABEL.to_owned(), self.owner.clone())]);
        let rootfs = [Mount {
            kind: "bind".into(),
            source: self.root.display().to_string(),
            options: vec!["rbind".into(), "rw".into()],
        }];
        self.client.containers().create(&container).await?;
        match self
            .client
            .tasks()
            .create(&container_id, &rootfs, &TaskIo::default())
            .await
        {
            // Kept: deleted by `remove_keeper`, not by dropping it.
            Ok(task) => std::mem::forget(task),
            Err(e) => {
                let _ = self.client.containers().delete(&container_id).await;
                return Err(e.into());
            }
        }
        tracing::debug!(group, "shared runc shim started");
        Ok(Keeper {
            container_id,
            group,
        })
    }

    /// Removes keepers an earlier run of this worker left (a daemon killed while steps ran).
    async fn sweep(&self) {
        let filter = format!("labels.\"{KEEPER_LABEL}\"=={:?}", self.owner);
        let Ok(found) = self.client.containers().list(&[filter.as_str()]).await else {
            return;
        };
        for container in found {
            remove_keeper(&self.client, &container.id).await;
        }
    }
}

/// Kills and deletes a keeper's task and deletes its container; best effort.
async fn remove_keeper(client: &Client, container_id: &str) {
    client.tasks().kill_and_delete(container_id).await;
    if let Err(e) = client.containers().delete(container_id).await {
        if !e.is_not_found() {
            tracing::warn!(container_id, error = %e, "could not delete the shim keeper");
        }
    }
}

/// The keeper's root: a directory with an empty executable (runc checks that the process's
/// executable exists when it creates the container; it would run it only on start).
fn write_root(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(root)?;
    let exe = root.join(KEEPER_EXE);
    std::fs::write(&exe, b"")?;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))
}

#[derive(Debug, thiserror::Error)]
enum KeeperError {
    #[error("write the keeper's root: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
}
