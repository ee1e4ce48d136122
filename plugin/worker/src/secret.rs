//! Build secrets in exec steps, as BuildKit has them: values asked from the build's client
//! sessions while the step starts, as files on a private tmpfs that is bind-mounted read-only
//! into the container (secret mounts), or as environment variables (secret env). A value only
//! ever lives in memory, on that tmpfs (unmounted with the step) and in the container's spec
//! (deleted with the container); it is never written to a snapshot, a cache record, the
//! progress stream or a log, and is not part of the step's cache key.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use oxkit_containerd::Mount as CdMount;
use oxkit_llb::op::{Mount, MountKind, SecretEnv, SecretMount};

use crate::error::WorkerError;
use crate::exec::mount_at;
use crate::names::unique;
use crate::session::{SessionError, SessionRef};
use crate::worker::Worker;

/// The value of secret `id` from the first of `sessions` that has it; `None` when none has it
/// (or there is no session at all). Another failure of a session (closed, a client error) is
/// remembered while the others are asked, and returned if none has the secret — as BuildKit's
/// `session.Manager.Any`.
pub(crate) async fn fetch(
    sessions: &[SessionRef],
    id: &str,
) -> Result<Option<Vec<u8>>, WorkerError> {
    let mut failed = None;
    for session in sessions {
        match session.get_secret(id).await {
            Ok(value) => return Ok(Some(value)),
            Err(SessionError::NotFound { .. }) => {}
            Err(source) => failed = Some(source),
        }
    }
    match failed {
        Some(source) => Err(WorkerError::Secret {
            id: id.to_owned(),
            source,
        }),
        None => Ok(None),
    }
}

/// `NAME=value` for each secret env entry, in order. A missing optional secret gives an empty
/// value (`NAME=`), as in BuildKit; a missing required one fails naming it.
pub(crate) async fn env_vars(
    sessions: &[SessionRef],
    entries: &[SecretEnv],
) -> Result<Vec<String>, WorkerError> {
    let mut vars = Vec::with_capacity(entries.len());
    for entry in entries {
        let value = match fetch(sessions, &entry.id).await? {
            Some(value) => value,
            None if entry.optional => Vec::new(),
            None => {
                return Err(WorkerError::SecretNotFound {
                    id: entry.id.clone(),
                })
            }
        };
        let value = String::from_utf8(value).map_err(|_| WorkerError::SecretNotText {
            id: entry.id.clone(),
            name: entry.name.clone(),
        })?;
        vars.push(format!("{}={value}", entry.name));
    }
    Ok(vars)
}

/// A secret mount's value and file options, to be written to the step's secrets tmpfs.
pub(crate) struct SecretFile {
    /// The mount's destination in the container.
    pub(crate) dest: String,
    options: SecretMount,
    value: Vec<u8>,
}

// Never prints the value.
impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("dest", &self.dest)
            .field("id", &self.options.id)
            .finish_non_exhaustive()
    }
}

/// The values of the secret mounts among `mounts`, in order; a missing optional secret is left
/// out (the step runs without that mount), a missing required one fails naming it.
pub(crate) async fn load_files(
    sessions: &[SessionRef],
    mounts: &[Mount],
) -> Result<Vec<SecretFile>, WorkerError> {
    let mut files = Vec::new();
    for m in mounts {
        let MountKind::Secret(options) = &m.kind else {
            continue;
        };
        match fetch(sessions, &options.id).await? {
            Some(value) => files.push(SecretFile {
                dest: m.dest.clone(),
                options: options.clone(),
                value,
            }),
            None if options.optional => {
                tracing::debug!(
                    id = options.id,
                    dest = m.dest,
                    "optional secret not provided"
                );
            }
            None => {
                return Err(WorkerError::SecretNotFound {
                    id: options.id.clone(),
                })
            }
        }
    }
    Ok(files)
}

