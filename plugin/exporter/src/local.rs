//! The `type=local` export: the result's files as a tar stream — a view of the result snapshot
//! mounted with the worker's mounter and walked in a fixed order — and, on the client's side,
//! unpacking that stream into a directory.

use std::collections::hash_map::{Entry, HashMap};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use oxkit_containerd::{with_temp_mount, Client, Labels, Mounter};

use crate::error::ctr;
use crate::filewriters::{FileWrite, FileWriters};
use crate::ExportError;

/// Exports a build result's files through a leased client and the worker's mounter.
pub struct LocalExporter {
    client: Client,
    mounter: Arc<dyn Mounter>,
}

impl LocalExporter {
    /// An exporter using `client` (scope it with the build's lease) and `mounter` (the one the
    /// worker mounts snapshots with).
    pub fn new(client: Client, mounter: Arc<dyn Mounter>) -> Self {
        LocalExporter { client, mounter }
    }

    /// Writes the files of committed snapshot `top` as a tar stream into `out` (see
    /// [`write_tree`]). A temporary view of the snapshot is mounted for the walk and removed
    /// afterwards, also on error. Returns `out`.
    pub async fn export<W: Write + Send + 'static>(
        &self,
        top: &str,
        out: W,
    ) -> Result<W, ExportError> {
        let view = format!(
            "export-local-{}-{}",
            std::process::id(),
            crate::image::unique()
        );
        let mounts = self
            .client
            .snapshots()
            .view(&view, Some(top), &Labels::new())
            .await
            .map_err(ctr(format!("failed to view snapshot {top}")))?;
        let mounter = self.mounter.clone();
        let walked = tokio::task::spawn_blocking(move || {
            with_temp_mount(&*mounter, &mounts, |root| write_tree(root, out))
        })
        .await;
        if let Err(e) = self.client.snapshots().remove(&view).await {
            tracing::warn!(view, error = %e, "failed to remove an export view");
        }
        let walked = walked.map_err(|e| ExportError::Io {
            what: "the local export task failed".into(),
            source: io::Error::other(e),
        })?;
        let written = walked.map_err(ctr(format!("failed to mount a view of snapshot {top}")))?;
        written.map_err(|source| ExportError::Stream {
            exporter: "local",
            what: format!("the files of snapshot {top}"),
            source,
        })
    }
}

/// Writes the tree under `root` (not `root` itself) as a tar stream into `out`: directories,
/// regular files, symlinks, FIFOs and device nodes with their modes, owners and modification
/// times, entries in byte order of their names, a directory before its contents — the same
/// stream for the same tree. A file hard-linked within the tree is written once and then as
/// links to its first name; sockets cannot be archived and are left out. Returns `out`,
/// flushed, after the end-of-archive marker.
pub fn write_tree<W: Write>(root: &Path, out: W) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    walk(&mut builder, root, Path::new(""), &mut HashMap::new())?;
    let mut out = builder.into_inner()?;
    out.flush()?;
    Ok(out)
}

/// Files with more than one link already written: (device, inode) → their first name.
type Linked = HashMap<(u64, u64), PathBuf>;

fn walk<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    linked: &mut Linked,
) -> io::Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path)?;
        let kind = meta.file_type();
        if kind.is_socket() {
            tracing::debug!(path = %rel.display(), "local export: leaving out a socket");
            continue;
        }
        if kind.is_file() && meta.nlink() > 1 {
            match linked.entry((meta.dev(), meta.ino())) {
                Entry::Occupied(first) => {
                    let mut header = tar::Header::new_gnu();
                    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    builder.append_link(&mut header, &rel, first.get())?;
                    continue;
                }
                Entry::Vacant(v) => {
                    v.insert(rel.clone());
                }
            }
        }
        builder.append_path_with_name(&path, &rel)?;
        if kind.is_dir() {
            walk(builder, root, &rel, linked)?;
        }
    }
    Ok(())
}

/// Unpacks a tar stream made by [`write_tree`] into `dest` (created if missing): modes
/// (set-id bits included), symlinks and modification times are kept; owners are not — the files
/// belong to whoever unpacks, as they would for a user without privileges, root included.
/// Entries that would land outside `dest` (`..`, absolute paths, through symlinks) are refused.
///
/// Safety without canonicalizing every entry's path: an entry is written only into a directory
/// checked once to be a real one (not a symlink) — made by this unpack, or found as a directory
/// — and a directory once checked is never replaced; a hard link's target must lie below such
/// directories too. Directories get their modes and times last, deepest first, so a read-only
/// one still takes its contents.
///
/// Small regular files are written by [`UNPACK_WRITERS`] threads, directory by directory, while
/// this one reads on; hard links are made once every file is written, as their targets may be
/// among them.
pub fn unpack_tree<R: Read>(input: R, dest: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dest)?;
    let mut writers = FileWriters::start(UNPACK_WRITERS)?;
    let mut deferred = Vec::new();
    let mut links = Vec::new();
    let read = read_entries(input, dest, &mut writers, &mut deferred, &mut links);
    // Every file handed over is written (or failed) before anything else happens.
    // A writer's own error says more than the reader's "a file writer stopped".
    writers.finish()?;
    read?;
    for (target, path) in links {
        let _ = std::fs::remove_file(&path);
        std::fs::hard_link(dest.join(&target), &path)?;
    }
    for (path, mode, mtime) in deferred.into_iter().rev() {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
        std::fs::File::open(&path)?.set_modified(time)?;
    }
    Ok(())
}

