//! [`Store`] and [`Copy`]: where the daemon keeps its copies of client directories, and the
//! sync that brings one up to date from a listing.
//!
//! A copy lives in `<root>/<key>/`: `tree/` holds the directories and regular files' contents
//! (never a symlink, so nothing written there can escape it), `record.json` the listing it
//! was last synced to, with each file's content hash. Before a sync changes anything it writes
//! `dirty.json`, the paths it is about to touch; it removes it only after the new record is in
//! place. A sync that fails or is cancelled leaves `dirty.json` behind, and the next sync
//! trusts none of those paths: it deletes or fetches them again. A missing or unreadable record
//! means the tree is emptied and everything is fetched.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::entry::{Entry, Kind};
use crate::error::SyncError;
use crate::listing::Listing;

/// The most bytes of one file asked for in one range (1 MiB).
pub const CHUNK: u64 = 1 << 20;
/// A batch of ranges asks for about this much, so small files travel many to a request.
const BATCH_BYTES: u64 = CHUNK;
/// At most this many ranges in one batch.
const BATCH_RANGES: usize = 1024;
/// Batches in flight at once: the client reads the next while the daemon writes the last.
const IN_FLIGHT: usize = 8;
/// Batches written at once, on blocking threads: creating files is mostly kernel time, which
/// two threads spread over two cores (a batch holds whole small files, in path order, so two
/// batches mostly fill different directories).
const WRITERS: usize = 2;

/// Part of a file to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The file's path in the listing.
    pub path: String,
    /// Where to start.
    pub offset: u64,
    /// How many bytes.
    pub len: u64,
}

/// Where file contents come from: the client. Calls may run concurrently.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// The bytes of each range, in order. A buffer shorter than its range means the file
    /// shrank since it was listed.
    async fn read(
        &self,
        ranges: Vec<Range>,
    ) -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error + Send + Sync>>;
}

/// The copies under one directory, each behind its own lock.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// An entry of the record: what was synced, and a regular file's content hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recorded {
    #[serde(flatten)]
    entry: Entry,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    hash: String,
}

/// A snapshot the copy was written into, and the listing written: the base of the next.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Written {
    version: u32,
    /// The snapshot's name.
    pub name: String,
    /// How many snapshots deep its chain of incremental writes is (1: written whole).
    pub depth: u32,
    entries: Vec<Recorded>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    version: u32,
    entries: Vec<Recorded>,
}

const RECORD_VERSION: u32 = 1;

