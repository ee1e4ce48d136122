//! Replaying a snapshot's own changes — its overlay upper directory — onto a mounted tree, as
//! applying the snapshot's layer would (the merge op's step): entries overwrite what is there,
//! overlay whiteouts delete, an opaque directory first empties its counterpart.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::copy::{make_like, set_meta, Made, Opened, Overrides};
use crate::error::FileOpError;

const ACTION: &str = "merge";
/// overlayfs's attribute on a directory that hides everything below it in the lower layers.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// overlayfs's own attributes (opaque, redirect, origin, …): bookkeeping of the upper directory,
/// never part of the files.
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";

/// Applies the overlay upper directory `upper` onto the tree at `root`, with the semantics of
/// unpacking the layer it stands for (containerd's applier, BuildKit's merge):
///
/// - an entry of `upper` replaces whatever `root` has at its path, except that a directory onto
///   a directory merges the two (the metadata of `upper`'s wins);
/// - a whiteout (character device 0/0) removes the path, a whole tree if it is a directory;
/// - a directory marked opaque (`trusted.overlay.opaque=y`) first loses everything `root` had
///   below it;
/// - modes, owners, times, extended attributes (but overlay's own), symlinks, device nodes,
///   fifos and hard links within `upper` are kept; sockets are skipped.
///
/// Parents are handled before their entries and every parent in `root` is a real directory by
/// then (a symlink or file in the way is replaced, never followed), so nothing is written
/// outside `root`. On error, `root` is left partly changed.
pub fn apply_upper(upper: &Path, root: &Path) -> Result<(), FileOpError> {
    Replay {
        inodes: HashMap::new(),
    }
    .dir(upper, root, "")
}

struct Replay {
    /// (dev, inode) in `upper` → the first path made for it under `root`.
    inodes: HashMap<(u64, u64), PathBuf>,
}

fn lstat(path: &Path, rel: &str) -> Result<Option<Metadata>, FileOpError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileOpError::io(ACTION, rel, "lstat", path, e)),
    }
}

/// Removes `path` (`existing` is its `lstat`): a whole tree for a directory.
fn remove(path: &Path, existing: &Metadata, rel: &str) -> Result<(), FileOpError> {
    let removed = if existing.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(|e| FileOpError::io(ACTION, rel, "remove", path, e))
}

fn is_opaque(dir: &Path) -> bool {
    let mut value = [0u8; 1];
    matches!(rustix::fs::lgetxattr(dir, OPAQUE_XATTR, &mut value), Ok(1) if value == *b"y")
}

