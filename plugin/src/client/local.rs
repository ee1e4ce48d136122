//! The client's local directories (`--local NAME=DIR`): [`LocalDirs`] serves their listings
//! (walked once per request, sent page by page) and the contents of the files a listing sent,
//! nothing else; [`Attachables`] serves them beside the secrets; [`client_id`] is the stable id
//! the daemon keeps its copies under; [`read_dockerignore`] reads a context's exclude patterns.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use oxkit_localsync::{read_range, walk, Entry, Filter, Range};

use super::session::{random_id, Offers, ProvideError, SessionProvider};
use super::{ClientError, Secrets};

/// About this many bytes of entries travel in one listing page.
const PAGE_BYTES: usize = 1 << 20;

/// A `--local NAME=DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDir {
    /// The name builds use (`local://NAME`).
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
    /// Exclude patterns applied before the build's own (the `.dockerignore` of `context`).
    pub exclude: Vec<String>,
}

impl LocalDir {
    /// Parses `NAME=DIR`; the directory must exist. The one named `context` takes the
    /// patterns of its `.dockerignore`, if it has one.
    pub fn parse(spec: &str) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::Local {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (name, dir) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=DIR"))?;
        if name.is_empty() || dir.is_empty() {
            return Err(bad("expected NAME=DIR"));
        }
        let dir = PathBuf::from(dir);
        if !dir.is_dir() {
            return Err(bad(&format!("{} is not a directory", dir.display())));
        }
        let exclude = if name == "context" {
            read_dockerignore(&dir).map_err(|e| bad(&format!("cannot read .dockerignore: {e}")))?
        } else {
            Vec::new()
        };
        Ok(LocalDir {
            name: name.to_string(),
            dir,
            exclude,
        })
    }
}

/// The patterns of `dir/.dockerignore` (none if it has none): one per line, `#` comments and
/// blank lines skipped, order kept (later patterns win, `!` makes exceptions).
pub fn read_dockerignore(dir: &Path) -> std::io::Result<Vec<String>> {
    match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Serves local directories: listings page by page, and reads of the regular files a listing
/// of this session sent (anything else — excluded files, paths outside, through symlinks — is
/// refused).
#[derive(Debug, Default, Clone)]
pub struct LocalDirs {
    inner: Arc<Served>,
}

#[derive(Debug, Default)]
struct Served {
    dirs: HashMap<String, LocalDir>,
    /// Walks being paged through, by id.
    walks: Mutex<HashMap<u64, Arc<Vec<Entry>>>>,
    next_walk: AtomicU64,
    /// Per name, the regular files sent in a listing: the only ones that may be read.
    sent: Mutex<HashMap<String, HashSet<String>>>,
    /// About this many bytes of entries per page.
    page_bytes: usize,
}

impl LocalDirs {
    /// Serves `dirs`.
    pub fn new(dirs: Vec<LocalDir>) -> Self {
        LocalDirs {
            inner: Arc::new(Served {
                dirs: dirs.into_iter().map(|d| (d.name.clone(), d)).collect(),
                page_bytes: PAGE_BYTES,
                ..Default::default()
            }),
        }
    }
}

/// Runs `f` on the blocking pool (the walk and the reads do file I/O).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProvideError> + Send + 'static,
) -> Result<T, ProvideError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProvideError::Failed(format!("the local directory task failed: {e}")))?
}

impl Served {
    fn list(
        &self,
        name: &str,
        filter: &Filter,
        cursor: &str,
    ) -> Result<(Vec<Entry>, String), ProvideError> {
        let dir = self.dirs.get(name).ok_or(ProvideError::NotFound)?;
        let (walk_id, offset, entries) = if cursor.is_empty() {
            let mut filter = filter.clone();
            filter.exclude.splice(0..0, dir.exclude.iter().cloned());
            let entries = walk(&dir.dir, &filter)
                .map_err(|e| ProvideError::Failed(format!("{name}: {e}")))?;
            let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
            sent.entry(name.to_string()).or_default().extend(
                entries
                    .iter()
                    .filter(|e| e.mode & 0o170000 == Entry::FILE)
                    .map(|e| e.path.clone()),
            );
            let id = self.next_walk.fetch_add(1, Ordering::Relaxed);
            (id, 0, Arc::new(entries))
        } else {
            let bad = || ProvideError::Failed(format!("bad listing cursor {cursor:?}"));
            let (id, offset) = cursor.split_once(':').ok_or_else(bad)?;
            let id: u64 = id.parse().map_err(|_| bad())?;
            let offset: usize = offset.parse().map_err(|_| bad())?;
            let entries = self
                .walks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned()
                .ok_or_else(bad)?;
            (id, offset, entries)
        };
        let mut end = offset;
        let mut bytes = 0;
        while end < entries.len() && (end == offset || bytes < self.page_bytes) {
            let e = &entries[end];
            bytes += e.path.len() + e.target.len() + e.link.len() + 64;
            end += 1;
        }
        let page = entries.get(offset..end).unwrap_or_default().to_vec();
        let mut walks = self.walks.lock().unwrap_or_else(|e| e.into_inner());
        let next = if end < entries.len() {
            walks.insert(walk_id, entries);
            format!("{walk_id}:{end}")
        } else {
            walks.remove(&walk_id);
            String::new()
        };
        Ok((page, next))
    }

