//! The client's side: [`walk`] lists a directory through its include/exclude patterns and
//! follow-paths (an excluded path is never stat'ed, an excluded directory never entered unless
//! an exception points inside), and [`read_range`] reads part of a listed file without
//! following any symlink.

use std::collections::HashMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use oxkit_fileop::{ExcludeMatcher, IncludeMatcher};

use crate::entry::{check_path, parent, Entry};

/// What to send of a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only paths matching one of these (and the directories leading to them); empty = all.
    pub include: Vec<String>,
    /// `.dockerignore`-style exclude patterns (`**`, `!` exceptions, later patterns win).
    pub exclude: Vec<String>,
    /// Paths sent with the symlinks on them followed (their targets are sent too).
    pub follow: Vec<String>,
}

/// Why a walk failed.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// A pattern does not compile.
    #[error("bad pattern: {0}")]
    Pattern(String),
    /// A name is not UTF-8 (the protocol carries paths as strings).
    #[error("{0:?} is not a UTF-8 name; rename it or exclude it")]
    NotUtf8(std::path::PathBuf),
    /// Reading the directory failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// Where.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

struct Walker<'a> {
    root: &'a Path,
    include: IncludeMatcher,
    exclude: ExcludeMatcher,
    out: Vec<Entry>,
}

/// Lists `root` through `filter`: every directory, regular file and symlink sent, sorted by
/// path, hard links marked ([`Entry::link`] names the first path of the inode). Sockets,
/// devices and FIFOs are skipped.
pub fn walk(root: &Path, filter: &Filter) -> Result<Vec<Entry>, WalkError> {
    let mut include = filter.include.clone();
    for f in &filter.follow {
        include.push(f.clone());
        include.extend(follow_targets(root, f));
    }
    let mut w = Walker {
        root,
        include: IncludeMatcher::new(&include).map_err(WalkError::Pattern)?,
        exclude: ExcludeMatcher::new(&filter.exclude).map_err(WalkError::Pattern)?,
        out: Vec::new(),
    };
    let all = w.include.is_empty();
    w.dir("", all)?;
    let mut out = w.out;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    // Hard links: the first path (in listing order) of an inode is the file, later ones links.
    let mut first: HashMap<(u64, u64), String> = HashMap::new();
    for e in &mut out {
        if e.mode & 0o170000 == Entry::FILE && e.link.is_empty() && e.nlink > 1 {
            match first.get(&(e.dev, e.ino)) {
                Some(p) => e.link = p.clone(),
                None => {
                    first.insert((e.dev, e.ino), e.path.clone());
                }
            }
        }
    }
    Ok(out)
}

/// The chain of symlink targets from `path`, inside `root` (lexically resolved), as paths
/// relative to it.
fn follow_targets(root: &Path, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = path.trim_matches('/').to_string();
    for _ in 0..40 {
        let Ok(target) = std::fs::read_link(root.join(&cur)) else {
            break;
        };
        let Some(target) = target.to_str() else { break };
        let base = if target.starts_with('/') {
            String::new()
        } else {
            parent(&cur).to_string()
        };
        let mut parts: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
        for c in target.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        cur = parts.join("/");
        if cur.is_empty() {
            break;
        }
        out.push(cur.clone());
    }
    out
}

impl Walker<'_> {
    /// Lists directory `rel` (`""` = the root); `all`: everything below is included. Returns
    /// whether anything was listed.
    fn dir(&mut self, rel: &str, all: bool) -> Result<bool, WalkError> {
        let path = self.root.join(rel);
        let io = |source| WalkError::Io {
            path: path.clone(),
            source,
        };
        let mut names = Vec::new();
        for d in std::fs::read_dir(&path).map_err(io)? {
            let d = d.map_err(io)?;
            let name = d
                .file_name()
                .into_string()
                .map_err(|_| WalkError::NotUtf8(d.path()))?;
            let is_dir = d.file_type().map_err(io)?.is_dir();
            names.push((name, is_dir));
        }
        names.sort();
        let mut any = false;
        for (name, is_dir) in names {
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if self.exclude.excluded(&child, is_dir) {
                continue;
            }
            let (included, full) = if all {
                (true, true)
            } else {
                self.include.check(&child, is_dir)
            };
            if !included {
                continue;
            }
            let meta = std::fs::symlink_metadata(self.root.join(&child)).map_err(|source| {
                WalkError::Io {
                    path: self.root.join(&child),
                    source,
                }
            })?;
            let mut entry = entry_of(child.clone(), &meta);
            let ft = meta.file_type();
            if ft.is_dir() {
                let at = self.out.len();
                self.out.push(entry);
                let below = self.dir(&child, full)?;
                // A directory entered only because something below might be sent, or only
                // for a `!` exception, is dropped when nothing below was.
                let matched_itself = full && !self.exclude.matches(&child);
                if !below && !matched_itself {
                    self.out.truncate(at);
                    continue;
                }
            } else if ft.is_symlink() {
                let target =
                    std::fs::read_link(self.root.join(&child)).map_err(|source| WalkError::Io {
                        path: self.root.join(&child),
                        source,
                    })?;
                entry.target = target
                    .into_os_string()
                    .into_string()
                    .map_err(|t| WalkError::NotUtf8(t.into()))?;
                self.out.push(entry);
            } else if ft.is_file() {
                self.out.push(entry);
            } else {
                continue;
            }
            any = true;
        }
        Ok(any)
    }
}

fn entry_of(path: String, m: &std::fs::Metadata) -> Entry {
    Entry {
        path,
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        size: if m.is_file() { m.size() } else { 0 },
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        ino: m.ino(),
        dev: m.dev(),
        nlink: m.nlink(),
        ..Default::default()
    }
}

/// Reads up to `len` bytes at `offset` of the regular file `path` under `root`, refusing a
/// path that is not clean and relative or that crosses a symlink. Fewer bytes than asked means
/// the file is shorter now.
pub fn read_range(root: &Path, path: &str, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    check_path(path).map_err(|r| std::io::Error::new(std::io::ErrorKind::InvalidInput, r))?;
    let file = open_beneath(root, path)?;
    let mut buf = vec![0; len as usize];
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Opens `root/path` for reading with no symlink anywhere on the way (`openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`).
fn open_beneath(root: &Path, path: &str) -> std::io::Result<std::fs::File> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    let dir = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let fd = openat2(
        &dir,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )?;
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}
