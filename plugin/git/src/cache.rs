//! [`GitCache`]: the shared bare repositories, one per remote, and the three steps of a git
//! source: resolve a ref to a commit (`ls-remote`), fetch that commit if the repository does not
//! have it (depth 1, only the ref that names it), check it out.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use git2::{
    AutotagOption, Cred, CredentialType, Direction, ErrorClass, ErrorCode, FetchOptions,
    RemoteCallbacks, Repository,
};

use crate::checkout::{self, CheckoutOptions};
use crate::error::GitError;
use crate::url;

/// Credentials for a remote. Never printed: its `Debug` says only which kind it holds.
#[derive(Clone, Default)]
pub struct Auth {
    userpass: Option<(String, String)>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.userpass.is_some() {
            "Auth(basic, redacted)"
        } else {
            "Auth(none)"
        })
    }
}

impl Auth {
    /// No credentials (those in the URL, if any, are still used).
    pub fn none() -> Self {
        Auth::default()
    }

    /// An HTTP token, as BuildKit's `GIT_AUTH_TOKEN`: basic auth as `x-access-token:<token>`.
    pub fn token(token: &str) -> Self {
        Auth {
            userpass: Some(("x-access-token".into(), token.trim().to_string())),
        }
    }

    /// A whole `Authorization` header value, as BuildKit's `GIT_AUTH_HEADER`. libgit2 answers
    /// auth challenges with user and password only, so only `basic <base64 user:password>` is
    /// supported; anything else is an error that says so (`url` only names the remote in it).
    pub fn header(header: &str, url: &str) -> Result<Self, GitError> {
        let bad = |problem: &str| GitError::BadAuth {
            url: url::redact(url),
            problem: problem.to_string(),
        };
        let header = header.trim();
        let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(bad(
                "only a \"basic\" Authorization header is supported for git remotes",
            ));
        }
        let decoded = base64_decode(value.trim())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                bad("the basic Authorization header is not valid base64 of user:password")
            })?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            bad("the basic Authorization header has no ':' between user and password")
        })?;
        Ok(Auth {
            userpass: Some((user.to_string(), password.to_string())),
        })
    }
}

/// Standard base64 (with or without padding); `None` if not valid.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A remote: its URL (which may carry credentials; they never leave this crate except to
/// libgit2) and the credentials to answer its challenges with.
#[derive(Clone)]
pub struct Remote {
    url: String,
    auth: Auth,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &url::redact(&self.url))
            .field("auth", &self.auth)
            .finish()
    }
}

impl Remote {
    /// The remote at `url` (`https://`, `http://`, `git://`, `ssh://`, `user@host:path`,
    /// `file://` or a path) with `auth`.
    pub fn new(url: impl Into<String>, auth: Auth) -> Self {
        Remote {
            url: url.into(),
            auth,
        }
    }

    /// The URL without credentials.
    pub fn redacted(&self) -> String {
        url::redact(&self.url)
    }
}

/// A ref resolved on the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The commit, 40 hex digits.
    pub commit: String,
    /// The full ref that names it on the remote (`refs/heads/main`, `refs/tags/v1`, `HEAD`);
    /// `None` when a commit hash was given (nothing was asked of the remote).
    pub refname: Option<String>,
}

/// How a fetch went so far (libgit2's transfer progress).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchProgress {
    /// Objects the remote is sending.
    pub total_objects: usize,
    /// Objects received so far.
    pub received_objects: usize,
    /// Objects indexed so far.
    pub indexed_objects: usize,
    /// Bytes received so far.
    pub received_bytes: usize,
}

/// What [`GitCache::fetch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The commit was in the repository already; nothing was asked of the remote.
    Present,
    /// The commit was fetched; the final progress.
    Fetched(FetchProgress),
}

/// Settings of a [`GitCache`].
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// How long to wait for a connection to the remote.
    pub connect_timeout: Duration,
    /// How long to wait for any read or write on the connection (a remote that stalls longer
    /// fails the operation).
    pub io_timeout: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(120),
        }
    }
}

/// Called with the transfer progress while a fetch runs (from a blocking thread).
pub type ProgressFn = Arc<dyn Fn(&FetchProgress) + Send + Sync>;

