//! [`HttpError`]: what a download fails with.

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The HTTP client could not be set up (e.g. the system's TLS library failed to load).
    #[error("could not set up the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The URL cannot be requested (not http(s), no host, or a header is not valid).
    #[error("invalid request for {url}: {reason}")]
    InvalidRequest {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The server could not be reached, or the transfer broke off.
    #[error("could not download {url}: {}", causes(.source))]
    Connect {
        /// The URL.
        url: String,
        /// The HTTP client's error (with its causes).
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a status other than success.
    #[error("could not download {url}: the server answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status, e.g. `404 Not Found`.
        status: reqwest::StatusCode,
    },
    /// The server answered `304 Not Modified` to a request that named no version.
    #[error("could not download {url}: the server answered 304 Not Modified for ETag {etag:?}, which is not in the cache")]
    NotModified {
        /// The URL.
        url: String,
        /// The ETag it answered with.
        etag: String,
    },
    /// The content's digest is not the expected one; nothing was kept.
    #[error("digest mismatch for {url}: got {actual}, expected {expected}")]
    Checksum {
        /// The URL.
        url: String,
        /// The expected digest (`http.checksum`, or what an earlier fetch saw).
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
    },
    /// The expected digest uses an algorithm other than sha256.
    #[error("checksum {checksum} of {url}: only sha256 digests are supported")]
    UnsupportedDigest {
        /// The URL.
        url: String,
        /// The digest as given.
        checksum: String,
    },
    /// The store on disk could not be read or written.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was done.
        action: &'static str,
        /// On what.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What went wrong in a transfer, from the causes of reqwest's error (whose own message only
/// repeats the URL): e.g. `client error (Connect): tcp connect error: Connection refused`.
fn causes(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "the server did not answer in time".into();
    }
    let mut parts = Vec::new();
    let mut next = std::error::Error::source(error);
    while let Some(cause) = next {
        parts.push(cause.to_string());
        next = cause.source();
    }
    if parts.is_empty() {
        error.to_string()
    } else {
        parts.join(": ")
    }
}
