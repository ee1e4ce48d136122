//! [`Registry`]: the calls the worker and the exporter make on registries — resolve a reference,
//! fetch a manifest or blob, check for a blob, push a blob or manifest — each on the transport
//! its host needs ([`RegistryConfig`]), pulls through the host's mirrors first.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt as _;
use oci_client::client::BlobResponse;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::config::{RegistryConfig, Transport};
use crate::error::{classify, RegistryError};

/// OCI image manifest.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The manifest media types a resolve accepts: OCI manifest and index, Docker manifest and list.
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// How many times a blob transfer cut short is resumed before the fetch fails.
pub const RESUMES: u32 = 3;

/// How long connecting to a registry may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A manifest or index as the registry serves it, its digest verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its media type (its `mediaType` field; for OCI documents without one, index or manifest
    /// by shape).
    pub media_type: String,
    /// Its digest (`sha256:…`), checked against the bytes.
    pub digest: String,
    /// The document as served.
    pub bytes: Vec<u8>,
}

/// Credentials for one registry host, as the build's client gives them.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// None: anonymous access (with the bearer-token dance registries such as Docker Hub ask
    /// for).
    #[default]
    Anonymous,
    /// HTTP basic credentials (also traded for a bearer token where the registry wants one).
    Basic {
        /// The user name.
        username: String,
        /// The password or token.
        password: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
        }
    }
}

/// A registry client for every host. Cheap to clone; clones share connections and tokens.
/// The daemon's client is anonymous; [`Registry::with_credentials`] makes one for a single
/// pull or push with the client's credentials for one host.
#[derive(Clone)]
pub struct Registry {
    config: Arc<RegistryConfig>,
    certificates: Vec<Certificate>,
    clients: Arc<Clients>,
    /// The host `auth` is for (empty: anonymous everywhere).
    auth_host: String,
    auth: RegistryAuth,
}

