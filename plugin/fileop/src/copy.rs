//! The copy action, with BuildKit's (fsutil's) semantics: wildcard sources, follow-symlink,
//! Docker's destination rules, include/exclude patterns, owner, mode and timestamp overrides,
//! hard links kept, xattrs, device nodes and fifos copied as such; with `attempt_unpack`, a
//! source that is an archive is handed to [`crate::unpack`] instead. Every destination entry is
//! checked with `lstat` before it is written, so an existing symlink in the destination is
//! replaced or refused, never written through.

use crate::error::FileOpError;
use crate::fsmeta::{self, Node};
use crate::pattern::{glob_match, has_wildcard, ExcludeMatcher, IncludeMatcher};
use crate::resolve::{clean_abs, resolve};
use crate::share::{LayerPaths, Sharer};
use crate::unpack;
use oxkit_llb::op::Copy;
use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const ACTION: &str = "copy";

/// One thing a copy reads: `rel` is relative to the selected source (`""` for the source itself).
pub(crate) struct Entry {
    pub rel: String,
    pub host: PathBuf,
    pub meta: Metadata,
}

/// Include and exclude patterns of a copy.
pub(crate) struct Filter {
    include: IncludeMatcher,
    exclude: ExcludeMatcher,
}

impl Filter {
    pub(crate) fn new(include: &[String], exclude: &[String]) -> Result<Self, FileOpError> {
        let invalid = |reason| FileOpError::Invalid {
            action: ACTION,
            reason,
        };
        Ok(Filter {
            include: IncludeMatcher::new(include).map_err(invalid)?,
            exclude: ExcludeMatcher::new(exclude).map_err(invalid)?,
        })
    }
}

/// A selected source: its path inside the source root and its host path.
pub(crate) struct Selected {
    pub path: String,
    pub host: PathBuf,
    pub meta: Metadata,
}

/// Resolves `src` inside `root` into the sources a copy reads: one, or each wildcard match (in
/// lexical order). The last component is followed only with `follow`.
pub(crate) fn select(
    root: &Path,
    src: &str,
    follow: bool,
    allow_wildcard: bool,
    allow_empty_wildcard: bool,
) -> Result<Vec<Selected>, FileOpError> {
    let clean = clean_abs(src);
    let paths = if allow_wildcard && has_wildcard(&clean) {
        let comps: Vec<&str> = clean.split('/').filter(|c| !c.is_empty()).collect();
        let first = comps.iter().position(|c| has_wildcard(c)).unwrap_or(0);
        let base = format!("/{}", comps[..first].join("/"));
        let pattern = comps[first..].join("/");
        let base_host = resolve(ACTION, root, &base, true)?;
        let mut found = Vec::new();
        walk_matches(&base_host, "", &pattern, &mut found);
        let found: Vec<String> = found
            .into_iter()
            .map(|rel| clean_abs(&format!("{base}/{rel}")))
            .collect();
        if found.is_empty() {
            if allow_empty_wildcard {
                return Ok(Vec::new());
            }
            return Err(FileOpError::NoMatch {
                action: ACTION,
                path: clean,
            });
        }
        found
    } else {
        vec![clean]
    };
    let mut out = Vec::new();
    for path in paths {
        let host = resolve(ACTION, root, &path, follow)?;
        let meta = std::fs::symlink_metadata(&host).map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::NotADirectory => FileOpError::NotFound {
                action: ACTION,
                path: path.clone(),
                which: "source",
            },
            _ => FileOpError::io(ACTION, &path, "lstat", &host, e),
        })?;
        out.push(Selected { path, host, meta });
    }
    Ok(out)
}

/// Like Go's `filepath.Walk` + `filepath.Match`: every path under `dir` (not following symlinks)
/// whose relative path matches `pattern`; a matching directory is not entered.
fn walk_matches(dir: &Path, rel: &str, pattern: &str, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let host = dir.join(&name);
        let is_dir = std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir());
        if glob_match(pattern, &child_rel) {
            out.push(child_rel);
        } else if is_dir {
            walk_matches(&host, &child_rel, pattern, out);
        }
    }
}

