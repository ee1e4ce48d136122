//! Registries: image sources pulled from a real registry (Debian's `docker-registry` on
//! 127.0.0.1, plain HTTP) when containerd's store lacks them — by tag, by digest, from an index —
//! and results pushed to it with `push=true` / `type=registry`, skipping what it has.

use std::path::PathBuf;

use oxkit_integration::{
    busybox_image, read_oci_archive, BuiltImage, CuttingProxy, Fixture, Registry, TestResult,
    REGISTRY_PASSWORD, REGISTRY_USER,
};

use crate::support::{build_dockerfile, build_ok, spawn_build};

/// The value of `key: value` in `oxctl build`'s output.
fn reported<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no {key} reported:\n{stdout}"))
}

/// `image` with one step that writes `/greeting`.
fn greeting_on(image: &str, greeting: &str) -> Vec<u8> {
    oxkit_llb::image(image)
        .sh(&format!("echo {greeting} > /greeting"))
        .root()
        .marshal()
        .expect("marshal")
        .to_bytes()
}

/// `oxctl build` of `def` with `--output output` (none: no export): (success, stdout, stderr).
fn build(
    fx: &Fixture,
    def: &[u8],
    output: Option<&str>,
) -> Result<(bool, String, String), oxkit_integration::FixtureError> {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend(output.iter().flat_map(|o| ["--output", o]));
    fx.oxctl(&args, def)
}

/// Builds `greeting_on(image, greeting)` as image `name`, checks that a container of it says
/// `greeting`, and returns the build's progress (stderr).
fn build_and_run(
    fx: &Fixture,
    image: &str,
    greeting: &str,
    name: &str,
) -> Result<String, oxkit_integration::FixtureError> {
    let output = format!("type=image,name={name}");
    let (ok, _, stderr) = build(fx, &greeting_on(image, greeting), Some(&output))?;
    assert!(
        ok,
        "build on {image} failed:
{stderr}"
    );
    assert_eq!(fx.run(name, &["cat", "/greeting"])?.trim(), greeting);
    Ok(stderr)
}

/// Builds `def` and pushes it with `output` (a fixed epoch makes every export of `def` the same
/// image); returns the manifest digest and the blobs uploaded and skipped, as reported.
fn push(
    fx: &Fixture,
    def: &[u8],
    output: &str,
) -> Result<(String, String, String), oxkit_integration::FixtureError> {
    let stdout = build_ok(fx, def, &format!("{output},source-date-epoch=1700000000"))?;
    Ok((
        reported(&stdout, "containerd.image.digest").to_owned(),
        reported(&stdout, "image.push.uploaded").to_owned(),
        reported(&stdout, "image.push.skipped").to_owned(),
    ))
}

/// Puts the busybox base image into `registry` as `path` (`repo:tag`), named `name` in its
/// archive; returns what was built.
fn serve_busybox(
    registry: &Registry,
    fx: &Fixture,
    name: &str,
    path: &str,
) -> Result<BuiltImage, oxkit_integration::FixtureError> {
    let built = busybox_image(name)?.write_archive(&fx.image_path("busybox.tar"))?;
    registry.copy_in(&built.archive, path, false)?;
    Ok(built)
}

/// Checks that a build's progress `stderr` shows the pull of `base` and that `registry` served
/// `GET /v2/<manifest>`.
fn assert_pulled_from(stderr: &str, base: &str, registry: &Registry, manifest: &str) {
    assert!(stderr.contains(&format!("pulled {base}")), "{stderr}");
    assert!(
        registry.requests(&format!("GET /v2/{manifest}")) > 0,
        "{} served no GET /v2/{manifest}:\n{}",
        registry.host(),
        registry.log()
    );
}

/// Starts a registry and a fixture whose store has no image; `None` when the test skips.
fn start() -> Result<Option<(Registry, Fixture)>, oxkit_integration::FixtureError> {
    let Some(registry) = Registry::start_or_skip()? else {
        return Ok(None);
    };
    let Some(fx) = Fixture::start()? else {
        return Ok(None);
    };
    Ok(Some((registry, fx)))
}

