//! Filesystem work of the snapshotter: disk usage, the copy that native mode uses, removal.

use std::collections::{HashMap, HashSet};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags, CWD};

use crate::info::Usage;

/// Disk usage of the tree at `root`: allocated bytes and distinct inodes, hard links counted once.
pub(crate) fn disk_usage(root: &Path) -> io::Result<Usage> {
    fn walk(path: &Path, seen: &mut HashSet<(u64, u64)>, usage: &mut Usage) -> io::Result<()> {
        let meta = fs::symlink_metadata(path)?;
        if seen.insert((meta.dev(), meta.ino())) {
            usage.inodes += 1;
            usage.size += (meta.blocks() * 512) as i64;
        }
        if meta.is_dir() {
            for entry in fs::read_dir(path)? {
                walk(&entry?.path(), seen, usage)?;
            }
        }
        Ok(())
    }
    let mut usage = Usage::default();
    walk(root, &mut HashSet::new(), &mut usage)?;
    Ok(usage)
}

/// Copies the tree at `src` onto the existing directory `dst`, keeping file types, modes,
/// owners, times, extended attributes, device numbers and hard links. Used by native mode, where
/// a child snapshot starts as a full copy of its parent.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    let mut links = HashMap::new();
    copy_dir_contents(src, dst, &mut links)?;
    copy_metadata(src, dst, &meta)
}

fn copy_dir_contents(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let meta = fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if !ft.is_dir() && meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                fs::hard_link(first, &to)?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), to.clone());
        }
        if ft.is_dir() {
            fs::create_dir(&to)?;
            copy_dir_contents(&from, &to, links)?;
        } else if ft.is_file() {
            fs::copy(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else {
            rustix::fs::mknodat(
                CWD,
                &to,
                FileType::from_raw_mode(meta.mode()),
                Mode::from_raw_mode(meta.mode()),
                meta.rdev(),
            )?;
        }
        copy_metadata(&from, &to, &meta)?;
    }
    Ok(())
}

/// Owner first (chown clears set-id bits), then mode, extended attributes, and times last.
fn copy_metadata(src: &Path, dst: &Path, meta: &Metadata) -> io::Result<()> {
    let symlink = meta.file_type().is_symlink();
    rustix::fs::chownat(
        CWD,
        dst,
        Some(Uid::from_raw(meta.uid())),
        Some(Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if !symlink {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    copy_xattrs(src, dst)?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

fn copy_xattrs(src: &Path, dst: &Path) -> io::Result<()> {
    let size = match rustix::fs::llistxattr_query(src) {
        Ok(0) => return Ok(()),
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NOTSUP => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut names = vec![0u8; size];
    let n = rustix::fs::llistxattr(src, &mut names[..])?;
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::from_bytes(name);
        let len = rustix::fs::lgetxattr_query(src, name)?;
        let mut value = vec![0u8; len];
        let len = rustix::fs::lgetxattr(src, name, &mut value[..])?;
        match rustix::fs::lsetxattr(dst, name, &value[..len], XattrFlags::empty()) {
            // A filesystem without user xattrs on symlinks, or without the namespace: skip.
            Err(e) if e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::PERM => {}
            other => other?,
        }
    }
    Ok(())
}

/// Removes a directory tree; a tree that is already gone is not an error.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
