//! Client sessions, the daemon's side: a [`SessionRegistry`] of the sessions clients hold open
//! on the `Session` stream, and the [`SessionHandle`] through which a build asks its client for
//! what only the client has. Each call is a request with an id the client answers; when the
//! client goes away every pending and later call fails with [`SessionError::Closed`] and the
//! session leaves the registry.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use oxkit_worker::oxkit_localsync::{Entry, Filter, Range};
pub use oxkit_worker::SessionError;

use crate::proto::{
    self, session_client_message::Message, session_error::Code, session_request::Kind,
    session_response::Result as Answer,
};

/// How long a `Solve` naming a session waits for the client to open it.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client session offers ("attachables"), as it said when it opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offers {
    /// Names of the local directories the client serves.
    pub local_dirs: Vec<String>,
    /// Ids of the secrets the client serves.
    pub secrets: Vec<String>,
    /// The client's stable id (the session's id when it gave none).
    pub client_id: String,
    /// A key of each local directory itself, by name (empty when the client gave none).
    pub local_dir_keys: std::collections::HashMap<String, String>,
}

/// A request to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The value of a secret.
    GetSecret {
        /// The secret's id.
        id: String,
    },
    /// A page of the listing of a local directory.
    ListLocal {
        /// The directory's name.
        name: String,
        /// What to send of it.
        filter: Filter,
        /// Where to go on (empty for the first page).
        cursor: String,
    },
    /// Parts of files of a local directory.
    ReadLocal {
        /// The directory's name.
        name: String,
        /// The parts.
        ranges: Vec<Range>,
    },
    /// The client's credentials for a registry host.
    GetRegistryAuth {
        /// The host, as in image references.
        host: String,
    },
}

impl Request {
    fn kind(&self) -> &'static str {
        match self {
            Request::GetSecret { .. } => "GetSecret",
            Request::ListLocal { .. } => "ListLocal",
            Request::ReadLocal { .. } => "ReadLocal",
            Request::GetRegistryAuth { .. } => "GetRegistryAuth",
        }
    }

    fn not_found(&self) -> String {
        match self {
            Request::GetSecret { id } => format!("secret {id:?}"),
            Request::ListLocal { name, .. } | Request::ReadLocal { name, .. } => {
                format!("local directory {name:?}")
            }
            Request::GetRegistryAuth { host } => format!("credentials for registry {host}"),
        }
    }

    fn into_wire(self, id: u64) -> proto::SessionRequest {
        let kind = match self {
            Request::GetSecret { id } => Kind::GetSecret(proto::GetSecretRequest { id }),
            Request::GetRegistryAuth { host } => {
                Kind::GetRegistryAuth(proto::GetRegistryAuthRequest { host })
            }
            Request::ListLocal {
                name,
                filter,
                cursor,
            } => Kind::ListLocal(proto::ListLocalRequest {
                name,
                include_patterns: filter.include,
                exclude_patterns: filter.exclude,
                follow_paths: filter.follow,
                cursor,
            }),
            Request::ReadLocal { name, ranges } => Kind::ReadLocal(proto::ReadLocalRequest {
                name,
                ranges: ranges
                    .into_iter()
                    .map(|r| proto::ReadRange {
                        path: r.path,
                        offset: r.offset,
                        length: r.len,
                    })
                    .collect(),
            }),
        };
        proto::SessionRequest {
            id,
            kind: Some(kind),
        }
    }
}

/// The client's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A secret's value.
    Secret(Vec<u8>),
    /// A page of a listing and the cursor of the next (empty: the last page).
    Listing(Vec<Entry>, String),
    /// The bytes of each range asked for.
    Data(Vec<Vec<u8>>),
    /// Registry credentials: user name and password.
    RegistryAuth(String, String),
}

