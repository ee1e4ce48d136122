//! [`Entry`]: one file of a client's listing, with the metadata that detects changes and the
//! metadata that ends up in the build.

use serde::{Deserialize, Serialize};

/// The type bits of `st_mode`.
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// One entry of a listing, as the client stat'ed it (never following a symlink).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the directory, `/`-separated, no `.`/`..`/empty components.
    pub path: String,
    /// `st_mode`: type bits and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (regular files).
    pub size: u64,
    /// Modification time, Unix nanoseconds.
    pub mtime_ns: i64,
    /// Status change time, Unix nanoseconds (change detection only).
    pub ctime_ns: i64,
    /// Inode number (change detection only).
    pub ino: u64,
    /// Device number of the file system (change detection only).
    pub dev: u64,
    /// Number of hard links (how the walker finds them; not compared).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nlink: u64,
    /// A symlink's target, as stored.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// For a hard link: the path of the earlier entry it is a link of (empty otherwise).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub link: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file with its own content.
    File,
    /// A symbolic link (target in [`Entry::target`]).
    Symlink,
    /// Another name of an earlier regular file ([`Entry::link`]).
    HardLink,
}

impl Entry {
    /// The entry's kind; `None` for a file type oxkit does not transfer (devices, FIFOs,
    /// sockets).
    pub fn kind(&self) -> Option<Kind> {
        match self.mode & S_IFMT {
            S_IFDIR => Some(Kind::Dir),
            S_IFREG if self.link.is_empty() => Some(Kind::File),
            S_IFREG => Some(Kind::HardLink),
            S_IFLNK => Some(Kind::Symlink),
            _ => None,
        }
    }

    /// The permission bits (with setuid, setgid, sticky).
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }

    /// `st_mode` type bits of a directory, regular file and symlink, for building entries.
    pub const DIR: u32 = S_IFDIR;
    /// See [`Entry::DIR`].
    pub const FILE: u32 = S_IFREG;
    /// See [`Entry::DIR`].
    pub const SYMLINK: u32 = S_IFLNK;

    /// Whether a regular file's recorded metadata still describes `now`: the file need not be
    /// fetched again.
    ///
    /// Size and mtime alone miss an edit that keeps both (a tool restoring mtime, two writes
    /// within the filesystem's timestamp granularity: moby/buildkit#2592). The change time
    /// cannot be set from user space and moves on every write, chmod, chown, rename and link
    /// count change, so a file whose ctime, inode and device are unchanged has not been
    /// written since it was sent. That costs nothing extra (one `lstat` the walk does anyway)
    /// where hashing every file on the client would read the whole tree on each build; the
    /// price is an occasional needless re-send (a chmod or a `touch` re-sends the file).
    pub fn unchanged_file(&self, now: &Entry) -> bool {
        self.mode == now.mode
            && self.uid == now.uid
            && self.gid == now.gid
            && self.size == now.size
            && self.mtime_ns == now.mtime_ns
            && self.ctime_ns == now.ctime_ns
            && self.ino == now.ino
            && self.dev == now.dev
    }
}

/// Checks that `path` is relative, `/`-separated and free of `.`, `..`, empty components and
/// NUL bytes.
pub(crate) fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("an empty path");
    }
    if path.starts_with('/') {
        return Err("an absolute path");
    }
    if path.contains('\0') {
        return Err("a NUL byte in the path");
    }
    for c in path.split('/') {
        match c {
            "" => return Err("an empty path component"),
            "." | ".." => return Err("a '.' or '..' component"),
            _ => {}
        }
    }
    Ok(())
}

/// The parent directory of a checked path (`""` for the top).
pub(crate) fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        for ok in [
            "a",
            "a/b",
            "with space",
            "ünï/cödé",
            "new\nline",
            "..a",
            "a..",
        ] {
            assert_eq!(check_path(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", "/abs", "a/../b", "..", ".", "a//b", "a/", "./a", "a\0b"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("a"), "");
    }
}