/// The shared bare repositories of the git sources, one per remote at
/// `<root>/<sha256 of the URL without credentials>.git`. Cheap to share (`Arc`); concurrent
/// operations on one remote are serialised by an in-process lock and a file lock beside the
/// repository (`<name>.lock`), so two daemons on one root do not corrupt it either.
pub struct GitCache {
    root: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for GitCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCache")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Sets libgit2's socket timeouts, which are process-wide: the first cache made sets them.
fn set_timeouts(options: &CacheOptions) {
    static ONCE: Once = Once::new();
    let millis = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1);
    let (connect, io) = (millis(options.connect_timeout), millis(options.io_timeout));
    ONCE.call_once(|| {
        // SAFETY: these only store an int in libgit2's global settings; `call_once` runs them
        // once, before this crate starts any libgit2 operation.
        #[allow(unsafe_code)]
        unsafe {
            if let Err(e) = git2::opts::set_server_connect_timeout_in_milliseconds(connect) {
                tracing::warn!(error = %e, "could not set libgit2's connect timeout");
            }
            if let Err(e) = git2::opts::set_server_timeout_in_milliseconds(io) {
                tracing::warn!(error = %e, "could not set libgit2's I/O timeout");
            }
        }
    });
}

/// Sets its flag when dropped: a blocking libgit2 operation whose caller went away stops at its
/// next progress callback.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl GitCache {
    /// A cache under `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>, options: CacheOptions) -> Result<Self, GitError> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| GitError::io("create the git cache directory", &root, e))?;
        set_timeouts(&options);
        Ok(GitCache {
            root,
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// The bare repository of `remote` (it may not exist yet).
    pub fn repo_dir(&self, remote: &Remote) -> PathBuf {
        self.root
            .join(format!("{}.git", url::cache_name(&remote.url)))
    }

    /// Resolves `git_ref` (a branch, a tag — peeled to its commit —, a full ref, or `None` for
    /// the remote's default branch) to a commit by listing the remote's refs. A full 40-digit
    /// commit hash is returned as is, without asking the remote.
    pub async fn resolve(
        &self,
        remote: &Remote,
        git_ref: Option<&str>,
    ) -> Result<Resolved, GitError> {
        if let Some(commit) = git_ref.filter(|r| is_commit_hash(r)) {
            return Ok(Resolved {
                commit: commit.to_ascii_lowercase(),
                refname: None,
            });
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let remote = remote.clone();
        let git_ref = git_ref.map(str::to_string);
        blocking(move || {
            let heads = ls_remote(&remote, &cancel)?;
            pick_ref(&heads, git_ref.as_deref()).ok_or_else(|| GitError::RefNotFound {
                url: remote.redacted(),
                git_ref: git_ref.unwrap_or_else(|| "HEAD".into()),
            })
        })
        .await
    }

    /// Makes sure `resolved.commit` is in the remote's bare repository: does nothing if it is;
    /// otherwise fetches, at depth 1, the ref that resolved to it (or the commit itself when it
    /// was given by hash, falling back to all branches and tags if the server will not serve a
    /// commit by hash). Holds the remote's lock meanwhile: concurrent callers for one remote
    /// fetch once. A repository that cannot be opened (a daemon killed mid-fetch) is made anew.
    pub async fn fetch(
        &self,
        remote: &Remote,
        resolved: &Resolved,
        progress: ProgressFn,
    ) -> Result<Fetched, GitError> {
        let dir = self.repo_dir(remote);
        let lock = self.lock_for(&dir);
        let _held = lock.lock().await;
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let (remote, resolved) = (remote.clone(), resolved.clone());
        blocking(move || {
            let _file_lock = FileLock::acquire(&dir.with_extension("lock"))?;
            let repo = open_or_init(&dir)?;
            fetch_into(&repo, &dir, &remote, &resolved, &progress, &cancel)
        })
        .await
    }

    /// Writes the tree of `commit` (or of its `subdir`) into `target` (an existing, empty
    /// directory), with git's file modes and symlinks; see [`CheckoutOptions`]. The commit must
    /// have been fetched ([`GitCache::fetch`]). Submodules, when asked for, are fetched (with
    /// `progress`) and checked out recursively; they get the remote's credentials only when on
    /// the same host.
    pub async fn checkout(
        &self,
        remote: &Remote,
        resolved: &Resolved,
        options: &CheckoutOptions,
        target: &Path,
        progress: ProgressFn,
    ) -> Result<(), GitError> {
        self.checkout_into(remote, resolved, options, target, &progress, 0)
            .await
    }

    fn checkout_into<'a>(
        &'a self,
        remote: &'a Remote,
        resolved: &'a Resolved,
        options: &'a CheckoutOptions,
        target: &'a Path,
        progress: &'a ProgressFn,
        depth: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), GitError>> + Send + 'a>>
    {
        Box::pin(async move {
            let dir = self.repo_dir(remote);
            let (redacted, owned_resolved, owned_options, owned_target) = (
                remote.redacted(),
                resolved.clone(),
                options.clone(),
                target.to_path_buf(),
            );
            let submodules = blocking(move || {
                let repo = Repository::open_bare(&dir)
                    .map_err(|e| GitError::repo("open the cache repository", &dir, e))?;
                checkout::checkout(
                    &repo,
                    &owned_resolved,
                    &redacted,
                    &owned_options,
                    &owned_target,
                )
            })
            .await?;
            if !submodules.is_empty() && depth >= MAX_SUBMODULE_DEPTH {
                return Err(GitError::BadEntry {
                    commit: resolved.commit.clone(),
                    path: submodules[0].path.clone(),
                    problem: format!("submodules nest more than {MAX_SUBMODULE_DEPTH} deep"),
                });
            }
            let nested = CheckoutOptions {
                subdir: None,
                keep_git_dir: false,
                submodules: true,
            };
            for sub in submodules {
                let url = url::join_relative(&remote.url, &sub.url);
                let auth = if url::host(&url) == url::host(&remote.url) {
                    remote.auth.clone()
                } else {
                    Auth::none()
                };
                let sub_remote = Remote::new(url, auth);
                let sub_resolved = Resolved {
                    commit: sub.commit.clone(),
                    refname: None,
                };
                tracing::debug!(path = sub.path, remote = %sub_remote.redacted(), commit = sub.commit, "submodule");
                self.fetch(&sub_remote, &sub_resolved, progress.clone())
                    .await?;
                self.checkout_into(
                    &sub_remote,
                    &sub_resolved,
                    &nested,
                    &target.join(&sub.path),
                    progress,
                    depth + 1,
                )
                .await?;
            }
            Ok(())
        })
    }

    fn lock_for(&self, dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks
            .entry(dir.to_string_lossy().into_owned())
            .or_default()
            .clone()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, GitError> + Send + 'static,
) -> Result<T, GitError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// How deep submodules may nest (a cycle of submodules would otherwise never end).
const MAX_SUBMODULE_DEPTH: usize = 8;

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A remote's advertised ref: name, object, and for a symbolic ref its target.
#[derive(Debug, Clone)]
struct Head {
    name: String,
    oid: String,
    symref: Option<String>,
}

/// The callbacks every connection uses: credentials, and cancellation through the progress.
fn callbacks<'a>(
    remote: &'a Remote,
    cancel: &'a AtomicBool,
    progress: Option<&'a ProgressFn>,
    last: Option<&'a Mutex<FetchProgress>>,
) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let mut tried = false;
    cb.credentials(move |_url, username, allowed| {
        // libgit2 asks again after a refusal: answer once, then let it fail as an auth error.
        if tried {
            return Err(git2::Error::new(
                ErrorCode::Auth,
                ErrorClass::Http,
                "the remote refused the credentials",
            ));
        }
        tried = true;
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if let Some((user, password)) = &remote.auth.userpass {
                return Cred::userpass_plaintext(user, password);
            }
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            return Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(username.unwrap_or("git"));
        }
        Err(git2::Error::new(
            ErrorCode::Auth,
            ErrorClass::Http,
            "the remote asks for credentials and the build has none for it",
        ))
    });
    cb.transfer_progress(move |p| {
        let now = FetchProgress {
            total_objects: p.total_objects(),
            received_objects: p.received_objects(),
            indexed_objects: p.indexed_objects(),
            received_bytes: p.received_bytes(),
        };
        if let Some(last) = last {
            *last.lock().unwrap_or_else(|e| e.into_inner()) = now;
        }
        if let Some(progress) = progress {
            progress(&now);
        }
        !cancel.load(Ordering::Relaxed)
    });
    cb.sideband_progress(move |_| !cancel.load(Ordering::Relaxed));
    cb
}

