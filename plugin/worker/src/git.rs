//! The git source (`git://HOST/PATH#REF:SUBDIR`, BuildKit's identifiers and attributes): while
//! its cache key is computed it resolves the ref to a commit on the remote; on a miss it fetches
//! that commit into the worker's shared bare repository of the remote (`oxkit-git`) and checks
//! it out into a new snapshot. Keyed by the commit, never by the URL, the ref's name or
//! credentials: a moved branch rebuilds what depends on it, two refs of one commit share it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxkit_git::{Auth, CheckoutOptions, FetchProgress, Fetched, Remote, Resolved};
use oxkit_llb::source::GitSource;
use oxkit_solver::{CacheMap, Op, OpContext, OpError, OutputRef, Stream};

use crate::error::WorkerError;
use crate::held::Held;
use crate::secret;
use crate::session::sessions;
use crate::worker::{SnapshotRef, Worker};

/// The git source op: one output, a snapshot holding the checkout.
pub struct GitSourceOp {
    worker: Worker,
    source: GitSource,
    /// What the last [`Op::cache_map`] resolved the ref to: what [`Op::exec`] then builds.
    resolved: Mutex<Option<Resolved>>,
}

impl GitSourceOp {
    /// The source `source` on `worker`. Options oxkit does not support yet (an ssh agent
    /// socket, known ssh hosts) fail here, before any work.
    pub fn new(worker: Worker, source: GitSource) -> Result<Self, WorkerError> {
        let unsupported = |what: &str| {
            Err(WorkerError::Unsupported {
                what: format!(
                    "{what} for git source {}",
                    oxkit_git::redact(&source.remote)
                ),
            })
        };
        if source.mount_ssh_sock.is_some() {
            return unsupported("forwarding the client's ssh agent (git.mountsshsock)");
        }
        if source.known_ssh_hosts.is_some() {
            return unsupported("known ssh hosts (git.knownsshhosts)");
        }
        Ok(GitSourceOp {
            worker,
            source,
            resolved: Mutex::new(None),
        })
    }

    /// The remote with the credentials the build's client gives for its host: BuildKit's
    /// `git.authheadersecret` / `git.authtokensecret`, looked up as `<secret>.<host>` first,
    /// then `<secret>`. A secret the client does not have means no credentials, as in BuildKit.
    async fn remote(&self, ctx: &OpContext) -> Result<Remote, WorkerError> {
        let url = &self.source.remote;
        let sessions = sessions(ctx);
        let host = oxkit_git::host(url);
        let wanted = [
            (self.source.auth_header_secret.as_ref(), true),
            (self.source.auth_token_secret.as_ref(), false),
        ];
        for (name, is_header) in wanted {
            let Some(name) = name else { continue };
            let ids = host
                .iter()
                .map(|h| format!("{name}.{h}"))
                .chain([name.clone()]);
            for id in ids {
                let Some(value) = secret::fetch(&sessions, &id).await? else {
                    continue;
                };
                let value = String::from_utf8(value).map_err(|_| WorkerError::SecretNotText {
                    id: id.clone(),
                    name: "a git credential".into(),
                })?;
                let auth = if is_header {
                    Auth::header(&value, url)?
                } else {
                    Auth::token(&value)
                };
                return Ok(Remote::new(url.clone(), auth));
            }
        }
        Ok(Remote::new(url.clone(), Auth::none()))
    }

    async fn resolve(&self, remote: &Remote) -> Result<Resolved, WorkerError> {
        let resolved = self
            .worker
            .git()
            .resolve(remote, self.source.git_ref.as_deref())
            .await?;
        if let Some(want) = &self.source.checksum {
            if !resolved.commit.starts_with(&want.to_ascii_lowercase()) {
                return Err(WorkerError::GitChecksum {
                    remote: remote.redacted(),
                    git_ref: self.source.git_ref.clone().unwrap_or_else(|| "HEAD".into()),
                    expected: want.clone(),
                    actual: resolved.commit,
                });
            }
        }
        Ok(resolved)
    }

    fn checkout_options(&self) -> CheckoutOptions {
        CheckoutOptions {
            subdir: self.source.subdir.clone(),
            keep_git_dir: self.source.keep_git_dir,
            submodules: !self.source.skip_submodules,
        }
    }