    fn read(&self, name: &str, ranges: &[Range]) -> Result<Vec<Vec<u8>>, ProvideError> {
        let dir = self.dirs.get(name).ok_or(ProvideError::NotFound)?;
        let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let allowed = sent.get(name);
        // Each range is at most a chunk; a request asks for a few MiB in all.
        ranges
            .iter()
            .map(|r| {
                if !allowed.is_some_and(|a| a.contains(&r.path)) {
                    return Err(ProvideError::Failed(format!(
                        "{name}: {:?} was not sent in a listing; refusing to read it",
                        r.path
                    )));
                }
                read_range(
                    &dir.dir,
                    &r.path,
                    r.offset,
                    r.len.min(oxkit_localsync::CHUNK),
                )
                .map_err(|e| ProvideError::Failed(format!("{name}: {:?}: {e}", r.path)))
            })
            .collect()
    }
}

#[tonic::async_trait]
impl SessionProvider for LocalDirs {
    fn offers(&self) -> Offers {
        let mut local_dirs: Vec<String> = self.inner.dirs.keys().cloned().collect();
        local_dirs.sort();
        // The daemon keeps a copy per directory, not only per name: a name used for another
        // directory keeps the first one's copy for the next build of it.
        let local_dir_keys = self
            .inner
            .dirs
            .iter()
            .map(|(name, d)| (name.clone(), dir_key(&d.dir)))
            .collect();
        Offers {
            local_dirs,
            local_dir_keys,
            ..Default::default()
        }
    }

    async fn list_local(
        &self,
        name: &str,
        filter: &Filter,
        cursor: &str,
    ) -> Result<(Vec<Entry>, String), ProvideError> {
        let (inner, name, filter, cursor) = (
            self.inner.clone(),
            name.to_string(),
            filter.clone(),
            cursor.to_string(),
        );
        blocking(move || inner.list(&name, &filter, &cursor)).await
    }

    async fn read_local(&self, name: &str, ranges: &[Range]) -> Result<Vec<Vec<u8>>, ProvideError> {
        let (inner, name, ranges) = (self.inner.clone(), name.to_string(), ranges.to_vec());
        blocking(move || inner.read(&name, &ranges)).await
    }
}

/// What `oxctl build` serves: its secrets, local directories and registry credentials, under its
/// client id.
#[derive(Debug)]
pub struct Attachables {
    /// `--secret`s.
    pub secrets: Secrets,
    /// `--local`s.
    pub locals: LocalDirs,
    /// See [`client_id`].
    pub client_id: String,
    /// Registry credentials (Docker's config file).
    pub registry_auths: super::RegistryAuths,
}

#[tonic::async_trait]
impl SessionProvider for Attachables {
    fn offers(&self) -> Offers {
        Offers {
            client_id: self.client_id.clone(),
            local_dirs: self.locals.offers().local_dirs,
            local_dir_keys: self.locals.offers().local_dir_keys,
            secrets: self.secrets.offers().secrets,
        }
    }

    async fn get_secret(&self, id: &str) -> Result<Vec<u8>, ProvideError> {
        self.secrets.get_secret(id).await
    }

    async fn list_local(
        &self,
        name: &str,
        filter: &Filter,
        cursor: &str,
    ) -> Result<(Vec<Entry>, String), ProvideError> {
        self.locals.list_local(name, filter, cursor).await
    }

    async fn read_local(&self, name: &str, ranges: &[Range]) -> Result<Vec<Vec<u8>>, ProvideError> {
        self.locals.read_local(name, ranges).await
    }

    async fn registry_auth(&self, host: &str) -> Result<(String, String), ProvideError> {
        // One small file, read only when a build pulls or pushes.
        self.registry_auths.get(host)
    }
}