/// The error of a failed connection or fetch: auth failures apart, the message scrubbed of
/// the URL as written (which may carry credentials).
fn network_error(
    remote: &Remote,
    cancel: &AtomicBool,
    e: git2::Error,
    other: impl FnOnce(String) -> GitError,
) -> GitError {
    let url = remote.redacted();
    if cancel.load(Ordering::Relaxed) {
        return GitError::Cancelled { url };
    }
    let message = e.message().replace(&remote.url, &url);
    if e.code() == ErrorCode::Auth {
        GitError::Auth { url, message }
    } else {
        other(message)
    }
}

fn ls_remote(remote: &Remote, cancel: &AtomicBool) -> Result<Vec<Head>, GitError> {
    let url = remote.redacted();
    let mut detached =
        git2::Remote::create_detached(remote.url.as_str()).map_err(|e| GitError::InvalidUrl {
            url: url.clone(),
            problem: e.message().to_string(),
        })?;
    let connect_error = |e| {
        network_error(remote, cancel, e, |message| GitError::Connect {
            url: url.clone(),
            message,
        })
    };
    let connection = detached
        .connect_auth(
            Direction::Fetch,
            Some(callbacks(remote, cancel, None, None)),
            None,
        )
        .map_err(connect_error)?;
    let heads = connection
        .list()
        .map_err(connect_error)?
        .iter()
        .map(|h| Head {
            name: h.name().to_string(),
            oid: h.oid().to_string(),
            symref: h.symref_target().map(str::to_string),
        })
        .collect::<Vec<_>>();
    let default = connection.default_branch().ok();
    let default = default
        .as_ref()
        .and_then(|b| b.as_str().ok())
        .map(str::to_string);
    Ok(heads
        .into_iter()
        .map(|mut h| {
            if h.name == "HEAD" && h.symref.is_none() {
                h.symref = default.clone();
            }
            h
        })
        .collect())
}