/// Lists what copying `sel` reads, in pre-order, names sorted, include/exclude applied below
/// the source itself. With include patterns, a directory is listed only if it matched fully or
/// something inside it is listed.
pub(crate) fn collect(sel: &Selected, filter: &Filter) -> Result<Vec<Entry>, FileOpError> {
    let mut out = vec![Entry {
        rel: String::new(),
        host: sel.host.clone(),
        meta: sel.meta.clone(),
    }];
    if sel.meta.is_dir() {
        walk(
            &sel.path,
            &sel.host,
            "",
            filter,
            filter.include.is_empty(),
            &mut out,
        )?;
    }
    Ok(out)
}

fn walk(
    src_path: &str,
    dir: &Path,
    rel: &str,
    filter: &Filter,
    fully_included: bool,
    out: &mut Vec<Entry>,
) -> Result<bool, FileOpError> {
    let io = |op, h: &Path, e| FileOpError::io(ACTION, src_path, op, h, e);
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io("readdir", dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| io("readdir", dir, e))?;
    names.sort();
    let mut any = false;
    for name in names {
        let name_s = name.to_string_lossy();
        let child_rel = if rel.is_empty() {
            name_s.into_owned()
        } else {
            format!("{rel}/{name_s}")
        };
        let host = dir.join(&name);
        let meta = std::fs::symlink_metadata(&host).map_err(|e| io("lstat", &host, e))?;
        let is_dir = meta.is_dir();
        let mut full = fully_included;
        if !fully_included {
            let (inc, f) = filter.include.check(&child_rel, is_dir);
            if !inc {
                continue;
            }
            full = f;
        }
        if filter.exclude.excluded(&child_rel, is_dir) {
            continue;
        }
        let idx = out.len();
        out.push(Entry {
            rel: child_rel.clone(),
            host: host.clone(),
            meta,
        });
        if is_dir {
            let inner = walk(src_path, &host, &child_rel, filter, full, out)?;
            if !full && !inner {
                out.truncate(idx);
                continue;
            }
        }
        any = true;
    }
    Ok(any)
}

/// Creates the missing directories of `host` (a host path under `root` whose existing part has
/// no symlinks, as [`resolve`] returns) with `mode`, owner and timestamp applied to the ones
/// created (times last, deepest first, so creating a child does not undo its parent's). An
/// existing non-directory on the way is an error. Returns the directories created, top first.
pub(crate) fn mkdir_all(
    action: &'static str,
    path: &str,
    root: &Path,
    host: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
    timestamp: Option<i64>,
) -> Result<Vec<PathBuf>, FileOpError> {
    let rel = host
        .strip_prefix(root)
        .map_err(|_| FileOpError::EscapesRoot {
            action,
            path: path.to_string(),
        })?;
    let mut cur = root.to_path_buf();
    let mut created = Vec::new();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(FileOpError::WrongType {
                    action,
                    path: path.to_string(),
                    reason: "a parent is not a directory",
                })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(FileOpError::io(action, path, "lstat", &cur, e)),
        }
        let io = |op, e| FileOpError::io(action, path, op, &cur, e);
        std::fs::create_dir(&cur).map_err(|e| io("mkdir", e))?;
        fsmeta::chmod(&cur, mode).map_err(|e| io("chmod", e))?;
        if let Some((u, g)) = owner {
            fsmeta::lchown(&cur, u, g).map_err(|e| io("chown", e))?;
        }
        created.push(cur.clone());
    }
    set_dir_times(action, path, &created, timestamp)?;
    Ok(created)
}