#[test]
fn an_image_missing_from_the_store_is_pulled_by_tag_and_by_digest() -> TestResult {
    let Some((registry, fx)) = start()? else {
        return Ok(());
    };
    let base = registry.reference("busybox:x");
    let built = serve_busybox(&registry, &fx, &base, "busybox:x")?;
    assert!(
        !fx.ctr(["images", "ls", "-q"])?.contains(&base),
        "the store starts without the base"
    );

    let stderr = build_and_run(&fx, &base, "pulled-by-tag", "docker.io/library/pulled:dev")?;
    assert!(
        stderr.contains(&format!("pulled {base}")),
        "the pull shows in the progress:\n{stderr}"
    );
    let listed = fx.ctr(["images", "ls"])?;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&base) && l.contains(&built.target_digest)),
        "the pull recorded the image:\n{listed}"
    );

    // By digest, into a store that has dropped the tag: the pull fetches nothing it has.
    fx.ctr(["images", "rm", base.as_str()])?;
    let pinned = format!("{}/busybox@{}", registry.host(), built.manifest_digest);
    let stderr = build_and_run(
        &fx,
        &pinned,
        "pulled-by-digest",
        "docker.io/library/pinned:dev",
    )?;
    assert!(
        stderr.contains("0 blobs fetched"),
        "the blobs were in the content store already:\n{stderr}"
    );
    Ok(())
}

#[test]
fn a_pull_from_an_index_picks_the_hosts_manifest() -> TestResult {
    let Some((registry, fx)) = start()? else {
        return Ok(());
    };
    let host = oxkit_llb::op::Platform::host().architecture;
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let base = registry.reference("busybox:multi");
    let built = busybox_image(&base)?
        .also_for_architecture(other)
        .write_archive(&fx.image_path("multi.tar"))?;
    registry.copy_in(&built.archive, "busybox:multi", true)?;
    let name = "docker.io/library/from-index:dev";
    build_ok(
        &fx,
        &greeting_on(&base, "on-an-index"),
        &format!("type=image,name={name}"),
    )?;
    let listed = fx.ctr(["images", "ls"])?;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&base) && l.contains(&built.target_digest)),
        "the record points at the index:\n{listed}"
    );
    let out = fx.run(name, &["sh", "-c", "cat /greeting; echo $OXKIT_ARCH"])?;
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["on-an-index", host.as_str()]
    );
    Ok(())
}

#[test]
fn a_host_with_a_mirror_in_the_config_is_pulled_from_the_mirror() -> TestResult {
    let Some((mirror, mut fx)) = start()? else {
        return Ok(());
    };
    // A host that does not resolve: only its mirror can serve it.
    let base = "registry.invalid/busybox:m";
    serve_busybox(&mirror, &fx, base, "busybox:m")?;
    fx.restart_oxkitd_with_config(&format!(
        "[registry.mirrors]\n\"registry.invalid\" = [\"{}\"]\n",
        mirror.host()
    ))?;
    let stderr = build_and_run(&fx, base, "from-a-mirror", "docker.io/library/mirrored:dev")?;
    assert_pulled_from(&stderr, base, &mirror, "busybox/manifests/m");
    Ok(())
}

#[test]
fn a_dockerfile_from_an_image_only_its_registry_has_pulls_it() -> TestResult {
    let Some((registry, fx)) = start()? else {
        return Ok(());
    };
    let base = registry.reference("busybox:df");
    let built = serve_busybox(&registry, &fx, &base, "busybox:df")?;
    let dir = fx.dir().join("from-registry");
    let context = dir.join("context");
    std::fs::create_dir_all(&context).expect("create the context");
    let dockerfile = format!("FROM {base}\nRUN echo from-a-registry > /greeting\n");
    std::fs::write(dir.join("Dockerfile"), dockerfile).expect("write the Dockerfile");
    let archive = dir.join("image.oci.tar");
    let (ok, _, stderr) = build_dockerfile(&fx, &dir, &context, &[], &archive)?;
    assert!(ok, "the Dockerfile build failed:\n{stderr}");
    let listed = fx.ctr(["images", "ls"])?;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&base) && l.contains(&built.target_digest)),
        "the frontend's resolve pulled the base:\n{listed}"
    );
    let image = read_oci_archive(&std::fs::read(&archive).expect("read the archive"))
        .expect("an OCI archive");
    assert_eq!(image.layers, 2, "busybox's layer and the RUN's");
    assert!(image.tree.contains_key("/greeting"), "the RUN step ran");
    Ok(())
}

