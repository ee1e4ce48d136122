//! Tasks: the running process of a container (create, start, wait, kill, delete), and
//! [`Tasks::run`], which runs a container's process to its exit and always cleans up.

use std::path::PathBuf;
use std::time::SystemTime;

use containerd_client::services::v1 as pb;

use crate::convert::{mounts_to_pb, time_from_pb};
use crate::error::CallResult;
use crate::{Client, ContainerdError, Mount, NewContainer};

/// SIGKILL.
const SIGKILL: u32 = 9;

/// Where a task's stdout or stderr goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StdioTarget {
    /// Nowhere (`/dev/null`).
    #[default]
    Null,
    /// Appended to a file that the shim creates if needed (a `file://` URI). containerd's shim
    /// honours only stdout's `file://` URI and writes stderr to that same file (and crashes if
    /// stderr is empty), so stdout and stderr must both be `File` with the same path: one combined
    /// log. Use [`crate::StdioPipes`] for separate streams.
    File(PathBuf),
    /// A FIFO the caller made and opened for reading before the task was created (see
    /// [`crate::StdioPipes`]).
    Fifo(PathBuf),
}

impl StdioTarget {
    fn to_uri(&self) -> String {
        match self {
            Self::Null => String::new(),
            Self::File(path) => format!("file://{}", path.display()),
            Self::Fifo(path) => path.display().to_string(),
        }
    }
}

/// A task's standard I/O. stdin is always empty (`/dev/null`); no terminal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskIo {
    /// Where stdout goes.
    pub stdout: StdioTarget,
    /// Where stderr goes.
    pub stderr: StdioTarget,
    /// Told when the task exists (the shim has opened the FIFOs): see [`crate::StdioPipes`].
    pub created: Option<CreatedSignal>,
}

