//! Content checksum of exactly what a copy reads, for content-based cache keys: for each
//! selected source and each entry under it (include/exclude applied, names sorted), its path
//! relative to the source, type, mode, owner, device number, symlink target and file contents.
//! Timestamps are left out, so touching a file does not change the key.

use crate::copy::{collect, select, Filter};
use crate::error::FileOpError;
use oxkit_llb::Digest;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// How a copy selects its sources (the fields of `Copy` that decide what is read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChecksumOptions {
    /// Follow a symlink named by a selector.
    pub follow_symlinks: bool,
    /// Selectors may contain wildcards.
    pub allow_wildcard: bool,
    /// A wildcard matching nothing is not an error (it contributes nothing).
    pub allow_empty_wildcard: bool,
    /// Include patterns, as in the copy.
    pub include_patterns: Vec<String>,
    /// Exclude patterns, as in the copy.
    pub exclude_patterns: Vec<String>,
}

/// The digest of what copying `selectors` (paths inside `root`) with `opts` would read. Stable
/// across runs and machines; changes when any content, mode, owner, type, link target or name
/// changes, not when only times do. A missing selector is an error, as it is for the copy.
pub fn content_checksum(
    root: &Path,
    selectors: &[String],
    opts: &ChecksumOptions,
) -> Result<Digest, FileOpError> {
    content_checksum_with(root, selectors, opts, None)
}

/// The content digests of files in a tree, known without reading them (the local source's copy
/// hashed each file as it arrived). A digest is used only for a file whose size and mtime are
/// the ones recorded with it; any other is read.
#[derive(Debug, Clone, Default)]
pub struct KnownDigests {
    files: HashMap<String, (u64, i64, [u8; 32])>,
}

impl KnownDigests {
    /// Records the sha256 of the contents of `path` (relative to the tree's root), a file of
    /// `size` bytes last modified at `mtime_ns`.
    pub fn insert(&mut self, path: String, size: u64, mtime_ns: i64, sha256: [u8; 32]) {
        self.files.insert(path, (size, mtime_ns, sha256));
    }

    /// How many files it knows.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether it knows no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn get(&self, rel: &Path, meta: &std::fs::Metadata) -> Option<[u8; 32]> {
        let (size, mtime, sum) = self.files.get(rel.to_str()?)?;
        let mtime_now = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
        (*size == meta.len() && *mtime == mtime_now).then_some(*sum)
    }
}

/// [`content_checksum`], taking the digests of files `known` (paths relative to `root`) instead
/// of reading them. The result is the same.
pub fn content_checksum_with(
    root: &Path,
    selectors: &[String],
    opts: &ChecksumOptions,
    known: Option<&KnownDigests>,
) -> Result<Digest, FileOpError> {
    let filter = Filter::new(&opts.include_patterns, &opts.exclude_patterns)?;
    let mut h = Sha256::new();
    // One read buffer for every file: most are small, and zeroing 64 KiB each time cost more
    // than hashing them.
    let mut buf = vec![0u8; 64 * 1024];
    for sel_path in selectors {
        h.update(b"selector\0");
        h.update(sel_path.as_bytes());
        h.update(b"\0");
        let sources = select(
            root,
            sel_path,
            opts.follow_symlinks,
            opts.allow_wildcard,
            opts.allow_empty_wildcard,
        )?;
        for sel in &sources {
            h.update(b"source\0");
            h.update(sel.path.as_bytes());
            h.update(b"\0");
            for e in collect(sel, &filter)? {
                let m = &e.meta;
                let ft = m.file_type();
                let kind = if ft.is_dir() {
                    'd'
                } else if ft.is_symlink() {
                    'l'
                } else if ft.is_file() {
                    'f'
                } else if ft.is_char_device() {
                    'c'
                } else if ft.is_block_device() {
                    'b'
                } else if ft.is_fifo() {
                    'p'
                } else {
                    's'
                };
                h.update(
                    format!(
                        "{}\0{}\0{:o}\0{}\0{}\0{}\0",
                        e.rel,
                        kind,
                        m.mode() & 0o7777,
                        m.uid(),
                        m.gid(),
                        if matches!(kind, 'c' | 'b') {
                            m.rdev()
                        } else {
                            0
                        }
                    )
                    .as_bytes(),
                );
                let io = |op, err| FileOpError::io("checksum", &sel.path, op, &e.host, err);
                if ft.is_symlink() {
                    let t = std::fs::read_link(&e.host).map_err(|err| io("readlink", err))?;
                    h.update(t.as_os_str().as_encoded_bytes());
                } else if let Some(sum) = known
                    .filter(|_| ft.is_file())
                    .and_then(|k| k.get(e.host.strip_prefix(root).ok()?, m))
                {
                    h.update(sum);
                } else if ft.is_file() {
                    let mut f = std::fs::File::open(&e.host).map_err(|err| io("open", err))?;
                    let mut fh = Sha256::new();
                    loop {
                        let n = f.read(&mut buf).map_err(|err| io("read", err))?;
                        if n == 0 {
                            break;
                        }
                        fh.update(&buf[..n]);
                    }
                    h.update(fh.finalize());
                }
                h.update(b"\n");
            }
        }
    }
    let sum = h.finalize();
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Digest::parse(&format!("sha256:{hex}")).expect("sha256 hex is a valid digest"))
}
