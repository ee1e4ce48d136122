//! `ResolveImageConfig` against the real oxkitd: the digest it reports is the one containerd's
//! image record has, the config is the image's own, and a build described with the daemon as the
//! builder's meta resolver runs its steps with the image's env, working directory and user.

use std::error::Error;
use std::sync::Arc;

use oxkit_integration::{Fixture, Registry};
use oxkit_llb::{image_with, ImageOptions};
use oxkit_plugin::client::{BlockingImageResolver, BuildClient, ClientError};
use sha2::{Digest as _, Sha256};

use crate::support::{build_ok, in_runtime};

type TestResult = Result<(), Box<dyn Error>>;

const BASE: &str = "docker.io/library/busybox:latest";

/// The DIGEST column of `ctr images ls` for `name`.
fn listed_digest(fx: &Fixture, name: &str) -> Result<String, Box<dyn Error>> {
    let listed = fx.ctr(["images", "ls"])?;
    listed
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("sha256:")))
        .map(String::from)
        .ok_or_else(|| format!("{name} is not listed:\n{listed}").into())
}

#[test]
fn resolve_image_config_reports_containerds_digest_and_the_images_config() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let address = format!("unix://{}", fx.build_address().display());
    let expected = listed_digest(&fx, BASE)?;
    in_runtime(async {
        let mut client = BuildClient::connect(&address).await?;
        let resolved = client.resolve_image_config("busybox", None).await?;
        assert_eq!(resolved.digest, expected);
        let manifest: serde_json::Value =
            serde_json::from_str(&fx.ctr(["content", "get", expected.as_str()])?)?;
        assert_eq!(
            manifest["config"]["digest"].as_str(),
            Some(format!("sha256:{:x}", Sha256::digest(&resolved.config)).as_str()),
            "the config blob as stored"
        );
        let config: serde_json::Value = serde_json::from_slice(&resolved.config)?;
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));

        // An image neither the store nor its registry has.
        let Some(registry) = Registry::start_or_skip()? else {
            return Ok(());
        };
        let missing = registry.reference("nothing-here:1");
        match client.resolve_image_config(&missing, None).await {
            Err(ClientError::Daemon { code, message }) => {
                assert_eq!(format!("{code:?}"), "NotFound", "{message}");
                assert!(message.contains(&missing), "{message}");
            }
            other => return Err(format!("a missing image resolved: {other:?}").into()),
        }
        Ok(())
    })
}

#[test]
fn a_build_described_with_the_daemon_as_meta_resolver_inherits_the_images_config() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    // An image whose config sets env, working directory and user, made by the image exporter.
    let configured = "docker.io/library/configured:base";
    let output = format!(
        "type=image,name={configured},env.GREETING=from-config,workdir=/srv,user=1000:1000"
    );
    let def = oxkit_llb::image(BASE)
        .sh("mkdir -p /srv /out && chmod 777 /out")
        .root()
        .marshal()?
        .to_bytes();
    build_ok(&fx, &def, &output)?;

    let resolver =
        BlockingImageResolver::connect(&format!("unix://{}", fx.build_address().display()))?;
    let base = image_with(
        configured,
        ImageOptions {
            meta_resolver: Some(Arc::new(resolver)),
            ..Default::default()
        },
    );
    let config = base.image_config().ok_or("the config was not resolved")?;
    assert_eq!(
        (config.working_dir.as_str(), config.user.as_str()),
        ("/srv", "1000:1000")
    );
    let def = base
        .sh("echo \"$GREETING $(pwd) $(id -u)\" > /out/seen")
        .root()
        .marshal()?
        .to_bytes();
    let name = "docker.io/library/inherits:dev";
    build_ok(&fx, &def, &format!("type=image,name={name}"))?;
    let out = fx.run(name, &["cat", "/out/seen"])?;
    assert_eq!(out.trim(), "from-config /srv 1000");
    Ok(())
}