/// The `(NAME, sha256:…)` of a local source's progress line (`local://NAME: … context
/// sha256:…`, as the daemon's local source logs it), if `log` is one.
pub fn context_digest(log: &[u8]) -> Option<(String, String)> {
    let line = std::str::from_utf8(log).ok()?.trim_end();
    let rest = line.strip_prefix("local://")?;
    let (name, rest) = rest.split_once(": ")?;
    let (_, digest) = rest.rsplit_once("; context ")?;
    digest
        .starts_with("sha256:")
        .then(|| (name.to_string(), digest.to_string()))
}

/// This client's stable id: a random id kept in `$XDG_STATE_HOME/oxkit/client-id` (or
/// `~/.local/state/oxkit/client-id`), made on first use. The daemon keeps its copies of local
/// directories per client id, so a client whose id cannot be kept gets a fresh one (and sends
/// everything again).
pub fn client_id() -> String {
    let dir = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .map(|d| d.join("oxkit"));
    let fresh = || random_id().unwrap_or_else(|_| format!("pid-{}", std::process::id()));
    let Some(dir) = dir else { return fresh() };
    let file = dir.join("client-id");
    if let Ok(id) = std::fs::read_to_string(&file) {
        let id = id.trim();
        if !id.is_empty() {
            return id.to_string();
        }
    }
    let id = fresh();
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, &id)) {
        tracing::warn!(file = %file.display(), error = %e, "cannot keep the client id; local directories will be sent in full");
    }
    id
}

/// The key of directory `dir` the daemon keeps its copy under (beside the client id and the
/// name): a hash of its canonical path, so the path itself is not sent.
fn dir_key(dir: &Path) -> String {
    use sha2::Digest as _;
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let hash = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(dir: &Path, page_bytes: usize) -> LocalDirs {
        let context = LocalDir::parse(&format!("context={}", dir.display())).unwrap();
        let served = LocalDirs::new(vec![context]);
        let mut inner = Arc::try_unwrap(served.inner).unwrap();
        inner.page_bytes = page_bytes;
        LocalDirs {
            inner: Arc::new(inner),
        }
    }

    #[tokio::test]
    async fn listings_come_in_pages_through_the_dockerignore() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..30 {
            std::fs::write(dir.path().join(format!("f{i:02}")), "x").unwrap();
        }
        std::fs::write(dir.path().join("skip.log"), "no").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "# logs\n*.log\n\n").unwrap();
        let dirs = served(dir.path(), 200);
        let filter = Filter::default();
        let (mut all, mut cursor) = dirs.list_local("context", &filter, "").await.unwrap();
        let mut pages = 1;
        while !cursor.is_empty() {
            let (page, next) = dirs.list_local("context", &filter, &cursor).await.unwrap();
            all.extend(page);
            cursor = next;
            pages += 1;
        }
        assert!(pages > 3, "{pages} pages");
        let names: Vec<_> = all.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names.len(), 31, "{names:?}");
        assert_eq!(names[0], ".dockerignore");
        assert!(!names.contains(&"skip.log"));
        assert!(dirs.list_local("context", &filter, "9:0").await.is_err());
        assert_eq!(
            dirs.list_local("other", &filter, "").await.unwrap_err(),
            ProvideError::NotFound
        );
    }

    #[tokio::test]
    async fn only_files_a_listing_sent_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::fs::write(dir.path().join("a"), "hello").unwrap();
        std::fs::write(dir.path().join("skip.log"), "no").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "*.log").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        let dirs = served(dir.path(), PAGE_BYTES);
        let range = |p: &str| Range {
            path: p.into(),
            offset: 1,
            len: 3,
        };
        // Nothing listed yet.
        assert!(dirs.read_local("context", &[range("a")]).await.is_err());
        dirs.list_local("context", &Filter::default(), "")
            .await
            .unwrap();
        assert_eq!(
            dirs.read_local("context", &[range("a")]).await.unwrap(),
            [b"ell".to_vec()]
        );
        for p in ["skip.log", "../x", "/etc/passwd", "out/secret", "out"] {
            let err = dirs.read_local("context", &[range(p)]).await.unwrap_err();
            assert!(err.to_string().contains("refusing"), "{p}: {err}");
        }
    }

    #[test]
    fn context_digests_are_read_from_the_progress_line() {
        assert_eq!(
            context_digest(b"local://context: 1 file sent (5 bytes) of 3 entries in 0.01s; context sha256:ab\n"),
            Some(("context".into(), "sha256:ab".into()))
        );
        assert_eq!(context_digest(b"hello"), None);
    }
}