impl Store {
    /// Copies under `root` (created when first needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store {
            root: root.into(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The key of the copy of directory `name` of client `client` (with BuildKit's shared key
    /// hint, empty if none): a hash, safe as a file name.
    pub fn key(client: &str, name: &str, hint: &str) -> String {
        let mut h = Sha256::new();
        for part in [client, name, hint] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex(&h.finalize())
    }

    /// Copy `key`, locked: one sync or materialization at a time per copy.
    pub async fn open(&self, key: &str) -> Result<Copy, SyncError> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        let lock = Arc::new(lock.lock_owned().await);
        let dir = self.root.join(key);
        let loaded = blocking(&lock, {
            let dir = dir.clone();
            move || load(&dir)
        })
        .await?;
        Ok(Copy {
            dir,
            record: loaded.0,
            dirty: loaded.1,
            lock,
        })
    }
}

/// Reads a copy's record and dirty paths; with no usable record, empties the tree.
fn load(dir: &Path) -> Result<(Vec<Recorded>, BTreeSet<String>), SyncError> {
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).map_err(|e| SyncError::io("create", &tree, e))?;
    let record_path = dir.join("record.json");
    let record = match std::fs::read(&record_path) {
        Ok(raw) => match serde_json::from_slice::<Record>(&raw) {
            Ok(r) if r.version == RECORD_VERSION => Some(r.entries),
            Ok(_) | Err(_) => None,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(SyncError::io("read", &record_path, e)),
    };
    let Some(mut entries) = record else {
        // Unknown content: start over.
        std::fs::remove_dir_all(&tree).map_err(|e| SyncError::io("empty", &tree, e))?;
        std::fs::create_dir(&tree).map_err(|e| SyncError::io("create", &tree, e))?;
        let _ = std::fs::remove_file(dir.join("dirty.json"));
        return Ok((Vec::new(), BTreeSet::new()));
    };
    entries.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
    let dirty_path = dir.join("dirty.json");
    let dirty = match std::fs::read(&dirty_path) {
        Ok(raw) => serde_json::from_slice(&raw).map_err(|e| SyncError::Record {
            path: dirty_path.clone(),
            reason: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(SyncError::io("read", &dirty_path, e)),
    };
    Ok((entries, dirty))
}

/// A copy's lock while held.
type Lock = Arc<tokio::sync::OwnedMutexGuard<()>>;

/// One locked copy. Dropping it releases the lock (once its blocking work has ended).
#[derive(Debug)]
pub struct Copy {
    dir: PathBuf,
    record: Vec<Recorded>,
    /// Paths a failed sync may have left half-done.
    dirty: BTreeSet<String>,
    /// The copy's lock, shared with the blocking work of a sync: a sync dropped midway (its
    /// build was cancelled) keeps the copy locked until that work has stopped touching it.
    lock: Lock,
}

/// What a sync did, and what the copy now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Regular files fetched from the client.
    pub files: u64,
    /// Bytes fetched.
    pub bytes: u64,
    /// Entries in the copy.
    pub entries: usize,
    /// The content digest (see [`Copy::digest`]).
    pub digest: String,
}

/// Where an entry lives in the copy's tree: directories and regular files only.
fn in_tree(e: &Entry) -> Option<Kind> {
    match e.kind() {
        Some(k @ (Kind::Dir | Kind::File)) => Some(k),
        _ => None,
    }
}

impl Copy {
    fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// Brings the copy up to `listing`: fetches from `source` the regular files that are new
    /// or whose metadata changed ([`Entry::unchanged_file`]) — every file with `resend_all` —
    /// and deletes what is gone. On error the copy is left marked dirty (see the module doc).
    pub async fn sync(
        &mut self,
        listing: Listing,
        source: &dyn Source,
        resend_all: bool,
    ) -> Result<Synced, SyncError> {
        let mut old: HashMap<String, Recorded> = std::mem::take(&mut self.record)
            .into_iter()
            .map(|r| (r.entry.path.clone(), r))
            .collect();
        // Paths whose state on disk is unknown: never trusted, always redone.
        let mut unknown: BTreeSet<String> = std::mem::take(&mut self.dirty);
        for p in &unknown {
            old.remove(p);
        }
        if resend_all {
            unknown.extend(old.drain().map(|(p, _)| p));
        }
        let new: HashMap<&str, &Entry> = listing
            .entries()
            .iter()
            .map(|e| (e.path.as_str(), e))
            .collect();
        let new_kind = |p: &str| new.get(p).and_then(|e| in_tree(e));

        // Plan.
        let mut remove: Vec<String> = old
            .values()
            .filter(|r| in_tree(&r.entry).is_some_and(|k| new_kind(&r.entry.path) != Some(k)))
            .map(|r| r.entry.path.clone())
            .chain(
                unknown
                    .iter()
                    .filter(|p| new_kind(p) != Some(Kind::Dir))
                    .cloned(),
            )
            .collect();
        remove.sort();
        remove.dedup();
        let mut mkdir = Vec::new();
        let mut fetch: Vec<Entry> = Vec::new();
        for e in listing.entries() {
            let before = old.get(&e.path);
            match e.kind() {
                Some(Kind::Dir) if before.and_then(|r| in_tree(&r.entry)) != Some(Kind::Dir) => {
                    mkdir.push(e.path.clone())
                }
                Some(Kind::File)
                    if !before.is_some_and(|r| {
                        in_tree(&r.entry) == Some(Kind::File)
                            && !r.hash.is_empty()
                            && r.entry.unchanged_file(e)
                    }) =>
                {
                    fetch.push(e.clone())
                }
                _ => {}
            }
        }

        // Mark what is about to change, so that a failure here is not trusted later.
        let touched: BTreeSet<String> = unknown
            .iter()
            .cloned()
            .chain(remove.iter().cloned())
            .chain(mkdir.iter().cloned())
            .chain(fetch.iter().map(|e| e.path.clone()))
            .collect();
        let dirty_path = self.dir.join("dirty.json");
        if !touched.is_empty() {
            write_atomic(
                &dirty_path,
                &serde_json::to_vec(&touched).unwrap_or_default(),
            )?;
        }
        // Until the record is written, the old record is gone and everything touched unknown.
        self.dirty = touched.clone();
        self.record = old
            .values()
            .filter(|r| !touched.contains(&r.entry.path))
            .cloned()
            .collect();

        let tree = self.tree();
        {
            let (tree, remove, mkdir) = (tree.clone(), remove.clone(), mkdir.clone());
            let files: Vec<(String, bool)> = fetch
                .iter()
                .map(|e| (e.path.clone(), e.size == 0))
                .collect();
            blocking(&self.lock, move || prepare(&tree, &remove, &mkdir, &files)).await?;
        }

        let (bytes, mut hashes) = fetch_contents(&self.lock, &tree, &fetch, source).await?;
        let rehash: Vec<String> = fetch
            .iter()
            .filter(|e| !hashes.contains_key(&e.path))
            .map(|e| e.path.clone())
            .collect();
        let rehashed = {
            let tree = tree.clone();
            blocking(&self.lock, move || {
                rehash
                    .into_iter()
                    .map(|p| hash_file(&tree.join(&p)).map(|h| (p, h)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?
        };
        hashes.extend(rehashed);

        let record: Vec<Recorded> = listing
            .entries()
            .iter()
            .map(|e| {
                let hash = match e.kind() {
                    Some(Kind::File) => hashes
                        .remove(&e.path)
                        .or_else(|| old.get(&e.path).map(|r| r.hash.clone()))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                Recorded {
                    entry: e.clone(),
                    hash,
                }
            })
            .collect();
        let raw = serde_json::to_vec(&Record {
            version: RECORD_VERSION,
            entries: record.clone(),
        })
        .map_err(|e| SyncError::Record {
            path: self.dir.join("record.json"),
            reason: e.to_string(),
        })?;
        write_atomic(&self.dir.join("record.json"), &raw)?;
        match std::fs::remove_file(&dirty_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(SyncError::io("remove", &dirty_path, e))
            }
            _ => {}
        }
        self.dirty.clear();
        self.record = record;
        Ok(Synced {
            files: fetch.len() as u64,
            bytes,
            entries: self.record.len(),
            digest: self.digest().unwrap_or_default(),
        })
    }

    /// The content digest of what the copy holds (`sha256:…`): over each entry in path order,
    /// its path, type, permission bits, owner, and a file's content hash, a symlink's target or
    /// a hard link's first name — never times, inodes or devices, so the same content gives the
    /// same digest on any machine. `None` while the copy is dirty (a sync failed).
    pub fn digest(&self) -> Option<String> {
        if !self.dirty.is_empty() {
            return None;
        }
        let mut h = Sha256::new();
        let field = |h: &mut Sha256, s: &[u8]| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s);
        };
        for r in &self.record {
            let e = &r.entry;
            field(&mut h, e.path.as_bytes());
            let (tag, extra) = match e.kind() {
                Some(Kind::Dir) => (b'd', ""),
                Some(Kind::File) => (b'f', r.hash.as_str()),
                Some(Kind::Symlink) => (b'l', e.target.as_str()),
                Some(Kind::HardLink) => (b'h', e.link.as_str()),
                None => (b'?', ""),
            };
            h.update([tag]);
            h.update(e.perm().to_le_bytes());
            h.update(e.uid.to_le_bytes());
            h.update(e.gid.to_le_bytes());
            field(&mut h, extra.as_bytes());
        }
        Some(format!("sha256:{}", hex(&h.finalize())))
    }

    /// Fills `dest` (an empty directory) with the synced tree: directories, files (copied),
    /// symlinks and hard links, with the listing's permission bits, owners and modification
    /// times. Fails if the copy is dirty.
    pub fn materialize(&self, dest: &Path) -> Result<(), SyncError> {
        self.materialize_from(dest, &[], None)
    }

    /// Like [`Copy::materialize`], for a `dest` that is a bind mount of directory `real` on the
    /// copy's filesystem (a new snapshot's layer): files are hard links to the copy's own, not
    /// copies. That is sound because the copy never changes a file in place — a sync replaces
    /// a changed file with a new one, and a file whose metadata changed is fetched again — so
    /// the linked inode keeps, for the snapshot, the content and the metadata set here. A file
    /// that cannot be linked (too many links, another filesystem) is copied.
    pub fn materialize_linked(&self, dest: &Path, real: &Path) -> Result<(), SyncError> {
        self.materialize_from(dest, &[], Some(real))
    }

    /// Makes `dest`, which holds what `base` was written with (a snapshot prepared on it),
    /// hold the synced tree, writing only what differs. Fails if the copy is dirty.
    pub fn materialize_onto(&self, dest: &Path, base: &Written) -> Result<(), SyncError> {
        self.materialize_from(dest, &base.entries, None)
    }

    fn materialize_from(
        &self,
        dest: &Path,
        base: &[Recorded],
        real: Option<&Path>,
    ) -> Result<(), SyncError> {
        if !self.dirty.is_empty() {
            return Err(SyncError::Record {
                path: self.dir.join("dirty.json"),
                reason: "the last sync did not finish; sync again".into(),
            });
        }
        crate::materialize::materialize(
            &self.tree(),
            &placed(&self.record),
            &placed(base),
            (dest, real),
        )
    }

    /// The content digest of every regular file of the synced tree (as hashed when it arrived),
    /// with its size and mtime: a snapshot materialized from the copy holds exactly these, so
    /// a checksum of that snapshot need not read them again.
    pub fn file_digests(&self) -> oxkit_fileop::KnownDigests {
        let mut known = oxkit_fileop::KnownDigests::default();
        for r in &self.record {
            if r.entry.kind() != Some(Kind::File) {
                continue;
            }
            if let Some(sum) = sha256_from_hex(&r.hash) {
                known.insert(r.entry.path.clone(), r.entry.size, r.entry.mtime_ns, sum);
            }
        }
        known
    }

    /// What was last written into a snapshot (see [`Copy::set_written`]), if recorded.
    pub fn written(&self) -> Option<Written> {
        let raw = std::fs::read(self.dir.join("written.json")).ok()?;
        let w: Written = serde_json::from_slice(&raw).ok()?;
        (w.version == RECORD_VERSION).then_some(w)
    }

    /// Records that the synced tree was written into snapshot `name`, `depth` snapshots deep
    /// (1: written whole), for [`Copy::materialize_onto`] next time.
    pub fn set_written(&self, name: &str, depth: u32) -> Result<(), SyncError> {
        let w = Written {
            version: RECORD_VERSION,
            name: name.to_string(),
            depth,
            entries: self.record.clone(),
        };
        let path = self.dir.join("written.json");
        let raw = serde_json::to_vec(&w).map_err(|e| SyncError::Record {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &raw)
    }
}

/// Runs `f` on the blocking pool, holding `lock` until it returns, even if the caller is gone.
async fn blocking<T: Send + 'static>(
    lock: &Lock,
    f: impl FnOnce() -> Result<T, SyncError> + Send + 'static,
) -> Result<T, SyncError> {
    spawn_locked(lock, f).await.map_err(join_error)?
}

/// Starts `f` on the blocking pool now, holding `lock` until it returns.
fn spawn_locked<T: Send + 'static>(
    lock: &Lock,
    f: impl FnOnce() -> Result<T, SyncError> + Send + 'static,
) -> tokio::task::JoinHandle<Result<T, SyncError>> {
    let lock = lock.clone();
    tokio::task::spawn_blocking(move || {
        let _held = lock;
        f()
    })
}

fn join_error(e: tokio::task::JoinError) -> SyncError {
    SyncError::io("run", "a sync task", std::io::Error::other(e))
}

/// Removes `remove` (children first), then, in path order, creates the directories of the
/// sync and clears the way for its files — `(path, empty)` — replacing whatever was at their
/// paths: an empty file is created here, the others as their contents arrive
/// ([`fetch_contents`]).
fn prepare(
    tree: &Path,
    remove: &[String],
    dirs: &[String],
    files: &[(String, bool)],
) -> Result<(), SyncError> {
    for p in remove.iter().rev() {
        remove_any(&tree.join(p))?;
    }
    let mut creates: Vec<(&str, Option<bool>)> = dirs
        .iter()
        .map(|p| (p.as_str(), None))
        .chain(files.iter().map(|(p, empty)| (p.as_str(), Some(*empty))))
        .collect();
    creates.sort();
    for (p, file) in creates {
        let path = tree.join(p);
        let Some(empty) = file else {
            match std::fs::create_dir(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let is_dir = std::fs::symlink_metadata(&path)
                        .map(|m| m.is_dir())
                        .unwrap_or(false);
                    if !is_dir {
                        remove_any(&path)?;
                        std::fs::create_dir(&path)
                            .map_err(|e| SyncError::io("create", &path, e))?;
                    }
                }
                r => r.map_err(|e| SyncError::io("create", &path, e))?,
            }
            continue;
        };
        remove_any(&path)?;
        if empty {
            create_file(&path)?;
        }
    }
    Ok(())
}

/// Opens regular file `path` of the copy's tree for writing, creating it if missing with mode
/// 0600 (a snapshot made from the copy sets the listing's mode); never through a symlink
/// (there is none in the tree, and `O_NOFOLLOW` makes sure).
fn create_file(path: &Path) -> Result<std::fs::File, SyncError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(O_NOFOLLOW)
        .open(path)
        .map_err(|e| SyncError::io("create", path, e))
}

const O_NOFOLLOW: i32 = 0o400000;

/// Removes whatever is at `path` (a directory with its content); absent is fine.
fn remove_any(path: &Path) -> Result<(), SyncError> {
    crate::materialize::remove_any(path).map_err(|e| SyncError::io("remove", path, e))
}

/// Fetches the contents of `files` (already created, empty) into `tree`, many small files to a
/// request and several requests in flight. Returns the bytes fetched and the content hash of
/// each file that came in one piece (others are hashed by reading them back).
async fn fetch_contents(
    lock: &Lock,
    tree: &Path,
    files: &[Entry],
    source: &dyn Source,
) -> Result<(u64, HashMap<String, String>), SyncError> {
    let mut hashes = HashMap::new();
    let mut batches: Vec<Vec<Range>> = Vec::new();
    let mut batch: Vec<Range> = Vec::new();
    let mut batch_bytes = 0;
    for e in files {
        if e.size == 0 {
            hashes.insert(e.path.clone(), hex(&Sha256::digest(b"")));
            continue;
        }
        let mut offset = 0;
        while offset < e.size {
            let len = CHUNK.min(e.size - offset);
            if !batch.is_empty() && (batch_bytes + len > BATCH_BYTES || batch.len() >= BATCH_RANGES)
            {
                batches.push(std::mem::take(&mut batch));
                batch_bytes = 0;
            }
            batch.push(Range {
                path: e.path.clone(),
                offset,
                len,
            });
            batch_bytes += len;
            offset += len;
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    let sizes: HashMap<&str, u64> = files.iter().map(|e| (e.path.as_str(), e.size)).collect();
    let mut reads = futures_util::stream::iter(batches)
        .map(|ranges| async move {
            let data = source.read(ranges.clone()).await;
            (ranges, data)
        })
        .buffer_unordered(IN_FLIGHT);
    // Up to WRITERS batches being written (their threads run whether polled or not) while
    // the next arrive.
    let mut writes = futures_util::stream::FuturesUnordered::new();
    let mut total = 0;
    loop {
        if writes.len() < WRITERS {
            if let Some((ranges, data)) = reads.next().await {
                let data = data.map_err(SyncError::Source)?;
                if data.len() != ranges.len() {
                    return Err(SyncError::Source(
                        format!(
                            "asked for {} ranges, the client sent {}",
                            ranges.len(),
                            data.len()
                        )
                        .into(),
                    ));
                }
                let whole: Vec<bool> = ranges
                    .iter()
                    .map(|r| r.offset == 0 && Some(&r.len) == sizes.get(r.path.as_str()))
                    .collect();
                let tree = tree.to_path_buf();
                writes.push(spawn_locked(lock, move || {
                    write_batch(&tree, ranges, data, whole)
                }));
                continue;
            }
        }
        let Some(batch) = writes.next().await else {
            break;
        };
        let (bytes, batch_hashes) = batch.map_err(join_error)??;
        total += bytes;
        hashes.extend(batch_hashes);
    }
    Ok((total, hashes))
}

/// Writes one batch's ranges into their files (created by the first range that arrives);
/// returns the bytes written and the content hash of each file that came whole.
fn write_batch(
    tree: &Path,
    ranges: Vec<Range>,
    data: Vec<Vec<u8>>,
    whole: Vec<bool>,
) -> Result<(u64, Vec<(String, String)>), SyncError> {
    let mut hashes = Vec::new();
    let mut bytes = 0;
    for ((range, data), whole) in ranges.into_iter().zip(data).zip(whole) {
        if (data.len() as u64) < range.len {
            return Err(SyncError::Changed {
                path: range.path,
                reason: format!(
                    "{} bytes at offset {} where the listing promised {}",
                    data.len(),
                    range.offset,
                    range.len
                ),
            });
        }
        if data.len() as u64 > range.len {
            return Err(SyncError::Source(
                format!("{:?}: more bytes than asked for", range.path).into(),
            ));
        }
        let path = tree.join(&range.path);
        create_file(&path)?
            .write_all_at(&data, range.offset)
            .map_err(|e| SyncError::io("write", &path, e))?;
        bytes += data.len() as u64;
        if whole {
            hashes.push((range.path, hex(&Sha256::digest(&data))));
        }
    }
    Ok((bytes, hashes))
}

/// Entries as [`crate::materialize`] takes them.
fn placed(r: &[Recorded]) -> Vec<(&Entry, &str)> {
    r.iter().map(|r| (&r.entry, r.hash.as_str())).collect()
}

fn hash_file(path: &Path) -> Result<String, SyncError> {
    let mut f = std::fs::File::open(path).map_err(|e| SyncError::io("open", path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| SyncError::io("read", path, e))?;
    Ok(hex(&h.finalize()))
}

/// Writes `data` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SyncError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| SyncError::io("create", &tmp, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_data())
        .map_err(|e| SyncError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| SyncError::io("rename", &tmp, e))
}

/// The 32 bytes of a sha256 written as 64 hex digits; `None` for anything else.
fn sha256_from_hex(hex: &str) -> Option<[u8; 32]> {
    let mut sum = [0u8; 32];
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    for (i, byte) in sum.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(sum)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