/// Sets `timestamp` (if any) on `dirs`, deepest first.
pub(crate) fn set_dir_times(
    action: &'static str,
    path: &str,
    dirs: &[PathBuf],
    timestamp: Option<i64>,
) -> Result<(), FileOpError> {
    if let Some(t) = timestamp {
        for d in dirs.iter().rev() {
            fsmeta::set_times(d, t, t)
                .map_err(|e| FileOpError::io(action, path, "utimes", d, e))?;
        }
    }
    Ok(())
}

/// Runs a copy action from `src_root` into `dest_root`; `owner` is the resolved owner override.
pub(crate) fn copy(
    dest_root: &Path,
    src_root: &Path,
    c: &Copy,
    owner: Option<(u32, u32)>,
    paths: Option<&LayerPaths>,
) -> Result<(), FileOpError> {
    let filter = Filter::new(&c.include_patterns, &c.exclude_patterns)?;
    let dest_clean = clean_abs(&c.dest);
    if !c.create_dest_path {
        let p = resolve(ACTION, dest_root, &dest_clean, true)?;
        let parent = p
            .parent()
            .filter(|p| p.starts_with(dest_root))
            .unwrap_or(dest_root);
        if !parent.is_dir() {
            return Err(FileOpError::NotFound {
                action: ACTION,
                path: dest_clean,
                which: "destination (its parent directory is missing; set create_dest_path)",
            });
        }
    }
    let sources = select(
        src_root,
        &c.src,
        c.follow_symlink,
        c.allow_wildcard,
        c.allow_empty_wildcard,
    )?;
    // Docker's rule: a destination ending in `/` (or `/.`) is a directory to copy into.
    let dest_is_dir = c.dest.ends_with('/') || c.dest.ends_with("/.") || dest_clean == "/";
    let ensure = if dest_is_dir {
        dest_clean.clone()
    } else {
        clean_abs(&format!("{dest_clean}/.."))
    };
    let ensure_host = resolve(ACTION, dest_root, &ensure, true)?;
    let mut created = mkdir_all(
        ACTION,
        &dest_clean,
        dest_root,
        &ensure_host,
        0o755,
        owner,
        c.timestamp,
    )?;
    let dst_host = resolve(ACTION, dest_root, &dest_clean, true)?;

    let mut copier = Copier {
        c,
        owner,
        dest_path: &dest_clean,
        inodes: HashMap::new(),
        shared: HashSet::new(),
        sharer: Sharer::new(paths, src_root, dest_root),
        made_dirs: created.iter().cloned().collect(),
    };
    for (i, sel) in sources.iter().enumerate() {
        // A directory made for an earlier source may hold its files now: only those made for
        // this one are known to be empty of anything but what this source puts there.
        if i > 0 {
            copier.made_dirs.clear();
        }
        // Docker's ADD: an archive (told by content) is extracted into `dest`, a directory.
        if c.attempt_unpack && sel.meta.is_file() && unpack::is_archive(&sel.host) {
            created.extend(mkdir_all(
                ACTION,
                &dest_clean,
                dest_root,
                &dst_host,
                0o755,
                owner,
                c.timestamp,
            )?);
            unpack::unpack(&sel.host, &sel.path, &dst_host, &dest_clean, owner)?;
            continue;
        }
        let src_is_dir = sel.meta.is_dir();
        let dest_meta = std::fs::metadata(&dst_host).ok();
        let dest_exists_dir = dest_meta.as_ref().is_some_and(|m| m.is_dir());
        let mut target = dst_host.clone();
        if (!c.dir_copy_contents && src_is_dir && dest_meta.is_some())
            || (!src_is_dir && dest_exists_dir)
        {
            if let Some(base) = Path::new(&sel.path).file_name() {
                target.push(base);
            }
        }
        let parent = if c.dir_copy_contents && src_is_dir && dest_meta.is_none() {
            target.clone()
        } else {
            // The root itself (`COPY dir/ /`) has no parent inside the tree: it is the parent.
            target
                .parent()
                .filter(|p| p.starts_with(dest_root))
                .unwrap_or(dest_root)
                .to_path_buf()
        };
        let made = mkdir_all(
            ACTION,
            &dest_clean,
            dest_root,
            &parent,
            0o755,
            owner,
            c.timestamp,
        )?;
        // `COPY dir /new`: the destination made here is as new as those made above.
        copier.made_dirs.extend(made.iter().cloned());
        created.extend(made);
        let entries = collect(sel, &filter)?;
        copier.copy_entries(&sel.path, &entries, &target)?;
    }
    // Copying into the parents created above changed their times; set them again.
    set_dir_times(ACTION, &dest_clean, &created, c.timestamp)
}

