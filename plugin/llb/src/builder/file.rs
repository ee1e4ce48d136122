//! File actions: mkdir, mkfile, rm, symlink, copy, chained into one file op.

use super::{join_path, Node, NodeOp, Output, State};
use crate::op::{
    Chown, Copy, FileAction, FileActionKind, FileInput, FileOp, Mkdir, Mkfile, Op, OpMetadata, Rm,
    Symlink, UserRef,
};
use std::sync::Arc;

/// Owner of created files: ids, or names looked up in the target filesystem's
/// `/etc/passwd` and `/etc/group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// uid and gid.
    Ids(u32, u32),
    /// User name, and group name (default: the user's group).
    Names(String, Option<String>),
}

/// Options of [`FileActions::mkdir_with`].
#[derive(Clone, Debug, Default)]
pub struct MkdirOptions {
    /// Create missing parents.
    pub make_parents: bool,
    /// Owner.
    pub owner: Option<Owner>,
    /// Timestamp (Unix nanoseconds).
    pub timestamp: Option<i64>,
}

/// Options of [`FileActions::mkfile_with`].
#[derive(Clone, Debug, Default)]
pub struct MkfileOptions {
    /// Owner.
    pub owner: Option<Owner>,
    /// Timestamp (Unix nanoseconds).
    pub timestamp: Option<i64>,
}

/// Options of [`FileActions::rm_with`].
#[derive(Clone, Debug, Default)]
pub struct RmOptions {
    /// A missing path is not an error.
    pub allow_not_found: bool,
    /// The path may contain wildcards.
    pub allow_wildcard: bool,
}

/// Options of [`FileActions::copy`].
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// Owner of the copied files.
    pub owner: Option<Owner>,
    /// Permission bits of the copied files.
    pub mode: Option<u32>,
    /// Resolve symlinks in the source path.
    pub follow_symlinks: bool,
    /// If the source is a directory, copy its contents rather than itself.
    pub copy_dir_contents: bool,
    /// Create missing parents of the destination.
    pub create_dest_path: bool,
    /// The source path may contain wildcards.
    pub allow_wildcard: bool,
    /// A wildcard matching nothing is not an error.
    pub allow_empty_wildcard: bool,
    /// Only copy paths matching one of these.
    pub include_patterns: Vec<String>,
    /// Do not copy paths matching these.
    pub exclude_patterns: Vec<String>,
    /// Timestamp of the copied files (Unix nanoseconds).
    pub timestamp: Option<i64>,
    /// Replace an existing destination of another type instead of failing.
    pub always_replace_existing_dest_paths: bool,
    /// Extract a source that is a tar archive (told by content) into the destination
    /// directory instead of copying it, as Docker's `ADD` does with local archives.
    pub attempt_unpack_docker_compatibility: bool,
}

#[derive(Clone, Debug)]
enum Step {
    Mkdir(String, u32, MkdirOptions),
    Mkfile(String, u32, Vec<u8>, MkfileOptions),
    Rm(String, RmOptions),
    Symlink(String, String),
    Copy(Box<State>, String, String, CopyOptions),
}

/// A chain of file actions, applied in order by [`State::file`].
#[derive(Clone, Debug, Default)]
#[must_use = "file actions do nothing until passed to State::file"]
pub struct FileActions {
    steps: Vec<Step>,
}

/// Starts a chain with [`FileActions::mkdir`].
pub fn mkdir(path: &str, mode: u32) -> FileActions {
    FileActions::default().mkdir(path, mode)
}

/// Starts a chain with [`FileActions::mkfile`].
pub fn mkfile(path: &str, mode: u32, data: impl Into<Vec<u8>>) -> FileActions {
    FileActions::default().mkfile(path, mode, data)
}

/// Starts a chain with [`FileActions::rm`].
pub fn rm(path: &str) -> FileActions {
    FileActions::default().rm(path)
}

/// Starts a chain with [`FileActions::symlink`].
pub fn symlink(oldpath: &str, newpath: &str) -> FileActions {
    FileActions::default().symlink(oldpath, newpath)
}

impl FileActions {
    /// An empty chain.
    pub fn new() -> FileActions {
        FileActions::default()
    }

    /// Creates directory `path` with permission bits `mode`.
    pub fn mkdir(self, path: &str, mode: u32) -> FileActions {
        self.mkdir_with(path, mode, MkdirOptions::default())
    }

    /// [`FileActions::mkdir`] with options.
    pub fn mkdir_with(mut self, path: &str, mode: u32, opts: MkdirOptions) -> FileActions {
        self.steps.push(Step::Mkdir(path.into(), mode, opts));
        self
    }

    /// Creates file `path` with `data` and permission bits `mode`.
    pub fn mkfile(self, path: &str, mode: u32, data: impl Into<Vec<u8>>) -> FileActions {
        self.mkfile_with(path, mode, data, MkfileOptions::default())
    }

    /// [`FileActions::mkfile`] with options.
    pub fn mkfile_with(
        mut self,
        path: &str,
        mode: u32,
        data: impl Into<Vec<u8>>,
        opts: MkfileOptions,
    ) -> FileActions {
        self.steps
            .push(Step::Mkfile(path.into(), mode, data.into(), opts));
        self
    }

