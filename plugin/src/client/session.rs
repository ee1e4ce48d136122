//! The client's session: while its build runs, the client serves the daemon what only it has
//! (secrets, local directories) on the `Session` stream. A [`SessionProvider`] says
//! what is served; [`ClientSession`] runs the stream, answering the daemon's requests
//! concurrently, until it is closed or dropped. [`Secrets`] is the provider of `--secret`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::ClientError;
use crate::proto::{
    self, control_client::ControlClient, session_client_message::Message, session_error::Code,
    session_request::Kind, session_response::Result as Answer,
};
use oxkit_localsync::{Entry, Filter, Range};

/// Why the client could not serve a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvideError {
    /// The client has no such thing (e.g. no secret with that id).
    #[error("not found")]
    NotFound,
    /// Serving it failed.
    #[error("{0}")]
    Failed(String),
}

/// What a client session offers the daemon ("attachables"), as announced when it opens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offers {
    /// Names of the local directories served.
    pub local_dirs: Vec<String>,
    /// Ids of the secrets served.
    pub secrets: Vec<String>,
    /// The client's stable id (see [`super::client_id`]); empty = the session's id.
    pub client_id: String,
    /// A key of each local directory itself, by name (see [`super::LocalDirs`]).
    pub local_dir_keys: std::collections::HashMap<String, String>,
}

/// What the client serves in its session. Methods run when the daemon asks, possibly
/// concurrently; the defaults serve nothing.
#[tonic::async_trait]
pub trait SessionProvider: Send + Sync {
    /// What to announce when the session opens.
    fn offers(&self) -> Offers;

    /// The value of secret `id`.
    async fn get_secret(&self, id: &str) -> Result<Vec<u8>, ProvideError> {
        let _ = id;
        Err(ProvideError::NotFound)
    }

    /// A page of the listing of local directory `name` through `filter`, from `cursor` (empty
    /// for the first page); returns the entries and the next cursor (empty after the last).
    async fn list_local(
        &self,
        name: &str,
        filter: &Filter,
        cursor: &str,
    ) -> Result<(Vec<Entry>, String), ProvideError> {
        let _ = (name, filter, cursor);
        Err(ProvideError::NotFound)
    }

    /// Parts of regular files of local directory `name` that a listing sent.
    async fn read_local(&self, name: &str, ranges: &[Range]) -> Result<Vec<Vec<u8>>, ProvideError> {
        let _ = (name, ranges);
        Err(ProvideError::NotFound)
    }

    /// The credentials (user name, password) for registry `host`.
    async fn registry_auth(&self, host: &str) -> Result<(String, String), ProvideError> {
        let _ = host;
        Err(ProvideError::NotFound)
    }
}

/// A session that serves nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProvider;

impl SessionProvider for NoProvider {
    fn offers(&self) -> Offers {
        Offers::default()
    }
}

/// Where a `--secret` comes from: `id=NAME,src=FILE` or `id=NAME,env=VAR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    /// The id builds ask for.
    pub id: String,
    /// Where its value is read from.
    pub source: SecretSource,
}

/// Where a secret's value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file's content.
    File(PathBuf),
    /// An environment variable's value.
    Env(String),
}

impl SecretSpec {
    /// Parses `id=NAME,src=FILE` (also `source=`) or `id=NAME,env=VAR`.
    pub fn parse(spec: &str) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::Secret {
            spec: spec.into(),
            reason: reason.into(),
        };
        let (mut id, mut source) = (None, None);
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(&format!("{part:?} is not key=value")))?;
            let (k, v) = (k.trim(), v.trim());
            if v.is_empty() {
                return Err(bad(&format!("{k} is empty")));
            }
            let new = match k {
                "id" => {
                    id = Some(v.to_string());
                    continue;
                }
                "src" | "source" => SecretSource::File(v.into()),
                "env" => SecretSource::Env(v.into()),
                other => return Err(bad(&format!("unknown key {other:?}; use id, src or env"))),
            };
            if source.replace(new).is_some() {
                return Err(bad("give one of src and env"));
            }
        }
        let id = id.ok_or_else(|| bad("missing id=NAME"))?;
        let source = source.ok_or_else(|| bad("missing src=FILE or env=VAR"))?;
        Ok(SecretSpec { id, source })
    }
}

/// Secrets held in memory, read when the client starts: the provider behind `--secret`.
#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, Vec<u8>>,
}

