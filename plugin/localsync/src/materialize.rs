//! Writes a synced listing into a fresh directory: the build's view of the client's directory,
//! with the client's permission bits, owners and modification times.

use std::path::Path;

use oxkit_fileop::{chmod, lchown, set_times};

use crate::entry::{Entry, Kind};
use crate::error::SyncError;

/// Fills `dest` with `entries` (a checked listing, in path order), file contents copied from
/// `tree`. Every parent was created here as a directory (the listing guarantees a parent is a
/// listed directory), so nothing is written through a symlink.
pub(crate) fn materialize<'a>(
    tree: &Path,
    entries: impl Iterator<Item = &'a Entry>,
    dest: &Path,
) -> Result<(), SyncError> {
    let mut dirs = Vec::new();
    for e in entries {
        let path = dest.join(&e.path);
        let io = |action: &'static str| move |err| SyncError::io(action, dest.join(&e.path), err);
        match e.kind() {
            Some(Kind::Dir) => {
                std::fs::create_dir(&path).map_err(io("create"))?;
                dirs.push(e);
            }
            Some(Kind::File) => {
                std::fs::copy(tree.join(&e.path), &path).map_err(io("copy"))?;
            }
            Some(Kind::HardLink) => {
                std::fs::hard_link(dest.join(&e.link), &path).map_err(io("link"))?;
                continue;
            }
            Some(Kind::Symlink) => {
                std::os::unix::fs::symlink(&e.target, &path).map_err(io("symlink"))?;
            }
            None => continue,
        }
        lchown(&path, e.uid, e.gid).map_err(io("chown"))?;
        if e.kind() != Some(Kind::Symlink) {
            chmod(&path, e.perm()).map_err(io("chmod"))?;
        }
        if e.kind() != Some(Kind::Dir) {
            set_times(&path, e.mtime_ns, e.mtime_ns).map_err(io("set the times of"))?;
        }
    }
    // Last, since creating their content changed them.
    for e in dirs.into_iter().rev() {
        let path = dest.join(&e.path);
        set_times(&path, e.mtime_ns, e.mtime_ns)
            .map_err(|err| SyncError::io("set the times of", &path, err))?;
    }
    Ok(())
}
