//! [`ClientSession`]: what the client of a build serves the worker's ops while the build runs
//! (secrets, local directories, registry credentials), and how asking for it
//! fails ([`SessionError`]). The daemon's build API implements it over its Session stream; ops
//! find it on their [`OpContext`](oxkit_solver::OpContext) with [`sessions`].

use std::sync::Arc;

use async_trait::async_trait;
use oxkit_localsync::{Entry, Filter, Range};
use oxkit_solver::OpContext;

/// A build client's session, as ops use it. Each call asks the client and waits for its answer;
/// calls may run concurrently.
#[async_trait]
pub trait ClientSession: Send + Sync {
    /// The session's id (chosen by the client), for messages.
    fn id(&self) -> &str;

    /// The value of secret `id`. Fails with [`SessionError::NotFound`] when the client has no
    /// such secret, and with [`SessionError::Closed`] once the client has gone away.
    async fn get_secret(&self, id: &str) -> Result<Vec<u8>, SessionError>;

    /// The client's stable id (the same across its sessions): the daemon's copies of local
    /// directories are kept per client id. Defaults to the session's id.
    fn client_id(&self) -> &str {
        self.id()
    }

    /// A key of local directory `name` itself (the client's, e.g. a hash of its path; empty if
    /// it gave none): the daemon keeps a copy per (client id, name, key).
    fn local_dir_key(&self, name: &str) -> &str {
        let _ = name;
        ""
    }

    /// The whole listing of local directory `name` through `filter` (the client applies it:
    /// nothing excluded is sent). Fails with [`SessionError::NotFound`] when the client serves
    /// no such directory.
    async fn list_local(&self, name: &str, filter: &Filter) -> Result<Vec<Entry>, SessionError> {
        let _ = (name, filter);
        Err(SessionError::Unimplemented {
            session: self.id().to_string(),
            request: "ListLocal".into(),
        })
    }

    /// The client's credentials (user name, password) for registry `host`. Fails with
    /// [`SessionError::NotFound`] when the client has none for it.
    async fn registry_auth(&self, host: &str) -> Result<(String, String), SessionError> {
        let _ = host;
        Err(SessionError::Unimplemented {
            session: self.id().to_string(),
            request: "GetRegistryAuth".into(),
        })
    }

    /// Parts of regular files of local directory `name` that a listing named, one buffer per
    /// range in order (a short one: the file shrank).
    async fn read_local(
        &self,
        name: &str,
        ranges: Vec<Range>,
    ) -> Result<Vec<Vec<u8>>, SessionError> {
        let _ = (name, ranges);
        Err(SessionError::Unimplemented {
            session: self.id().to_string(),
            request: "ReadLocal".into(),
        })
    }
}

/// A shared [`ClientSession`]: what a solve carries as its session (`SolveOptions::session`).
pub type SessionRef = Arc<dyn ClientSession>;

/// The client sessions of the builds waiting on the op running in `ctx`, first come first: an
/// op that several builds share may use whichever client is still there.
pub fn sessions(ctx: &OpContext) -> Vec<SessionRef> {
    ctx.sessions::<SessionRef>()
}

/// The credentials for registry `host` from the first of `sessions` that has some; anonymous
/// when none has (or there is no session). A session that fails to answer is passed over with a
/// log line: the registry's refusal then says what is missing.
pub async fn registry_credentials(
    sessions: &[SessionRef],
    host: &str,
) -> oxkit_registry::Credentials {
    for session in sessions {
        match session.registry_auth(host).await {
            Ok((username, password)) => {
                return oxkit_registry::Credentials::Basic { username, password }
            }
            Err(SessionError::NotFound { .. } | SessionError::Unimplemented { .. }) => {}
            Err(e) => tracing::warn!(host, error = %e, "could not get registry credentials"),
        }
    }
    oxkit_registry::Credentials::Anonymous
}

/// Why a request to a client session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A build named a session that did not open in time.
    #[error("session {session} not attached: the client did not open it within {waited_secs} s")]
    NotAttached {
        /// The session id.
        session: String,
        /// How long the daemon waited.
        waited_secs: u64,
    },
    /// The client went away (its stream ended or failed); no call on the session can succeed.
    #[error("client session {session} closed")]
    Closed {
        /// The session id.
        session: String,
    },
    /// The client does not have what was asked for.
    #[error("client session {session} has no {what}")]
    NotFound {
        /// The session id.
        session: String,
        /// What was asked for, e.g. `secret "npmrc"`.
        what: String,
    },
    /// The client does not know the request (it is older than the daemon).
    #[error("client session {session} does not support {request} requests; update the client")]
    Unimplemented {
        /// The session id.
        session: String,
        /// The kind of request.
        request: String,
    },
    /// The client answered with an error of its own (e.g. it could not read a file).
    #[error("client session {session}: {message}")]
    Client {
        /// The session id.
        session: String,
        /// The client's message.
        message: String,
    },
    /// The client answered with something that is not an answer to the request: a client bug.
    #[error("client session {session} answered a {request} request with {answer}")]
    Protocol {
        /// The session id.
        session: String,
        /// The kind of request.
        request: String,
        /// What came back instead.
        answer: String,
    },
}