struct Copier<'a> {
    c: &'a Copy,
    owner: Option<(u32, u32)>,
    dest_path: &'a str,
    inodes: HashMap<(u64, u64), PathBuf>,
    /// Shares files by hard links where the mounts allow ([`crate::share`]).
    sharer: Option<Sharer<'a>>,
    /// The inodes of source files with several names that this copy linked.
    shared: HashSet<u64>,
    /// Directories made for the source being copied: what goes into them cannot exist yet, so
    /// it needs no `lstat` (one per file saved; `create_new` below still refuses anything
    /// planted there), and overlayfs knows nothing of their contents, so files may be linked
    /// into them.
    made_dirs: HashSet<PathBuf>,
}

impl Copier<'_> {
    fn io(&self, op: &'static str, host: &Path, e: std::io::Error) -> FileOpError {
        FileOpError::io(ACTION, self.dest_path, op, host, e)
    }

    fn wrong(&self, reason: &'static str) -> FileOpError {
        FileOpError::WrongType {
            action: ACTION,
            path: self.dest_path.to_string(),
            reason,
        }
    }

    fn copy_entries(
        &mut self,
        src_path: &str,
        entries: &[Entry],
        target: &Path,
    ) -> Result<(), FileOpError> {
        let mut dirs: Vec<(PathBuf, &Entry, bool)> = Vec::new();
        for e in entries {
            let t = if e.rel.is_empty() {
                target.to_path_buf()
            } else {
                target.join(&e.rel)
            };
            let in_made_dir =
                !e.rel.is_empty() && t.parent().is_some_and(|p| self.made_dirs.contains(p));
            let existing = if in_made_dir {
                None
            } else {
                match std::fs::symlink_metadata(&t) {
                    Ok(m) => Some(m),
                    Err(err) if err.kind() == ErrorKind::NotFound => None,
                    Err(err) => return Err(self.io("lstat", &t, err)),
                }
            };
            if e.meta.is_dir() {
                let created = match existing {
                    Some(m) if m.is_dir() => false,
                    Some(_) if self.c.always_replace_existing_dest_paths => {
                        std::fs::remove_file(&t).map_err(|err| self.io("remove", &t, err))?;
                        std::fs::create_dir(&t).map_err(|err| self.io("mkdir", &t, err))?;
                        true
                    }
                    Some(_) => {
                        return Err(self.wrong("cannot copy a directory onto a non-directory"))
                    }
                    None => {
                        std::fs::create_dir(&t).map_err(|err| self.io("mkdir", &t, err))?;
                        true
                    }
                };
                if created {
                    self.made_dirs.insert(t.clone());
                }
                dirs.push((t, e, created));
                continue;
            }
            if e.meta.is_file() && self.keeps_meta(&e.meta) {
                if let Some(sharer) = self.sharer.as_mut() {
                    // A new name: in a directory this source made, or one found missing in a
                    // mount nothing reads through after this action ([`crate::share`]).
                    let new_name = in_made_dir || (existing.is_none() && sharer.last_use);
                    // Another name of a file linked above (a hard link in the source): the
                    // same link, so the names stay one file.
                    let again = self.shared.contains(&e.meta.ino());
                    if new_name && sharer.link(&e.host, &e.meta, &t, again) {
                        if e.meta.nlink() > 1 {
                            self.shared.insert(e.meta.ino());
                            // A later name that cannot be linked so is made a hard link to this
                            // one through the mount, which sees names in a directory it made.
                            if in_made_dir {
                                self.inodes
                                    .entry((e.meta.dev(), e.meta.ino()))
                                    .or_insert_with(|| t.clone());
                            }
                        }
                        continue;
                    }
                }
            }
            match existing {
                Some(m) if m.is_dir() => {
                    if !self.c.always_replace_existing_dest_paths {
                        return Err(self.wrong("cannot replace a directory with a non-directory"));
                    }
                    std::fs::remove_dir_all(&t).map_err(|err| self.io("remove", &t, err))?;
                }
                Some(_) => std::fs::remove_file(&t).map_err(|err| self.io("remove", &t, err))?,
                None => {}
            }
            let made = make_like(
                ACTION,
                (src_path, self.dest_path),
                &e.host,
                &e.meta,
                &t,
                &mut self.inodes,
            )?;
            if let Made::Entry(open) = made {
                self.finish(e, &t, open.as_ref())?;
            }
        }
        // Directories last, deepest first, so writing their contents does not undo their times.
        for (t, e, created) in dirs.into_iter().rev() {
            if !e.rel.is_empty() || created {
                self.finish(e, &t, None)?;
            }
        }
        Ok(())
    }

    /// Whether the copy of an entry with `meta` keeps its owner, mode and times (so that the
    /// source file itself may stand for it).
    fn keeps_meta(&self, meta: &Metadata) -> bool {
        self.owner.is_none_or(|o| o == (meta.uid(), meta.gid()))
            && self
                .c
                .mode
                .is_none_or(|m| m & 0o7777 == meta.mode() & 0o7777)
            && self.c.timestamp.is_none()
    }

    /// Owner, mode, xattrs and times of a copied entry (`open`: as [`Made::Entry`] has it).
    fn finish(&self, e: &Entry, t: &Path, open: Option<&Opened>) -> Result<(), FileOpError> {
        let overrides = Overrides {
            owner: self.owner,
            mode: self.c.mode,
            timestamp: self.c.timestamp,
        };
        set_meta(
            ACTION,
            self.dest_path,
            (&e.host, &e.meta),
            t,
            open,
            overrides,
            &|_| true,
        )
    }
}