// Never prints the values.
impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("ids", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Secrets {
    /// Secrets with these values.
    pub fn new(values: BTreeMap<String, Vec<u8>>) -> Self {
        Secrets { values }
    }

    /// Reads each secret's value now, so that a missing file fails before the build starts.
    pub fn load(specs: &[SecretSpec]) -> Result<Self, ClientError> {
        let mut values = BTreeMap::new();
        for spec in specs {
            let failed = |reason: String| ClientError::Secret {
                spec: spec.id.clone(),
                reason,
            };
            let value = match &spec.source {
                SecretSource::File(path) => {
                    let mut data = Vec::new();
                    std::fs::File::open(path)
                        .and_then(|mut f| f.read_to_end(&mut data))
                        .map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
                    data
                }
                SecretSource::Env(var) => std::env::var_os(var)
                    .ok_or_else(|| failed(format!("environment variable {var} is not set")))?
                    .into_encoded_bytes(),
            };
            if values.insert(spec.id.clone(), value).is_some() {
                return Err(failed("given twice".into()));
            }
        }
        Ok(Secrets { values })
    }
}

#[tonic::async_trait]
impl SessionProvider for Secrets {
    fn offers(&self) -> Offers {
        Offers {
            secrets: self.values.keys().cloned().collect(),
            ..Default::default()
        }
    }

    async fn get_secret(&self, id: &str) -> Result<Vec<u8>, ProvideError> {
        self.values.get(id).cloned().ok_or(ProvideError::NotFound)
    }
}

/// An open session. Serves the daemon's requests until dropped or [`closed`](Self::close).
#[derive(Debug)]
pub struct ClientSession {
    id: String,
    serving: JoinHandle<()>,
}

impl ClientSession {
    /// Opens a session serving `provider` on `client`'s connection.
    pub(crate) async fn open(
        client: &mut ControlClient<Channel>,
        provider: Arc<dyn SessionProvider>,
    ) -> Result<Self, ClientError> {
        let id = random_id().map_err(ClientError::SessionId)?;
        let offers = provider.offers();
        let (tx, rx) = mpsc::unbounded_channel();
        // The receiver is alive (just made), so the send cannot fail.
        let _ = tx.send(proto::SessionClientMessage {
            message: Some(Message::Open(proto::SessionOpen {
                session_id: id.clone(),
                local_dirs: offers.local_dirs,
                secrets: offers.secrets,
                client_id: offers.client_id,
                local_dir_keys: offers.local_dir_keys,
            })),
        });
        let requests = client
            .session(UnboundedReceiverStream::new(rx))
            .await?
            .into_inner();
        let serving = tokio::spawn(serve(id.clone(), requests, tx, provider));
        Ok(ClientSession { id, serving })
    }

    /// The session's id, for `SolveOptions::session_id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Ends the session: the daemon's later requests fail.
    pub fn close(self) {}
}

impl Drop for ClientSession {
    fn drop(&mut self) {
        // Drops the stream's sender and every request being answered: the stream ends.
        self.serving.abort();
    }
}

/// Answers each request on its own task, so that a slow answer holds up no other.
async fn serve(
    session: String,
    mut requests: tonic::Streaming<proto::SessionRequest>,
    tx: mpsc::UnboundedSender<proto::SessionClientMessage>,
    provider: Arc<dyn SessionProvider>,
) {
    let mut answering = JoinSet::new();
    loop {
        tokio::select! {
            request = requests.next() => match request {
                Some(Ok(request)) => {
                    let (tx, provider) = (tx.clone(), provider.clone());
                    answering.spawn(async move {
                        let response = answer(provider.as_ref(), request).await;
                        let _ = tx.send(proto::SessionClientMessage {
                            message: Some(Message::Response(response)),
                        });
                    });
                }
                Some(Err(status)) => {
                    tracing::debug!(session, %status, "the daemon ended the session");
                    break;
                }
                None => break,
            },
            Some(_) = answering.join_next(), if !answering.is_empty() => {}
        }
    }
}

async fn answer(
    provider: &dyn SessionProvider,
    request: proto::SessionRequest,
) -> proto::SessionResponse {
    let error = |code: Code, message: String| {
        Answer::Error(proto::SessionError {
            code: code as i32,
            message,
        })
    };
    let result = match request.kind {
        Some(Kind::GetRegistryAuth(r)) => match provider.registry_auth(&r.host).await {
            Ok((username, password)) => {
                Answer::RegistryAuth(proto::RegistryAuth { username, password })
            }
            Err(ProvideError::NotFound) => error(
                Code::NotFound,
                format!("no credentials for registry {}", r.host),
            ),
            Err(ProvideError::Failed(message)) => error(Code::Unknown, message),
        },
        Some(Kind::GetSecret(g)) => match provider.get_secret(&g.id).await {
            Ok(data) => Answer::Secret(proto::SecretValue { data }),
            Err(ProvideError::NotFound) => error(Code::NotFound, format!("no secret {:?}", g.id)),
            Err(ProvideError::Failed(message)) => error(Code::Unknown, message),
        },
        Some(Kind::ListLocal(l)) => {
            let filter = Filter {
                include: l.include_patterns,
                exclude: l.exclude_patterns,
                follow: l.follow_paths,
            };
            match provider.list_local(&l.name, &filter, &l.cursor).await {
                Ok((entries, cursor)) => Answer::Listing(proto::LocalListing {
                    entries: entries.into_iter().map(proto::LocalEntry::from).collect(),
                    cursor,
                }),
                Err(ProvideError::NotFound) => {
                    error(Code::NotFound, format!("no local directory {:?}", l.name))
                }
                Err(ProvideError::Failed(message)) => error(Code::Unknown, message),
            }
        }
        Some(Kind::ReadLocal(r)) => {
            let ranges: Vec<Range> = r
                .ranges
                .into_iter()
                .map(|r| Range {
                    path: r.path,
                    offset: r.offset,
                    len: r.length,
                })
                .collect();
            match provider.read_local(&r.name, &ranges).await {
                Ok(chunks) => Answer::Data(proto::LocalData { chunks }),
                Err(ProvideError::NotFound) => {
                    error(Code::NotFound, format!("no local directory {:?}", r.name))
                }
                Err(ProvideError::Failed(message)) => error(Code::Unknown, message),
            }
        }
        // A kind newer than this client.
        None => error(Code::Unimplemented, "unknown request".into()),
    };
    proto::SessionResponse {
        id: request.id,
        result: Some(result),
    }
}

/// 128 random bits in hex.
pub(crate) fn random_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_specs_parse() {
        assert_eq!(
            SecretSpec::parse("id=npmrc,src=/home/me/.npmrc").unwrap(),
            SecretSpec {
                id: "npmrc".into(),
                source: SecretSource::File("/home/me/.npmrc".into())
            }
        );
        assert_eq!(
            SecretSpec::parse("env=TOKEN,id=token").unwrap(),
            SecretSpec {
                id: "token".into(),
                source: SecretSource::Env("TOKEN".into())
            }
        );
        for (spec, needle) in [
            ("src=/x", "missing id"),
            ("id=x", "missing src"),
            ("id=x,src=/a,env=B", "one of src and env"),
            ("id=x,mode=0400", "unknown key \"mode\""),
            ("id=x,src", "not key=value"),
            ("id=,src=/a", "id is empty"),
        ] {
            let err = SecretSpec::parse(spec).unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn secrets_are_read_up_front_and_a_missing_file_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, b"s3cr3t").unwrap();
        let spec = |id: &str, source| SecretSpec {
            id: id.into(),
            source,
        };
        let secrets = Secrets::load(&[spec("token", SecretSource::File(file.clone()))]).unwrap();
        assert_eq!(secrets.offers().secrets, ["token"]);
        assert!(!format!("{secrets:?}").contains("s3cr3t"));

        let missing = dir.path().join("missing");
        let err = Secrets::load(&[spec("gone", SecretSource::File(missing.clone()))])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gone") && err.contains(&missing.display().to_string()),
            "{err}"
        );
        let err = Secrets::load(&[spec("e", SecretSource::Env("OXKIT_TEST_UNSET_VAR".into()))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("OXKIT_TEST_UNSET_VAR is not set"), "{err}");
    }

    #[tokio::test]
    async fn answers_name_their_request_and_unknown_kinds_are_unimplemented() {
        let secrets = Secrets::new([("a".to_string(), b"1".to_vec())].into());
        let get = |id: u64, secret: &str| proto::SessionRequest {
            id,
            kind: Some(Kind::GetSecret(proto::GetSecretRequest {
                id: secret.into(),
            })),
        };
        let found = answer(&secrets, get(7, "a")).await;
        assert_eq!(found.id, 7);
        assert_eq!(
            found.result,
            Some(Answer::Secret(proto::SecretValue {
                data: b"1".to_vec()
            }))
        );
        let code = |r: proto::SessionResponse| match r.result {
            Some(Answer::Error(e)) => e.code,
            other => panic!("not an error: {other:?}"),
        };
        assert_eq!(
            code(answer(&secrets, get(8, "b")).await),
            Code::NotFound as i32
        );
        let unknown = proto::SessionRequest { id: 9, kind: None };
        assert_eq!(
            code(answer(&secrets, unknown).await),
            Code::Unimplemented as i32
        );
    }

    #[test]
    fn session_ids_are_128_bit_hex_and_differ() {
        let (a, b) = (random_id().unwrap(), random_id().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
