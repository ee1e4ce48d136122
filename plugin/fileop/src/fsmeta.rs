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

/// An entry whose metadata is read or set: by its host path (not followed), or through a file
/// already open on it, which spares the kernel resolving the path again.
#[derive(Clone, Copy)]
pub(crate) enum Node<'a> {
    /// A host path; a final symlink is not followed.
    Path(&'a Path),
    /// An open regular file.
    File(&'a std::fs::File),
}

impl Node<'_> {
    fn list_xattrs(self, buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            Node::Path(p) => rustix::fs::llistxattr(p, buf),
            Node::File(f) => rustix::fs::flistxattr(f, buf),
        }
    }

    fn list_xattrs_size(self) -> rustix::io::Result<usize> {
        match self {
            Node::Path(p) => rustix::fs::llistxattr_query(p),
            Node::File(f) => rustix::fs::flistxattr_query(f),
        }
    }

    fn get_xattr_size(self, name: &str) -> rustix::io::Result<usize> {
        match self {
            Node::Path(p) => rustix::fs::lgetxattr_query(p, name),
            Node::File(f) => rustix::fs::fgetxattr_query(f, name),
        }
    }

    fn get_xattr(self, name: &str, buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            Node::Path(p) => rustix::fs::lgetxattr(p, name, buf),
            Node::File(f) => rustix::fs::fgetxattr(f, name, buf),
        }
    }

    fn set_xattr(self, name: &str, value: &[u8]) -> rustix::io::Result<()> {
        match self {
            Node::Path(p) => rustix::fs::lsetxattr(p, name, value, XattrFlags::empty()),
            Node::File(f) => rustix::fs::fsetxattr(f, name, value, XattrFlags::empty()),
        }
    }

    /// [`lchown`].
    pub(crate) fn chown(self, uid: u32, gid: u32) -> std::io::Result<()> {
        match self {
            Node::Path(p) => lchown(p, uid, gid),
            Node::File(f) => {
                rustix::fs::fchown(f, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                    .map_err(Into::into)
            }
        }
    }

    /// [`chmod`].
    pub(crate) fn chmod(self, mode: u32) -> std::io::Result<()> {
        match self {
            Node::Path(p) => chmod(p, mode),
            Node::File(f) => {
                rustix::fs::fchmod(f, Mode::from_raw_mode(mode & 0o7777)).map_err(Into::into)
            }
        }
    }

    /// [`set_times`].
    pub(crate) fn set_times(self, atime: i64, mtime: i64) -> std::io::Result<()> {
        match self {
            Node::Path(p) => set_times(p, atime, mtime),
            Node::File(f) => rustix::fs::futimens(
                f,
                &Timestamps {
                    last_access: timespec(atime),
                    last_modification: timespec(mtime),
                },
            )
            .map_err(Into::into),
        }
    }

    fn display(self) -> String {
        match self {
            Node::Path(p) => p.display().to_string(),
            Node::File(f) => format!("{f:?}"),
        }
    }
}

/// Copies the extended attributes of `src` whose names `keep` accepts to `dst` (neither followed).
/// Attributes the kernel or filesystem refuses (e.g. `security.*` without privilege, or no xattr
/// support) are skipped with a debug event, as BuildKit does.
pub(crate) fn copy_xattrs_where(src: Node, dst: Node, keep: &dyn Fn(&str) -> bool) {
    // Most files have no attributes: one list call into a small buffer finds that out (ERANGE
    // means there are more than fit, and only then is the size asked for).
    let mut small = [0u8; 256];
    let mut big = Vec::new();
    let names: &[u8] = match src.list_xattrs(&mut small) {
        Ok(0) => return,
        Ok(n) => &small[..n],
        Err(rustix::io::Errno::RANGE) => {
            let Ok(size) = src.list_xattrs_size() else {
                return;
            };
            big.resize(size, 0);
            let Ok(n) = src.list_xattrs(&mut big) else {
                return;
            };
            &big[..n]
        }
        Err(_) => return,
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if !keep(name) {
            continue;
        }
        let len = match src.get_xattr_size(name) {
            Ok(l) => l,
            Err(_) => continue,
        };
        let mut val = vec![0u8; len];
        let Ok(l) = src.get_xattr(name, &mut val[..]) else {
            continue;
        };
        if let Err(e) = dst.set_xattr(name, &val[..l]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Attribute lists longer than the first list call's small buffer are still copied whole,
    /// by path and through open files alike.
    #[test]
    fn copy_xattrs_where_copies_lists_longer_than_the_first_buffer() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        std::fs::write(&src, "x").unwrap();
        let names: Vec<String> = (0..20)
            .map(|i| format!("user.oxkit-a-rather-long-attribute-name-{i:02}"))
            .collect();
        for n in &names {
            if rustix::fs::lsetxattr(&src, n.as_str(), n.as_bytes(), XattrFlags::empty()).is_err() {
                eprintln!("note: filesystem has no user xattrs; xattr copy not checked");
                return;
            }
        }
        assert!(names.iter().map(|n| n.len() + 1).sum::<usize>() > 256);
        for through_files in [false, true] {
            std::fs::write(&dst, "").unwrap();
            let (from, to) = (
                std::fs::File::open(&src).unwrap(),
                std::fs::OpenOptions::new().write(true).open(&dst).unwrap(),
            );
            let (s, t) = if through_files {
                (Node::File(&from), Node::File(&to))
            } else {
                (Node::Path(&src), Node::Path(&dst))
            };
            copy_xattrs_where(s, t, &|n| n != names[3]);
            for (i, n) in names.iter().enumerate() {
                let mut buf = [0u8; 64];
                let got = rustix::fs::lgetxattr(&dst, n.as_str(), &mut buf[..]);
                if i == 3 {
                    assert!(got.is_err(), "{n} was filtered out");
                } else {
                    assert_eq!(&buf[..got.unwrap()], n.as_bytes(), "{n} ({through_files})");
                }
            }
            std::fs::remove_file(&dst).unwrap();
        }
    }
}