    /// Removes `path`.
    pub fn rm(self, path: &str) -> FileActions {
        self.rm_with(path, RmOptions::default())
    }

    /// [`FileActions::rm`] with options.
    pub fn rm_with(mut self, path: &str, opts: RmOptions) -> FileActions {
        self.steps.push(Step::Rm(path.into(), opts));
        self
    }

    /// Creates symlink `newpath` pointing at `oldpath`.
    pub fn symlink(mut self, oldpath: &str, newpath: &str) -> FileActions {
        self.steps
            .push(Step::Symlink(oldpath.into(), newpath.into()));
        self
    }

    /// Copies `src` (relative paths are from `from`'s root) of `from` to `dest` (relative paths
    /// join the target state's directory; a trailing `/` means "into").
    pub fn copy(mut self, from: &State, src: &str, dest: &str, opts: CopyOptions) -> FileActions {
        self.steps.push(Step::Copy(
            Box::new(from.clone()),
            src.into(),
            dest.into(),
            opts,
        ));
        self
    }
}

fn owner(o: &Option<Owner>, base: FileInput) -> Option<Chown> {
    o.as_ref().map(|o| match o {
        Owner::Ids(u, g) => Chown {
            user: Some(UserRef::Id(*u)),
            group: Some(UserRef::Id(*g)),
        },
        Owner::Names(u, g) => Chown {
            user: Some(UserRef::Name {
                name: u.clone(),
                input: base,
            }),
            group: g.as_ref().map(|g| UserRef::Name {
                name: g.clone(),
                input: base,
            }),
        },
    })
}

impl State {
    /// Applies `actions` in order on this state's filesystem, as one file op. An empty chain
    /// leaves the state as it is.
    pub fn file(&self, actions: FileActions) -> State {
        if actions.steps.is_empty() {
            return self.clone();
        }
        let mut inputs: Vec<Output> = Vec::new();
        let mut add_input = |o: &Option<Output>| -> FileInput {
            let Some(o) = o else {
                return FileInput::Scratch;
            };
            FileInput::Input(match inputs.iter().position(|x| x.same(o)) {
                Some(i) => i,
                None => {
                    inputs.push(o.clone());
                    inputs.len() - 1
                }
            })
        };
        let base = add_input(&self.output);
        let dir = &self.dir;
        let n = actions.steps.len();
        let mut out = Vec::with_capacity(n);
        for (k, step) in actions.steps.into_iter().enumerate() {
            let input = if k == 0 {
                base
            } else {
                FileInput::Action(k - 1)
            };
            let mut secondary_input = FileInput::Scratch;
            let kind = match step {
                Step::Mkdir(p, mode, o) => FileActionKind::Mkdir(Mkdir {
                    path: join_path(dir, &p),
                    mode,
                    make_parents: o.make_parents,
                    owner: owner(&o.owner, base),
                    timestamp: o.timestamp,
                }),
                Step::Mkfile(p, mode, data, o) => FileActionKind::Mkfile(Mkfile {
                    path: join_path(dir, &p),
                    mode,
                    data,
                    owner: owner(&o.owner, base),
                    timestamp: o.timestamp,
                }),
                Step::Rm(p, o) => FileActionKind::Rm(Rm {
                    path: join_path(dir, &p),
                    allow_not_found: o.allow_not_found,
                    allow_wildcard: o.allow_wildcard,
                }),
                Step::Symlink(old, new) => FileActionKind::Symlink(Symlink {
                    oldpath: old,
                    newpath: join_path(dir, &new),
                    owner: None,
                    timestamp: None,
                }),
                Step::Copy(from, src, dest, o) => {
                    secondary_input = add_input(&from.output);
                    FileActionKind::Copy(Copy {
                        src: join_path("/", &src),
                        dest: join_path(dir, &dest),
                        owner: owner(&o.owner, base),
                        mode: o.mode,
                        follow_symlink: o.follow_symlinks,
                        dir_copy_contents: o.copy_dir_contents,
                        create_dest_path: o.create_dest_path,
                        allow_wildcard: o.allow_wildcard,
                        allow_empty_wildcard: o.allow_empty_wildcard,
                        timestamp: o.timestamp,
                        include_patterns: o.include_patterns,
                        exclude_patterns: o.exclude_patterns,
                        always_replace_existing_dest_paths: o.always_replace_existing_dest_paths,
                        attempt_unpack: o.attempt_unpack_docker_compatibility,
                    })
                }
            };
            out.push(FileAction {
                input,
                secondary_input,
                output: (k + 1 == n).then_some(0),
                kind,
            });
        }
        let node = Node {
            op: NodeOp::Typed(Box::new(Op::File(FileOp { actions: out }))),
            inputs,
            // As BuildKit: a file op is not platform specific.
            platform: None,
            metadata: OpMetadata::default(),
        };
        State {
            output: Some(Output {
                node: Arc::new(node),
                index: 0,
            }),
            ..self.clone()
        }
    }
}
