//! Cloning a committed snapshot's own layer (its overlay upper directory) into a new snapshot's
//! empty upper directory by hard links: the same change — files, symlinks, whiteouts (character
//! devices), opaque directories (xattrs), owners, modes and times — for one `link` per
//! non-directory and one `mkdir` per directory, whatever the files' sizes.
//!
//! Only for trees that never change again: both sides are committed snapshots, and overlayfs
//! never writes a lower layer's files in place (a change copies the file up first), so sharing
//! their inodes is safe.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::fsmeta::{self, Node};

/// Hard-links the tree under `src` into `dst`, an existing empty directory on the same
/// filesystem; directories are made anew with `src`'s mode, owner, xattrs and times. Fails on
/// the first error (e.g. `EXDEV` across filesystems), leaving `dst` partly filled for the caller
/// to throw away.
pub fn link_upper(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    link_children(src, dst)?;
    dir_metadata(src, dst, &meta)
}

fn link_children(src: &Path, dst: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&from)?;
        if meta.is_dir() {
            std::fs::create_dir(&to)?;
            link_children(&from, &to)?;
            dir_metadata(&from, &to, &meta)?;
        } else {
            // `link` does not follow a symlink: the link itself is shared.
            std::fs::hard_link(&from, &to)?;
        }
    }
    Ok(())
}

/// Gives directory `dst` the mode, owner, xattrs (overlayfs's opaque marker among them) and times
/// of `src`; times last, after its children were made.
fn dir_metadata(src: &Path, dst: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    fsmeta::lchown(dst, meta.uid(), meta.gid())?;
    fsmeta::chmod(dst, meta.mode())?;
    fsmeta::copy_xattrs_where(Node::Path(src), Node::Path(dst), &|_| true);
    let (atime, mtime) = fsmeta::times_of(meta);
    fsmeta::set_times(dst, atime, mtime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn the_clone_shares_files_and_repeats_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::create_dir(&dst).unwrap();
        std::fs::write(src.join("a/b/f"), "data").unwrap();
        symlink("b/f", src.join("a/l")).unwrap();
        std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o750)).unwrap();
        fsmeta::set_times(&src.join("a"), 1_000_000_000, 2_000_000_000).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        link_upper(&src, &dst).unwrap();
        let same = |p: &str| {
            let (a, b) = (
                std::fs::symlink_metadata(src.join(p)).unwrap(),
                std::fs::symlink_metadata(dst.join(p)).unwrap(),
            );
            (
                a.ino() == b.ino(),
                a.mode() == b.mode(),
                a.mtime() == b.mtime(),
            )
        };
        assert_eq!(same("a/b/f"), (true, true, true));
        assert_eq!(same("a/l"), (true, true, true));
        assert_eq!(same("gone"), (true, true, true));
        assert_eq!(same("a"), (false, true, true));
        assert_eq!(
            std::fs::read_link(dst.join("a/l")).unwrap(),
            Path::new("b/f")
        );
        assert_eq!(std::fs::read_to_string(dst.join("a/b/f")).unwrap(), "data");
    }
}
