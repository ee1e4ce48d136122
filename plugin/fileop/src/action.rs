//! Applying one file action to a mounted root ([`apply`]), and [`FileOpPlan`], which tells the
//! worker which filesystem each action of a file op starts from and which become outputs.

use crate::copy::{copy, mkdir_all};
use crate::error::FileOpError;
use crate::fsmeta;
use crate::pattern::has_wildcard;
use crate::resolve::{clean_abs, resolve};
use crate::share::LayerPaths;
use crate::user::{resolve_owner, UserLookup};
use oxkit_llb::op::{FileAction, FileActionKind, FileInput, FileOp, Mkdir, Mkfile, Rm, Symlink};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Applies `action` to the tree mounted (writable) at `dest_root`.
///
/// `source_root` is where the action's secondary input is mounted (only copy reads it; `None`
/// means scratch, an empty directory). Owners by name are looked up through `users`. Every path
/// is resolved inside its root. On error the destination may hold part of the action's changes;
/// the worker discards the snapshot.
pub fn apply(
    dest_root: &Path,
    action: &FileAction,
    source_root: Option<&Path>,
    users: &dyn UserLookup,
    paths: Option<&LayerPaths>,
) -> Result<(), FileOpError> {
    match &action.kind {
        FileActionKind::Copy(c) => {
            let owner = resolve_owner("copy", c.owner.as_ref(), users)?;
            match source_root {
                Some(src) => copy(dest_root, src, c, owner, paths),
                None => {
                    let empty = scratch_dir()?;
                    let r = copy(dest_root, empty.path(), c, owner, None);
                    drop(empty);
                    r
                }
            }
        }
        FileActionKind::Mkdir(m) => mkdir(
            dest_root,
            m,
            resolve_owner("mkdir", m.owner.as_ref(), users)?,
        ),
        FileActionKind::Mkfile(m) => mkfile(
            dest_root,
            m,
            resolve_owner("mkfile", m.owner.as_ref(), users)?,
        ),
        FileActionKind::Rm(r) => rm(dest_root, r),
        FileActionKind::Symlink(s) => symlink(
            dest_root,
            s,
            resolve_owner("symlink", s.owner.as_ref(), users)?,
        ),
    }
}

/// An empty directory standing in for a scratch source; removed on drop.
struct EmptyDir(std::path::PathBuf);

impl EmptyDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for EmptyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn scratch_dir() -> Result<EmptyDir, FileOpError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("oxkit-fileop-scratch-{}-{n}", std::process::id()));
    std::fs::create_dir(&p).map_err(|e| FileOpError::io("copy", "/", "mkdir", &p, e))?;
    Ok(EmptyDir(p))
}

fn owner_and_time(
    action: &'static str,
    path: &str,
    host: &Path,
    owner: Option<(u32, u32)>,
    timestamp: Option<i64>,
) -> Result<(), FileOpError> {
    if let Some((u, g)) = owner {
        fsmeta::lchown(host, u, g).map_err(|e| FileOpError::io(action, path, "chown", host, e))?;
    }
    if let Some(t) = timestamp {
        fsmeta::set_times(host, t, t)
            .map_err(|e| FileOpError::io(action, path, "utimes", host, e))?;
    }
    Ok(())
}

/// BuildKit's mkdir: an existing directory is fine (left unchanged); `make_parents` creates
/// missing parents with the same mode, owner and timestamp.
fn mkdir(root: &Path, m: &Mkdir, owner: Option<(u32, u32)>) -> Result<(), FileOpError> {
    const A: &str = "mkdir";
    let path = clean_abs(&m.path);
    let host = resolve(A, root, &path, true)?;
    if m.make_parents {
        return mkdir_all(A, &path, root, &host, m.mode & 0o7777, owner, m.timestamp).map(drop);
    }
    match std::fs::create_dir(&host) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists && host.is_dir() => return Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(FileOpError::AlreadyExists { action: A, path })
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(FileOpError::NotFound {
                action: A,
                path,
                which: "destination (parent directory missing; set make_parents)",
            })
        }
        Err(e) => return Err(FileOpError::io(A, &path, "mkdir", &host, e)),
    }
    fsmeta::chmod(&host, m.mode).map_err(|e| FileOpError::io(A, &path, "chmod", &host, e))?;
    owner_and_time(A, &path, &host, owner, m.timestamp)
}

