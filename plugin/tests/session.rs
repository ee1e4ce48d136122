//! The client session over a real connection: oxkit's build service served by tonic on a unix
//! socket in a temp dir, a real `BuildClient` serving secrets and local directories, and the
//! daemon's side asking for them as a build would (a local directory synced into a copy, a
//! hostile client's hand-made listings refused). No containerd needed: the service connects to
//! it only for builds.

use std::sync::Arc;
use std::time::Duration;

use oxkit_localsync::{Entry, Filter, Listing, Range, Source, Store, SyncError};
use oxkit_plugin::client::{
    Attachables, BuildClient, LocalDir, LocalDirs, Offers, ProvideError, Secrets, SessionProvider,
};
use oxkit_plugin::control::session::SessionError;
use oxkit_plugin::control::{BuildConfig, ControlService, SessionHandle, SessionRegistry};

async fn serve(dir: &std::path::Path) -> (String, SessionRegistry) {
    let config = BuildConfig {
        root: dir.join("root"),
        containerd_address: dir.join("no-containerd.sock"),
        namespace: "buildkit".into(),
        max_parallelism: 1,
        shim_idle: std::time::Duration::from_secs(3),
        registry: Default::default(),
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

struct ViaSession(SessionHandle, String);

#[tonic::async_trait]
impl Source for ViaSession {
    async fn read(
        &self,
        ranges: Vec<Range>,
    ) -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.0.read_local(&self.1, ranges).await?)
    }
}

#[tokio::test]
async fn a_directory_is_listed_and_fetched_through_the_session_under_the_client_id() {
    let dir = tempfile::tempdir().unwrap();
    let (address, sessions) = serve(dir.path()).await;
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    std::fs::write(ctx.join("sub/a"), "hello").unwrap();
    std::fs::write(ctx.join("big"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(ctx.join("skip.log"), "no").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "*.log\n").unwrap();
    let served = Attachables {
        secrets: Secrets::default(),
        locals: LocalDirs::new(vec![
            LocalDir::parse(&format!("context={}", ctx.display())).unwrap()
        ]),
        client_id: "client-1".into(),
        registry_auths: oxkit_plugin::client::RegistryAuths::from_env(),
    };
    let mut client = BuildClient::connect(&address).await.unwrap();
    let session = client.open_session(Arc::new(served)).await.unwrap();
    let handle = attached(&sessions, session.id()).await;
    assert_eq!(handle.offers().client_id, "client-1");
    assert_eq!(handle.offers().local_dirs, ["context"]);

    let entries = handle
        .list_local("context", &Filter::default())
        .await
        .unwrap();
    let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, [".dockerignore", "big", "sub", "sub/a"]);
    let store = Store::new(dir.path().join("copies"));
    let mut copy = store
        .open(&Store::key("client-1", "context", ""))
        .await
        .unwrap();
    let source = ViaSession(handle.clone(), "context".into());
    let synced = copy
        .sync(Listing::new(entries).unwrap(), &source, false)
        .await
        .unwrap();
    assert_eq!((synced.files, synced.bytes), (3, 6 + (3 << 20) + 5));
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    copy.materialize(&out).unwrap();
    assert_eq!(std::fs::read(out.join("big")).unwrap(), vec![7u8; 3 << 20]);
    assert_eq!(std::fs::read_to_string(out.join("sub/a")).unwrap(), "hello");

    // The excluded file is refused even when asked for by name.
    let err = handle
        .read_local(
            "context",
            vec![Range {
                path: "skip.log".into(),
                offset: 0,
                len: 2,
            }],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Client { .. }), "{err:?}");
    assert!(matches!(
        handle.list_local("nope", &Filter::default()).await,
        Err(SessionError::NotFound { .. })
    ));
}

/// Answers listings with whatever it was made with.
struct Hostile(Vec<Entry>);

#[tonic::async_trait]
impl SessionProvider for Hostile {
    fn offers(&self) -> Offers {
        Offers {
            local_dirs: vec!["context".into()],
            ..Default::default()
        }
    }

    async fn list_local(
        &self,
        _: &str,
        _: &Filter,
        _: &str,
    ) -> Result<(Vec<Entry>, String), ProvideError> {
        Ok((self.0.clone(), String::new()))
    }

    async fn read_local(&self, _: &str, ranges: &[Range]) -> Result<Vec<Vec<u8>>, ProvideError> {
        Ok(ranges.iter().map(|r| vec![b'x'; r.len as usize]).collect())
    }
}

#[tokio::test]
async fn a_hostile_clients_paths_are_refused_and_nothing_is_written_outside() {
    let dir = tempfile::tempdir().unwrap();
    let (address, sessions) = serve(dir.path()).await;
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let file = |p: &str| Entry {
        path: p.into(),
        mode: Entry::FILE | 0o644,
        size: 1,
        ..Default::default()
    };
    let symlink = |p: &str, t: &str| Entry {
        path: p.into(),
        mode: Entry::SYMLINK | 0o777,
        target: t.into(),
        ..Default::default()
    };
    let dir_entry = |p: &str| Entry {
        path: p.into(),
        mode: Entry::DIR | 0o755,
        ..Default::default()
    };
    let outside_str = outside.to_str().unwrap();
    let cases = vec![
        vec![file("../x")],
        vec![file("../../outside/x")],
        vec![file(&format!("{outside_str}/abs"))],
        vec![dir_entry("d"), file("d/../../x")],
        vec![symlink("l", outside_str), file("l/x")],
        vec![symlink("l", "../.."), dir_entry("l"), file("l/x")],
    ];
    let mut client = BuildClient::connect(&address).await.unwrap();
    for entries in cases {
        let session = client
            .open_session(Arc::new(Hostile(entries.clone())))
            .await
            .unwrap();
        let handle = attached(&sessions, session.id()).await;
        let listed = handle
            .list_local("context", &Filter::default())
            .await
            .unwrap();
        assert_eq!(listed, entries, "the wire keeps what was sent");
        match Listing::new(listed) {
            Err(SyncError::Refused { .. }) => {}
            other => panic!("{entries:?} was not refused: {other:?}"),
        }
    }
    // Nothing written: outside is empty, and the temp dir holds only what the test made.
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["outside", "oxkitd.sock"]);
}
