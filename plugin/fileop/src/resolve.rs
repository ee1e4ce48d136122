//! Path resolution confined to a root, like continuity's `fs.RootPath` / `securejoin`: each
//! component is resolved under the root, `..` stops at the root, absolute symlinks are re-rooted
//! at the root and relative ones resolved inside it. Also `read_in_root`, which uses the kernel's
//! `openat2(RESOLVE_IN_ROOT)` where available and falls back to the walk.

use crate::error::FileOpError;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed in one resolution before giving up (Linux's own limit is 40 per lookup;
/// BuildKit's continuity allows 255).
const MAX_SYMLINKS: usize = 255;

/// Resolves `path` (interpreted as absolute inside `root`) to a host path under `root`.
///
/// Every existing symlink on the way is followed inside the root; the last component is followed
/// only when `follow_last` is set. Components that do not exist are kept as written (a later
/// `..` removes them lexically). The result never leaves `root`.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf, FileOpError> {
    resolve("resolve", root, path, follow_last)
}

/// Resolves the parent of `path` inside `root` (following every symlink) and appends the last
/// component unresolved: the host path at which to create, replace or remove `path` itself.
/// Returns the root itself for `/`.
pub fn resolve_parent_in_root(root: &Path, path: &str) -> Result<PathBuf, FileOpError> {
    resolve("resolve", root, path, false)
}

pub(crate) fn resolve(
    action: &'static str,
    root: &Path,
    path: &str,
    follow_last: bool,
) -> Result<PathBuf, FileOpError> {
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_components(&mut pending, Path::new(path), false);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0usize;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let mut host = root.to_path_buf();
        host.extend(&resolved);
        host.push(&c);
        let meta = match std::fs::symlink_metadata(&host) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                resolved.push(c);
                continue;
            }
            // A non-directory in the middle: the rest cannot exist; keep it lexical so the caller
            // reports "not found" / "not a directory" at the point of use.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
                resolved.push(c);
                continue;
            }
            Err(e) => return Err(FileOpError::io(action, path, "lstat", &host, e)),
        };
        let is_last = pending.iter().all(|p| p == ".");
        if meta.file_type().is_symlink() && (!is_last || follow_last) {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(FileOpError::SymlinkLoop {
                    action,
                    path: path.to_string(),
                });
            }
            let target = std::fs::read_link(&host)
                .map_err(|e| FileOpError::io(action, path, "readlink", &host, e))?;
            if target.is_absolute() {
                resolved.clear();
            }
            push_components(&mut pending, &target, true);
            continue;
        }
        resolved.push(c);
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    // Defence in depth: by construction the result is under root.
    if !out.starts_with(root) {
        return Err(FileOpError::EscapesRoot {
            action,
            path: path.to_string(),
        });
    }
    Ok(out)
}

/// Adds `p`'s components to `pending` (at the front when `front`, keeping their order).
fn push_components(pending: &mut VecDeque<OsString>, p: &Path, front: bool) {
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    if front {
        for c in comps.into_iter().rev() {
            pending.push_front(c);
        }
    } else {
        pending.extend(comps);
    }
}