#[test]
fn push_true_pushes_the_result_and_a_second_push_skips_what_the_registry_has() -> TestResult {
    let Some(registry) = Registry::start_or_skip()? else {
        return Ok(());
    };
    let base = "docker.io/library/busybox:latest";
    let Some(fx) = Fixture::start_with_busybox(base)? else {
        return Ok(());
    };
    let def = greeting_on(base, "pushed");
    let first = registry.reference("app:1");
    let (digest, uploaded, skipped) =
        push(&fx, &def, &format!("type=image,name={first},push=true"))?;
    // busybox's layer, the new layer and the config.
    assert_eq!((uploaded.as_str(), skipped.as_str()), ("3", "0"));

    // Pulled back by containerd itself from the registry, with the digest the export made.
    fx.ctr(["images", "rm", first.as_str()])?;
    fx.ctr(["images", "pull", "--plain-http", first.as_str()])?;
    let listed = fx.ctr(["images", "ls"])?;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&first) && l.contains(&digest)),
        "ctr pulled what was pushed ({digest}):\n{listed}"
    );

    let uploads = registry.requests("POST /v2/app/blobs/uploads/");
    assert_eq!(uploads, 3, "one upload per blob:\n{}", registry.log());
    let second = registry.reference("app:2");
    let again = push(&fx, &def, &format!("type=registry,name={second}"))?;
    assert_eq!(
        again,
        (digest, "0".into(), "3".into()),
        "the same image, nothing uploaded"
    );
    assert_eq!(
        registry.requests("POST /v2/app/blobs/uploads/"),
        uploads,
        "the second push uploaded nothing:\n{}",
        registry.log()
    );
    fx.ctr(["images", "pull", "--plain-http", second.as_str()])?;
    Ok(())
}

#[test]
fn a_push_mounts_the_layers_the_registry_has_in_the_repository_they_were_pulled_from() -> TestResult
{
    let Some((registry, fx)) = start()? else {
        return Ok(());
    };
    let base = registry.reference("busybox:mount");
    serve_busybox(&registry, &fx, &base, "busybox:mount")?;
    let target = registry.reference("mounted:1");
    let stdout = build_ok(
        &fx,
        &greeting_on(&base, "mounted"),
        &format!("type=image,name={target},push=true"),
    )?;
    // busybox's layer is mounted from its repository; the new layer and the config go up.
    assert_eq!(reported(&stdout, "image.push.mounted"), "1");
    assert_eq!(reported(&stdout, "image.push.uploaded"), "2");
    assert_eq!(
        registry.requests("&from=busybox HTTP/1.1\" 201"),
        1,
        "{}",
        registry.log()
    );
    fx.ctr(["images", "rm", target.as_str()])?;
    fx.ctr(["images", "pull", "--plain-http", target.as_str()])?;
    Ok(())
}

#[test]
fn a_blob_transfer_cut_short_is_resumed_where_it_stopped() -> TestResult {
    let Some((registry, fx)) = start()? else {
        return Ok(());
    };
    serve_busybox(
        &registry,
        &fx,
        &registry.reference("busybox:cut"),
        "busybox:cut",
    )?;
    // busybox's layer is about 1.2 MB: its transfer is cut after 300 kB, once.
    let proxy = CuttingProxy::start(registry.host(), 300_000, 1).expect("start the proxy");
    let base = format!("{}/busybox:cut", proxy.host());
    let stderr = build_and_run(&fx, &base, "resumed", "docker.io/library/resumed:1")?;
    assert_eq!(proxy.cuts(), 1, "the transfer was cut");
    assert!(stderr.contains(&format!("pulled {base}")), "{stderr}");
    // The second request for the layer asked for the rest only.
    assert_eq!(
        registry
            .log()
            .lines()
            .filter(|l| l.contains("GET /v2/busybox/blobs/sha256:") && l.contains("\" 206 "))
            .count(),
        1,
        "{}",
        registry.log()
    );
    Ok(())
}