/// The open sessions, by id. Cheap to clone; clones share the sessions.
#[derive(Clone, Default)]
pub struct SessionRegistry {
    inner: Arc<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    sessions: Mutex<HashMap<String, SessionHandle>>,
    /// Bumped whenever a session opens, for [`SessionRegistry::wait`].
    opened: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The daemon's half of a Session stream: the requests it sends the client.
pub type RequestStream = Pin<Box<dyn Stream<Item = Result<proto::SessionRequest, Status>> + Send>>;

impl SessionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        SessionRegistry::default()
    }

    /// The open session `id`, if any.
    pub fn get(&self, id: &str) -> Option<SessionHandle> {
        lock(&self.inner.sessions).get(id).cloned()
    }

    /// Ids of the open sessions, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.inner.sessions).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Session `id`, waiting up to `timeout` for its client to open it (a client opens its
    /// session and starts its build at the same time).
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<SessionHandle, SessionError> {
        // Subscribed before looking, so that an opening in between is not missed.
        let mut opened = self.inner.opened.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(handle) = self.get(id) {
                return Ok(handle);
            }
            match tokio::time::timeout_at(deadline, opened.changed()).await {
                Ok(Ok(())) => continue,
                // The sender lives in the registry, which `self` holds; only the timeout is left.
                Ok(Err(_)) | Err(_) => {
                    return Err(SessionError::NotAttached {
                        session: id.to_string(),
                        waited_secs: timeout.as_secs(),
                    })
                }
            }
        }
    }

    /// Registers a session and returns its handle and the requests to send its client. Fails
    /// if a session of that id is open already.
    pub fn open(
        &self,
        id: &str,
        offers: Offers,
    ) -> Result<
        (
            SessionHandle,
            mpsc::UnboundedReceiver<proto::SessionRequest>,
        ),
        Status,
    > {
        if id.is_empty() {
            return Err(Status::invalid_argument("a session needs an id"));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = SessionHandle {
            inner: Arc::new(HandleInner {
                id: id.to_string(),
                offers,
                calls: Mutex::new(Calls {
                    next_id: 1,
                    pending: HashMap::new(),
                    requests: Some(tx),
                }),
            }),
        };
        {
            let mut sessions = lock(&self.inner.sessions);
            if sessions.contains_key(id) {
                return Err(Status::already_exists(format!(
                    "session {id} is open already; session ids must be unique"
                )));
            }
            sessions.insert(id.to_string(), handle.clone());
        }
        self.inner.opened.send_modify(|n| *n += 1);
        tracing::debug!(session = id, "client session opened");
        Ok((handle, rx))
    }

    /// Closes `handle`: fails its calls and removes it from the registry.
    pub fn close(&self, handle: &SessionHandle) {
        handle.close();
        let mut sessions = lock(&self.inner.sessions);
        if sessions
            .get(handle.id())
            .is_some_and(|h| Arc::ptr_eq(&h.inner, &handle.inner))
        {
            sessions.remove(handle.id());
        }
        tracing::debug!(session = handle.id(), "client session closed");
    }

    /// Serves one `Session` stream: its first message must open the session; then the client's
    /// answers are matched to pending calls until the stream ends or fails, which closes the
    /// session.
    pub async fn serve<S>(&self, mut incoming: S) -> Result<RequestStream, Status>
    where
        S: Stream<Item = Result<proto::SessionClientMessage, Status>> + Send + Unpin + 'static,
    {
        let first = tokio::time::timeout(ATTACH_TIMEOUT, incoming.next())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "the session did not open within {} s",
                    ATTACH_TIMEOUT.as_secs()
                ))
            })?;
        let open = match first {
            Some(Ok(proto::SessionClientMessage {
                message: Some(Message::Open(open)),
            })) => open,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(Status::invalid_argument(
                    "a session's first message must open it (SessionOpen)",
                ))
            }
        };
        let offers = Offers {
            local_dirs: open.local_dirs,
            secrets: open.secrets,
            client_id: if open.client_id.is_empty() {
                open.session_id.clone()
            } else {
                open.client_id
            },
            local_dir_keys: open.local_dir_keys,
        };
        let (handle, requests) = self.open(&open.session_id, offers)?;
        let registry = self.clone();
        tokio::spawn(async move {
            while let Some(message) = incoming.next().await {
                match message {
                    Ok(proto::SessionClientMessage {
                        message: Some(Message::Response(response)),
                    }) => handle.answer(response),
                    Ok(_) => tracing::warn!(
                        session = handle.id(),
                        "ignoring a session message that is not a response"
                    ),
                    Err(status) => {
                        tracing::debug!(session = handle.id(), %status, "client session failed");
                        break;
                    }
                }
            }
            registry.close(&handle);
        });
        Ok(Box::pin(UnboundedReceiverStream::new(requests).map(Ok)))
    }
}

