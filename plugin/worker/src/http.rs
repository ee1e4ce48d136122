//! The http(s) source (`https://…`, `http://…`, BuildKit's attributes `http.checksum`,
//! `http.filename`, `http.perm`, `http.uid`, `http.gid`): one downloaded file in a new snapshot.
//! Its cache key, as BuildKit's, comes from the expected checksum when the source has one
//! (nothing is fetched to compute it), else from the content: the cache map downloads it into
//! the worker's store (`oxkit-http`), revalidating a stored ETag with `If-None-Match`, and keys
//! on its digest and Last-Modified — so an unchanged file keeps what depends on it cached. On a
//! miss, exec writes the stored content (downloading it if needed, checked against the digest
//! the key names) into a new snapshot.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use oxkit_http::{Fetched, Request, Resolved};
use oxkit_llb::source::HttpSource;
use oxkit_solver::{CacheMap, Op, OpContext, OpError, OutputRef, Stream};

use crate::error::WorkerError;
use crate::held::Held;
use crate::secret;
use crate::session::sessions;
use crate::worker::{SnapshotRef, Worker};

/// The file's mode when the source sets none (BuildKit's).
const DEFAULT_PERM: u32 = 0o600;

/// The http source op: one output, a snapshot holding `/<filename>`.
pub struct HttpSourceOp {
    worker: Worker,
    source: HttpSource,
    /// What the last [`Op::cache_map`] found at the URL (sources without a checksum).
    resolved: Mutex<Option<Resolved>>,
}

impl HttpSourceOp {
    /// The source `source` on `worker`.
    pub fn new(worker: Worker, source: HttpSource) -> Self {
        Self {
            worker,
            source,
            resolved: Mutex::new(None),
        }
    }

    /// The request, with the `Authorization` header from the client's secret
    /// `http.authheadersecret` if the source names one (which the client must then have).
    async fn request(&self, ctx: &OpContext) -> Result<Request, WorkerError> {
        let headers = self
            .source
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let request = Request::new(&self.source.url, headers);
        let Some(id) = &self.source.auth_header_secret else {
            return Ok(request);
        };
        let value = secret::fetch(&sessions(ctx), id)
            .await?
            .ok_or_else(|| WorkerError::SecretNotFound { id: id.clone() })?;
        let value = String::from_utf8(value).map_err(|_| WorkerError::SecretNotText {
            id: id.clone(),
            name: "an http Authorization header".into(),
        })?;
        Ok(request.with_authorization(id, value.trim_end_matches(['\r', '\n'])))
    }

    fn file_name(&self, resolved: Option<&Resolved>) -> String {
        let manual = self.source.filename.as_deref();
        match resolved {
            Some(r) => r.file_name(&self.source.url, manual),
            None => oxkit_http::file_name(&self.source.url, manual, None),
        }
    }

    fn log_fetched(&self, ctx: &OpContext, resolved: &Resolved) {
        let url = &self.source.url;
        let line = match resolved.fetched {
            Fetched::Downloaded { bytes } => format!("downloaded {url}: {bytes} bytes\n"),
            Fetched::NotModified => format!("{url} is not modified since the last download\n"),
            Fetched::Stored => format!("{url} ({}) is in the download cache\n", resolved.digest),
        };
        ctx.log(Stream::Stderr, line);
    }

    /// Writes the content with digest `digest` into a new snapshot; returns its name.
    async fn build(
        &self,
        ctx: &OpContext,
        digest: &str,
        held: &mut Held,
    ) -> Result<String, WorkerError> {
        let request = self.request(ctx).await?;
        let content = self.worker.http().content(&request, digest).await?;
        if content.resolved.fetched != Fetched::Stored {
            self.log_fetched(ctx, &content.resolved);
        }
        // A checksum source's key names the file without asking the server (BuildKit's too),
        // so its name never comes from the response.
        let name = if self.source.checksum.is_some() {
            self.file_name(None)
        } else {
            self.file_name(Some(&content.resolved))
        };
        let file = FileSpec {
            name,
            mode: self.source.perm.filter(|p| *p != 0).unwrap_or(DEFAULT_PERM) & 0o7777,
            uid: self.source.uid.unwrap_or(0),
            gid: self.source.gid.unwrap_or(0),
            mtime: content.resolved.last_modified.unwrap_or(UNIX_EPOCH),
        };
        let (key, dir) = held.attach(None, true).await?;
        let (src, target) = (content.path().to_path_buf(), dir.clone());
        tokio::task::spawn_blocking(move || file.write(&src, &target))
            .await
            .map_err(|e| {
                WorkerError::InvalidOp(format!("the http source's write task failed: {e}"))
            })??;
        drop(content);
        held.commit(&key, &dir).await
    }
}

/// The file an http source writes.
#[derive(Debug, Clone)]
struct FileSpec {
    name: String,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
}

