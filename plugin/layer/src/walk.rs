//! The walk of an overlay upper directory into tar entries, in a fixed order.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use tar::{Builder, EntryType, Header};

use crate::LayerError;

/// overlayfs's attribute on a directory that hides everything below it in the lower layers.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// overlayfs's own attributes (opaque, redirect, origin, …): never part of a layer.
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
/// The OCI whiteout prefix and the opaque-directory marker.
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

struct Walker<W: Write> {
    tar: Builder<W>,
    epoch: Option<i64>,
    /// (dev, inode) → path of the first entry, so later names become hard links.
    links: HashMap<(u64, u64), Vec<u8>>,
}

/// Writes the tar of `upper` into `out` and returns `out` once the archive is finished.
pub(crate) fn write_tar<W: Write>(
    upper: &Path,
    out: W,
    epoch: Option<i64>,
) -> Result<W, LayerError> {
    let mut tar = Builder::new(out);
    tar.mode(tar::HeaderMode::Complete);
    let mut w = Walker {
        tar,
        epoch,
        links: HashMap::new(),
    };
    w.dir_contents(upper, b"")?;
    w.tar.into_inner().map_err(LayerError::Write)
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Read {
        path: path.to_path_buf(),
        source,
    }
}

impl<W: Write> Walker<W> {
    fn dir_contents(&mut self, dir: &Path, prefix: &[u8]) -> Result<(), LayerError> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(read_err(dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(read_err(dir))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let mut rel = prefix.to_vec();
            rel.extend_from_slice(name.as_bytes());
            let meta = fs::symlink_metadata(&path).map_err(read_err(&path))?;
            self.entry(&path, &rel, &name, &meta)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        path: &Path,
        rel: &[u8],
        name: &OsStr,
        meta: &Metadata,
    ) -> Result<(), LayerError> {
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            // overlayfs whiteout: the lower path was deleted.
            let mut wh = rel[..rel.len() - name.len()].to_vec();
            wh.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
            wh.extend_from_slice(name.as_bytes());
            let mut h = self.header(meta, EntryType::Regular);
            h.set_mode(0);
            h.set_size(0);
            return self.append(&mut h, &wh, io::empty(), &[]);
        }
        let xattrs = xattrs(path).map_err(read_err(path))?;
        let opaque = xattrs
            .iter()
            .any(|(k, v)| k == OPAQUE_XATTR && v.as_slice() == b"y");
        let kept: Vec<(String, Vec<u8>)> = xattrs
            .into_iter()
            .filter(|(k, _)| !k.starts_with(OVERLAY_XATTR_PREFIX))
            .collect();

        if ft.is_dir() {
            let mut h = self.header(meta, EntryType::Directory);
            h.set_size(0);
            let mut dir = rel.to_vec();
            dir.push(b'/');
            self.append(&mut h, &dir, io::empty(), &kept)?;
            if opaque {
                let mut marker = dir.clone();
                marker.extend_from_slice(OPAQUE_WHITEOUT.as_bytes());
                let mut h = self.header(meta, EntryType::Regular);
                h.set_mode(0);
                h.set_size(0);
                self.append(&mut h, &marker, io::empty(), &[])?;
            }
            return self.dir_contents(path, &dir);
        }
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                let mut h = self.header(meta, EntryType::Link);
                h.set_size(0);
                return self.append_link(&mut h, rel, &first);
            }
            self.links.insert(key, rel.to_vec());
        }
        if ft.is_file() {
            let mut h = self.header(meta, EntryType::Regular);
            h.set_size(meta.len());
            let file = File::open(path).map_err(read_err(path))?;
            self.append(&mut h, rel, file, &kept)
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(read_err(path))?;
            let mut h = self.header(meta, EntryType::Symlink);
            h.set_size(0);
            self.append_link(&mut h, rel, target.as_os_str().as_bytes())
        } else {
            let kind = if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else if ft.is_fifo() {
                EntryType::Fifo
            } else {
                // Sockets cannot be archived; Docker and BuildKit skip them too.
                return Ok(());
            };
            let mut h = self.header(meta, kind);
            h.set_size(0);
            let (major, minor) = (
                rustix::fs::major(meta.rdev()),
                rustix::fs::minor(meta.rdev()),
            );
            h.set_device_major(major).map_err(LayerError::Write)?;
            h.set_device_minor(minor).map_err(LayerError::Write)?;
            self.append(&mut h, rel, io::empty(), &kept)
        }
    }

    fn header(&self, meta: &Metadata, kind: EntryType) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(u64::from(meta.uid()));
        h.set_gid(u64::from(meta.gid()));
        let mtime = match self.epoch {
            Some(epoch) => meta.mtime().min(epoch),
            None => meta.mtime(),
        };
        h.set_mtime(mtime.max(0) as u64);
        h
    }

    fn append(
        &mut self,
        h: &mut Header,
        path: &[u8],
        data: impl io::Read,
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<(), LayerError> {
        if !xattrs.is_empty() {
            let records: Vec<(String, &[u8])> = xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                .collect();
            self.tar
                .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
                .map_err(LayerError::Write)?;
        }
        self.tar
            .append_data(h, Path::new(OsStr::from_bytes(path)), data)
            .map_err(LayerError::Write)
    }

    fn append_link(
        &mut self,
        h: &mut Header,
        path: &[u8],
        target: &[u8],
    ) -> Result<(), LayerError> {
        self.tar
            .append_link(
                h,
                Path::new(OsStr::from_bytes(path)),
                Path::new(OsStr::from_bytes(target)),
            )
            .map_err(LayerError::Write)
    }
}

/// Extended attributes of `path` (not following symlinks), sorted by name.
fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let size = match rustix::fs::llistxattr_query(path) {
        Ok(0) => return Ok(Vec::new()),
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NOTSUP => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = vec![0u8; size];
    let n = rustix::fs::llistxattr(path, &mut names[..])?;
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let len = rustix::fs::lgetxattr_query(path, name)?;
        let mut value = vec![0u8; len];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..])?;
        value.truncate(len);
        out.push((name.to_string_lossy().into_owned(), value));
    }
    out.sort();
    Ok(out)
}
