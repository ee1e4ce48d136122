//! The snapshotter engine: snapshot directories on disk, kept consistent with the metadata store.
//!
//! Layout under the root: `metadata.redb`, and `snapshots/<id>/{fs,work}` per snapshot. A new
//! snapshot's directory is built under a temporary name and renamed to `<id>` inside the
//! metadata transaction; a removed snapshot's record goes first and its directory after. So after
//! a crash every record has its directory, and directories without a record (orphans) are
//! deleted on the next start and by Cleanup.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SnapshotError};
use crate::filter::Filter;
use crate::fsutil;
use crate::info::{Info, Kind, Mount, Usage};
use crate::store::{clean_labels, MetaStore, Record};

/// How snapshots are layered on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// overlayfs: a child stores only its changes; mounts stack the parents as lower dirs.
    #[default]
    Overlay,
    /// Copy-based: a child starts as a full copy of its parent; mounts are bind mounts. For
    /// filesystems where overlayfs does not work.
    Native,
}

impl Mode {
    /// The name used in config files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Overlay => "overlay",
            Mode::Native => "native",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "overlay" | "overlayfs" => Ok(Mode::Overlay),
            "native" => Ok(Mode::Native),
            other => Err(format!(
                "unknown snapshotter mode {other:?}; expected \"overlay\" or \"native\""
            )),
        }
    }
}

/// An overlayfs (or native) snapshotter rooted at one directory. All methods block on disk and
/// metadata I/O; they are safe to call from many threads at once.
pub struct Snapshotter {
    root: PathBuf,
    mode: Mode,
    store: MetaStore,
    /// Mount overlays with `index=off` when the kernel has the option, as containerd does, so a
    /// lower dir can be shared by many overlays.
    index_off: bool,
    /// Held shared while a snapshot directory is created or removed, exclusively by Cleanup,
    /// so Cleanup never mistakes a directory whose record is being committed for an orphan.
    dirs: std::sync::RwLock<()>,
}

