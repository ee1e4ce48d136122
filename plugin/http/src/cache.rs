//! [`HttpCache`]: the store of downloads under a root directory, one entry per (URL, request
//! headers, credentials' name), and the requests that fill and revalidate it.
//!
//! Layout: `entries/<key>/record.json` (digest, ETag, Last-Modified, Content-Disposition of
//! the last successful download) and `entries/<key>/<sha256 hex>` (its content); `tmp/` holds
//! downloads in progress. An entry is replaced only after a complete download whose digest is
//! what the caller expected (data first, then the record), under the entry's lock.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::HttpError;
use crate::name::file_name;

/// Settings of an [`HttpCache`].
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// How long connecting (TCP and TLS) may take.
    pub connect_timeout: Duration,
    /// How long the server may stay silent during a transfer.
    pub read_timeout: Duration,
    /// The `User-Agent` of requests that do not set their own.
    pub user_agent: String,
    /// How many redirects are followed.
    pub max_redirects: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
            user_agent: concat!("oxkit/", env!("CARGO_PKG_VERSION")).to_string(),
            max_redirects: 10,
        }
    }
}

/// One GET request for a URL.
#[derive(Debug, Clone)]
pub struct Request {
    url: String,
    headers: BTreeMap<String, String>,
    authorization: Option<(String, String)>,
}

impl Request {
    /// A request for `url` with the `headers` among them that BuildKit lets a build set
    /// (`Accept` and `User-Agent`, any case; others are dropped, as in BuildKit).
    pub fn new<'a>(url: &str, headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let headers = headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .filter(|(k, _)| k == "accept" || k == "user-agent")
            .collect();
        Self {
            url: url.to_string(),
            headers,
            authorization: None,
        }
    }

    /// With an `Authorization` header of value `value`, taken from the secret `secret`. The
    /// secret's name, never its value, tells entries of the store apart.
    pub fn with_authorization(mut self, secret: &str, value: &str) -> Self {
        self.authorization = Some((secret.to_string(), value.to_string()));
        self
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name of the request's entry in the store: a digest of the URL, the headers and the
    /// credentials' secret name.
    fn key(&self) -> String {
        let key = serde_json::json!({
            "url": self.url,
            "headers": self.headers,
            "auth": self.authorization.as_ref().map(|(secret, _)| secret),
        });
        hex(&Sha256::digest(key.to_string().as_bytes()))
    }
}

/// How the content behind a [`Resolved`] was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Downloaded now, this many bytes.
    Downloaded {
        /// The content's size.
        bytes: u64,
    },
    /// The server answered `304 Not Modified` to the stored ETag.
    NotModified,
    /// The stored content already had the expected digest; the server was not asked.
    Stored,
}

/// What a URL's content is: its digest and the response's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `sha256:<hex>` of the content.
    pub digest: String,
    /// The response's `Last-Modified`, if it had a valid one.
    pub last_modified: Option<SystemTime>,
    /// The response's `Content-Disposition`, if any (see [`Resolved::file_name`]).
    pub content_disposition: Option<String>,
    /// How it was obtained.
    pub fetched: Fetched,
}

impl Resolved {
    /// The file name of `url`'s download (see [`file_name`]), with `manual` the source's own.
    pub fn file_name(&self, url: &str, manual: Option<&str>) -> String {
        file_name(url, manual, self.content_disposition.as_deref())
    }
}

/// A stored content, locked against replacement while this lives.
#[derive(Debug)]
pub struct Content {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    path: PathBuf,
    /// Its digest and metadata.
    pub resolved: Resolved,
}

impl Content {
    /// The file holding the content; read it, never change it.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The record of an entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    url: String,
    digest: String,
    etag: Option<String>,
    last_modified: Option<String>,
    content_disposition: Option<String>,
}

impl Record {
    fn resolved(&self, fetched: Fetched) -> Resolved {
        Resolved {
            digest: self.digest.clone(),
            last_modified: self
                .last_modified
                .as_deref()
                .and_then(|t| httpdate::parse_http_date(t).ok()),
            content_disposition: self.content_disposition.clone(),
            fetched,
        }
    }
}

/// Downloads kept under a root directory. Cheap to share behind an `Arc`; one entry is
/// downloaded by one caller at a time.
#[derive(Debug)]
pub struct HttpCache {
    root: PathBuf,
    client: reqwest::Client,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    next_tmp: AtomicU64,
}