/// The private tmpfs that holds a step's secret files: root-only (mode 0700), no devices,
/// set-uid or executables, and no bigger than the files need.
fn tmpfs_for(files: &[SecretFile]) -> CdMount {
    CdMount {
        kind: "tmpfs".into(),
        source: "tmpfs".into(),
        options: vec![
            "nosuid".into(),
            "nodev".into(),
            "noexec".into(),
            "mode=0700".into(),
            format!("size={}", tmpfs_size(files.iter().map(|f| f.value.len()))),
            format!("nr_inodes={}", files.len() + 16),
        ],
    }
}

/// Bytes a tmpfs needs for files of `lengths`: whole pages each, plus one (never 0, which
/// would mean unlimited).
fn tmpfs_size(lengths: impl Iterator<Item = usize>) -> usize {
    const PAGE: usize = 4096;
    lengths.map(|n| n.div_ceil(PAGE) * PAGE).sum::<usize>() + PAGE
}

/// Mounts a private tmpfs under the worker's scratch dir, adds it to `mounted` (so the step's
/// cleanup unmounts it on every path), and writes each file into it with its owner and mode.
/// Returns each file's destination in the container and its path on the host, in order.
pub(crate) async fn materialize(
    worker: &Worker,
    files: Vec<SecretFile>,
    mounted: &mut Vec<PathBuf>,
) -> Result<Vec<(String, PathBuf)>, WorkerError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let dir = mount_at(worker, &unique("oxkit-secrets"), vec![tmpfs_for(&files)]).await?;
    mounted.push(dir.clone());
    tokio::task::spawn_blocking(move || {
        files
            .into_iter()
            .enumerate()
            .map(|(i, file)| {
                let path = dir.join(i.to_string());
                write_file(&path, &file).map_err(|source| WorkerError::Io {
                    action: "write a secret to",
                    path: path.clone(),
                    source,
                })?;
                Ok((file.dest, path))
            })
            .collect()
    })
    .await
    .map_err(|e| WorkerError::Io {
        action: "write secrets (the task failed)",
        path: PathBuf::new(),
        source: std::io::Error::other(e),
    })?
}

