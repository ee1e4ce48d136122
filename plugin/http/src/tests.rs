//! Downloads from a small HTTP/1.1 server on 127.0.0.1 started by each test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::{Fetched, HttpCache, HttpError, HttpOptions, Request};

/// What the server answers for a path.
#[derive(Clone)]
struct Page {
    status: u16,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Page {
    fn ok(body: &str) -> Self {
        Self {
            status: 200,
            body: body.as_bytes().to_vec(),
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The server's pages, and the requests it saw (path and request headers, lower-cased names).
#[derive(Default)]
struct State {
    pages: HashMap<String, Page>,
    seen: Vec<(String, HashMap<String, String>)>,
}

struct Server {
    base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let mut raw = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => raw.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&raw).to_string();
                    let mut lines = text.split("\r\n");
                    let path = lines
                        .next()
                        .and_then(|l| l.split(' ').nth(1))
                        .unwrap_or("/")
                        .to_string();
                    let headers: HashMap<String, String> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let page = {
                        let mut state = state.lock().unwrap();
                        state.seen.push((path.clone(), headers.clone()));
                        state.pages.get(&path).cloned()
                    };
                    let mut page = page.unwrap_or(Page {
                        status: 404,
                        body: b"not found".to_vec(),
                        headers: Vec::new(),
                    });
                    let etag = page
                        .headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
                        .map(|(_, v)| v.clone());
                    if etag.is_some() && headers.get("if-none-match") == etag.as_ref() {
                        page.status = 304;
                        page.body.clear();
                    }
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        page.status,
                        page.body.len()
                    );
                    for (k, v) in &page.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(&page.body).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Server { base, state }
    }

    fn serve(&self, path: &str, page: Page) -> String {
        self.state.lock().unwrap().pages.insert(path.into(), page);
        format!("{}{path}", self.base)
    }

    /// The requests for `path` the server saw.
    fn requests(&self, path: &str) -> Vec<HashMap<String, String>> {
        let state = self.state.lock().unwrap();
        state
            .seen
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
            .collect()
    }
}

fn sha256(s: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(s.as_bytes());
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn cache(dir: &tempfile::TempDir) -> HttpCache {
    HttpCache::new(dir.path().join("http"), HttpOptions::default()).unwrap()
}

fn no_headers() -> [(&'static str, &'static str); 0] {
    []
}

#[tokio::test]
async fn downloads_hash_and_keep_the_response_metadata() {
    let server = Server::start().await;
    let url = server.serve(
        "/dl/file.txt",
        Page::ok("hello\n")
            .header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
            .header("Content-Disposition", "attachment; filename=\"named.txt\""),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(&dir);
    let request = Request::new(&url, no_headers());
    let resolved = cache.resolve(&request).await.unwrap();
    assert_eq!(resolved.digest, sha256("hello\n"));
    assert_eq!(resolved.fetched, Fetched::Downloaded { bytes: 6 });
    assert_eq!(
        resolved.last_modified,
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_445_412_480))
    );
    assert_eq!(resolved.file_name(&url, None), "named.txt");
    assert_eq!(resolved.file_name(&url, Some("mine")), "mine");

    // The stored content is reused without asking the server again.
    let content = cache.content(&request, &resolved.digest).await.unwrap();
    assert_eq!(content.resolved.fetched, Fetched::Stored);
    assert_eq!(std::fs::read(content.path()).unwrap(), b"hello\n");
    assert_eq!(server.requests("/dl/file.txt").len(), 1);
}

#[tokio::test]
async fn a_stored_etag_is_revalidated_and_304_downloads_nothing() {
    let server = Server::start().await;
    let url = server.serve("/f", Page::ok("one").header("ETag", "\"v1\""));
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(&dir);
    let request = Request::new(&url, no_headers());
    let first = cache.resolve(&request).await.unwrap();
    assert_eq!(first.fetched, Fetched::Downloaded { bytes: 3 });

    let second = cache.resolve(&request).await.unwrap();
    assert_eq!(second.fetched, Fetched::NotModified);
    assert_eq!(second.digest, first.digest);
    let seen = server.requests("/f");
    assert_eq!(seen[0].get("if-none-match"), None);
    assert_eq!(
        seen[1].get("if-none-match").map(String::as_str),
        Some("\"v1\"")
    );

    // A changed page is downloaded again and replaces the entry.
    server.serve("/f", Page::ok("two").header("ETag", "\"v2\""));
    let third = cache.resolve(&request).await.unwrap();
    assert_eq!(third.fetched, Fetched::Downloaded { bytes: 3 });
    assert_eq!(third.digest, sha256("two"));
    let content = cache.content(&request, &third.digest).await.unwrap();
    assert_eq!(std::fs::read(content.path()).unwrap(), b"two");
    drop(content);
    let entry = std::fs::read_dir(dir.path().join("http/entries"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_dir(entry).unwrap().count(),
        2,
        "record and one content"
    );
}

#[tokio::test]
async fn checksums_are_checked_and_a_mismatch_keeps_nothing() {
    let server = Server::start().await;
    let url = server.serve("/c", Page::ok("content"));
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(&dir);
    let request = Request::new(&url, no_headers());

    let wrong = sha256("other");
    let err = cache.content(&request, &wrong).await.unwrap_err();
    assert!(matches!(err, HttpError::Checksum { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&url) && message.contains(&wrong) && message.contains(&sha256("content")),
        "{message}"
    );
    assert!(!dir.path().join("http/entries").exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("http/tmp"))
            .unwrap()
            .count(),
        0
    );

    let right = sha256("content");
    let content = cache.content(&request, &right).await.unwrap();
    assert_eq!(content.resolved.fetched, Fetched::Downloaded { bytes: 7 });
    drop(content);
    let again = cache.content(&request, &right).await.unwrap();
    assert_eq!(again.resolved.fetched, Fetched::Stored);
    assert_eq!(server.requests("/c").len(), 2);

    let err = cache.content(&request, "sha512:00").await.unwrap_err();
    assert!(
        matches!(err, HttpError::UnsupportedDigest { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn error_statuses_and_unreachable_servers_name_the_url() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(&dir);
    let missing = format!("{}/missing", server.base);
    let err = cache
        .resolve(&Request::new(&missing, no_headers()))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Status { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing) && err.to_string().contains("404"),
        "{err}"
    );

    // A port nothing listens on: bind one, then close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", closed.local_addr().unwrap());
    drop(closed);
    let err = cache
        .resolve(&Request::new(&url, no_headers()))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");

    let err = cache
        .resolve(&Request::new("ftp://h/x", no_headers()))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::InvalidRequest { .. }), "{err:?}");
}

#[tokio::test]
async fn redirects_are_followed_and_only_allowed_headers_are_sent() {
    let server = Server::start().await;
    let target = server.serve("/target", Page::ok("moved"));
    let url = server.serve(
        "/from",
        Page {
            status: 302,
            body: Vec::new(),
            headers: vec![("Location".into(), target)],
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(&dir);
    let request = Request::new(&url, [("Accept", "text/plain"), ("X-Other", "dropped")])
        .with_authorization("token", "Bearer t");
    let resolved = cache.resolve(&request).await.unwrap();
    assert_eq!(resolved.digest, sha256("moved"));
    let seen = &server.requests("/from")[0];
    assert_eq!(seen.get("accept").map(String::as_str), Some("text/plain"));
    assert_eq!(
        seen.get("authorization").map(String::as_str),
        Some("Bearer t")
    );
    assert_eq!(seen.get("x-other"), None);
    assert!(seen
        .get("user-agent")
        .is_some_and(|a| a.starts_with("oxkit/")));
}