impl HttpCache {
    /// The store under `root` (created when first written), with an HTTP client set up by
    /// `options`.
    pub fn new(root: impl Into<PathBuf>, options: HttpOptions) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .user_agent(options.user_agent)
            .redirect(reqwest::redirect::Policy::limited(options.max_redirects))
            .build()
            .map_err(HttpError::Client)?;
        Ok(Self {
            root: root.into(),
            client,
            locks: Mutex::new(HashMap::new()),
            next_tmp: AtomicU64::new(0),
        })
    }

    /// What `request`'s URL holds now. With a stored entry that has an ETag it asks with
    /// `If-None-Match`; a `304 Not Modified` keeps the entry and nothing is downloaded.
    /// Otherwise the content is downloaded and replaces the entry.
    pub async fn resolve(&self, request: &Request) -> Result<Resolved, HttpError> {
        let key = request.key();
        let _guard = self.lock(&key).await;
        let stored = self.load(&key).await;
        let etag = stored.as_ref().and_then(|r| r.etag.clone());
        let response = self.send(request, etag.as_deref()).await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            let answered = response
                .headers()
                .get(ETAG)
                .and_then(|v| v.to_str().ok())
                .map(etag_value);
            return match stored {
                Some(record) if answered.is_none() || answered == record.etag => {
                    Ok(record.resolved(Fetched::NotModified))
                }
                _ => Err(HttpError::NotModified {
                    url: request.url.clone(),
                    etag: answered.unwrap_or_default(),
                }),
            };
        }
        let (record, bytes) = self.download(request, &key, response, None).await?;
        Ok(record.resolved(Fetched::Downloaded { bytes }))
    }

    /// The content of `request`'s URL with digest `expected` (`sha256:<hex>`): the stored one
    /// if it has that digest, else a new download, which must have it
    /// ([`HttpError::Checksum`] otherwise, and the store is left as it was).
    pub async fn content(&self, request: &Request, expected: &str) -> Result<Content, HttpError> {
        if !expected.starts_with("sha256:") {
            return Err(HttpError::UnsupportedDigest {
                url: request.url.clone(),
                checksum: expected.to_string(),
            });
        }
        let key = request.key();
        let guard = self.lock(&key).await;
        let (record, fetched) = match self.load(&key).await {
            Some(record) if record.digest.eq_ignore_ascii_case(expected) => {
                (record, Fetched::Stored)
            }
            _ => {
                let response = self.send(request, None).await?;
                let (record, bytes) = self
                    .download(request, &key, response, Some(expected))
                    .await?;
                (record, Fetched::Downloaded { bytes })
            }
        };
        Ok(Content {
            _guard: guard,
            path: self.data_path(&key, &record.digest),
            resolved: record.resolved(fetched),
        })
    }

    async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join("entries").join(key)
    }

    fn data_path(&self, key: &str, digest: &str) -> PathBuf {
        let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
        self.entry_dir(key).join(hex.to_ascii_lowercase())
    }

    /// The entry's record, if it is readable and its content is there.
    async fn load(&self, key: &str) -> Option<Record> {
        let path = self.entry_dir(key).join("record.json");
        let raw = tokio::fs::read(&path).await.ok()?;
        let record: Record = match serde_json::from_slice(&raw) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable http cache record");
                return None;
            }
        };
        let present = tokio::fs::metadata(self.data_path(key, &record.digest))
            .await
            .is_ok_and(|m| m.is_file());
        present.then_some(record)
    }

    /// Sends the GET (with `If-None-Match: etag` if given); a status other than success (or
    /// `304` when an ETag was sent) is an error.
    async fn send(
        &self,
        request: &Request,
        etag: Option<&str>,
    ) -> Result<reqwest::Response, HttpError> {
        let url = &request.url;
        let invalid = |reason: String| HttpError::InvalidRequest {
            url: url.clone(),
            reason,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("only http and https URLs can be downloaded".into()));
        }
        let mut headers = HeaderMap::new();
        let mut header = |name: &str, value: &str| -> Result<(), HttpError> {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| invalid(format!("header {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| invalid(format!("the value of header {name}: {e}")))?;
            headers.insert(name, value);
            Ok(())
        };
        for (name, value) in &request.headers {
            header(name, value)?;
        }
        if let Some((_, value)) = &request.authorization {
            header(AUTHORIZATION.as_str(), value)?;
        }
        if let Some(etag) = etag {
            header(IF_NONE_MATCH.as_str(), etag)?;
        }
        let builder = self.client.get(parsed).headers(headers);
        let response = builder.send().await.map_err(|source| HttpError::Connect {
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        let not_modified = etag.is_some() && status == StatusCode::NOT_MODIFIED;
        if !status.is_success() && !not_modified {
            return Err(HttpError::Status {
                url: url.clone(),
                status,
            });
        }
        Ok(response)
    }

    /// Streams `response`'s body to a temporary file while hashing it; if the digest is
    /// `expected` (or nothing is expected), makes it the entry's content and record.
    async fn download(
        &self,
        request: &Request,
        key: &str,
        mut response: reqwest::Response,
        expected: Option<&str>,
    ) -> Result<(Record, u64), HttpError> {
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header(ETAG).map(|e| etag_value(&e));
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let content_disposition = header(reqwest::header::CONTENT_DISPOSITION);

        let tmp_dir = self.root.join("tmp");
        create_dir(&tmp_dir).await?;
        let tmp = tmp_dir.join(format!(
            "{key}-{}-{}",
            std::process::id(),
            self.next_tmp.fetch_add(1, Ordering::Relaxed)
        ));
        let written = async {
            let io = |action| {
                let path = tmp.clone();
                move |source| HttpError::Io {
                    action,
                    path,
                    source,
                }
            };
            let mut file = tokio::fs::File::create(&tmp).await.map_err(io("create"))?;
            let mut hasher = Sha256::new();
            let mut bytes = 0u64;
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|source| HttpError::Connect {
                    url: request.url.clone(),
                    source,
                })?
            {
                hasher.update(&chunk);
                bytes += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(io("write"))?;
            }
            file.sync_all().await.map_err(io("sync"))?;
            Ok::<_, HttpError>((format!("sha256:{}", hex(&hasher.finalize())), bytes))
        }
        .await;
        let (digest, bytes) = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        if let Some(expected) = expected.filter(|e| !e.eq_ignore_ascii_case(&digest)) {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(HttpError::Checksum {
                url: request.url.clone(),
                expected: expected.to_string(),
                actual: digest,
            });
        }
        let record = Record {
            url: request.url.clone(),
            digest,
            etag,
            last_modified,
            content_disposition,
        };
        if let Err(e) = self.store(key, &tmp, &record).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        tracing::debug!(
            url = request.url,
            digest = record.digest,
            bytes,
            "downloaded"
        );
        Ok((record, bytes))
    }

    /// Moves the downloaded `tmp` into the entry, writes its record, and removes the entry's
    /// other contents.
    async fn store(&self, key: &str, tmp: &Path, record: &Record) -> Result<(), HttpError> {
        let dir = self.entry_dir(key);
        create_dir(&dir).await?;
        let data = self.data_path(key, &record.digest);
        rename(tmp, &data).await?;
        let record_tmp = dir.join("record.json.tmp");
        let raw = serde_json::to_vec_pretty(record).unwrap_or_default();
        tokio::fs::write(&record_tmp, raw)
            .await
            .map_err(|source| HttpError::Io {
                action: "write",
                path: record_tmp.clone(),
                source,
            })?;
        rename(&record_tmp, &dir.join("record.json")).await?;
        let keep = data.file_name().map(|n| n.to_os_string());
        if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
            while let Ok(Some(entry)) = entries.next_entry().await {
                let name = entry.file_name();
                if name != "record.json" && Some(&name) != keep.as_ref() {
                    let _ = tokio::fs::remove_file(entry.path()).await;
                }
            }
        }
        Ok(())
    }
}

async fn create_dir(path: &Path) -> Result<(), HttpError> {
    tokio::fs::create_dir_all(path)
        .await
        .map_err(|source| HttpError::Io {
            action: "create directory",
            path: path.to_path_buf(),
            source,
        })
}

async fn rename(from: &Path, to: &Path) -> Result<(), HttpError> {
    tokio::fs::rename(from, to)
        .await
        .map_err(|source| HttpError::Io {
            action: "move a download to",
            path: to.to_path_buf(),
            source,
        })
}

/// An ETag without its weak marker, for comparison (as BuildKit).
fn etag_value(v: &str) -> String {
    v.strip_prefix("W/").unwrap_or(v).to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