/// Picks `git_ref` among the remote's refs as git does: a full ref (`refs/…`, `HEAD`) as is,
/// else `refs/tags/R` before `refs/heads/R`; a tag is peeled to its commit (`R^{}`).
fn pick_ref(heads: &[Head], git_ref: Option<&str>) -> Option<Resolved> {
    let find = |name: &str| heads.iter().find(|h| h.name == name);
    let Some(r) = git_ref else {
        let head = find("HEAD")?;
        return Some(Resolved {
            commit: head.oid.clone(),
            refname: Some(head.symref.clone().unwrap_or_else(|| "HEAD".into())),
        });
    };
    let candidates = if r.starts_with("refs/") || r == "HEAD" {
        vec![r.to_string()]
    } else {
        vec![
            format!("refs/tags/{r}"),
            format!("refs/heads/{r}"),
            format!("refs/{r}"),
        ]
    };
    candidates.into_iter().find_map(|name| {
        let head = find(&name)?;
        let peeled = find(&format!("{name}^{{}}")).unwrap_or(head);
        Some(Resolved {
            commit: peeled.oid.clone(),
            refname: Some(name),
        })
    })
}

/// An exclusive `flock` on a file beside a repository, held until dropped (the kernel drops it
/// if the process dies).
struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    fn acquire(path: &Path) -> Result<Self, GitError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| GitError::io("open the lock file", path, e))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| GitError::io("lock", path, e.into()))?;
        Ok(FileLock(file))
    }
}

/// Opens the bare repository at `dir`, or makes it anew when it is missing or cannot be opened.
/// The caller holds its lock, so every `*.lock` file inside is left by a process that died
/// mid-operation: they are removed first, with libgit2's unfinished pack files.
fn open_or_init(dir: &Path) -> Result<Repository, GitError> {
    if dir.exists() {
        remove_stale(dir);
        match Repository::open_bare(dir) {
            Ok(repo) => return Ok(repo),
            Err(e) => {
                tracing::warn!(repo = %dir.display(), error = %e, "the git cache repository cannot be opened; making it anew");
                std::fs::remove_dir_all(dir)
                    .map_err(|e| GitError::io("remove the broken cache repository", dir, e))?;
            }
        }
    }
    Repository::init_bare(dir).map_err(|e| GitError::repo("create the cache repository", dir, e))
}

fn remove_stale(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(_) if name.ends_with(".lock") || name.starts_with("pack_git2_") => {
                    tracing::info!(path = %path.display(), "removing what an interrupted git operation left");
                    let _ = std::fs::remove_file(&path);
                }
                _ => {}
            }
        }
    }
}

/// Whether the repository has the commit and its tree.
fn has_commit(repo: &Repository, commit: &str) -> bool {
    git2::Oid::from_str(commit)
        .and_then(|oid| repo.find_commit(oid))
        .and_then(|c| c.tree())
        .is_ok()
}

const FETCH_REF: &str = "refs/oxkit/fetch";

/// The ref that keeps a fetched commit (and makes it a "have" in later negotiations).
fn keep_ref(commit: &str) -> String {
    format!("refs/oxkit/commits/{commit}")
}