/// A registry client per transport, each made when first needed: making one loads the TLS
/// roots, about 0.1 s, and most builds speak one transport or none.
#[derive(Default)]
struct Clients {
    https: OnceLock<Client>,
    insecure: OnceLock<Client>,
    http: OnceLock<Client>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A client with `config`; reads its CA files now.
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        let mut certificates = Vec::new();
        for path in &config.ca_files {
            let data = std::fs::read(path).map_err(|e| RegistryError::CaFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let registry = Registry {
            config: Arc::new(config),
            certificates,
            clients: Arc::default(),
            auth_host: String::new(),
            auth: RegistryAuth::Anonymous,
        };
        // The CA files are checked now, by making the client most hosts need.
        registry.client_for(Transport::Https)?;
        Ok(registry)
    }

    /// This client with `credentials` for registry `host` (never sent to another host, mirrors
    /// included), on connections and a token cache of its own, so that one build's credentials
    /// serve no other build.
    pub fn with_credentials(
        &self,
        host: &str,
        credentials: Credentials,
    ) -> Result<Registry, RegistryError> {
        let Credentials::Basic { username, password } = credentials else {
            return Ok(self.clone());
        };
        Ok(Registry {
            auth_host: host.to_owned(),
            auth: RegistryAuth::Basic(username, password),
            clients: Arc::default(),
            ..self.clone()
        })
    }

    /// The client of `transport`, made the first time it is needed.
    fn client_for(&self, transport: Transport) -> Result<&Client, RegistryError> {
        let (cell, protocol, accept_invalid) = match transport {
            Transport::Https => (&self.clients.https, ClientProtocol::Https, false),
            Transport::HttpsInsecure => (&self.clients.insecure, ClientProtocol::Https, true),
            Transport::Http => (&self.clients.http, ClientProtocol::Http, false),
        };
        if let Some(client) = cell.get() {
            return Ok(client);
        }
        let config = &self.config;
        let made = Client::try_from(ClientConfig {
            protocol,
            accept_invalid_certificates: accept_invalid,
            accept_invalid_hostnames: accept_invalid,
            // One PUT per blob: every registry takes it, and it is the fewest round trips.
            use_monolithic_push: true,
            extra_root_certificates: self.certificates.clone(),
            connect_timeout: Some(CONNECT_TIMEOUT),
            platform_resolver: None,
            ..Default::default()
        })
        .map_err(|e| RegistryError::CaFile {
            path: config.ca_files.first().cloned().unwrap_or_default(),
            reason: e.to_string(),
        })?;
        // Another call may have made one meanwhile: either does.
        Ok(cell.get_or_init(|| made))
    }

    /// The credentials to send to `host`.
    fn auth_for(&self, host: &str) -> RegistryAuth {
        if host == self.auth_host {
            self.auth.clone()
        } else {
            RegistryAuth::Anonymous
        }
    }

    /// The client for `host`, with the credentials for it stored in the client (calls that take
    /// no credentials use the stored ones).
    async fn authed(&self, host: &str, at: &Reference) -> Result<&Client, RegistryError> {
        let client = self.client_for(self.config.transport(host))?;
        client
            .store_auth_if_needed(at.resolve_registry(), &self.auth_for(host))
            .await;
        Ok(client)
    }

    /// Resolves `reference` (normalized, `host/repo:tag` or `…@sha256:…`) to the manifest or
    /// index it names; a pinned digest is checked against what is served.
    pub async fn resolve(&self, reference: &str) -> Result<Manifest, RegistryError> {
        let parsed = parse(reference)?;
        self.pull_manifest(reference, &parsed).await
    }

    /// The manifest `digest` (an index's entry) of `reference`'s repository.
    pub async fn fetch_manifest(
        &self,
        reference: &str,
        digest: &str,
    ) -> Result<Manifest, RegistryError> {
        let parsed = parse(reference)?.clone_with_digest(digest.to_owned());
        self.pull_manifest(reference, &parsed).await
    }

    async fn pull_manifest(
        &self,
        reference: &str,
        parsed: &Reference,
    ) -> Result<Manifest, RegistryError> {
        let (bytes, digest) = self
            .pulling(
                reference,
                parsed,
                "fetch the manifest",
                "manifest",
                // `pulling` stored the host's credentials in the client already; the ones
                // given here are used only by a client that has none.
                |client, at| async move {
                    client
                        .pull_manifest_raw(&at, &RegistryAuth::Anonymous, MANIFEST_MEDIA_TYPES)
                        .await
                },
            )
            .await?;
        Ok(Manifest {
            media_type: media_type_of(&bytes),
            digest,
            bytes,
        })
    }

    /// Streams blob `digest` (`size` bytes) of `reference`'s repository into `out`, checking its
    /// digest at the end: on a mismatch the error comes after the bytes were written, so `out`
    /// must verify too or be thrown away. A transfer cut short (connection reset, timeout) is
    /// resumed where it stopped with a ranged request, up to [`RESUMES`] times per blob, so a
    /// flaky link costs the lost bytes, not the whole blob.
    pub async fn fetch_blob<W: AsyncWrite + Unpin + Send>(
        &self,
        reference: &str,
        digest: &str,
        size: u64,
        mut out: W,
    ) -> Result<(), RegistryError> {
        let parsed = parse(reference)?;
        let descriptor = OciDescriptor {
            digest: digest.to_owned(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let what = format!("blob {digest}");
        let action = format!("fetch blob {digest}");
        let mut last = None;
        for host in self.config.pull_hosts(parsed.registry()) {
            let at = at_host(&parsed, &host);
            let client = self.authed(&host, &at).await?;
            let mut progress = Transfer::default();
            let mut resumes = 0;
            let checked = |progress: &Transfer, host: String, what: String| {
                let got = progress.digest();
                if got == digest {
                    Ok(())
                } else {
                    Err(RegistryError::DigestMismatch {
                        reference: reference.to_owned(),
                        registry: host,
                        what,
                        reason: format!("expected {digest}, got {got}"),
                    })
                }
            };
            loop {
                let cut = match progress.run(client, &at, &descriptor, &mut out).await {
                    Ok(()) => return checked(&progress, host, what),
                    // Every byte came: what broke was the stream's own digest check.
                    Err(Cut::Stream(_)) if size > 0 && progress.written >= size => {
                        return checked(&progress, host, what)
                    }
                    Err(Cut::Written(e)) => {
                        return Err(RegistryError::Registry {
                            reference: reference.to_owned(),
                            registry: host,
                            action,
                            reason: format!("writing it failed: {e}"),
                        })
                    }
                    Err(Cut::Request(e)) => classify(e, reference, &host, &action, &what),
                    Err(Cut::Stream(e)) => RegistryError::Unreachable {
                        reference: reference.to_owned(),
                        registry: host.clone(),
                        reason: format!("the transfer of {what} broke off: {e}"),
                    },
                };
                let transient = matches!(cut, RegistryError::Unreachable { .. });
                if transient && progress.written > 0 && resumes < RESUMES {
                    resumes += 1;
                    tracing::info!(%host, digest, offset = progress.written, error = %cut, "blob transfer cut short; resuming");
                    continue;
                }
                if progress.written == 0
                    && (transient || matches!(cut, RegistryError::NotFound { .. }))
                {
                    // Nothing was written yet: the next host may have it.
                    tracing::debug!(%host, error = %cut, "blob fetch failed");
                    last = Some(cut);
                    break;
                }
                // Part of the blob may be written: only the caller can start over.
                return Err(cut);
            }
        }
        Err(last.expect("at least the host itself is tried"))
    }

    /// Whether `reference`'s repository has blob `digest` (a one-byte ranged read: oci-client
    /// has no HEAD for blobs).
    pub async fn has_blob(&self, reference: &str, digest: &str) -> Result<bool, RegistryError> {
        let parsed = parse(reference)?;
        let host = parsed.registry().to_owned();
        let descriptor = OciDescriptor {
            digest: digest.to_owned(),
            ..Default::default()
        };
        let what = format!("blob {digest}");
        match self
            .authed(&host, &parsed)
            .await?
            .pull_blob_stream_partial(&parsed, &descriptor, 0, Some(1))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match classify(e, reference, &host, "look up a blob", &what) {
                e if e.is_not_found() => Ok(false),
                e => Err(e),
            },
        }
    }

    /// Uploads blob `digest` (`data`, checked by the registry) to `reference`'s repository.
    pub async fn push_blob(
        &self,
        reference: &str,
        digest: &str,
        data: &[u8],
    ) -> Result<(), RegistryError> {
        let what = format!("blob {digest}");
        let action = format!("upload {what}");
        self.pushing(reference, &action, &what, |client, at| async move {
            client.push_blob(&at, data, digest).await.map(drop)
        })
        .await
    }

    /// Asks the registry to mount blob `digest` of repository `from` (on the same registry)
    /// into `reference`'s repository instead of uploading it; `true` if it did. A registry that
    /// does not have the blob there (or refuses mounts) answers by opening an upload instead,
    /// which is left to expire: `false`, and the caller uploads.
    pub async fn mount_blob(
        &self,
        reference: &str,
        from: &str,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        let parsed = parse(reference)?;
        let host = parsed.registry().to_owned();
        let source = Reference::with_tag(host.clone(), from.to_owned(), "latest".to_owned());
        let client = self.authed(&host, &parsed).await?.clone();
        match client.mount_blob(&parsed, &source, digest).await {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::debug!(reference, from, digest, error = %e, "no cross-repository mount");
                Ok(false)
            }
        }
    }

    /// Uploads manifest (or index) `bytes` of `media_type` as `reference`'s tag.
    pub async fn push_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(), RegistryError> {
        const ACTION: &str = "upload the manifest";
        let content_type = media_type.parse().map_err(|_| RegistryError::Registry {
            reference: reference.to_owned(),
            registry: parse(reference)
                .map(|p| p.registry().to_owned())
                .unwrap_or_default(),
            action: ACTION.into(),
            reason: format!("media type {media_type:?} is not a header value"),
        })?;
        self.pushing(reference, ACTION, "manifest", |client, at| async move {
            client
                .push_manifest_raw(&at, bytes, content_type)
                .await
                .map(drop)
        })
        .await
    }

    /// Runs `call` against `reference`'s own registry (pushes never go to mirrors).
    async fn pushing<F, Fut>(
        &self,
        reference: &str,
        action: &str,
        what: &str,
        call: F,
    ) -> Result<(), RegistryError>
    where
        F: FnOnce(Client, Reference) -> Fut,
        Fut: std::future::Future<Output = Result<(), OciDistributionError>>,
    {
        let parsed = parse(reference)?;
        let host = parsed.registry().to_owned();
        let client = self.authed(&host, &parsed).await?.clone();
        call(client, parsed)
            .await
            .map_err(|e| classify(e, reference, &host, action, what))
    }

    /// Runs `call` against each pull host of `parsed` (mirrors, then the host) until one
    /// answers; the host's own error is the one returned.
    async fn pulling<T, F, Fut>(
        &self,
        reference: &str,
        parsed: &Reference,
        action: &str,
        what: &str,
        call: F,
    ) -> Result<T, RegistryError>
    where
        F: Fn(Client, Reference) -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        let mut last = None;
        for host in self.config.pull_hosts(parsed.registry()) {
            let at = at_host(parsed, &host);
            let client = self.authed(&host, &at).await?.clone();
            match call(client, at).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let e = classify(e, reference, &host, action, what);
                    tracing::debug!(%host, error = %e, "registry call failed");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least the host itself is tried"))
    }
}

/// `parsed` served from `host` (a mirror, or its own registry).
fn at_host(parsed: &Reference, host: &str) -> Reference {
    let mut at = parsed.clone();
    if host != parsed.registry() {
        at.set_mirror_registry(host.to_owned());
    }
    at
}

/// The registry host and repository of `reference` (`host/repo:tag`), as the registry sees
/// them.
pub fn host_and_repository(reference: &str) -> Result<(String, String), RegistryError> {
    let parsed = parse(reference)?;
    Ok((parsed.registry().to_owned(), parsed.repository().to_owned()))
}

fn parse(reference: &str) -> Result<Reference, RegistryError> {
    Reference::try_from(reference).map_err(|e| RegistryError::InvalidReference {
        reference: reference.to_owned(),
        reason: e.to_string(),
    })
}

/// A manifest's media type: its `mediaType` field, else (OCI allows leaving it out) index or
/// manifest by whether it lists `manifests`.
fn media_type_of(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Shape {
        #[serde(rename = "mediaType", default)]
        media_type: String,
        #[serde(default)]
        manifests: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(s) if !s.media_type.is_empty() => s.media_type,
        Ok(Shape {
            manifests: Some(_), ..
        }) => OCI_INDEX.to_owned(),
        _ => OCI_MANIFEST.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic() -> Credentials {
        Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        }
    }

    /// The daemon's client makes its HTTPS client at once (that reads the CA files), the others
    /// when first needed; a client with credentials makes its own, none until needed; clones
    /// share theirs.
    #[test]
    fn clients_are_made_once_when_first_needed() {
        let registry = Registry::new(RegistryConfig::default()).unwrap();
        assert!(registry.clients.https.get().is_some());
        assert!(registry.clients.http.get().is_none());
        assert!(registry.clients.insecure.get().is_none());

        let authed = registry.with_credentials("reg.example", basic()).unwrap();
        assert!(authed.clients.https.get().is_none(), "no client made yet");
        let first: *const Client = authed.client_for(Transport::Http).unwrap();
        let again: *const Client = authed.client_for(Transport::Http).unwrap();
        assert_eq!(first, again, "made once");
        assert!(
            registry.clients.http.get().is_none(),
            "the daemon's clients are not the build's"
        );

        let anonymous = registry
            .with_credentials("reg.example", Credentials::Anonymous)
            .unwrap();
        anonymous.client_for(Transport::HttpsInsecure).unwrap();
        assert!(
            registry.clients.insecure.get().is_some(),
            "an anonymous clone shares"
        );
    }

    #[test]
    fn a_ca_file_that_is_no_certificate_fails_at_once() {
        let tmp = std::env::temp_dir().join(format!("oxkit-bad-ca-{}.pem", std::process::id()));
        std::fs::write(
            &tmp,
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let made = Registry::new(RegistryConfig {
            ca_files: vec![tmp.clone()],
            ..Default::default()
        });
        std::fs::remove_file(&tmp).unwrap();
        assert!(
            matches!(made, Err(RegistryError::CaFile { .. })),
            "{made:?}"
        );
    }

    #[test]
    fn media_types_come_from_the_document() {
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert_eq!(media_type_of(docker), MANIFEST_MEDIA_TYPES[2]);
        assert_eq!(media_type_of(br#"{"manifests":[]}"#), OCI_INDEX);
        assert_eq!(media_type_of(br#"{"layers":[]}"#), OCI_MANIFEST);
    }

    #[test]
    fn references_keep_their_registry_and_mirrors_replace_it() {
        let parsed = parse("127.0.0.1:5000/busybox:x").unwrap();
        assert_eq!(parsed.registry(), "127.0.0.1:5000");
        assert_eq!(parsed.repository(), "busybox");
        let parsed = parse("docker.io/library/alpine:latest").unwrap();
        let mirrored = at_host(&parsed, "mirror:5000");
        assert_eq!(mirrored.resolve_registry(), "mirror:5000");
        assert!(parse("Not A Reference").is_err());
    }
}

/// One blob's transfer so far, across resumed requests: what was written and its running
/// digest.
#[derive(Default)]
struct Transfer {
    written: u64,
    hasher: Sha256,
}

/// Why a transfer stopped.
enum Cut {
    /// The request failed (before any byte of it).
    Request(OciDistributionError),
    /// The body broke off.
    Stream(std::io::Error),
    /// `out` refused the bytes.
    Written(std::io::Error),
}

impl Transfer {
    /// Fetches the rest of the blob (all of it at first, then from `written` with a ranged
    /// request) into `out`.
    async fn run<W: AsyncWrite + Unpin + Send>(
        &mut self,
        client: &Client,
        at: &Reference,
        descriptor: &OciDescriptor,
        out: &mut W,
    ) -> Result<(), Cut> {
        let (mut stream, mut skip) = if self.written == 0 {
            (
                client
                    .pull_blob_stream(at, descriptor)
                    .await
                    .map_err(Cut::Request)?,
                0,
            )
        } else {
            match client
                .pull_blob_stream_partial(at, descriptor, self.written, None)
                .await
                .map_err(Cut::Request)?
            {
                BlobResponse::Partial(stream) => (stream, 0),
                // A registry that ignores the range sends it all again: skip what we have.
                BlobResponse::Full(stream) => (stream, self.written),
            }
        };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(Cut::Stream)?;
            let mut chunk = &chunk[..];
            if skip > 0 {
                let n = skip.min(chunk.len() as u64) as usize;
                chunk = &chunk[n..];
                skip -= n as u64;
            }
            if chunk.is_empty() {
                continue;
            }
            out.write_all(chunk).await.map_err(Cut::Written)?;
            self.hasher.update(chunk);
            self.written += chunk.len() as u64;
        }
        out.flush().await.map_err(Cut::Written)
    }

    /// The digest of what was written, `sha256:<hex>`.
    fn digest(&self) -> String {
        let hex: String = self
            .hasher
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256:{hex}")
    }
}