impl FileSpec {
    /// Copies `src` to `<dir>/<name>` with the spec's owner, mode and mtime.
    fn write(&self, src: &Path, dir: &Path) -> Result<(), WorkerError> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let dest = dir.join(&self.name);
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| WorkerError::Io {
                action,
                path,
                source,
            }
        };
        let mut from = std::fs::File::open(src).map_err(io("open the download", src))?;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(self.mode)
            .open(&dest)
            .map_err(io("create", &dest))?;
        std::io::copy(&mut from, &mut to).map_err(io("write", &dest))?;
        // chown clears set-id bits: the mode comes after it (and after the umask).
        std::os::unix::fs::fchown(&to, Some(self.uid), Some(self.gid))
            .map_err(io("change the owner of", &dest))?;
        to.set_permissions(std::fs::Permissions::from_mode(self.mode))
            .map_err(io("change the mode of", &dest))?;
        to.set_modified(self.mtime)
            .map_err(io("set the modification time of", &dest))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Op for HttpSourceOp {
    /// With `http.checksum`: the key is the checksum, file name, mode and owner, and nothing is
    /// fetched. Without: downloads (or revalidates) the URL and keys on the content's digest,
    /// the file name, Last-Modified, mode and owner.
    /// Not exported with the cache: another daemon downloads the file itself.
    fn exportable(&self) -> bool {
        false
    }

    async fn cache_map(&self, ctx: &OpContext) -> Result<CacheMap, OpError> {
        if let Some(checksum) = &self.source.checksum {
            let key = cache_digest(&self.source, &self.file_name(None), checksum, None);
            return Ok(CacheMap::new(key));
        }
        let request = self.request(ctx).await?;
        let resolved = self
            .worker
            .http()
            .resolve(&request)
            .await
            .map_err(WorkerError::from)?;
        self.log_fetched(ctx, &resolved);
        let key = cache_digest(
            &self.source,
            &self.file_name(Some(&resolved)),
            &resolved.digest,
            resolved.last_modified,
        );
        *self.resolved.lock().unwrap_or_else(|e| e.into_inner()) = Some(resolved);
        Ok(CacheMap::new(key))
    }

    async fn exec(&self, ctx: &OpContext, _: Vec<OutputRef>) -> Result<Vec<OutputRef>, OpError> {
        let digest = match &self.source.checksum {
            Some(checksum) => checksum.clone(),
            None => {
                let resolved = self
                    .resolved
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                match resolved {
                    Some(r) => r.digest,
                    None => {
                        let request = self.request(ctx).await?;
                        let r = self
                            .worker
                            .http()
                            .resolve(&request)
                            .await
                            .map_err(WorkerError::from)?;
                        r.digest
                    }
                }
            }
        };
        let mut held = Held::new(self.worker.clone(), "oxkit-http");
        let built = self.build(ctx, &digest, &mut held).await;
        held.cleanup(built.is_err()).await;
        Ok(vec![Arc::new(SnapshotRef::new(built?)) as OutputRef])
    }
}

/// The cache key: what the snapshot holds (BuildKit's `formatCacheKey`: file name, mode,
/// owner, digest, Last-Modified) and what the request sends (headers, the credentials' secret
/// name), never the URL itself.
fn cache_digest(
    source: &HttpSource,
    file_name: &str,
    digest: &str,
    last_modified: Option<SystemTime>,
) -> String {
    let headers: std::collections::BTreeMap<String, &String> = source
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| k == "accept" || k == "user-agent")
        .collect();
    let key = serde_json::json!({
        "filename": file_name,
        "perm": source.perm.filter(|p| *p != 0).unwrap_or(DEFAULT_PERM),
        "uid": source.uid.unwrap_or(0),
        "gid": source.gid.unwrap_or(0),
        "checksum": digest.to_ascii_lowercase(),
        "last_modified": last_modified
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        "auth_header_secret": source.auth_header_secret,
        "headers": headers,
    });
    format!("oxkit.http.v1:{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_content_and_the_file_not_the_url() {
        let source = |f: &dyn Fn(&mut HttpSource)| {
            let mut s = HttpSource {
                url: "https://a.example/f".into(),
                ..Default::default()
            };
            f(&mut s);
            s
        };
        let key = |s: &HttpSource| cache_digest(s, "f", "sha256:ab", None);
        let plain = key(&source(&|_| {}));
        assert_eq!(
            plain,
            key(&source(&|s| s.url = "https://b.example/g".into()))
        );
        assert_eq!(plain, key(&source(&|s| s.perm = Some(0o600))));
        for changed in [
            key(&source(&|s| s.perm = Some(0o755))),
            key(&source(&|s| s.uid = Some(1))),
            key(&source(&|s| s.gid = Some(1))),
            cache_digest(&source(&|_| {}), "g", "sha256:ab", None),
            cache_digest(&source(&|_| {}), "f", "sha256:cd", None),
            cache_digest(&source(&|_| {}), "f", "sha256:ab", Some(UNIX_EPOCH)),
        ] {
            assert_ne!(plain, changed);
        }
    }

    #[test]
    fn the_file_gets_its_mode_owner_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("download");
        std::fs::write(&src, "data").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let (uid, gid) = chownable_ids();
        let mtime = UNIX_EPOCH + std::time::Duration::from_secs(1_445_412_480);
        let spec = FileSpec {
            name: "f.txt".into(),
            mode: 0o4751,
            uid,
            gid,
            mtime,
        };
        spec.write(&src, &out).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(out.join("f.txt")).unwrap();
        assert_eq!(std::fs::read(out.join("f.txt")).unwrap(), b"data");
        assert_eq!(meta.mode() & 0o7777, 0o4751);
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        assert_eq!(meta.modified().unwrap(), mtime);
        // The snapshot is new: an existing file is an error, never overwritten.
        assert!(spec.write(&src, &out).is_err());
    }

    /// Ids the test may chown to: any as root, else its own.
    fn chownable_ids() -> (u32, u32) {
        use std::os::unix::fs::MetadataExt as _;
        let probe = tempfile::NamedTempFile::new().unwrap();
        let own = probe.as_file().metadata().unwrap();
        match own.uid() {
            0 => (1234, 5678),
            uid => (uid, own.gid()),
        }
    }
}