fn fetch_into(
    repo: &Repository,
    dir: &Path,
    remote: &Remote,
    resolved: &Resolved,
    progress: &ProgressFn,
    cancel: &AtomicBool,
) -> Result<Fetched, GitError> {
    let commit = resolved.commit.as_str();
    if has_commit(repo, commit) {
        return Ok(Fetched::Present);
    }
    let url = remote.redacted();
    // libgit2's local transport cannot fetch shallowly; a local fetch is cheap anyway.
    let depth = if url::is_local(&remote.url) { 0 } else { 1 };
    let last = Mutex::new(FetchProgress::default());
    let fetch = |refspecs: &[String], depth: i32, what: &str| -> Result<(), GitError> {
        let mut r = repo
            .remote_anonymous(&remote.url)
            .map_err(|e| GitError::InvalidUrl {
                url: url.clone(),
                problem: e.message().to_string(),
            })?;
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(callbacks(remote, cancel, Some(progress), Some(&last)))
            .download_tags(AutotagOption::None)
            .update_fetchhead(false)
            .depth(depth);
        tracing::debug!(remote = %url, what, depth, "git fetch");
        r.fetch(refspecs, Some(&mut options), None).map_err(|e| {
            network_error(remote, cancel, e, |message| GitError::Fetch {
                url: url.clone(),
                what: what.to_string(),
                message,
            })
        })
    };
    let what = resolved
        .refname
        .clone()
        .unwrap_or_else(|| commit.to_string());
    let first = fetch(&[format!("+{what}:{FETCH_REF}")], depth, &what);
    match (first, &resolved.refname) {
        (Ok(()), _) => {}
        (Err(e), Some(_)) => return Err(e),
        // A commit by hash: a server that does not allow it in a `want` may still have it on a
        // branch or tag.
        (Err(e), None) => {
            if matches!(e, GitError::Cancelled { .. } | GitError::Auth { .. }) {
                return Err(e);
            }
            tracing::info!(remote = %url, commit, error = %e, "fetch by commit failed; fetching all branches and tags");
            fetch(
                &[
                    "+refs/heads/*:refs/oxkit/all/heads/*".into(),
                    "+refs/tags/*:refs/oxkit/all/tags/*".into(),
                ],
                0,
                "all branches and tags",
            )?;
        }
    }
    if let Ok(mut r) = repo.find_reference(FETCH_REF) {
        let _ = r.delete();
    }
    if !has_commit(repo, commit) {
        return Err(GitError::CommitMissing {
            url,
            what,
            commit: commit.to_string(),
        });
    }
    let oid = git2::Oid::from_str(commit).expect("has_commit parsed it");
    repo.reference(&keep_ref(commit), oid, true, "oxkit fetch")
        .map_err(|e| GitError::repo("keep the fetched commit", dir, e))?;
    let last = *last.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Fetched::Fetched(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(name: &str, oid: &str) -> Head {
        Head {
            name: name.into(),
            oid: oid.into(),
            symref: None,
        }
    }

    #[test]
    fn refs_resolve_as_git_picks_them() {
        let mut h = head("HEAD", "1");
        h.symref = Some("refs/heads/main".into());
        let heads = vec![
            h,
            head("refs/heads/main", "1"),
            head("refs/heads/v1", "2"),
            head("refs/tags/v1", "3"),
            head("refs/tags/v1^{}", "4"),
            head("refs/tags/light", "5"),
            head("refs/pull/7/head", "6"),
        ];
        let pick = |r: Option<&str>| pick_ref(&heads, r).map(|r| (r.commit, r.refname.unwrap()));
        let s = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(pick(None), s("1", "refs/heads/main"));
        assert_eq!(pick(Some("main")), s("1", "refs/heads/main"));
        assert_eq!(pick(Some("v1")), s("4", "refs/tags/v1"));
        assert_eq!(pick(Some("refs/heads/v1")), s("2", "refs/heads/v1"));
        assert_eq!(pick(Some("light")), s("5", "refs/tags/light"));
        assert_eq!(pick(Some("pull/7/head")), s("6", "refs/pull/7/head"));
        assert_eq!(pick(Some("nope")), None);
    }

    #[test]
    fn auth_headers_and_tokens() {
        let a = Auth::header("Basic dXNlcjpwYXNz", "https://h/r").unwrap();
        assert_eq!(a.userpass, Some(("user".into(), "pass".into())));
        assert_eq!(format!("{a:?}"), "Auth(basic, redacted)");
        let t = Auth::token("tok\n");
        assert_eq!(t.userpass, Some(("x-access-token".into(), "tok".into())));
        assert_eq!(Auth::none().userpass, None);
        for (bad, needle) in [
            ("Bearer abc", "only a \"basic\""),
            ("basic !!", "not valid base64"),
            ("basic dXNlcg==", "no ':'"),
        ] {
            let e = Auth::header(bad, "https://u:secret@h/r")
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && !e.contains("secret"), "{e}");
        }
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
    }
}