/// The path relative to the root, as the user wrote it, for messages: `/` + cleaned components.
pub(crate) fn clean_abs(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Reads the regular file `path` inside `root`, never leaving the root. Uses
/// `openat2(RESOLVE_IN_ROOT)` (Linux 5.6+); where the kernel lacks it, falls back to
/// [`resolve`] and an `O_NOFOLLOW` open. `Ok(None)` when the file does not exist.
pub(crate) fn read_in_root(
    action: &'static str,
    root: &Path,
    path: &str,
) -> Result<Option<Vec<u8>>, FileOpError> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let io = |op, e: std::io::Error| {
        FileOpError::io(
            action,
            path,
            op,
            &root.join(path.trim_start_matches('/')),
            e,
        )
    };
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io("open", e.into()))?;
    let rel = path.trim_start_matches('/');
    let fd = match rustix::fs::openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        // ENOSYS: kernel older than 5.6; EPERM: a seccomp filter refusing it. Walk instead.
        Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
            let host = resolve(action, root, path, true)?;
            match rustix::fs::open(
                &host,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                Err(e) => return Err(io("open", e.into())),
            }
        }
        Err(e) => return Err(io("openat2", e.into())),
    };
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut buf)
        .map_err(|e| io("read", e))?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        symlink("/etc", r.join("abs-etc")).unwrap();
        symlink("../../etc", r.join("a/b/up")).unwrap();
        symlink("../../../../../../etc/passwd", r.join("a/deep-up")).unwrap();
        symlink("b", r.join("a/rel-b")).unwrap();
        symlink("rel-b", r.join("a/nested")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        symlink("self", r.join("self")).unwrap();
        symlink("/nonexistent/x", r.join("dangling")).unwrap();
        d
    }

    #[test]
    fn resolution_table() {
        let d = tree();
        let r = d.path();
        // (path, follow_last, expected relative result)
        let cases: &[(&str, bool, &str)] = &[
            ("/", true, ""),
            ("/etc/passwd", true, "etc/passwd"),
            ("../../etc/passwd", true, "etc/passwd"),
            ("/../../../etc/passwd", true, "etc/passwd"),
            ("/a/../../etc", true, "etc"),
            ("/abs-etc/passwd", true, "etc/passwd"),
            ("/abs-etc", true, "etc"),
            ("/abs-etc", false, "abs-etc"),
            ("/a/b/up/passwd", true, "etc/passwd"),
            ("/a/deep-up", true, "etc/passwd"),
            ("/a/rel-b", true, "a/b"),
            ("/a/nested/up", true, "etc"),
            ("/a/nested", false, "a/nested"),
            ("/a/nested/", false, "a/nested"),
            ("/a/nested/.", false, "a/nested"),
            ("/a/nested/..", true, "a"),
            ("/dangling", true, "nonexistent/x"),
            ("/dangling/../y", true, "nonexistent/y"),
            ("/missing/../etc", true, "etc"),
            ("/etc/passwd/x", true, "etc/passwd/x"),
        ];
        for (p, follow, want) in cases {
            let got = resolve_in_root(r, p, *follow).unwrap();
            assert_eq!(got, r.join(want), "resolving {p} (follow_last={follow})");
            assert!(got.starts_with(r));
        }
    }

    /// The walk agrees with the kernel's own in-root resolution wherever the path exists.
    #[test]
    fn resolution_agrees_with_openat2_resolve_in_root() {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        use std::os::unix::fs::MetadataExt;
        let d = tree();
        let r = d.path();
        let dir = rustix::fs::open(r, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let mut checked = 0;
        for p in [
            "/etc/passwd",
            "../../etc/passwd",
            "/abs-etc/passwd",
            "/a/b/up/passwd",
            "/a/deep-up",
            "/a/nested/up",
            "/a/nested/..",
            "/a/rel-b",
            // Not "/missing/../etc": the kernel refuses `..` after a missing component, the walk
            // (like continuity and securejoin) drops it lexically.
        ] {
            let kernel = match rustix::fs::openat2(
                &dir,
                p.trim_start_matches('/'),
                OFlags::PATH,
                Mode::empty(),
                ResolveFlags::IN_ROOT,
            ) {
                Ok(fd) => fd,
                // Kernel without openat2 (or a seccomp filter refusing it): nothing to compare.
                Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => return,
                Err(e) => panic!("{p}: {e}"),
            };
            let k = rustix::fs::fstat(&kernel).unwrap();
            let ours = std::fs::metadata(resolve_in_root(r, p, true).unwrap()).unwrap();
            assert_eq!((ours.dev(), ours.ino()), (k.st_dev, k.st_ino), "{p}");
            checked += 1;
        }
        assert_eq!(checked, 8);
    }

    #[test]
    fn symlink_loops_give_a_clear_error() {
        let d = tree();
        for p in ["/loop1", "/self/x", "/loop2/a"] {
            let err = resolve_in_root(d.path(), p, true).unwrap_err();
            assert!(matches!(err, FileOpError::SymlinkLoop { .. }), "{p}: {err}");
            assert!(err.to_string().contains("symbolic links"), "{err}");
        }
        // Not following the last component does not touch the loop.
        assert_eq!(
            resolve_in_root(d.path(), "/loop1", false).unwrap(),
            d.path().join("loop1")
        );
    }

    #[test]
    fn read_in_root_stays_inside_through_absolute_symlinks() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(outer.path().join("secret"), "host secret").unwrap();
        std::fs::write(root.join("secret"), "inner").unwrap();
        symlink("/secret", root.join("etc/link")).unwrap();
        symlink("../../secret", root.join("etc/rel")).unwrap();
        assert_eq!(
            read_in_root("t", &root, "/etc/link").unwrap().unwrap(),
            b"inner"
        );
        assert_eq!(
            read_in_root("t", &root, "/etc/rel").unwrap().unwrap(),
            b"inner"
        );
        assert_eq!(read_in_root("t", &root, "/etc/none").unwrap(), None);
    }

    #[test]
    fn clean_abs_normalises() {
        assert_eq!(clean_abs("a/./b/../c/"), "/a/c");
        assert_eq!(clean_abs("/../x"), "/x");
        assert_eq!(clean_abs(""), "/");
    }
}