/// A regular file [`make_like`] copied: the source and the new file, still open, so that its
/// metadata is set through them rather than by resolving both paths again for each call.
pub(crate) type Opened = (std::fs::File, std::fs::File);

/// What [`make_like`] made.
#[derive(Debug)]
pub(crate) enum Made {
    /// A new entry: its owner, mode and times are still the caller's to set. For a regular
    /// file, its source and itself, still open.
    Entry(Option<Opened>),
    /// A hard link to an entry made before (whose metadata is already set).
    Link,
    /// Nothing: sockets are not copied (Docker and BuildKit skip them too).
    Nothing,
}

/// Makes at `t` — which does not exist, under a parent that is a real directory — a non-directory
/// like `src` (`meta` is its `lstat`): a regular file with `src`'s content, a symlink with its
/// target, a device node or fifo. A regular file with more links whose inode `inodes` has seen
/// becomes a hard link to the first one made. Errors name `action` and, of `paths`, the source
/// path for reading `src` and the destination path for writing `t`.
pub(crate) fn make_like(
    action: &'static str,
    (src_path, dest_path): (&str, &str),
    src: &Path,
    meta: &Metadata,
    t: &Path,
    inodes: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<Made, FileOpError> {
    let write_err = |op, err| FileOpError::io(action, dest_path, op, t, err);
    let read_err = |op, err| FileOpError::io(action, src_path, op, src, err);
    let ft = meta.file_type();
    if ft.is_file() {
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = inodes.get(&key) {
                std::fs::hard_link(first, t).map_err(|err| write_err("link", err))?;
                return Ok(Made::Link);
            }
            inodes.insert(key, t.to_path_buf());
        }
        let from = std::fs::File::open(src).map_err(|err| read_err("open", err))?;
        // create_new: O_EXCL never follows a symlink planted at the target.
        let to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(t)
            .map_err(|err| write_err("create", err))?;
        copy_contents(&from, &to, meta.len()).map_err(|err| write_err("write", err))?;
        return Ok(Made::Entry(Some((from, to))));
    } else if ft.is_symlink() {
        let link = std::fs::read_link(src).map_err(|err| read_err("readlink", err))?;
        std::os::unix::fs::symlink(&link, t).map_err(|err| write_err("symlink", err))?;
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        fsmeta::mknod_like(t, meta).map_err(|err| write_err("mknod", err))?;
    } else {
        tracing::warn!(path = %src.display(), action, "skipping socket");
        return Ok(Made::Nothing);
    }
    Ok(Made::Entry(None))
}