/// `oxctl build` of `def` with `--output output`, its Docker config (registry credentials) in
/// `docker_config`: (success, stdout, stderr).
fn build_with_docker_config(
    fx: &Fixture,
    def: &[u8],
    output: &str,
    docker_config: &std::path::Path,
) -> Result<(bool, String, String), Box<dyn std::error::Error>> {
    let mut command = fx.oxctl_command(&["build", "--progress", "plain", "--output", output]);
    command.env("DOCKER_CONFIG", docker_config);
    let out = spawn_build(command, def).wait_with_output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A Docker config dir under the fixture's dir with `user:password` for `host`.
fn docker_config(fx: &Fixture, name: &str, host: &str, user: &str, password: &str) -> PathBuf {
    use base64::Engine as _;
    let dir = fx.dir().join(name);
    std::fs::create_dir_all(&dir).expect("create the docker config dir");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = serde_json::json!({"auths": {host: {"auth": auth}}});
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config.json");
    dir
}

#[test]
fn a_registry_with_a_password_takes_the_clients_credentials_and_refuses_wrong_ones(
) -> Result<(), Box<dyn std::error::Error>> {
    let Some(registry) = Registry::with_password_or_skip(false)? else {
        return Ok(());
    };
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let base = registry.reference("busybox:x");
    serve_busybox(&registry, &fx, &base, "busybox:x")?;
    let def = greeting_on(&base, "with-a-password");
    let host = registry.host();

    // No credentials, then a wrong password: one clear error each, naming the reference.
    let none = fx.dir().join("no-docker-config");
    let wrong = docker_config(&fx, "wrong", host, REGISTRY_USER, "not-the-password");
    for config in [none, wrong] {
        let (ok, _, stderr) =
            build_with_docker_config(&fx, &def, "type=image,name=docker.io/library/x:1", &config)?;
        assert!(!ok, "the build fails");
        assert!(
            stderr.contains(&format!(
                "registry {host} refused access to {base} (unauthorized)"
            )),
            "{stderr}"
        );
    }

    // The right password: the base is pulled, and the result pushed back with it.
    let right = docker_config(&fx, "right", host, REGISTRY_USER, REGISTRY_PASSWORD);
    let pushed = registry.reference("app:secret");
    let (ok, stdout, stderr) =
        build_with_docker_config(&fx, &def, &format!("type=registry,name={pushed}"), &right)?;
    assert!(ok, "the build fails:\n{stderr}");
    // The base's layer is mounted from the repository it was pulled from.
    assert_eq!(reported(&stdout, "image.push.uploaded"), "2", "{stdout}");
    assert_eq!(reported(&stdout, "image.push.mounted"), "1", "{stdout}");
    fx.ctr([
        "images",
        "pull",
        "--plain-http",
        "--user",
        &format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"),
        pushed.as_str(),
    ])?;
    Ok(())
}

#[test]
fn a_tls_registry_listed_as_insecure_is_spoken_to_over_https_with_the_password(
) -> Result<(), Box<dyn std::error::Error>> {
    let Some(registry) = Registry::with_password_or_skip(true)? else {
        return Ok(());
    };
    let Some(mut fx) = Fixture::start()? else {
        return Ok(());
    };
    let base = registry.reference("busybox:tls");
    serve_busybox(&registry, &fx, &base, "busybox:tls")?;
    let host = registry.host();
    fx.restart_oxkitd_with_config(&format!("[registry]\ninsecure = [\"{host}\"]\n"))?;
    let right = docker_config(&fx, "right", host, REGISTRY_USER, REGISTRY_PASSWORD);
    let (ok, _, stderr) = build_with_docker_config(
        &fx,
        &greeting_on(&base, "over-tls"),
        "type=image,name=docker.io/library/tls:1",
        &right,
    )?;
    assert!(ok, "the build fails:\n{stderr}");
    assert_pulled_from(&stderr, &base, &registry, "busybox/manifests/tls");
    Ok(())
}

#[test]
fn an_unreachable_registry_and_an_unknown_tag_each_fail_with_one_clear_error() -> TestResult {
    let Some((registry, fx)) = start()? else {
        return Ok(());
    };
    // A port nobody listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let unreachable = format!("127.0.0.1:{closed}/busybox:x");
    let (ok, _, stderr) = build(&fx, &greeting_on(&unreachable, "never"), None)?;
    assert!(!ok, "the build fails");
    assert!(
        stderr.contains(&format!(
            "registry 127.0.0.1:{closed} of {unreachable} is unreachable"
        )),
        "{stderr}"
    );

    let unknown = registry.reference("nothing:here");
    let (ok, _, stderr) = build(&fx, &greeting_on(&unknown, "never"), None)?;
    assert!(!ok, "the build fails");
    assert!(
        stderr.contains(&format!(
            "{unknown}: manifest not found in registry {}",
            registry.host()
        )),
        "{stderr}"
    );
    Ok(())
}