/// A build's way to its client: cheap to clone, usable from any task.
#[derive(Clone)]
pub struct SessionHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    id: String,
    offers: Offers,
    calls: Mutex<Calls>,
}

struct Calls {
    next_id: u64,
    /// Calls waiting for their answer, by request id.
    pending: HashMap<u64, oneshot::Sender<proto::SessionResponse>>,
    /// To the client; `None` once the session is closed.
    requests: Option<mpsc::UnboundedSender<proto::SessionRequest>>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.inner.id)
            .field("offers", &self.inner.offers)
            .finish_non_exhaustive()
    }
}

/// Forgets a call's pending entry when its caller stops waiting.
struct Pending<'a> {
    handle: &'a SessionHandle,
    id: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        lock(&self.handle.inner.calls).pending.remove(&self.id);
    }
}

impl SessionHandle {
    /// The session's id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// What the client offers.
    pub fn offers(&self) -> &Offers {
        &self.inner.offers
    }

    /// Sends `request` to the client and waits for its answer. Fails with
    /// [`SessionError::Closed`] if the client is gone or goes away before answering.
    pub async fn call(&self, request: Request) -> Result<Response, SessionError> {
        let closed = || SessionError::Closed {
            session: self.inner.id.clone(),
        };
        let kind = request.kind();
        let not_found = request.not_found();
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut calls = lock(&self.inner.calls);
            let id = calls.next_id;
            let Some(requests) = calls.requests.clone() else {
                return Err(closed());
            };
            calls.next_id += 1;
            calls.pending.insert(id, tx);
            if requests.send(request.into_wire(id)).is_err() {
                calls.pending.remove(&id);
                return Err(closed());
            }
            id
        };
        let _pending = Pending { handle: self, id };
        let response = rx.await.map_err(|_| closed())?;
        let session = self.inner.id.clone();
        let mismatch = |answer: &str| SessionError::Protocol {
            session: session.clone(),
            request: kind.into(),
            answer: answer.into(),
        };
        match response.result {
            Some(Answer::Secret(v)) => match kind {
                "GetSecret" => Ok(Response::Secret(v.data)),
                _ => Err(mismatch("a secret")),
            },
            Some(Answer::Listing(l)) => match kind {
                "ListLocal" => Ok(Response::Listing(
                    l.entries.into_iter().map(Entry::from).collect(),
                    l.cursor,
                )),
                _ => Err(mismatch("a listing")),
            },
            Some(Answer::Data(d)) => match kind {
                "ReadLocal" => Ok(Response::Data(d.chunks)),
                _ => Err(mismatch("file data")),
            },
            Some(Answer::RegistryAuth(a)) => match kind {
                "GetRegistryAuth" => Ok(Response::RegistryAuth(a.username, a.password)),
                _ => Err(mismatch("registry credentials")),
            },
            Some(Answer::Error(e)) => Err(match Code::try_from(e.code).unwrap_or(Code::Unknown) {
                Code::NotFound => SessionError::NotFound {
                    session,
                    what: not_found,
                },
                Code::Unimplemented => SessionError::Unimplemented {
                    session,
                    request: kind.into(),
                },
                Code::Unknown => SessionError::Client {
                    session,
                    message: e.message,
                },
            }),
            None => Err(SessionError::Protocol {
                session,
                request: kind.into(),
                answer: "an empty response".into(),
            }),
        }
    }

    /// The value of the client's secret `id`.
    pub async fn get_secret(&self, id: &str) -> Result<Vec<u8>, SessionError> {
        match self.call(Request::GetSecret { id: id.into() }).await? {
            Response::Secret(data) => Ok(data),
            _ => unreachable!("call checks the answer's kind"),
        }
    }

    /// The client's credentials (user name, password) for registry `host`.
    pub async fn registry_auth(&self, host: &str) -> Result<(String, String), SessionError> {
        match self
            .call(Request::GetRegistryAuth { host: host.into() })
            .await?
        {
            Response::RegistryAuth(user, password) => Ok((user, password)),
            _ => unreachable!("call checks the answer's kind"),
        }
    }

    /// The listing of the client's local directory `name` through `filter`, all pages.
    pub async fn list_local(
        &self,
        name: &str,
        filter: &Filter,
    ) -> Result<Vec<Entry>, SessionError> {
        let mut entries = Vec::new();
        let mut cursor = String::new();
        loop {
            let request = Request::ListLocal {
                name: name.into(),
                filter: filter.clone(),
                cursor: std::mem::take(&mut cursor),
            };
            match self.call(request).await? {
                Response::Listing(page, next) => {
                    entries.extend(page);
                    if next.is_empty() {
                        return Ok(entries);
                    }
                    cursor = next;
                }
                _ => unreachable!("call checks the answer's kind"),
            }
        }
    }

    /// Parts of files of the client's local directory `name`.
    pub async fn read_local(
        &self,
        name: &str,
        ranges: Vec<Range>,
    ) -> Result<Vec<Vec<u8>>, SessionError> {
        let request = Request::ReadLocal {
            name: name.into(),
            ranges,
        };
        match self.call(request).await? {
            Response::Data(chunks) => Ok(chunks),
            _ => unreachable!("call checks the answer's kind"),
        }
    }

    /// Hands the client's answer to the call waiting for it; an answer no call waits for (its
    /// caller gave up, or the client made up the id) is dropped.
    fn answer(&self, response: proto::SessionResponse) {
        let waiting = lock(&self.inner.calls).pending.remove(&response.id);
        match waiting {
            Some(tx) => {
                let _ = tx.send(response);
            }
            None => tracing::debug!(
                session = self.id(),
                request = response.id,
                "dropping an answer no call waits for"
            ),
        }
    }

    /// Fails every pending and later call.
    fn close(&self) {
        let mut calls = lock(&self.inner.calls);
        calls.requests = None;
        calls.pending.clear();
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.inner.calls).requests.is_none()
    }
}