/// BuildKit's mkfile: creates or truncates the file (a final symlink is followed inside the
/// root), then sets mode, owner and timestamp.
fn mkfile(root: &Path, m: &Mkfile, owner: Option<(u32, u32)>) -> Result<(), FileOpError> {
    const A: &str = "mkfile";
    let path = clean_abs(&m.path);
    let host = resolve(A, root, &path, true)?;
    if host == root {
        return Err(FileOpError::Invalid {
            action: A,
            reason: "cannot write a file at /".into(),
        });
    }
    let io = |op, e| FileOpError::io(A, &path, op, &host, e);
    // A file with more links may share its inode with a committed layer (a copy links files
    // instead of writing them, see `crate::share`): it is replaced, never written through.
    if std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_file() && m.nlink() > 1) {
        std::fs::remove_file(&host).map_err(|e| io("remove", e))?;
    }
    // Resolution left no symlink in `host`; NOFOLLOW makes sure none appeared since.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(m.mode & 0o777)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&host)
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => FileOpError::NotFound {
                action: A,
                path: path.clone(),
                which: "destination (parent directory missing)",
            },
            ErrorKind::IsADirectory => FileOpError::WrongType {
                action: A,
                path: path.clone(),
                reason: "is a directory",
            },
            _ => io("create", e),
        })?;
    std::io::Write::write_all(&mut f, &m.data).map_err(|e| io("write", e))?;
    drop(f);
    owner_and_time(A, &path, &host, owner, None)?;
    fsmeta::chmod(&host, m.mode).map_err(|e| io("chmod", e))?;
    owner_and_time(A, &path, &host, None, m.timestamp)
}

/// BuildKit's rm: removes the path itself (a final symlink is removed, not followed), recursively.
/// With wildcards, every match is removed; no match is an error unless `allow_not_found`.
fn rm(root: &Path, r: &Rm) -> Result<(), FileOpError> {
    const A: &str = "rm";
    let path = clean_abs(&r.path);
    if path == "/" {
        return Err(FileOpError::Invalid {
            action: A,
            reason: "refusing to remove /".into(),
        });
    }
    let targets = if r.allow_wildcard && has_wildcard(&path) {
        let sel = crate::copy::select(root, &path, false, true, true).map_err(|e| match e {
            FileOpError::NotFound { path, .. } => FileOpError::NotFound {
                action: A,
                path,
                which: "destination",
            },
            other => other,
        })?;
        if sel.is_empty() && !r.allow_not_found {
            return Err(FileOpError::NoMatch { action: A, path });
        }
        sel.into_iter().map(|s| (s.path, s.host)).collect()
    } else {
        vec![(path.clone(), resolve(A, root, &path, false)?)]
    };
    for (p, host) in targets {
        if host == root {
            return Err(FileOpError::Invalid {
                action: A,
                reason: format!("refusing to remove the root via {p}"),
            });
        }
        let res = match std::fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&host),
            Ok(_) => std::fs::remove_file(&host),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                if !r.allow_not_found {
                    return Err(FileOpError::NotFound {
                        action: A,
                        path: p,
                        which: "destination",
                    });
                }
            }
            Err(e) => return Err(FileOpError::io(A, &p, "remove", &host, e)),
        }
    }
    Ok(())
}

