//! Sharing files instead of writing them again: when a copy reads a snapshot's view and writes
//! into another snapshot, both overlay (or bind) mounts of layer directories on one filesystem,
//! a regular file whose copy would carry exactly its metadata is hard-linked from the layer that
//! really holds it into the directory the destination's writes land in. No data is written and
//! no inode allocated, which on a large tree is most of a copy's cost.
//!
//! This is sound because a committed snapshot's layers never change (every later write goes to
//! a new snapshot's upper directory; overlayfs copies a file up before changing it), and the
//! link is made only where overlayfs cannot show a stale name: where the copy itself created
//! the parent directory through the mount, so overlayfs has cached nothing about the name; or,
//! for a name the copy found missing, when the destination's mount is unmounted right after
//! the action ([`LayerPaths::dest_last_use`]), so nothing reads that name through it again —
//! and only if the parent directory already is in the upper directory (the link fails
//! otherwise). Anything else — an existing file, an owner, mode or time the copy changes, a
//! source not found in a layer with the same inode, a failed link (another filesystem, too many
//! links, a parent only in a lower layer) — is copied as before.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where the trees a file action reads and writes really are.
#[derive(Debug, Clone, Default)]
pub struct LayerPaths {
    /// The copy source's mount point and its layer directories, top first.
    pub source: Option<(PathBuf, Vec<PathBuf>)>,
    /// The destination's mount point and the directory its writes land in.
    pub dest: Option<(PathBuf, PathBuf)>,
    /// The inodes already linked into the destination, shared by the actions of one file op:
    /// a file linked once is copied the next time, so two copies of one source file stay two
    /// files (a hard link between them would change the layer), as they are in BuildKit.
    pub linked: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<u64>>>,
    /// The destination's mount is unmounted right after this action: no later read goes
    /// through it, so a file may be linked under a name the action looked up and found missing
    /// (`COPY --from=stage /bin/app /app` into an existing directory).
    pub dest_last_use: bool,
}

/// Finds source files in their layers and links them into the destination's upper directory.
pub(crate) struct Sharer<'a> {
    src_root: &'a Path,
    layers: &'a [PathBuf],
    dest_root: &'a Path,
    dest_upper: &'a Path,
    linked: &'a std::sync::Mutex<std::collections::HashSet<u64>>,
    /// [`LayerPaths::dest_last_use`].
    pub(crate) last_use: bool,
    /// For a directory (relative to the source root), the layers that have it as a directory.
    dirs: HashMap<PathBuf, Vec<usize>>,
}

impl<'a> Sharer<'a> {
    /// A sharer for a copy from `src_root` into `dest_root`, if `paths` says where both are.
    pub(crate) fn new(
        paths: Option<&'a LayerPaths>,
        src_root: &'a Path,
        dest_root: &'a Path,
    ) -> Option<Self> {
        let paths = paths?;
        let (src, layers) = paths.source.as_ref()?;
        let (dest, dest_upper) = paths.dest.as_ref()?;
        (src == src_root && dest == dest_root && !layers.is_empty()).then(|| Sharer {
            src_root,
            layers,
            dest_root,
            dest_upper,
            linked: &paths.linked,
            last_use: paths.dest_last_use,
            dirs: HashMap::new(),
        })
    }

