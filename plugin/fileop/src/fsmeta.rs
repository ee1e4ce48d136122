//! Metadata system calls on host paths already resolved inside a root: chown, chmod and times
//! that never follow a final symlink, xattr copying, and device/fifo creation.

use rustix::fs::{AtFlags, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags, CWD};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// `lchown(path, uid, gid)`.
pub fn lchown(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    rustix::fs::chownat(
        CWD,
        path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(Into::into)
}

/// `chmod(path, mode)` for a path that is not a symlink (symlinks have no mode of their own).
pub fn chmod(path: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
}

fn timespec(nanos: i64) -> Timespec {
    Timespec {
        tv_sec: nanos.div_euclid(1_000_000_000),
        tv_nsec: nanos.rem_euclid(1_000_000_000) as _,
    }
}

/// Sets access and modification time (Unix nanoseconds) without following a final symlink.
pub fn set_times(path: &Path, atime: i64, mtime: i64) -> std::io::Result<()> {
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: timespec(atime),
            last_modification: timespec(mtime),
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(Into::into)
}

/// `(atime, mtime)` of `meta` in Unix nanoseconds.
pub(crate) fn times_of(meta: &std::fs::Metadata) -> (i64, i64) {
    (
        meta.atime() * 1_000_000_000 + meta.atime_nsec(),
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
    )
}

/// Copies the extended attributes of `src` whose names `keep` accepts to `dst` (neither followed).
/// Attributes the kernel or filesystem refuses (e.g. `security.*` without privilege, or no xattr
/// support) are skipped with a debug event, as BuildKit does.
pub(crate) fn copy_xattrs_where(src: &Path, dst: &Path, keep: &dyn Fn(&str) -> bool) {
    let size = match rustix::fs::llistxattr_query(src) {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    let mut names = vec![0u8; size];
    let Ok(n) = rustix::fs::llistxattr(src, &mut names[..]) else {
        return;
    };
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if !keep(name) {
            continue;
        }
        let len = match rustix::fs::lgetxattr_query(src, name) {
            Ok(l) => l,
            Err(_) => continue,
        };
        let mut val = vec![0u8; len];
        let Ok(l) = rustix::fs::lgetxattr(src, name, &mut val[..]) else {
            continue;
        };
        if let Err(e) = rustix::fs::lsetxattr(dst, name, &val[..l], XattrFlags::empty()) {
            tracing::debug!(xattr = name, path = %dst.display(), error = %e, "xattr not copied");
        }
    }
}

/// Creates a device node or fifo at `dst` like the one `meta` describes.
pub(crate) fn mknod_like(dst: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    let ft = FileType::from_raw_mode(meta.mode());
    rustix::fs::mknodat(
        CWD,
        dst,
        ft,
        Mode::from_raw_mode(meta.mode() & 0o7777),
        meta.rdev() as _,
    )
    .map_err(Into::into)
}