#[oxkit_worker::oxkit_solver::async_trait]
impl oxkit_worker::ClientSession for SessionHandle {
    fn id(&self) -> &str {
        SessionHandle::id(self)
    }

    async fn get_secret(&self, id: &str) -> Result<Vec<u8>, SessionError> {
        SessionHandle::get_secret(self, id).await
    }

    fn client_id(&self) -> &str {
        &self.inner.offers.client_id
    }

    fn local_dir_key(&self, name: &str) -> &str {
        self.inner
            .offers
            .local_dir_keys
            .get(name)
            .map_or("", String::as_str)
    }

    async fn registry_auth(&self, host: &str) -> Result<(String, String), SessionError> {
        SessionHandle::registry_auth(self, host).await
    }

    async fn list_local(&self, name: &str, filter: &Filter) -> Result<Vec<Entry>, SessionError> {
        SessionHandle::list_local(self, name, filter).await
    }

    async fn read_local(
        &self,
        name: &str,
        ranges: Vec<Range>,
    ) -> Result<Vec<Vec<u8>>, SessionError> {
        SessionHandle::read_local(self, name, ranges).await
    }
}

/// A session failure as the build API reports it.
pub fn status(e: &SessionError) -> Status {
    match e {
        SessionError::NotAttached { .. } => Status::failed_precondition(e.to_string()),
        SessionError::NotFound { .. } => Status::not_found(e.to_string()),
        SessionError::Closed { .. } => Status::unavailable(e.to_string()),
        SessionError::Unimplemented { .. } => Status::unimplemented(e.to_string()),
        SessionError::Client { .. } | SessionError::Protocol { .. } => {
            Status::failed_precondition(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_answer(id: u64, data: &[u8]) -> proto::SessionResponse {
        proto::SessionResponse {
            id,
            result: Some(Answer::Secret(proto::SecretValue {
                data: data.to_vec(),
            })),
        }
    }

    fn error_answer(id: u64, code: Code, message: &str) -> proto::SessionResponse {
        proto::SessionResponse {
            id,
            result: Some(Answer::Error(proto::SessionError {
                code: code as i32,
                message: message.into(),
            })),
        }
    }

    fn get_secret_id(request: &proto::SessionRequest) -> &str {
        match &request.kind {
            Some(Kind::GetSecret(g)) => &g.id,
            other => panic!("not a secret request: {other:?}"),
        }
    }

    #[tokio::test]
    async fn calls_are_answered_by_id_in_any_order_and_unknown_ids_are_dropped() {
        let registry = SessionRegistry::new();
        let (handle, mut requests) = registry.open("s1", Offers::default()).unwrap();
        let a = tokio::spawn({
            let h = handle.clone();
            async move { h.get_secret("a").await }
        });
        let first = requests.recv().await.unwrap();
        let b = tokio::spawn({
            let h = handle.clone();
            async move { h.get_secret("b").await }
        });
        let second = requests.recv().await.unwrap();
        assert_eq!(get_secret_id(&first), "a");
        assert_eq!(get_secret_id(&second), "b");
        assert_ne!(first.id, second.id);

        handle.answer(secret_answer(9999, b"made up"));
        handle.answer(error_answer(second.id, Code::NotFound, "no"));
        handle.answer(secret_answer(first.id, b"value of a"));
        assert_eq!(a.await.unwrap().unwrap(), b"value of a");
        let err = b.await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "client session s1 has no secret \"b\"");
        assert!(lock(&handle.inner.calls).pending.is_empty());
    }

    #[tokio::test]
    async fn registry_credentials_are_asked_by_host_and_a_secret_is_no_answer() {
        let registry = SessionRegistry::new();
        let (handle, mut requests) = registry.open("s1", Offers::default()).unwrap();
        let ask = |host: &'static str| {
            let h = handle.clone();
            tokio::spawn(async move { h.registry_auth(host).await })
        };
        let call = ask("127.0.0.1:5000");
        let request = requests.recv().await.unwrap();
        match &request.kind {
            Some(Kind::GetRegistryAuth(r)) => assert_eq!(r.host, "127.0.0.1:5000"),
            other => panic!("not a credentials request: {other:?}"),
        }
        handle.answer(proto::SessionResponse {
            id: request.id,
            result: Some(Answer::RegistryAuth(proto::RegistryAuth {
                username: "u".into(),
                password: "p".into(),
            })),
        });
        assert_eq!(call.await.unwrap().unwrap(), ("u".into(), "p".into()));

        let call = ask("quay.io");
        let request = requests.recv().await.unwrap();
        handle.answer(error_answer(request.id, Code::NotFound, "none"));
        assert_eq!(
            call.await.unwrap().unwrap_err().to_string(),
            "client session s1 has no credentials for registry quay.io"
        );
        let call = ask("quay.io");
        let request = requests.recv().await.unwrap();
        handle.answer(secret_answer(request.id, b"not credentials"));
        assert!(matches!(
            call.await.unwrap().unwrap_err(),
            SessionError::Protocol { .. }
        ));
    }

    #[tokio::test]
    async fn client_errors_and_unknown_kinds_are_typed() {
        let registry = SessionRegistry::new();
        let (handle, mut requests) = registry.open("s1", Offers::default()).unwrap();
        for (code, want) in [
            (Code::Unknown, "client session s1: disk on fire"),
            (
                Code::Unimplemented,
                "client session s1 does not support GetSecret requests; update the client",
            ),
        ] {
            let call = tokio::spawn({
                let h = handle.clone();
                async move { h.get_secret("x").await }
            });
            let request = requests.recv().await.unwrap();
            handle.answer(error_answer(request.id, code, "disk on fire"));
            assert_eq!(call.await.unwrap().unwrap_err().to_string(), want);
        }
    }

    #[tokio::test]
    async fn a_closed_session_fails_pending_and_later_calls_and_leaves_the_registry() {
        let registry = SessionRegistry::new();
        let (handle, mut requests) = registry.open("s1", Offers::default()).unwrap();
        let pending = tokio::spawn({
            let h = handle.clone();
            async move { h.get_secret("a").await }
        });
        requests.recv().await.unwrap();
        registry.close(&handle);
        let closed = SessionError::Closed {
            session: "s1".into(),
        };
        assert_eq!(pending.await.unwrap().unwrap_err(), closed);
        assert_eq!(handle.get_secret("b").await.unwrap_err(), closed);
        assert_eq!(closed.to_string(), "client session s1 closed");
        assert!(registry.get("s1").is_none());
        assert!(handle.is_closed());
        // The id is free again.
        assert!(registry.open("s1", Offers::default()).is_ok());
    }

    #[tokio::test]
    async fn a_dropped_call_forgets_its_pending_entry() {
        let registry = SessionRegistry::new();
        let (handle, mut requests) = registry.open("s1", Offers::default()).unwrap();
        let call = tokio::spawn({
            let h = handle.clone();
            async move { h.get_secret("a").await }
        });
        let request = requests.recv().await.unwrap();
        call.abort();
        let _ = call.await;
        assert!(lock(&handle.inner.calls).pending.is_empty());
        // Its late answer is dropped.
        handle.answer(secret_answer(request.id, b"late"));
    }

    #[tokio::test]
    async fn ids_are_unique_and_required() {
        let registry = SessionRegistry::new();
        let _open = registry.open("s1", Offers::default()).unwrap();
        let again = registry.open("s1", Offers::default()).unwrap_err();
        assert_eq!(again.code(), tonic::Code::AlreadyExists);
        let empty = registry.open("", Offers::default()).unwrap_err();
        assert_eq!(empty.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn wait_finds_a_session_that_opens_late_and_times_out_on_one_that_never_does() {
        let registry = SessionRegistry::new();
        let waiting = tokio::spawn({
            let r = registry.clone();
            async move { r.wait("late", Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _open = registry.open("late", Offers::default()).unwrap();
        assert_eq!(waiting.await.unwrap().unwrap().id(), "late");

        let start = std::time::Instant::now();
        let err = registry
            .wait("never", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(matches!(err, SessionError::NotAttached { ref session, .. } if session == "never"));
        assert!(
            err.to_string().starts_with("session never not attached"),
            "{err}"
        );
        assert_eq!(status(&err).code(), tonic::Code::FailedPrecondition);
    }

    #[tokio::test]
    async fn serve_opens_on_the_first_message_and_closes_when_the_stream_ends() {
        let registry = SessionRegistry::new();
        let (client_tx, client_rx) = mpsc::unbounded_channel();
        client_tx
            .send(Ok(proto::SessionClientMessage {
                message: Some(Message::Open(proto::SessionOpen {
                    session_id: "s1".into(),
                    local_dirs: vec!["context".into()],
                    secrets: vec!["token".into()],
                    client_id: String::new(),
                    local_dir_keys: [("context".to_string(), "k1".to_string())].into(),
                })),
            }))
            .unwrap();
        let mut requests = registry
            .serve(UnboundedReceiverStream::new(client_rx))
            .await
            .unwrap();
        let handle = registry.get("s1").unwrap();
        assert_eq!(handle.offers().secrets, ["token"]);
        assert_eq!(
            handle.offers().client_id,
            "s1",
            "no client id: the session's"
        );
        use oxkit_worker::ClientSession as _;
        assert_eq!(handle.local_dir_key("context"), "k1");
        assert_eq!(handle.local_dir_key("other"), "", "no key: none");
        let call = tokio::spawn({
            let h = handle.clone();
            async move { h.get_secret("token").await }
        });
        let request = requests.next().await.unwrap().unwrap();
        client_tx
            .send(Ok(proto::SessionClientMessage {
                message: Some(Message::Response(secret_answer(request.id, b"t0k3n"))),
            }))
            .unwrap();
        assert_eq!(call.await.unwrap().unwrap(), b"t0k3n");

        drop(client_tx);
        assert!(requests.next().await.is_none(), "the request stream ends");
        assert!(registry.get("s1").is_none());
        assert!(handle.is_closed());
    }

    #[tokio::test]
    async fn serve_refuses_a_stream_that_does_not_open() {
        let registry = SessionRegistry::new();
        let (client_tx, client_rx) = mpsc::unbounded_channel();
        client_tx
            .send(Ok(proto::SessionClientMessage {
                message: Some(Message::Response(secret_answer(1, b""))),
            }))
            .unwrap();
        let err = match registry
            .serve(UnboundedReceiverStream::new(client_rx))
            .await
        {
            Ok(_) => panic!("served a session that never opened"),
            Err(e) => e,
        };
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(registry.ids().is_empty());
    }
}