/// Threads writing the small files of an unpack (see [`FileWriters`]).
const UNPACK_WRITERS: usize = 2;

/// The entries of the stream, checked: directories made (their modes and times in `deferred`),
/// small files handed to `writers`, hard links (target, path) in `links`, the rest unpacked.
fn read_entries<R: Read>(
    input: R,
    dest: &Path,
    writers: &mut FileWriters,
    deferred: &mut Vec<(PathBuf, u32, u64)>,
    links: &mut Vec<(PathBuf, PathBuf)>,
) -> io::Result<()> {
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(false);
    archive.set_overwrite(true);
    let mut dirs = RealDirs {
        root: dest.to_owned(),
        known: Default::default(),
    };
    for entry in archive.entries()? {
        let mut entry = entry?;
        let Some(rel) = inside(&entry.path()?) else {
            tracing::debug!(path = %entry.path()?.display(), "local export: refusing an entry outside the destination");
            continue;
        };
        let path = dest.join(&rel);
        dirs.ensure_parent(&rel)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            dirs.ensure(&rel)?;
            let header = entry.header();
            deferred.push((path, header.mode()?, header.mtime()?));
        } else if kind.is_hard_link() {
            let target = entry
                .link_name()?
                .as_deref()
                .and_then(inside)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("hard link {} points outside the destination", rel.display()),
                    )
                })?;
            dirs.ensure_parent(&target)?;
            links.push((target, path));
        } else if kind.is_file() && entry.size() <= FileWriters::MAX_SIZE {
            let header = entry.header();
            let (mode, mtime) = (header.mode()?, header.mtime()?);
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut data)?;
            writers.write(FileWrite {
                path,
                data,
                mode,
                mtime,
            })?;
        } else {
            // A large file, symlink, FIFO or device node, replacing whatever non-directory
            // is there.
            entry.unpack(&path)?;
        }
    }
    Ok(())
}

/// `path` as a relative path of normal components (`.` and leading `/` dropped), or `None` if
/// it has a `..` or nothing.
fn inside(path: &Path) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(part) => rel.push(part),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    (!rel.as_os_str().is_empty()).then_some(rel)
}

/// The directories under `root` known to be real directories (not symlinks), relative.
struct RealDirs {
    root: PathBuf,
    known: std::collections::HashSet<PathBuf>,
}