fn sorted_names(dir: &Path, rel: &str) -> Result<Vec<OsString>, FileOpError> {
    let io = |e| FileOpError::io(ACTION, rel, "read the directory", dir, e);
    let mut names = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

impl Replay {
    /// Applies the entries of `src` (at `rel` inside the layer) into `dst`, a real directory.
    fn dir(&mut self, src: &Path, dst: &Path, rel: &str) -> Result<(), FileOpError> {
        for name in sorted_names(src, rel)? {
            let (from, to) = (src.join(&name), dst.join(&name));
            let path = format!("{rel}/{}", name.to_string_lossy());
            let meta = std::fs::symlink_metadata(&from)
                .map_err(|e| FileOpError::io(ACTION, &path, "lstat", &from, e))?;
            let existing = lstat(&to, &path)?;
            let ft = meta.file_type();
            if ft.is_char_device() && meta.rdev() == 0 {
                if let Some(m) = existing {
                    remove(&to, &m, &path)?;
                }
                continue;
            }
            if ft.is_dir() {
                match existing {
                    Some(m) if m.is_dir() => {
                        if is_opaque(&from) {
                            for child in sorted_names(&to, &path)? {
                                let child = to.join(child);
                                if let Some(m) = lstat(&child, &path)? {
                                    remove(&child, &m, &path)?;
                                }
                            }
                        }
                    }
                    other => {
                        if let Some(m) = other {
                            remove(&to, &m, &path)?;
                        }
                        std::fs::create_dir(&to)
                            .map_err(|e| FileOpError::io(ACTION, &path, "mkdir", &to, e))?;
                    }
                }
                self.dir(&from, &to, &path)?;
                // Metadata last: writing the contents changed the directory's times.
                self.finish(&from, &meta, &to, None, &path)?;
                continue;
            }
            if let Some(m) = existing {
                remove(&to, &m, &path)?;
            }
            if let Made::Entry(open) =
                make_like(ACTION, (&path, &path), &from, &meta, &to, &mut self.inodes)?
            {
                self.finish(&from, &meta, &to, open.as_ref(), &path)?;
            }
        }
        Ok(())
    }

    /// The owner, mode, times and extended attributes (but overlay's) of `from` onto `to`
    /// (`open`: as [`Made::Entry`] has it).
    fn finish(
        &self,
        from: &Path,
        meta: &Metadata,
        to: &Path,
        open: Option<&Opened>,
        rel: &str,
    ) -> Result<(), FileOpError> {
        set_meta(
            ACTION,
            rel,
            (from, meta),
            to,
            open,
            Overrides::default(),
            &|name| !name.starts_with(OVERLAY_XATTR_PREFIX),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmeta;
    use rustix::fs::{FileType, Mode, XattrFlags, CWD};
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn write(path: &Path, data: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }

    fn whiteout(path: &Path) {
        rustix::fs::mknodat(CWD, path, FileType::CharacterDevice, Mode::empty(), 0).unwrap();
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 64];
        let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    #[test]
    fn a_layer_overwrites_adds_and_deletes_like_unpacking_it() {
        if !crate::tests::is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (root, upper) = (tmp.path().join("root"), tmp.path().join("upper"));
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        for (p, d) in [
            ("keep", "keep"),
            ("over", "old"),
            ("gone", "x"),
            ("gonedir/x", "x"),
            ("opq/old", "x"),
            ("dir2/y", "y"),
            ("f2", "file"),
        ] {
            write(&root.join(p), d);
        }
        symlink(&outside, root.join("link")).unwrap();

        write(&upper.join("over"), "new");
        std::fs::set_permissions(upper.join("over"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        fsmeta::lchown(&upper.join("over"), 7, 8).unwrap();
        fsmeta::set_times(&upper.join("over"), 5_000_000_000, 7_000_000_000).unwrap();
        rustix::fs::lsetxattr(
            upper.join("over"),
            "trusted.oxkit-test",
            b"v",
            XattrFlags::empty(),
        )
        .unwrap();
        whiteout(&upper.join("gone"));
        whiteout(&upper.join("gonedir"));
        whiteout(&upper.join("never-there"));
        write(&upper.join("opq/new"), "new");
        rustix::fs::lsetxattr(upper.join("opq"), OPAQUE_XATTR, b"y", XattrFlags::empty()).unwrap();
        write(&upper.join("link/inside"), "in");
        write(&upper.join("dir2"), "now a file");
        write(&upper.join("f2/z"), "z");
        write(&upper.join("new/deep/file"), "deep");
        std::fs::hard_link(upper.join("new/deep/file"), upper.join("hard")).unwrap();
        symlink("new/deep/file", upper.join("sl")).unwrap();

        apply_upper(&upper, &root).unwrap();

        assert_eq!(read(&root.join("keep")), "keep", "untouched paths stay");
        // Before reading it, which would move its atime.
        let m = std::fs::symlink_metadata(root.join("over")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 7, 8));
        assert_eq!((m.atime(), m.mtime()), (5, 7));
        assert_eq!(read(&root.join("over")), "new");
        assert_eq!(
            xattr(&root.join("over"), "trusted.oxkit-test"),
            Some(b"v".to_vec())
        );
        assert!(!root.join("gone").exists() && !root.join("gonedir").exists());
        assert!(!root.join("never-there").exists());
        assert!(
            !root.join("opq/old").exists(),
            "an opaque dir hides what was below"
        );
        assert_eq!(read(&root.join("opq/new")), "new");
        assert_eq!(
            xattr(&root.join("opq"), OPAQUE_XATTR),
            None,
            "overlay's own xattrs stay"
        );
        assert!(root.join("link").symlink_metadata().unwrap().is_dir());
        assert_eq!(read(&root.join("link/inside")), "in");
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing written outside"
        );
        assert_eq!(read(&root.join("dir2")), "now a file");
        assert_eq!(read(&root.join("f2/z")), "z");
        assert_eq!(read(&root.join("new/deep/file")), "deep");
        let (a, b) = (
            std::fs::metadata(root.join("new/deep/file")).unwrap(),
            std::fs::metadata(root.join("hard")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino(), "hard links stay links");
        assert_eq!(
            std::fs::read_link(root.join("sl")).unwrap(),
            Path::new("new/deep/file")
        );
    }

    #[test]
    fn directory_times_are_those_of_the_layer() {
        if !crate::tests::is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (root, upper) = (tmp.path().join("root"), tmp.path().join("upper"));
        write(&root.join("d/old"), "x");
        write(&upper.join("d/new"), "y");
        fsmeta::set_times(&upper.join("d"), 1_000_000_000, 2_000_000_000).unwrap();
        apply_upper(&upper, &root).unwrap();
        let m = std::fs::metadata(root.join("d")).unwrap();
        assert_eq!(m.mtime(), 2);
        assert!(
            root.join("d/old").exists() && root.join("d/new").exists(),
            "dirs merge"
        );
    }
}