/// Writes `file`'s value to a new file at `path`, owned by its uid/gid with its permission bits
/// (BuildKit keeps only the `0o777` bits too).
fn write_file(path: &Path, file: &SecretFile) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(&file.value)?;
    std::os::unix::fs::fchown(&f, Some(file.options.uid), Some(file.options.gid))?;
    f.set_permissions(std::fs::Permissions::from_mode(file.options.mode & 0o777))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use async_trait::async_trait;

    /// A session with fixed secrets, or one that fails every call with `fail`.
    struct FakeSession {
        id: String,
        secrets: Vec<(&'static str, &'static [u8])>,
        fail: Option<SessionError>,
    }

    #[async_trait]
    impl crate::session::ClientSession for FakeSession {
        fn id(&self) -> &str {
            &self.id
        }

        async fn get_secret(&self, id: &str) -> Result<Vec<u8>, SessionError> {
            if let Some(e) = &self.fail {
                return Err(e.clone());
            }
            self.secrets
                .iter()
                .find(|(k, _)| *k == id)
                .map(|(_, v)| v.to_vec())
                .ok_or_else(|| SessionError::NotFound {
                    session: self.id.clone(),
                    what: format!("secret {id:?}"),
                })
        }
    }

    fn session(id: &str, secrets: Vec<(&'static str, &'static [u8])>) -> SessionRef {
        Arc::new(FakeSession {
            id: id.into(),
            secrets,
            fail: None,
        })
    }

    fn closed(id: &str) -> SessionRef {
        Arc::new(FakeSession {
            id: id.into(),
            secrets: Vec::new(),
            fail: Some(SessionError::Closed { session: id.into() }),
        })
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn secret_mount(dest: &str, id: &str, optional: bool) -> Mount {
        Mount {
            dest: dest.into(),
            kind: MountKind::Secret(SecretMount {
                id: id.into(),
                uid: 0,
                gid: 0,
                mode: 0o400,
                optional,
            }),
            readonly: false,
            output: None,
        }
    }

    #[test]
    fn the_first_session_that_has_the_secret_answers() {
        block_on(async {
            let sessions = [
                session("a", vec![]),
                closed("b"),
                session("c", vec![("tok", b"v")]),
            ];
            assert_eq!(fetch(&sessions, "tok").await.unwrap(), Some(b"v".to_vec()));
            // Nobody has it, and one session failed: the failure is reported.
            let err = fetch(&sessions, "other").await.unwrap_err();
            assert!(err.to_string().contains("\"other\""), "{err}");
            assert!(err.to_string().contains("closed"), "{err}");
            // Nobody has it, and no session failed (or there is none): missing.
            assert_eq!(fetch(&sessions[..1], "other").await.unwrap(), None);
            assert_eq!(fetch(&[], "tok").await.unwrap(), None);
        });
    }

    #[test]
    fn missing_optional_secrets_are_skipped_and_required_ones_fail_naming_them() {
        block_on(async {
            let sessions = [session("a", vec![("tok", b"v")])];
            let mounts = [
                secret_mount("/run/secrets/tok", "tok", false),
                secret_mount("/run/secrets/opt", "opt", true),
            ];
            let files = load_files(&sessions, &mounts).await.unwrap();
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].dest, "/run/secrets/tok");
            let err = load_files(&sessions, &[secret_mount("/x", "req", false)])
                .await
                .unwrap_err();
            assert!(matches!(&err, WorkerError::SecretNotFound { id } if id == "req"));
            assert!(err.to_string().contains("\"req\""), "{err}");

            let env = |id: &str, name: &str, optional| SecretEnv {
                id: id.into(),
                name: name.into(),
                optional,
            };
            assert_eq!(
                env_vars(
                    &sessions,
                    &[env("tok", "TOKEN", false), env("opt", "OPT", true)]
                )
                .await
                .unwrap(),
                ["TOKEN=v", "OPT="]
            );
            let err = env_vars(&sessions, &[env("req", "REQ", false)])
                .await
                .unwrap_err();
            assert!(err.to_string().contains("\"req\""), "{err}");
        });
    }

    #[test]
    fn debug_output_never_shows_a_value() {
        let file = SecretFile {
            dest: "/run/secrets/tok".into(),
            options: SecretMount {
                id: "tok".into(),
                ..Default::default()
            },
            value: b"hunter2".to_vec(),
        };
        assert!(!format!("{file:?}").contains("hunter2"));
    }

    #[test]
    fn the_tmpfs_is_private_and_sized_to_its_files() {
        assert_eq!(tmpfs_size([].into_iter()), 4096);
        assert_eq!(tmpfs_size([0, 1, 4096, 4097].into_iter()), 4096 * 5);
        let files = vec![SecretFile {
            dest: "/x".into(),
            options: SecretMount::default(),
            value: vec![0; 10],
        }];
        let m = tmpfs_for(&files);
        assert_eq!(m.kind, "tmpfs");
        for option in ["mode=0700", "nosuid", "nodev", "noexec", "size=8192"] {
            assert!(m.options.iter().any(|o| o == option), "{option}");
        }
    }

    #[test]
    fn files_get_their_value_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0");
        // Owner: this process's, so that the test runs without root.
        let (uid, gid) = {
            use std::os::unix::fs::MetadataExt as _;
            let meta = std::fs::metadata(dir.path()).unwrap();
            (meta.uid(), meta.gid())
        };
        let file = SecretFile {
            dest: "/x".into(),
            options: SecretMount {
                id: "x".into(),
                uid,
                gid,
                mode: 0o4440,
                optional: false,
            },
            value: b"value".to_vec(),
        };
        write_file(&path, &file).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"value");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o440, "set-uid is dropped");
        assert!(write_file(&path, &file).is_err(), "never overwrites");
    }
}
