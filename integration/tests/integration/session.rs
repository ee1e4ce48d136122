//! The client session against the real oxkitd: a build naming a session that never opens fails
//! with a clear error and the daemon goes on serving; `oxctl build --secret` opens its session
//! beside the build, and a secret it cannot read fails before anything is sent.

use std::error::Error;

use oxkit_integration::Fixture;
use oxkit_plugin::client::{BuildClient, ClientError, SolveOptions};

use crate::support::in_runtime;

const BASE: &str = "docker.io/library/busybox:latest";

fn definition(script: &str) -> Vec<u8> {
    oxkit_llb::image(BASE)
        .sh(script)
        .root()
        .marshal()
        .expect("marshal")
        .to_bytes()
}

#[test]
fn a_build_naming_a_session_that_never_attaches_fails_and_the_daemon_serves_the_next(
) -> Result<(), Box<dyn Error>> {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let address = format!("unix://{}", fx.build_address().display());
    in_runtime(async {
        let mut client = BuildClient::connect(&address).await?;
        let started = std::time::Instant::now();
        let err = match client
            .solve(SolveOptions {
                definition: definition("true"),
                session_id: "never-attached".into(),
                ..Default::default()
            })
            .await
        {
            Ok(_) => return Err("a build without its session started".into()),
            Err(e) => e,
        };
        match &err {
            ClientError::Daemon { message, .. } => {
                assert!(
                    message.contains("session never-attached not attached"),
                    "{message}"
                );
            }
            other => return Err(format!("unexpected error: {other}").into()),
        }
        assert!(
            started.elapsed() >= std::time::Duration::from_secs(9),
            "the daemon waited for the session"
        );
        Ok(())
    })?;

    let secret = fx.dir().join("token");
    std::fs::write(&secret, "s3cr3t")?;
    let src = format!("id=token,src={}", secret.display());
    let (ok, _, stderr) = fx.oxctl(
        &["build", "--progress", "plain", "--secret", &src],
        &definition("echo next build"),
    )?;
    assert!(ok, "the next build, with a session, failed:\n{stderr}");

    let missing = fx.dir().join("missing");
    let src = format!("id=gone,src={}", missing.display());
    let (ok, _, stderr) = fx.oxctl(&["build", "--secret", &src], &definition("true"))?;
    assert!(!ok);
    assert!(
        stderr.contains("secret gone") && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
    Ok(())
}