/// Copies all of `from` into the new, empty `to` (`len` is `from`'s size as `lstat` saw it) with
/// `copy_file_range`, falling back to reading and writing where the kernel will not (across
/// filesystems on older kernels, or a file such as procfs's that reports no data to it).
/// `std::io::copy` does the same but first `fstat`s both files, two system calls more per file.
fn copy_contents(from: &std::fs::File, to: &std::fs::File, len: u64) -> std::io::Result<()> {
    use rustix::io::Errno;
    let mut copied = 0u64;
    loop {
        match rustix::fs::copy_file_range(from, None, to, None, 1 << 30) {
            Ok(0) if copied == 0 && len > 0 => break,
            Ok(0) => return Ok(()),
            Ok(n) => copied += n as u64,
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP | Errno::PERM)
                if copied == 0 =>
            {
                break
            }
            Err(e) => return Err(e.into()),
        }
    }
    std::io::copy(&mut &*from, &mut &*to).map(drop)
}

/// What replaces the source's own metadata in [`set_meta`] (a copy's owner, mode and timestamp).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Overrides {
    /// (uid, gid).
    pub owner: Option<(u32, u32)>,
    /// Permission bits.
    pub mode: Option<u32>,
    /// Access and modification time, Unix nanoseconds.
    pub timestamp: Option<i64>,
}

/// Sets on `t` (not followed) the owner, the mode (unless it is a symlink) and the access and
/// modification times of `src` (`meta` is its `lstat`), or their `overrides`, and the extended
/// attributes of `src` that `keep_xattr` accepts. With `open` (a regular file's source and `t`,
/// open), the calls go through those files.
pub(crate) fn set_meta(
    action: &'static str,
    dest_path: &str,
    (src, meta): (&Path, &Metadata),
    t: &Path,
    open: Option<&Opened>,
    overrides: Overrides,
    keep_xattr: &dyn Fn(&str) -> bool,
) -> Result<(), FileOpError> {
    let io = |op, err| FileOpError::io(action, dest_path, op, t, err);
    let (uid, gid) = overrides.owner.unwrap_or((meta.uid(), meta.gid()));
    let (from, to) = match open {
        Some((from, to)) => (Node::File(from), Node::File(to)),
        None => (Node::Path(src), Node::Path(t)),
    };
    to.chown(uid, gid).map_err(|err| io("chown", err))?;
    if !meta.file_type().is_symlink() {
        let mode = overrides.mode.unwrap_or(meta.mode());
        to.chmod(mode).map_err(|err| io("chmod", err))?;
    }
    fsmeta::copy_xattrs_where(from, to, keep_xattr);
    let (atime, mtime) = match overrides.timestamp {
        Some(ts) => (ts, ts),
        None => fsmeta::times_of(meta),
    };
    to.set_times(atime, mtime).map_err(|err| io("utimes", err))
}