impl RealDirs {
    /// Makes sure every directory above `rel` is a real directory.
    fn ensure_parent(&mut self, rel: &Path) -> io::Result<()> {
        match rel.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => self.ensure(parent),
            _ => Ok(()),
        }
    }

    /// Makes sure `rel` and every directory above it is a real directory, making those missing.
    fn ensure(&mut self, rel: &Path) -> io::Result<()> {
        if self.known.contains(rel) {
            return Ok(());
        }
        self.ensure_parent(rel)?;
        let path = self.root.join(rel);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is in the way of a directory", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir(&path)?,
            Err(e) => return Err(e),
        }
        self.known.insert(rel.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("b/deep")).unwrap();
        std::fs::write(root.join("b/deep/file"), b"deep").unwrap();
        std::fs::write(root.join("a.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("a.sh"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        std::fs::create_dir(root.join("ro")).unwrap();
        std::fs::write(root.join("ro/inner"), b"x").unwrap();
        std::fs::set_permissions(root.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
        symlink("b/deep/file", root.join("link")).unwrap();
        symlink("/nowhere", root.join("dangling")).unwrap();
        std::fs::hard_link(root.join("b/deep/file"), root.join("hard")).unwrap();
        let _ = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    }

    #[test]
    fn the_tree_round_trips_with_modes_and_symlinks_in_a_fixed_order() {
        let src = tempfile::tempdir().unwrap();
        tree(src.path());
        let stream = write_tree(src.path(), Vec::new()).unwrap();
        assert_eq!(
            write_tree(src.path(), Vec::new()).unwrap(),
            stream,
            "same tree, same stream"
        );
        let names: Vec<String> = tar::Archive::new(&stream[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "a.sh",
                "b",
                "b/deep",
                "b/deep/file",
                "dangling",
                "hard",
                "link",
                "ro",
                "ro/inner"
            ]
        );

        let dest = tempfile::tempdir().unwrap();
        let out = dest.path().join("out");
        unpack_tree(&stream[..], &out).unwrap();
        let mode = |p: &str| {
            std::fs::symlink_metadata(out.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("a.sh"), 0o4755);
        assert_eq!(mode("ro"), 0o555);
        assert_eq!(std::fs::read(out.join("ro/inner")).unwrap(), b"x");
        assert_eq!(std::fs::read(out.join("link")).unwrap(), b"deep");
        assert_eq!(
            std::fs::read_link(out.join("dangling")).unwrap(),
            Path::new("/nowhere")
        );
        assert!(!out.join("sock").exists(), "sockets are left out");
        let (a, b) = (
            std::fs::metadata(out.join("hard")).unwrap(),
            std::fs::metadata(out.join("b/deep/file")).unwrap(),
        );
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "hard links stay links");
        // Let the temp dirs be removed.
        for d in [src.path().join("ro"), out.join("ro")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    /// Files spread over many directories (so over every writer), one too large to hand over,
    /// and hard links to both: contents, modes and times all arrive.
    #[test]
    fn files_over_many_directories_arrive_whole_with_their_times() {
        let src = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        for d in 0..12 {
            std::fs::create_dir(src.path().join(format!("d{d}"))).unwrap();
            for f in 0..40 {
                let rel = format!("d{d}/f{f}");
                let content = rel.repeat(f + 1);
                std::fs::write(src.path().join(&rel), &content).unwrap();
                expected.push((rel, content.into_bytes()));
            }
        }
        let big = vec![7u8; (FileWriters::MAX_SIZE + 1) as usize];
        std::fs::write(src.path().join("big"), &big).unwrap();
        expected.push(("big".into(), big));
        std::fs::hard_link(src.path().join("big"), src.path().join("big2")).unwrap();
        std::fs::hard_link(src.path().join("d3/f2"), src.path().join("small2")).unwrap();
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(src.path().join("d5/f5"))
            .unwrap()
            .set_modified(time)
            .unwrap();
        std::fs::set_permissions(
            src.path().join("d7/f1"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();

        let stream = write_tree(src.path(), Vec::new()).unwrap();
        let dest = tempfile::tempdir().unwrap();
        unpack_tree(&stream[..], dest.path()).unwrap();
        for (rel, content) in &expected {
            assert_eq!(
                &std::fs::read(dest.path().join(rel)).unwrap(),
                content,
                "{rel}"
            );
        }
        let meta = |p: &str| std::fs::metadata(dest.path().join(p)).unwrap();
        assert_eq!(meta("big2").ino(), meta("big").ino());
        assert_eq!(meta("small2").ino(), meta("d3/f2").ino());
        assert_eq!(meta("d5/f5").modified().unwrap(), time);
        assert_eq!(meta("d7/f1").permissions().mode() & 0o7777, 0o700);
    }

    /// A file a writer cannot write (a directory is in its way) fails the unpack, naming it.
    #[test]
    fn a_file_that_cannot_be_written_fails_the_unpack_naming_it() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("x"), b"x").unwrap();
        let stream = write_tree(src.path(), Vec::new()).unwrap();
        let dest = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dest.path().join("x/inside")).unwrap();
        let err = unpack_tree(&stream[..], dest.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&dest.path().join("x").display().to_string()),
            "{err}"
        );
        assert!(dest.path().join("x/inside").is_dir(), "nothing was removed");
    }

    #[test]
    fn unpacking_never_writes_or_links_through_a_symlink() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let entry = |b: &mut tar::Builder<&mut Vec<u8>>, kind, name: &str, link: &str| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(0o644);
            header.set_size(if kind == tar::EntryType::Regular {
                1
            } else {
                0
            });
            if kind == tar::EntryType::Regular {
                b.append_data(&mut header, name, &b"x"[..]).unwrap();
            } else {
                b.append_link(&mut header, name, link).unwrap();
            }
        };
        for (second, name, link) in [
            (tar::EntryType::Regular, "evil/planted", ""),
            (tar::EntryType::Link, "stolen", "evil/secret"),
        ] {
            let mut data = Vec::new();
            {
                let mut b = tar::Builder::new(&mut data);
                let target = outside.path().to_str().unwrap();
                entry(&mut b, tar::EntryType::Symlink, "evil", target);
                entry(&mut b, second, name, link);
                b.finish().unwrap();
            }
            let dest = tempfile::tempdir().unwrap();
            let out = dest.path().join("out");
            assert!(unpack_tree(&data[..], &out).is_err(), "{name}");
            assert!(!outside.path().join("planted").exists());
            assert!(!out.join("stolen").exists());
        }
    }

    #[test]
    fn unpacking_refuses_entries_outside_the_destination() {
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        let mut data = Vec::new();
        {
            let mut b = tar::Builder::new(&mut data);
            // `append_data` refuses `..`; write the name into the header by hand.
            header.as_old_mut().name[..9].copy_from_slice(b"../escape");
            header.set_cksum();
            b.append(&header, &b"x"[..]).unwrap();
            b.finish().unwrap();
        }
        let dest = tempfile::tempdir().unwrap();
        let _ = unpack_tree(&data[..], &dest.path().join("out"));
        assert!(!dest.path().join("escape").exists());
    }
}
