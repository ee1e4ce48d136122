//! The client session over a real connection: oxkit's build service served by tonic on a unix
//! socket in a temp dir, a real `BuildClient` serving secrets, and the daemon's side asking for
//! them as a build would. No containerd needed: the service connects to it only for builds.

use std::sync::Arc;
use std::time::Duration;

use oxkit_plugin::client::{BuildClient, Secrets};
use oxkit_plugin::control::session::SessionError;
use oxkit_plugin::control::{BuildConfig, ControlService, SessionHandle, SessionRegistry};

async fn serve(dir: &std::path::Path) -> (String, SessionRegistry) {
    let config = BuildConfig {
        root: dir.join("root"),
        containerd_address: dir.join("no-containerd.sock"),
        namespace: "buildkit".into(),
        max_parallelism: 1,
    };
    let service = ControlService::new(config);
    let sessions = service.sessions();
    let socket = dir.join("oxkitd.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind the build socket");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    (format!("unix://{}", socket.display()), sessions)
}

async fn attached(sessions: &SessionRegistry, id: &str) -> SessionHandle {
    sessions
        .wait(id, Duration::from_secs(5))
        .await
        .expect("the session attaches")
}

#[tokio::test]
async fn the_daemon_gets_a_secret_from_the_client_session_until_the_client_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let (address, sessions) = serve(dir.path()).await;
    let mut client = BuildClient::connect(&address).await.unwrap();
    let secrets = Secrets::new([("token".to_string(), b"s3cr3t\n".to_vec())].into());
    let session = client.open_session(Arc::new(secrets)).await.unwrap();
    let id = session.id().to_string();

    let handle = attached(&sessions, &id).await;
    assert_eq!(handle.offers().secrets, ["token"]);
    assert_eq!(handle.get_secret("token").await.unwrap(), b"s3cr3t\n");
    // Concurrent calls are each answered.
    let (a, b) = tokio::join!(handle.get_secret("token"), handle.get_secret("other"));
    assert_eq!(a.unwrap(), b"s3cr3t\n");
    assert_eq!(
        b.unwrap_err(),
        SessionError::NotFound {
            session: id.clone(),
            what: "secret \"other\"".into()
        }
    );

    drop(session);
    let closed = SessionError::Closed {
        session: id.clone(),
    };
    // The daemon notices the stream's end on its own time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sessions.get(&id).is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        sessions.get(&id).is_none(),
        "the closed session left the registry"
    );
    assert_eq!(handle.get_secret("token").await.unwrap_err(), closed);
    assert_eq!(closed.to_string(), format!("client session {id} closed"));

    // The service goes on serving: a new session on the same connection works.
    let again = client
        .open_session(Arc::new(Secrets::new(
            [("token".to_string(), b"2".to_vec())].into(),
        )))
        .await
        .unwrap();
    assert_ne!(again.id(), id);
    let handle = attached(&sessions, again.id()).await;
    assert_eq!(handle.get_secret("token").await.unwrap(), b"2");
}

#[tokio::test]
async fn a_call_pending_when_the_client_session_goes_away_fails_as_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (address, sessions) = serve(dir.path()).await;
    let mut client = BuildClient::connect(&address).await.unwrap();

    /// Never answers.
    struct Stuck;
    #[tonic::async_trait]
    impl oxkit_plugin::client::SessionProvider for Stuck {
        fn offers(&self) -> oxkit_plugin::client::Offers {
            Default::default()
        }
        async fn get_secret(&self, _: &str) -> Result<Vec<u8>, oxkit_plugin::client::ProvideError> {
            std::future::pending().await
        }
    }
    let session = client.open_session(Arc::new(Stuck)).await.unwrap();
    let id = session.id().to_string();
    let handle = attached(&sessions, &id).await;
    let pending = tokio::spawn({
        let handle = handle.clone();
        async move { handle.get_secret("x").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(session);
    let result = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the pending call ends")
        .unwrap();
    assert_eq!(result.unwrap_err(), SessionError::Closed { session: id });
}