impl Snapshotter {
    /// Opens the snapshotter at `root` (created if missing), then deletes orphan directories
    /// left by a crash. Fails if `root` holds snapshots of the other mode.
    pub fn open(root: impl Into<PathBuf>, mode: Mode) -> Result<Self> {
        let root = root.into();
        let snapshots = root.join("snapshots");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&snapshots)
            .map_err(SnapshotError::io("create snapshot directory", &snapshots))?;
        let store = MetaStore::open(&root.join("metadata.redb"))?;
        let found = store.setting_or_init("mode", mode.as_str())?;
        if found != mode.as_str() {
            return Err(SnapshotError::ModeMismatch {
                root,
                found,
                wanted: mode.as_str().into(),
            });
        }
        let index_off = Path::new("/sys/module/overlay/parameters/index").exists();
        let sn = Snapshotter {
            root,
            mode,
            store,
            index_off,
            dirs: Default::default(),
        };
        let removed = sn.cleanup()?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed orphan snapshot directories left by an earlier run"
            );
        }
        Ok(sn)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.snapshots_dir().join(id.to_string())
    }

    fn fs_dir(&self, id: u64) -> PathBuf {
        self.dir(id).join("fs")
    }

    /// Creates an active snapshot on `parent` (empty: none) and returns how to mount it.
    pub fn prepare(
        &self,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::Active, key, parent, labels)
    }

    /// Creates a read-only view of `parent` and returns how to mount it.
    pub fn view(
        &self,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::View, key, parent, labels)
    }

    fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        if key.is_empty() {
            return Err(SnapshotError::EmptyKey { what: "key" });
        }
        let parent = (!parent.is_empty()).then_some(parent);
        // Cheap checks first, so a bad request does no directory work.
        if self.store.get(key)?.is_some() {
            return Err(SnapshotError::AlreadyExists { key: key.into() });
        }
        let parent_rec = match parent {
            None => None,
            Some(p) => match self.store.get(p)? {
                None => return Err(SnapshotError::ParentNotFound { parent: p.into() }),
                Some(r) if r.kind != Kind::Committed => {
                    return Err(SnapshotError::ParentNotCommitted { parent: p.into() })
                }
                Some(r) => Some(r),
            },
        };
        let _shared = self.dirs.read().unwrap_or_else(|e| e.into_inner());
        let tmp = self.new_temp_dir(kind, parent_rec.as_ref())?;
        let placed = std::cell::Cell::new(None);
        let created = self
            .store
            .create(key, kind, parent, clean_labels(labels), |id, _| {
                let dst = self.dir(id);
                fs::rename(&tmp, &dst)
                    .map_err(SnapshotError::io("move new snapshot into place at", dst))?;
                placed.set(Some(id));
                Ok(())
            });
        match created {
            Ok(rec) => Ok(self.mounts_of(&rec)),
            Err(e) => {
                // Nothing was recorded, so no directory of this prepare may remain: the id will
                // be handed out again.
                let dirs = [Some(tmp), placed.get().map(|id| self.dir(id))];
                for dir in dirs.into_iter().flatten() {
                    if let Err(err) = fsutil::remove_tree(&dir) {
                        tracing::warn!(path = %dir.display(), %err, "failed to remove directory of a failed prepare");
                    }
                }
                Err(e)
            }
        }
    }

    /// Builds `snapshots/new-*` with `fs` (and `work` for active overlay snapshots).
    fn new_temp_dir(&self, kind: Kind, parent: Option<&Record>) -> Result<PathBuf> {
        let base = self.snapshots_dir();
        let tmp = base.join(format!("new-{}-{}", std::process::id(), unique()));
        let fs_dir = tmp.join("fs");
        let build = || -> Result<()> {
            let mut b = fs::DirBuilder::new();
            b.mode(0o700);
            b.create(&tmp)
                .map_err(SnapshotError::io("create snapshot directory", &tmp))?;
            b.mode(0o755);
            b.create(&fs_dir)
                .map_err(SnapshotError::io("create snapshot directory", &fs_dir))?;
            // mkdir honours the umask; the root of a snapshot must be exactly 0755.
            fs::set_permissions(&fs_dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(SnapshotError::io("set mode of", &fs_dir))?;
            match (self.mode, parent) {
                (Mode::Overlay, Some(p)) => {
                    // The merged root takes its owner from the upper dir: keep the parent's.
                    let pfs = self.fs_dir(p.id);
                    let st = fs::metadata(&pfs).map_err(SnapshotError::io("stat parent", &pfs))?;
                    std::os::unix::fs::chown(&fs_dir, Some(st.uid()), Some(st.gid()))
                        .map_err(SnapshotError::io("chown", &fs_dir))?;
                }
                (Mode::Native, Some(p)) => {
                    let pfs = self.fs_dir(p.id);
                    fsutil::copy_tree(&pfs, &fs_dir)
                        .map_err(SnapshotError::io("copy parent snapshot from", pfs))?;
                }
                (_, None) => {}
            }
            if self.mode == Mode::Overlay && kind == Kind::Active {
                let work = tmp.join("work");
                b.mode(0o711);
                b.create(&work)
                    .map_err(SnapshotError::io("create snapshot directory", &work))?;
            }
            Ok(())
        };
        match build() {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fsutil::remove_tree(&tmp);
                Err(e)
            }
        }
    }

    /// How to mount active snapshot or view `key`.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let rec = self
            .store
            .get(key)?
            .ok_or_else(|| SnapshotError::NotFound { key: key.into() })?;
        if rec.kind == Kind::Committed {
            return Err(SnapshotError::NotMountable { key: key.into() });
        }
        Ok(self.mounts_of(&rec))
    }

    fn mounts_of(&self, rec: &Record) -> Vec<Mount> {
        let bind = |id: u64, rw: bool| {
            vec![Mount {
                kind: "bind".into(),
                source: self.fs_dir(id).display().to_string(),
                options: vec![if rw { "rw" } else { "ro" }.into(), "rbind".into()],
            }]
        };
        let active = rec.kind == Kind::Active;
        if self.mode == Mode::Native || rec.parent_ids.is_empty() {
            return bind(rec.id, active);
        }
        if !active && rec.parent_ids.len() == 1 {
            // A view of a single layer is that layer, read-only.
            return bind(rec.parent_ids[0], false);
        }
        let mut options = Vec::new();
        if self.index_off {
            options.push("index=off".to_string());
        }
        if active {
            options.push(format!(
                "workdir={}",
                self.dir(rec.id).join("work").display()
            ));
            options.push(format!("upperdir={}", self.fs_dir(rec.id).display()));
        }
        let lower: Vec<String> = rec
            .parent_ids
            .iter()
            .map(|id| self.fs_dir(*id).display().to_string())
            .collect();
        options.push(format!("lowerdir={}", lower.join(":")));
        vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options,
        }]
    }

    /// Commits active snapshot `key` as `name`, measuring its usage first.
    pub fn commit(&self, name: &str, key: &str, labels: BTreeMap<String, String>) -> Result<()> {
        if name.is_empty() {
            return Err(SnapshotError::EmptyKey { what: "name" });
        }
        let rec = self
            .store
            .get(key)?
            .ok_or_else(|| SnapshotError::NotFound { key: key.into() })?;
        if rec.kind != Kind::Active {
            return Err(SnapshotError::NotActive { key: key.into() });
        }
        if self.store.get(name)?.is_some() {
            return Err(SnapshotError::AlreadyExists { key: name.into() });
        }
        let fs_dir = self.fs_dir(rec.id);
        let usage =
            fsutil::disk_usage(&fs_dir).map_err(SnapshotError::io("measure usage of", &fs_dir))?;
        self.store.commit(key, name, clean_labels(labels), usage)?;
        Ok(())
    }

    /// Removes `key` and its directory; fails if other snapshots build on it.
    pub fn remove(&self, key: &str) -> Result<()> {
        let _shared = self.dirs.read().unwrap_or_else(|e| e.into_inner());
        let rec = self.store.remove(key)?;
        let dir = self.dir(rec.id);
        // The record is gone; a failure here leaves an orphan that Cleanup removes later.
        let doomed = self.snapshots_dir().join(format!("rm-{}", rec.id));
        if let Err(err) = fs::rename(&dir, &doomed).and_then(|()| fsutil::remove_tree(&doomed)) {
            tracing::warn!(path = %dir.display(), %err, "failed to remove snapshot directory; cleanup will retry");
        }
        Ok(())
    }

    /// Metadata of `key`.
    pub fn stat(&self, key: &str) -> Result<Info> {
        let rec = self
            .store
            .get(key)?
            .ok_or_else(|| SnapshotError::NotFound { key: key.into() })?;
        Ok(rec.info(key))
    }

    /// Updates the labels of `info.name`, as containerd does: with no field paths the labels are
    /// replaced; `labels` replaces them too; `labels.KEY` sets or (given empty) deletes one label.
    /// Any other path is immutable.
    pub fn update(&self, info: Info, paths: &[String]) -> Result<Info> {
        let key = info.name.clone();
        let rec = self.store.update(&key, |rec| {
            if paths.is_empty() {
                rec.labels = clean_labels(info.labels);
                return Ok(());
            }
            for path in paths {
                if let Some(label) = path.strip_prefix("labels.") {
                    match info.labels.get(label).filter(|v| !v.is_empty()) {
                        Some(v) => rec.labels.insert(label.to_string(), v.clone()),
                        None => rec.labels.remove(label),
                    };
                } else if path == "labels" {
                    rec.labels = clean_labels(info.labels.clone());
                } else {
                    return Err(SnapshotError::ImmutableField {
                        key: key.clone(),
                        field: path.clone(),
                    });
                }
            }
            Ok(())
        })?;
        Ok(rec.info(&key))
    }

    /// Every snapshot matching `filters` (containerd syntax; none matches all).
    pub fn list(&self, filters: &[String]) -> Result<Vec<Info>> {
        let filter = Filter::parse(filters)?;
        let mut out = Vec::new();
        for (key, rec) in self.store.list()? {
            let info = rec.info(&key);
            if filter.matches(|path| field(&info, path)) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Disk usage of `key`'s own layer: measured now for active snapshots, at commit otherwise.
    pub fn usage(&self, key: &str) -> Result<Usage> {
        let rec = self
            .store
            .get(key)?
            .ok_or_else(|| SnapshotError::NotFound { key: key.into() })?;
        match rec.usage {
            Some(u) => Ok(u),
            None => {
                let fs_dir = self.fs_dir(rec.id);
                fsutil::disk_usage(&fs_dir).map_err(SnapshotError::io("measure usage of", fs_dir))
            }
        }
    }

    /// Deletes every directory under `snapshots/` that no record owns (crash leftovers, removals
    /// that failed). Returns how many were removed.
    pub fn cleanup(&self) -> Result<usize> {
        let dir = self.snapshots_dir();
        let _exclusive = self.dirs.write().unwrap_or_else(|e| e.into_inner());
        let entries: Vec<_> = fs::read_dir(&dir)
            .map_err(SnapshotError::io("read", &dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let ids: HashSet<String> = self
            .store
            .list()?
            .into_iter()
            .map(|(_, r)| r.id.to_string())
            .collect();
        let mut removed = 0;
        for name in entries {
            if ids.contains(&name) {
                continue;
            }
            let path = dir.join(&name);
            match fsutil::remove_tree(&path) {
                Ok(()) => removed += 1,
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "failed to remove orphan snapshot directory")
                }
            }
        }
        Ok(removed)
    }
}

/// Field lookup for containerd filters over a snapshot's info.
fn field(info: &Info, path: &[String]) -> Option<String> {
    match path.first().map(String::as_str) {
        Some("kind") => Some(info.kind.as_str().into()),
        Some("name") => Some(info.name.clone()),
        Some("parent") => Some(info.parent.clone()),
        Some("labels") if !info.labels.is_empty() => info.labels.get(&path[1..].join(".")).cloned(),
        _ => None,
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn open(dir: &Path, mode: Mode) -> Snapshotter {
        Snapshotter::open(dir, mode).unwrap()
    }

    fn none() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Writes `name` into snapshot `key`'s own layer directory.
    fn write(sn: &Snapshotter, key: &str, name: &str, data: &str) {
        let id = sn.store.get(key).unwrap().unwrap().id;
        fs::write(sn.fs_dir(id).join(name), data).unwrap();
    }

    /// c1 <- c2 (committed), with `a` active on c2.
    fn chain(sn: &Snapshotter) {
        sn.prepare("c1-a", "", none()).unwrap();
        sn.commit("c1", "c1-a", none()).unwrap();
        sn.prepare("c2-a", "c1", none()).unwrap();
        sn.commit("c2", "c2-a", none()).unwrap();
        sn.prepare("a", "c2", none()).unwrap();
    }

    #[test]
    fn mounts_follow_containerd_overlay_shapes() {
        let tmp = tempfile::tempdir().unwrap();
        let sn = open(tmp.path(), Mode::Overlay);
        let m = sn.prepare("base-a", "", none()).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].kind.as_str(), m[0].options.as_slice()),
            ("bind", &["rw".to_string(), "rbind".into()][..])
        );
        sn.commit("base", "base-a", none()).unwrap();
        let base_fs = sn
            .fs_dir(sn.store.get("base").unwrap().unwrap().id)
            .display()
            .to_string();

        let v = sn.view("v1", "base", none()).unwrap();
        assert_eq!(
            (v[0].kind.as_str(), v[0].source.as_str()),
            ("bind", base_fs.as_str())
        );
        assert_eq!(v[0].options[0], "ro");

        let m = sn.prepare("top-a", "base", none()).unwrap();
        let opts = &m[0].options;
        assert_eq!(m[0].kind, "overlay");
        assert!(
            opts.iter().any(|o| o.starts_with("upperdir="))
                && opts.iter().any(|o| o.starts_with("workdir="))
        );
        assert_eq!(opts.last().unwrap(), &format!("lowerdir={base_fs}"));
        sn.commit("top", "top-a", none()).unwrap();
        let top_fs = sn
            .fs_dir(sn.store.get("top").unwrap().unwrap().id)
            .display()
            .to_string();

        // A view of two layers is a read-only overlay: lower dirs only, nearest first.
        let v = sn.view("v2", "top", none()).unwrap();
        assert_eq!(v[0].kind, "overlay");
        assert!(!v[0].options.iter().any(|o| o.starts_with("upperdir=")));
        assert_eq!(
            v[0].options.last().unwrap(),
            &format!("lowerdir={top_fs}:{base_fs}")
        );
        assert_eq!(sn.mounts("v2").unwrap(), v);
    }

    #[test]
    fn errors_carry_containerd_semantics() {
        let tmp = tempfile::tempdir().unwrap();
        let sn = open(tmp.path(), Mode::Overlay);
        chain(&sn);
        let code = |r: Result<()>| tonic::Status::from(r.unwrap_err()).code();
        use tonic::Code::*;
        assert_eq!(code(sn.prepare("a", "c2", none()).map(drop)), AlreadyExists);
        assert_eq!(code(sn.view("a", "c2", none()).map(drop)), AlreadyExists);
        assert_eq!(code(sn.prepare("x", "missing", none()).map(drop)), NotFound);
        assert_eq!(
            code(sn.prepare("x", "a", none()).map(drop)),
            InvalidArgument
        );
        assert_eq!(code(sn.prepare("", "", none()).map(drop)), InvalidArgument);
        assert_eq!(code(sn.commit("c3", "missing", none())), NotFound);
        assert_eq!(code(sn.commit("c3", "c2", none())), FailedPrecondition);
        assert_eq!(code(sn.commit("c1", "a", none())), AlreadyExists);
        assert_eq!(code(sn.mounts("c1").map(drop)), FailedPrecondition);
        assert_eq!(code(sn.mounts("missing").map(drop)), NotFound);
        assert_eq!(code(sn.remove("c2")), FailedPrecondition);
        assert_eq!(code(sn.remove("missing")), NotFound);
        assert_eq!(code(sn.stat("missing").map(drop)), NotFound);
        assert_eq!(code(sn.usage("missing").map(drop)), NotFound);
        // Failed calls left no directories behind: 3 snapshots, 3 directories.
        assert_eq!(fs::read_dir(sn.snapshots_dir()).unwrap().count(), 3);
        // Removal works top-down.
        sn.remove("a").unwrap();
        sn.remove("c2").unwrap();
        sn.remove("c1").unwrap();
        assert_eq!(fs::read_dir(sn.snapshots_dir()).unwrap().count(), 0);
    }

    #[test]
    fn commit_renames_and_keeps_parent_links() {
        let tmp = tempfile::tempdir().unwrap();
        let sn = open(tmp.path(), Mode::Overlay);
        chain(&sn);
        write(&sn, "a", "f", "hello");
        sn.commit("c3", "a", labels(&[("k", "v")])).unwrap();
        assert_eq!(
            sn.stat("a").unwrap_err().to_string(),
            "snapshot \"a\" does not exist"
        );
        let c3 = sn.stat("c3").unwrap();
        assert_eq!((c3.kind, c3.parent.as_str()), (Kind::Committed, "c2"));
        assert_eq!(c3.labels, labels(&[("k", "v")]));
        assert_eq!(c3.created, c3.updated);
        let u = sn.usage("c3").unwrap();
        assert_eq!(u.inodes, 2, "the layer root and one file");
        assert!(u.size >= 4096, "{u:?}");
        // c2 now has child c3 (renamed from a): it cannot go first.
        assert!(matches!(
            sn.remove("c2"),
            Err(SnapshotError::HasChildren { .. })
        ));
        sn.remove("c3").unwrap();
        sn.remove("c2").unwrap();
    }

    #[test]
    fn update_applies_field_paths_like_containerd() {
        let tmp = tempfile::tempdir().unwrap();
        let sn = open(tmp.path(), Mode::Overlay);
        sn.prepare("a", "", labels(&[("keep", "1"), ("empty", "")]))
            .unwrap();
        let mut info = sn.stat("a").unwrap();
        assert_eq!(
            info.labels,
            labels(&[("keep", "1")]),
            "empty values are not stored"
        );

        info.parent = "ignored".into();
        info.labels = labels(&[("l1", "v1"), ("l2", "v2"), ("l3", "v3")]);
        let got = sn.update(info.clone(), &[]).unwrap();
        assert_eq!(got.labels, info.labels);
        assert_eq!(got.parent, "");
        assert!(got.updated > got.created);

        info.labels = labels(&[("l1", "updated"), ("l4", "v4")]);
        let got = sn
            .update(info.clone(), &["labels.l1".into(), "labels.l2".into()])
            .unwrap();
        assert_eq!(got.labels, labels(&[("l1", "updated"), ("l3", "v3")]));

        let got = sn.update(info.clone(), &["labels".into()]).unwrap();
        assert_eq!(got.labels, info.labels);

        let err = sn.update(info, &["parent".into()]).unwrap_err();
        assert!(matches!(err, SnapshotError::ImmutableField { .. }), "{err}");
    }

    #[test]
    fn list_filters() {
        let tmp = tempfile::tempdir().unwrap();
        let sn = open(tmp.path(), Mode::Overlay);
        chain(&sn);
        sn.view("v", "c1", labels(&[("l", "2")])).unwrap();
        let names = |f: &[&str]| -> Vec<String> {
            let f: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            sn.list(&f).unwrap().into_iter().map(|i| i.name).collect()
        };
        assert_eq!(names(&[]), ["a", "c1", "c2", "v"]);
        assert_eq!(names(&["kind==committed"]), ["c1", "c2"]);
        assert_eq!(names(&["parent==c1"]), ["c2", "v"]);
        assert_eq!(names(&["labels.l==2"]), ["v"]);
        assert_eq!(names(&["name==a", "kind==view"]), ["a", "v"]);
        assert!(matches!(
            sn.list(&["kind=".into()]),
            Err(SnapshotError::InvalidFilter { .. })
        ));
    }

    #[test]
    fn state_survives_reopen_and_orphans_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let sn = open(tmp.path(), Mode::Overlay);
            chain(&sn);
            write(&sn, "a", "f", "x");
        }
        // What a crash leaves: a half-built new snapshot, a directory whose record never
        // committed, and a removal that never finished.
        for orphan in ["new-1-0", "999", "rm-7"] {
            fs::create_dir_all(tmp.path().join("snapshots").join(orphan).join("fs")).unwrap();
        }
        let sn = open(tmp.path(), Mode::Overlay);
        let mut dirs: Vec<String> = fs::read_dir(sn.snapshots_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        dirs.sort();
        assert_eq!(dirs, ["1", "2", "3"]);
        assert_eq!(sn.stat("a").unwrap().parent, "c2");
        // Ids keep counting after a restart: nothing reuses a live directory.
        sn.prepare("b", "", none()).unwrap();
        assert_eq!(sn.store.get("b").unwrap().unwrap().id, 4);
        fs::create_dir(tmp.path().join("snapshots/12345")).unwrap();
        assert_eq!(sn.cleanup().unwrap(), 1);
    }

    #[test]
    fn root_of_other_mode_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        drop(open(tmp.path(), Mode::Overlay));
        let err = Snapshotter::open(tmp.path(), Mode::Native).err().unwrap();
        assert!(matches!(err, SnapshotError::ModeMismatch { .. }), "{err}");
    }

    #[test]
    fn native_children_start_as_full_copies() {
        let tmp = tempfile::tempdir().unwrap();
        let sn = open(tmp.path(), Mode::Native);
        sn.prepare("base-a", "", none()).unwrap();
        let base = sn.fs_dir(sn.store.get("base-a").unwrap().unwrap().id);
        fs::create_dir(base.join("d")).unwrap();
        fs::write(base.join("d/f"), "data").unwrap();
        fs::hard_link(base.join("d/f"), base.join("link")).unwrap();
        std::os::unix::fs::symlink("d/f", base.join("sym")).unwrap();
        fs::set_permissions(
            base.join("d"),
            std::os::unix::fs::PermissionsExt::from_mode(0o750),
        )
        .unwrap();
        std::os::unix::fs::lchown(base.join("d/f"), Some(1), Some(2)).unwrap();
        sn.commit("base", "base-a", none()).unwrap();

        let m = sn.prepare("child", "base", none()).unwrap();
        assert_eq!(
            (m[0].kind.as_str(), m[0].options[0].as_str()),
            ("bind", "rw")
        );
        let child = PathBuf::from(&m[0].source);
        assert_ne!(child, base);
        assert_eq!(fs::read_to_string(child.join("d/f")).unwrap(), "data");
        assert_eq!(
            fs::read_link(child.join("sym")).unwrap(),
            PathBuf::from("d/f")
        );
        let (f, l) = (
            fs::metadata(child.join("d/f")).unwrap(),
            fs::metadata(child.join("link")).unwrap(),
        );
        assert_eq!(f.ino(), l.ino(), "hard links stay hard links");
        assert_eq!((f.uid(), f.gid()), (1, 2));
        assert_eq!(
            fs::metadata(child.join("d")).unwrap().mode() & 0o7777,
            0o750
        );
        // The copy is independent of the parent.
        fs::write(child.join("d/f"), "changed").unwrap();
        assert_eq!(fs::read_to_string(base.join("d/f")).unwrap(), "data");
        let v = sn.view("v", "base", none()).unwrap();
        assert_eq!(v[0].options[0], "ro");
    }
}