    async fn build(
        &self,
        ctx: &OpContext,
        remote: &Remote,
        resolved: &Resolved,
        held: &mut Held,
    ) -> Result<String, WorkerError> {
        let git = self.worker.git();
        let what = format!(
            "{} {}",
            remote.redacted(),
            resolved.refname.as_deref().unwrap_or(&resolved.commit)
        );
        let progress = progress_log(ctx, &what);
        match git.fetch(remote, resolved, progress.clone()).await? {
            Fetched::Present => ctx.log(
                Stream::Stderr,
                format!("commit {} is in the git cache already\n", resolved.commit),
            ),
            Fetched::Fetched(p) => {
                ctx.log(Stream::Stderr, format!("fetched {what}: {}\n", summary(&p)))
            }
        }
        let (key, dir) = held.attach(None, true).await?;
        git.checkout(remote, resolved, &self.checkout_options(), &dir, progress)
            .await?;
        held.commit(&key, &dir).await
    }
}

/// `N objects, M bytes`.
fn summary(p: &FetchProgress) -> String {
    format!("{} objects, {} bytes", p.received_objects, p.received_bytes)
}

/// Logs the transfer progress to the step's output, at most once a second.
fn progress_log(ctx: &OpContext, what: &str) -> oxkit_git::ProgressFn {
    let (ctx, what) = (ctx.clone(), what.to_string());
    let last = Mutex::new(Instant::now());
    Arc::new(move |p: &FetchProgress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(1) {
            *last = Instant::now();
            ctx.log(
                Stream::Stderr,
                format!(
                    "fetching {what}: {}/{} objects, {} bytes\n",
                    p.received_objects, p.total_objects, p.received_bytes
                ),
            );
        }
    })
}

#[async_trait::async_trait]
impl Op for GitSourceOp {
    /// Resolves the ref (asking the remote unless it is a commit hash). The key is the commit
    /// and what changes the checkout: the subdirectory, whether `.git` is kept (and then the
    /// redacted URL and the ref, which `.git` records), and whether submodules are skipped.
    /// Not exported with the cache: another daemon fetches the commit itself.
    fn exportable(&self) -> bool {
        false
    }

    async fn cache_map(&self, ctx: &OpContext) -> Result<CacheMap, OpError> {
        let remote = self.remote(ctx).await?;
        let resolved = self.resolve(&remote).await?;
        let digest = cache_digest(&self.source, &remote, &resolved);
        *self.resolved.lock().unwrap_or_else(|e| e.into_inner()) = Some(resolved);
        Ok(CacheMap::new(digest))
    }

    async fn exec(&self, ctx: &OpContext, _: Vec<OutputRef>) -> Result<Vec<OutputRef>, OpError> {
        let remote = self.remote(ctx).await?;
        let resolved = self
            .resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let resolved = match resolved {
            Some(r) => r,
            None => self.resolve(&remote).await?,
        };
        let mut held = Held::new(self.worker.clone(), "oxkit-git");
        let built = self.build(ctx, &remote, &resolved, &mut held).await;
        held.cleanup(built.is_err()).await;
        Ok(vec![Arc::new(SnapshotRef::new(built?))])
    }
}

fn cache_digest(source: &GitSource, remote: &Remote, resolved: &Resolved) -> String {
    let git_dir = source.keep_git_dir.then(|| {
        serde_json::json!({
            "remote": remote.redacted(),
            "ref": resolved.refname,
        })
    });
    let key = serde_json::json!({
        "commit": resolved.commit,
        "subdir": source.subdir,
        "keep_git_dir": git_dir,
        "skip_submodules": source.skip_submodules,
    });
    format!("oxkit.git.v1:{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_commit_not_the_url_ref_or_credentials() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let resolved = |r: &str| Resolved {
            commit: commit.into(),
            refname: Some(r.into()),
        };
        let source = |url: &str| GitSource {
            remote: url.into(),
            ..Default::default()
        };
        let key = |url: &str, r: &str, f: &dyn Fn(&mut GitSource)| {
            let mut s = source(url);
            f(&mut s);
            cache_digest(&s, &Remote::new(url, Auth::token("secret")), &resolved(r))
        };
        let none = |_: &mut GitSource| {};
        let a = key("https://u:pw@a.example/r", "refs/heads/main", &none);
        assert!(
            a.contains(commit)
                && !a.contains("pw")
                && !a.contains("secret")
                && !a.contains("example")
        );
        assert_eq!(a, key("git://b.example/other", "refs/tags/v1", &none));
        assert_ne!(
            a,
            key("https://a.example/r", "refs/heads/main", &|s| s.subdir =
                Some("d".into()))
        );
        assert_ne!(
            a,
            key("https://a.example/r", "refs/heads/main", &|s| s
                .skip_submodules =
                true)
        );
        let kept = key("https://u:pw@a.example/r", "refs/heads/main", &|s| {
            s.keep_git_dir = true
        });
        assert!(
            kept.contains("https://a.example/r") && !kept.contains("pw"),
            "{kept}"
        );
    }
}