    /// Makes `t` (a new name under the destination's mount, as the module says) a hard link to
    /// source file `src` (`meta`: its `lstat` through the source's mount), if `src` is found in
    /// a layer as that same inode. `again`: the caller linked this inode before under another
    /// name (a hard link in the source, which the copy keeps). Returns whether it did; on
    /// `false` nothing was changed and the caller copies.
    pub(crate) fn link(&mut self, src: &Path, meta: &Metadata, t: &Path, again: bool) -> bool {
        let (Ok(rel), Ok(dest_rel)) = (
            src.strip_prefix(self.src_root),
            t.strip_prefix(self.dest_root),
        ) else {
            return false;
        };
        let Some(real) = self.find(rel, meta) else {
            return false;
        };
        // Linked before by an earlier action of the file op: not again, so two copies of one
        // file stay two files.
        if !again
            && !self
                .linked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(meta.ino())
        {
            return false;
        }
        match std::fs::hard_link(&real, self.dest_upper.join(dest_rel)) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(
                    source = %real.display(),
                    error = %e,
                    "could not share a file; copying it"
                );
                false
            }
        }
    }

    /// The real path of source file `rel`: in the topmost layer that has it, and only if that is
    /// the inode the mount showed.
    fn find(&mut self, rel: &Path, meta: &Metadata) -> Option<PathBuf> {
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let layers = self.layers;
        let candidates = self.dirs.entry(parent.clone()).or_insert_with(|| {
            (0..layers.len())
                .filter(|&i| {
                    std::fs::symlink_metadata(layers[i].join(&parent)).is_ok_and(|m| m.is_dir())
                })
                .collect()
        });
        for &i in candidates.iter() {
            let real = layers[i].join(rel);
            match std::fs::symlink_metadata(&real) {
                Ok(m) => {
                    let same = m.is_file()
                        && m.ino() == meta.ino()
                        && m.len() == meta.len()
                        && m.mtime() == meta.mtime()
                        && m.mtime_nsec() == meta.mtime_nsec();
                    return same.then_some(real);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(path: &Path, data: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    #[test]
    fn a_file_is_linked_from_the_topmost_layer_holding_that_inode() {
        let tmp = tempfile::tempdir().unwrap();
        let (top, bottom) = (tmp.path().join("top"), tmp.path().join("bottom"));
        let (src_root, dest_root, upper) = (
            tmp.path().join("src"),
            tmp.path().join("dest"),
            tmp.path().join("upper"),
        );
        write(&bottom.join("d/f"), "old");
        write(&top.join("d/f"), "new");
        write(&bottom.join("d/g"), "only below");
        // The "mount": what a merged view shows, with the real inodes.
        fs::create_dir_all(src_root.join("d")).unwrap();
        fs::hard_link(top.join("d/f"), src_root.join("d/f")).unwrap();
        fs::hard_link(bottom.join("d/g"), src_root.join("d/g")).unwrap();
        fs::create_dir_all(upper.join("x")).unwrap();
        let paths = LayerPaths {
            source: Some((src_root.clone(), vec![top.clone(), bottom.clone()])),
            dest: Some((dest_root.clone(), upper.clone())),
            ..Default::default()
        };
        let mut s = Sharer::new(Some(&paths), &src_root, &dest_root).unwrap();
        let meta = |p: &Path| fs::symlink_metadata(p).unwrap();

        assert!(s.link(
            &src_root.join("d/f"),
            &meta(&src_root.join("d/f")),
            &dest_root.join("x/f"),
            false
        ));
        assert_eq!(meta(&upper.join("x/f")).ino(), meta(&top.join("d/f")).ino());
        assert!(s.link(
            &src_root.join("d/g"),
            &meta(&src_root.join("d/g")),
            &dest_root.join("x/g"),
            false
        ));
        assert_eq!(fs::read_to_string(upper.join("x/g")).unwrap(), "only below");
        // The same file once more: copied, not linked again.
        assert!(!s.link(
            &src_root.join("d/g"),
            &meta(&src_root.join("d/g")),
            &dest_root.join("x/g2"),
            false
        ));

        // Unless the caller linked it itself under another name (a hard link in the source).
        assert!(s.link(
            &src_root.join("d/g"),
            &meta(&src_root.join("d/g")),
            &dest_root.join("x/g3"),
            true
        ));
        assert_eq!(
            meta(&upper.join("x/g3")).ino(),
            meta(&bottom.join("d/g")).ino()
        );

        // A mount showing another inode than the layers hold: not shared.
        write(&src_root.join("d/h"), "elsewhere");
        write(&bottom.join("d/h"), "elsewhere");
        assert!(!s.link(
            &src_root.join("d/h"),
            &meta(&src_root.join("d/h")),
            &dest_root.join("x/h"),
            false
        ));
        assert!(!upper.join("x/h").exists());
        // Outside the roots it was made for: not shared.
        assert!(!s.link(
            &bottom.join("d/g"),
            &meta(&bottom.join("d/g")),
            &dest_root.join("x/i"),
            false
        ));
        // Another pair of roots: no sharer.
        assert!(Sharer::new(Some(&paths), &bottom, &dest_root).is_none());
        assert!(Sharer::new(None, &src_root, &dest_root).is_none());
    }
}