/// BuildKit's symlink: creates `newpath` (its parent resolved inside the root) pointing at
/// `oldpath`, stored as is; an existing `newpath` is an error.
fn symlink(root: &Path, s: &Symlink, owner: Option<(u32, u32)>) -> Result<(), FileOpError> {
    const A: &str = "symlink";
    let path = clean_abs(&s.newpath);
    let host = resolve(A, root, &path, false)?;
    if host == root {
        return Err(FileOpError::Invalid {
            action: A,
            reason: "cannot create a symlink at /".into(),
        });
    }
    std::os::unix::fs::symlink(&s.oldpath, &host).map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists => FileOpError::AlreadyExists {
            action: A,
            path: path.clone(),
        },
        ErrorKind::NotFound => FileOpError::NotFound {
            action: A,
            path: path.clone(),
            which: "destination (parent directory missing)",
        },
        _ => FileOpError::io(A, &path, "symlink", &host, e),
    })?;
    owner_and_time(A, &path, &host, owner, s.timestamp)
}

/// What the worker does for one action of a file op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedAction {
    /// Index of the action in the op.
    pub index: usize,
    /// The filesystem to start from (a copy of it is mounted writable and passed to [`apply`]).
    pub base: FileInput,
    /// The filesystem copy reads from (mounted read-only), if the action reads one.
    pub source: Option<FileInput>,
    /// The op output this action's result becomes, if any.
    pub output: Option<usize>,
    /// Whether a later action starts from or reads this result: the worker must keep it.
    pub needed_later: bool,
}

/// The order in which a file op's actions run and what each needs. BuildKit's rule: an action
/// works on its `input` (scratch, a vertex input, or an earlier action's result) and copy reads
/// its `secondary_input`; an action referring to a later or itself is invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOpPlan {
    /// Actions in the order to run them (the op's order).
    pub actions: Vec<PlannedAction>,
}

impl FileOpPlan {
    /// Validates the references of `op` and returns its plan.
    pub fn new(op: &FileOp, num_inputs: usize) -> Result<Self, FileOpError> {
        let check = |i: usize, r: FileInput| -> Result<(), FileOpError> {
            let ok = match r {
                FileInput::Scratch => true,
                FileInput::Input(n) => n < num_inputs,
                FileInput::Action(a) => a < i,
            };
            if ok {
                Ok(())
            } else {
                Err(FileOpError::Invalid {
                    action: "file",
                    reason: format!("action {i} refers to {r:?}, which does not exist before it"),
                })
            }
        };
        let mut actions = Vec::with_capacity(op.actions.len());
        for (i, a) in op.actions.iter().enumerate() {
            check(i, a.input)?;
            let source = match a.kind {
                FileActionKind::Copy(_) => {
                    check(i, a.secondary_input)?;
                    Some(a.secondary_input)
                }
                _ => None,
            };
            actions.push(PlannedAction {
                index: i,
                base: a.input,
                source,
                output: a.output,
                needed_later: false,
            });
        }
        for a in &op.actions {
            let mut refs = vec![a.input];
            refs.extend(actions_source(a));
            refs.extend(owner_inputs(a));
            for r in refs {
                if let FileInput::Action(j) = r {
                    actions[j].needed_later = true;
                }
            }
        }
        Ok(FileOpPlan { actions })
    }
}

fn actions_source(a: &FileAction) -> Option<FileInput> {
    matches!(a.kind, FileActionKind::Copy(_)).then_some(a.secondary_input)
}

/// The filesystems an action's owner names are looked up in (their /etc/passwd and /etc/group).
pub fn owner_inputs(a: &FileAction) -> Vec<FileInput> {
    let owner = match &a.kind {
        FileActionKind::Copy(c) => c.owner.as_ref(),
        FileActionKind::Mkdir(m) => m.owner.as_ref(),
        FileActionKind::Mkfile(m) => m.owner.as_ref(),
        FileActionKind::Symlink(s) => s.owner.as_ref(),
        FileActionKind::Rm(_) => None,
    };
    owner
        .into_iter()
        .flat_map(|o| [o.user.as_ref(), o.group.as_ref()])
        .flatten()
        .filter_map(|u| match u {
            oxkit_llb::op::UserRef::Name { input, .. } => Some(*input),
            oxkit_llb::op::UserRef::Id(_) => None,
        })
        .collect()
}