/// Tells whoever reads a task's FIFOs that the task was created, so the shim holds their
/// writing ends: from then on a FIFO that reads as ended is done.
#[derive(Debug, Clone)]
pub struct CreatedSignal(pub(crate) std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl CreatedSignal {
    pub(crate) fn notify(&self) {
        let _ = self.0.send(true);
    }
}

/// Signals carry no data to compare.
impl PartialEq for CreatedSignal {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for CreatedSignal {}

impl TaskIo {
    /// stdout and stderr both appended to the file `path` (see [`StdioTarget::File`]).
    pub fn combined_file(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self {
            stdout: StdioTarget::File(path.clone()),
            stderr: StdioTarget::File(path),
            created: None,
        }
    }

    /// Rejects what the shim would fail on (or crash on) with an error that says why.
    fn validate(&self) -> Result<(), ContainerdError> {
        match (&self.stdout, &self.stderr) {
            (StdioTarget::File(a), StdioTarget::File(b)) if a == b => Ok(()),
            (StdioTarget::File(_), _) | (_, StdioTarget::File(_)) => {
                Err(ContainerdError::InvalidTaskIo {
                    reason: "containerd's shim writes stdout and stderr to stdout's file:// URI: \
                             both must be the same File (TaskIo::combined_file), or use FIFOs \
                             (StdioPipes) for separate streams",
                })
            }
            _ => Ok(()),
        }
    }
}

/// How a task's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code; 128 + the signal for a process killed by a signal.
    pub code: u32,
    /// When it exited.
    pub exited_at: Option<SystemTime>,
}

impl ExitStatus {
    /// Whether the process exited with 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// containerd's Tasks service.
#[derive(Debug, Clone)]
pub struct Tasks {
    client: Client,
}

impl Tasks {
    pub(crate) fn new(client: Client) -> Self {
        Self { client }
    }

    /// Creates the task of container `container_id` with `rootfs` (its root snapshot's mounts) and
    /// `io`. The process exists but does not run until [`Task::start`]. FIFOs in `io` must already
    /// be open for reading, or this blocks.
    ///
    /// If the returned [`Task`] is dropped before [`Task::delete`], a best-effort kill and delete are
    /// spawned on the current tokio runtime (if there is one and it lives long enough).
    pub async fn create(
        &self,
        container_id: &str,
        rootfs: &[Mount],
        io: &TaskIo,
    ) -> Result<Task, ContainerdError> {
        io.validate()?;
        let request = pb::CreateTaskRequest {
            container_id: container_id.to_owned(),
            rootfs: mounts_to_pb(rootfs),
            stdout: io.stdout.to_uri(),
            stderr: io.stderr.to_uri(),
            ..Default::default()
        };
        let created = self
            .client
            .tasks_rpc()
            .create(self.client.request(request))
            .await
            .call("Tasks.Create")?;
        if let Some(created) = &io.created {
            created.notify();
        }
        Ok(Task {
            client: self.client.clone(),
            container_id: container_id.to_owned(),
            pid: created.pid,
            deleted: false,
        })
    }

    /// Best effort: kills every process of `container_id`'s task, waits for them and deletes the
    /// task (for a task that was kept on purpose, e.g. with [`std::mem::forget`]).
    pub async fn kill_and_delete(&self, container_id: &str) {
        kill_and_delete_task(&self.client, container_id).await;
    }

    /// The ids of the containers that have a task in the namespace.
    pub async fn list(&self) -> Result<Vec<String>, ContainerdError> {
        let request = pb::ListTasksRequest::default();
        let tasks = self
            .client
            .tasks_rpc()
            .list(self.client.request(request))
            .await
            .call("Tasks.List")?
            .tasks;
        // containerd 1.6 fills in only `id` (the container's id, for a task's init process).
        Ok(tasks
            .into_iter()
            .map(|t| {
                if t.container_id.is_empty() {
                    t.id
                } else {
                    t.container_id
                }
            })
            .collect())
    }

    /// Runs `container`'s process to its exit: creates the container record, its task on `rootfs`
    /// with `io`, starts it, waits for it, deletes the task and the container, and returns how the
    /// process ended (a non-zero exit is not an error here).
    ///
    /// Cleanup: on any error after the container was created, the task is killed and deleted and
    /// the container deleted before the error is returned. If the returned future is dropped
    /// midway (the build was cancelled), the same cleanup is spawned on the current tokio runtime.
    /// Left behind only if cleanup itself fails or the process dies: the container record and
    /// possibly a running shim (find them by id or label; `ctr -n <ns> tasks kill/rm`). The root
    /// snapshot is never removed here: it belongs to the caller, who commits or removes it.
    pub async fn run(
        &self,
        container: &NewContainer,
        rootfs: &[Mount],
        io: &TaskIo,
    ) -> Result<ExitStatus, ContainerdError> {
        let (status, exited) = self.run_to_exit(container, rootfs, io).await?;
        exited.clean_up().await?;
        Ok(status)
    }

    /// [`Tasks::run`] up to the process's exit: the exited task and the container are left to the
    /// returned [`Exited`] to delete, which the caller may do in the background. (containerd 1.6
    /// deletes a task only after its shim's own clean-up — the shim binary's `delete` and a
    /// `runc delete --force` — tens of milliseconds that need not delay the caller once the
    /// process is gone.) The task's FIFOs reach end-of-file when the task is deleted.
    pub async fn run_to_exit(
        &self,
        container: &NewContainer,
        rootfs: &[Mount],
        io: &TaskIo,
    ) -> Result<(ExitStatus, Exited), ContainerdError> {
        io.validate()?;
        self.client.containers().create(container).await?;
        let mut guard = RunGuard {
            client: Some(self.client.clone()),
            container_id: container.id.clone(),
        };
        let result = async {
            let mut task = self.create(&container.id, rootfs, io).await?;
            // From here on `run_to_exit` itself (or its guard, or `Exited`) deletes the task.
            task.deleted = true;
            task.start().await?;
            task.wait().await
        }
        .await;
        let client = guard.client.take().expect("taken once");
        match result {
            Ok(status) => Ok((
                status,
                Exited {
                    client: Some(client),
                    container_id: container.id.clone(),
                },
            )),
            Err(e) => {
                kill_and_delete_task(&client, &container.id).await;
                let _ = delete_container(&client, &container.id).await;
                Err(e)
            }
        }
    }
}

/// A container whose task's process has exited (see [`Tasks::run_to_exit`]). Delete both with
/// [`Exited::clean_up`]; dropped without it, they are deleted in the background.
#[derive(Debug)]
pub struct Exited {
    client: Option<Client>,
    container_id: String,
}

impl Exited {
    /// Deletes the exited task, then the container.
    pub async fn clean_up(mut self) -> Result<(), ContainerdError> {
        let client = self.client.take().expect("taken once");
        let deleted_task = delete_task(&client, &self.container_id).await;
        if deleted_task.is_err() {
            kill_and_delete_task(&client, &self.container_id).await;
        }
        let deleted = delete_container(&client, &self.container_id).await;
        deleted_task?;
        deleted
    }
}

impl Drop for Exited {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            spawn_cleanup(client, self.container_id.clone(), true);
        }
    }
}

/// Cleans up after [`Tasks::run`] if its future is dropped.
struct RunGuard {
    client: Option<Client>,
    container_id: String,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            spawn_cleanup(client, self.container_id.clone(), true);
        }
    }
}

/// Deletes container `container_id`; already gone is fine.
async fn delete_container(client: &Client, container_id: &str) -> Result<(), ContainerdError> {
    match client.containers().delete(container_id).await {
        Err(e) if !e.is_not_found() => {
            tracing::warn!(container_id, error = %e, "could not delete a container; it is left behind");
            Err(e)
        }
        _ => Ok(()),
    }
}

/// Deletes the exited task of `container_id`.
async fn delete_task(client: &Client, container_id: &str) -> Result<(), ContainerdError> {
    let request = pb::DeleteTaskRequest {
        container_id: container_id.to_owned(),
    };
    client
        .tasks_rpc()
        .delete(client.request(request))
        .await
        .call("Tasks.Delete")
        .map(drop)
}

