//! Writes a synced listing into a directory: the build's view of the client's directory, with
//! the client's permission bits, owners and modification times. Either into an empty
//! directory, or onto a directory that holds an earlier listing (a snapshot prepared on the
//! last one), rewriting only what differs: the cost follows the change, not the tree.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use oxkit_fileop::{chmod, lchown, set_times};

use crate::entry::{parent, Entry, Kind};
use crate::error::SyncError;

/// An entry as materialized: its metadata and, for a regular file, its content hash.
pub(crate) type Placed<'a> = (&'a Entry, &'a str);

/// Whether two placed entries give the same file in the tree.
fn same(a: Placed<'_>, b: Placed<'_>) -> bool {
    let (a, ah) = a;
    let (b, bh) = b;
    a.kind() == b.kind()
        && a.perm() == b.perm()
        && a.uid == b.uid
        && a.gid == b.gid
        && a.mtime_ns == b.mtime_ns
        && a.target == b.target
        && a.link == b.link
        && ah == bh
}

/// Makes `dest`, which holds `base` (empty for an empty directory), hold `current` (a checked
/// listing, in path order), file contents copied from `tree` — or, with `real` (the directory
/// `dest` shows, on `tree`'s filesystem), new files hard-linked from `tree` where the link can
/// be made. Every parent is a directory of the listing created or kept here (never a
/// symlink), so nothing is written through one.
pub(crate) fn materialize(
    tree: &Path,
    current: &[Placed<'_>],
    base: &[Placed<'_>],
    (dest, real): (&Path, Option<&Path>),
) -> Result<(), SyncError> {
    let io = |action: &'static str, path: &str| {
        let path = dest.join(path);
        move |err| SyncError::io(action, path, err)
    };
    let now: HashMap<&str, Placed<'_>> = current.iter().map(|p| (p.0.path.as_str(), *p)).collect();
    let before: HashMap<&str, Placed<'_>> = base.iter().map(|p| (p.0.path.as_str(), *p)).collect();
    // Directories whose content changes: their times are set again at the end.
    let mut touched: HashSet<&str> = HashSet::new();
    // What is gone, or changes type: children first.
    for (e, _) in base.iter().rev() {
        if now
            .get(e.path.as_str())
            .is_none_or(|(n, _)| n.kind() != e.kind())
        {
            remove_any(&dest.join(&e.path)).map_err(io("remove", &e.path))?;
            touched.insert(parent(&e.path));
        }
    }
    let mut changed: HashSet<&str> = HashSet::new();
    // Regular files to write, a group per directory, each with whether it is new here; hard
    // links, made once every file is.
    let mut files: Vec<Vec<(&Entry, bool)>> = Vec::new();
    let mut links: Vec<&Entry> = Vec::new();
    for &(e, hash) in current {
        let old = before
            .get(e.path.as_str())
            .filter(|(o, _)| o.kind() == e.kind());
        // A hard link follows its file.
        let relink = e.kind() == Some(Kind::HardLink) && changed.contains(e.link.as_str());
        if old.is_some_and(|o| same(*o, (e, hash))) && !relink {
            continue;
        }
        changed.insert(&e.path);
        touched.insert(parent(&e.path));
        let path = dest.join(&e.path);
        match e.kind() {
            Some(Kind::Dir) if old.is_some() => {}
            Some(Kind::Dir) => std::fs::create_dir(&path).map_err(io("create", &e.path))?,
            Some(_) if old.is_some() => {
                std::fs::remove_file(&path).map_err(io("replace", &e.path))?
            }
            _ => {}
        }
        match e.kind() {
            Some(Kind::Dir) => {}
            Some(Kind::File) => {
                match files.last_mut() {
                    Some(group) if parent(&group[0].0.path) == parent(&e.path) => {
                        group.push((e, old.is_none()))
                    }
                    _ => files.push(vec![(e, old.is_none())]),
                }
                continue;
            }
            Some(Kind::HardLink) => {
                links.push(e);
                continue;
            }
            Some(Kind::Symlink) => {
                std::os::unix::fs::symlink(&e.target, &path).map_err(io("symlink", &e.path))?;
            }
            None => continue,
        }
        set_meta(e, &path).map_err(io("set the metadata of", &e.path))?;
    }
    let place = |&(e, new): &(&Entry, bool)| -> Result<(), SyncError> {
        let path = dest.join(&e.path);
        let linked = new
            && real
                .is_some_and(|r| std::fs::hard_link(tree.join(&e.path), r.join(&e.path)).is_ok());
        if !linked {
            std::fs::copy(tree.join(&e.path), &path).map_err(io("copy", &e.path))?;
        }
        set_meta(e, &path).map_err(io("set the metadata of", &e.path))
    };
    in_parallel(&files, place)?;
    for e in links {
        std::fs::hard_link(dest.join(&e.link), dest.join(&e.path)).map_err(io("link", &e.path))?;
    }
    // Last, since writing their content changed them.
    for &(e, _) in current.iter().rev() {
        if e.kind() == Some(Kind::Dir)
            && (changed.contains(e.path.as_str()) || touched.contains(e.path.as_str()))
        {
            set_times(&dest.join(&e.path), e.mtime_ns, e.mtime_ns)
                .map_err(io("set the times of", &e.path))?;
        }
    }
    Ok(())
}

/// The listing's owner, permission bits (not a symlink's) and modification time (not a
/// directory's, set last) on `path`.
fn set_meta(e: &Entry, path: &Path) -> std::io::Result<()> {
    lchown(path, e.uid, e.gid)?;
    if e.kind() != Some(Kind::Symlink) {
        chmod(path, e.perm())?;
    }
    if e.kind() != Some(Kind::Dir) {
        set_times(path, e.mtime_ns, e.mtime_ns)?;
    }
    Ok(())
}

/// Threads placing files at once: each takes whole directories (two in one directory would
/// wait for each other on its lock), and placing a file is mostly kernel time.
const WRITERS: usize = 2;
/// One more thread per this many files: a small change is placed on this one.
const FILES_PER_EXTRA_WRITER: usize = 256;

/// Runs `place` on every item of `groups`, a group at a time, on up to [`WRITERS`] threads;
/// stops at the first error (all threads joined) and returns it.
fn in_parallel<T: Sync>(
    groups: &[Vec<T>],
    place: impl Fn(&T) -> Result<(), SyncError> + Sync,
) -> Result<(), SyncError> {
    let count: usize = groups.iter().map(Vec::len).sum();
    let writers = WRITERS.min(1 + count / FILES_PER_EXTRA_WRITER);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || -> Result<(), SyncError> {
        while !failed.load(Ordering::Relaxed) {
            let Some(group) = groups.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            if let Err(e) = group.iter().try_for_each(&place) {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..writers).map(|_| scope.spawn(work)).collect();
        let mut result = work();
        for helper in helpers {
            let theirs = helper.join().unwrap_or_else(|_| {
                Err(SyncError::io(
                    "place",
                    "the files of a local source",
                    std::io::Error::other("a thread panicked"),
                ))
            });
            if result.is_ok() {
                result = theirs;
            }
        }
        result
    })
}

/// Removes whatever is at `path` (a directory with its content); absent is fine.
pub(crate) fn remove_any(path: &Path) -> std::io::Result<()> {
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
