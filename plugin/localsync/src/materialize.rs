//! Writes a synced listing into a directory: the build's view of the client's directory, with
//! the client's permission bits, owners and modification times. Either into an empty
//! directory, or onto a directory that holds an earlier listing (a snapshot prepared on the
//! last one), rewriting only what differs: the cost follows the change, not the tree.

use std::collections::{HashMap, HashSet};
use std::path::Path;

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
                let linked = old.is_none()
                    && real.is_some_and(|r| {
                        std::fs::hard_link(tree.join(&e.path), r.join(&e.path)).is_ok()
                    });
                if !linked {
                    std::fs::copy(tree.join(&e.path), &path).map_err(io("copy", &e.path))?;
                }
            }
            Some(Kind::HardLink) => {
                std::fs::hard_link(dest.join(&e.link), &path).map_err(io("link", &e.path))?;
                continue;
            }
            Some(Kind::Symlink) => {
                std::os::unix::fs::symlink(&e.target, &path).map_err(io("symlink", &e.path))?;
            }
            None => continue,
        }
        lchown(&path, e.uid, e.gid).map_err(io("chown", &e.path))?;
        if e.kind() != Some(Kind::Symlink) {
            chmod(&path, e.perm()).map_err(io("chmod", &e.path))?;
        }
        if e.kind() != Some(Kind::Dir) {
            set_times(&path, e.mtime_ns, e.mtime_ns).map_err(io("set the times of", &e.path))?;
        }
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