fn spawn_cleanup(client: Client, container_id: String, with_container: bool) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move {
                kill_and_delete_task(&client, &container_id).await;
                if with_container {
                    let _ = delete_container(&client, &container_id).await;
                }
            });
        }
        Err(_) => tracing::warn!(
            container_id,
            "no tokio runtime to clean up a dropped task on; the task is left behind"
        ),
    }
}

/// Best effort: SIGKILLs every process of the task, waits for it, deletes it.
async fn kill_and_delete_task(client: &Client, container_id: &str) {
    let kill = pb::KillRequest {
        container_id: container_id.to_owned(),
        signal: SIGKILL,
        all: true,
        ..Default::default()
    };
    let _ = client.tasks_rpc().kill(client.request(kill)).await;
    let wait = pb::WaitRequest {
        container_id: container_id.to_owned(),
        ..Default::default()
    };
    let _ = client.tasks_rpc().wait(client.request(wait)).await;
    let delete = pb::DeleteTaskRequest {
        container_id: container_id.to_owned(),
    };
    if let Err(status) = client.tasks_rpc().delete(client.request(delete)).await {
        if status.code() != tonic::Code::NotFound {
            tracing::warn!(container_id, error = %status, "could not delete a task; it is left behind");
        }
    }
}

/// A created task. Delete it with [`Task::delete`]; dropping it undeleted kills and deletes it in
/// the background (see [`Tasks::create`]).
#[derive(Debug)]
pub struct Task {
    client: Client,
    container_id: String,
    pid: u32,
    deleted: bool,
}

impl Task {
    /// The container's id.
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// The process's pid on the host.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Starts the process.
    pub async fn start(&mut self) -> Result<(), ContainerdError> {
        let request = pb::StartRequest {
            container_id: self.container_id.clone(),
            exec_id: String::new(),
        };
        let started = self
            .client
            .tasks_rpc()
            .start(self.client.request(request))
            .await
            .call("Tasks.Start")?;
        self.pid = started.pid;
        Ok(())
    }

    /// Waits until the process exits (returns at once if it has) and returns how it ended.
    pub async fn wait(&self) -> Result<ExitStatus, ContainerdError> {
        let request = pb::WaitRequest {
            container_id: self.container_id.clone(),
            exec_id: String::new(),
        };
        let waited = self
            .client
            .tasks_rpc()
            .wait(self.client.request(request))
            .await
            .call("Tasks.Wait")?;
        Ok(ExitStatus {
            code: waited.exit_status,
            exited_at: time_from_pb(waited.exited_at),
        })
    }

    /// Sends `signal` to the process, or with `all` to every process in the container.
    pub async fn kill(&self, signal: u32, all: bool) -> Result<(), ContainerdError> {
        let request = pb::KillRequest {
            container_id: self.container_id.clone(),
            exec_id: String::new(),
            signal,
            all,
        };
        self.client
            .tasks_rpc()
            .kill(self.client.request(request))
            .await
            .call("Tasks.Kill")
            .map(drop)
    }

    /// Deletes the exited task (FailedPrecondition while it runs: kill and wait first) and returns
    /// its exit status. The shim unmounts the root file system.
    pub async fn delete(mut self) -> Result<ExitStatus, ContainerdError> {
        let request = pb::DeleteTaskRequest {
            container_id: self.container_id.clone(),
        };
        let deleted = self
            .client
            .tasks_rpc()
            .delete(self.client.request(request))
            .await
            .call("Tasks.Delete")?;
        self.deleted = true;
        Ok(ExitStatus {
            code: deleted.exit_status,
            exited_at: time_from_pb(deleted.exited_at),
        })
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if !self.deleted {
            spawn_cleanup(self.client.clone(), self.container_id.clone(), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stdio_must_be_one_combined_file() {
        assert!(TaskIo::combined_file("/x").validate().is_ok());
        assert!(TaskIo::default().validate().is_ok());
        let fifos = TaskIo {
            stdout: StdioTarget::Fifo("/a".into()),
            stderr: StdioTarget::Fifo("/b".into()),
            created: None,
        };
        assert!(fifos.validate().is_ok());
        for bad in [
            TaskIo {
                stdout: StdioTarget::File("/a".into()),
                stderr: StdioTarget::Null,
                created: None,
            },
            TaskIo {
                stdout: StdioTarget::File("/a".into()),
                stderr: StdioTarget::File("/b".into()),
                created: None,
            },
            TaskIo {
                stdout: StdioTarget::Null,
                stderr: StdioTarget::File("/b".into()),
                created: None,
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(ContainerdError::InvalidTaskIo { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            StdioTarget::File("/tmp/x.log".into()).to_uri(),
            "file:///tmp/x.log"
        );
    }
}
