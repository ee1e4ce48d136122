//! The client-side exporters end to end: `oxctl build --output type=oci,dest=FILE` writes an OCI
//! archive that `ctr images import` takes (and that runs), that `skopeo inspect` reads and `umoci unpack` unpacks;
//! `--output type=docker,dest=FILE` writes an archive that `docker load` takes (into Debian's
//! dockerd, started by the test) and that `docker run` runs with the exported config;
//! `--output type=local,dest=DIR` gives the result's files with their modes and symlinks;
//! `type=image` with image config options writes them into the config that `ctr run` follows,
//! and builds on a base image whose record is an index from the host's manifest.

use std::error::Error;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use oxkit_integration::{busybox_image, locate_oxkitd, Fixture};

use crate::support::build_ok;

type TestResult = Result<(), Box<dyn Error>>;

const BASE: &str = "docker.io/library/busybox:latest";

/// busybox, then one shell step.
fn definition(script: &str) -> Vec<u8> {
    oxkit_llb::image(BASE)
        .sh(script)
        .custom_name("make files")
        .root()
        .marshal()
        .expect("marshal")
        .to_bytes()
}

/// The value oxctl reported for `key` (a `key: value` line of its output).
fn reported(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} reported:\n{stdout}"))
        .to_string()
}

/// The entries of a tar archive: (path, contents).
fn tar_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    tar::Archive::new(bytes)
        .entries()
        .expect("a tar archive")
        .map(|e| {
            let mut e = e.expect("a tar entry");
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("entry data");
            (e.path().expect("path").display().to_string(), data)
        })
        .collect()
}

#[test]
fn an_oci_archive_imports_into_another_namespace_runs_and_passes_skopeo_and_umoci() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let name = "docker.io/library/oci-export:dev";
    let archive = fx.dir().join("out/image.tar");
    std::fs::create_dir_all(archive.parent().unwrap())?;
    let output = format!("type=oci,dest={},name={name}", archive.display());
    let (ok, stdout, stderr) = fx.oxctl(
        &["build", "--progress", "plain", "--output", &output],
        &definition("echo from-the-archive > /greeting"),
    )?;
    assert!(ok, "build failed:\n{stderr}");
    let digest = reported(&stdout, "containerd.image.digest");
    assert!(
        !fx.ctr(["images", "ls", "-q"])?.contains(name),
        "type=oci records no image in containerd"
    );
    let leftovers: Vec<_> = std::fs::read_dir(archive.parent().unwrap())?.collect();
    assert_eq!(leftovers.len(), 1, "only the archive, no partial file");

    // The layout: fixed entry order, an index naming the manifest.
    let bytes = std::fs::read(&archive)?;
    let entries = tar_entries(&bytes);
    let paths: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths[..4],
        ["oci-layout", "index.json", "blobs/", "blobs/sha256/"]
    );
    let mut blobs = paths[4..].to_vec();
    blobs.sort();
    assert_eq!(blobs, paths[4..], "blobs in digest order");
    let index: serde_json::Value = serde_json::from_slice(&entries[1].1)?;
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], digest.as_str());
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "dev"
    );

    // `ctr images import` into a namespace oxkit never touched, then run it there (unpacked
    // by containerd into its default snapshotter).
    let archive_arg = archive.display().to_string();
    fx.ctr([
        "--namespace",
        "other",
        "images",
        "import",
        archive_arg.as_str(),
    ])?;
    let listed = fx.ctr(["--namespace", "other", "images", "ls", "-q"])?;
    assert!(listed.lines().any(|l| l == name), "{listed}");
    assert!(
        !fx.ctr(["images", "ls", "-q"])?.contains(name),
        "the import went to the other namespace"
    );
    let id = fx.unique_id("oci");
    let out = fx.ctr([
        "--namespace",
        "other",
        "run",
        "--rm",
        name,
        id.as_str(),
        "cat",
        "/greeting",
    ])?;
    assert_eq!(out.trim(), "from-the-archive");

    // skopeo reads it too.
    match Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{archive_arg}")])
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "skopeo inspect failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let inspected: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            assert_eq!(inspected["Digest"], digest.as_str(), "{inspected}");
            assert_eq!(inspected["Os"], "linux");
            assert_eq!(
                inspected["Layers"].as_array().map(Vec::len),
                Some(2),
                "busybox's layer and the step's: {inspected}"
            );
        }
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("skopeo is needed under CI=true: {e}")
        }
        Err(e) => eprintln!("SKIPPING the skopeo check: skopeo is not installed ({e})"),
    }

    // umoci (which verifies every blob's digest as it reads it) unpacks the layout into a
    // runtime bundle with the step's file.
    let layout = fx.dir().join("out/layout");
    tar::Archive::new(bytes.as_slice()).unpack(&layout)?;
    let bundle = fx.dir().join("out/bundle");
    let image = format!("{}:dev", layout.display());
    match Command::new("umoci")
        .args(["stat", "--image", &image])
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "umoci stat failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let unpacked = Command::new("umoci")
                .args(["unpack", "--image", &image])
                .arg(&bundle)
                .output()?;
            assert!(
                unpacked.status.success(),
                "umoci unpack failed: {}",
                String::from_utf8_lossy(&unpacked.stderr)
            );
            assert_eq!(
                std::fs::read_to_string(bundle.join("rootfs/greeting"))?.trim(),
                "from-the-archive"
            );
            assert!(
                bundle.join("rootfs/bin/busybox").exists(),
                "busybox's layer"
            );
            let config: serde_json::Value =
                serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
            assert!(config["process"]["env"].is_array(), "{config}");
        }
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("umoci is needed under CI=true: {e}")
        }
        Err(e) => eprintln!("SKIPPING the umoci check: umoci is not installed ({e})"),
    }
    Ok(())
}

#[test]
fn an_oci_archive_goes_to_stdout_with_dest_dash() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    // fx.oxctl captures stdout as text; the archive is bytes, so run oxctl here.
    let oxctl = locate_oxkitd()?.with_file_name("oxctl");
    let mut child = Command::new(&oxctl)
        .arg("--addr")
        .arg(format!("unix://{}", fx.build_address().display()))
        .args([
            "build",
            "--progress",
            "plain",
            "--output",
            "type=oci,dest=-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(
        &mut child.stdin.take().expect("stdin"),
        &definition("echo to-stdout > /greeting"),
    )?;
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("containerd.image.digest: sha256:"),
        "the result goes to stderr when stdout is the archive:\n{stderr}"
    );
    let entries = tar_entries(&out.stdout);
    assert_eq!(entries[0].0, "oci-layout");
    let index: serde_json::Value = serde_json::from_slice(&entries[1].1)?;
    assert!(
        index["manifests"][0].get("annotations").is_none(),
        "no name, no annotations: {index}"
    );
    Ok(())
}

#[test]
fn a_docker_archive_loads_into_dockerd_and_runs_with_its_config() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let Some(dockerd) = oxkit_integration::Dockerd::start_if_installed()? else {
        return Ok(());
    };
    let archive = fx.dir().join("out/image.docker.tar");
    std::fs::create_dir_all(archive.parent().unwrap())?;
    // `docker-export:dev` is normalised to `docker.io/library/docker-export:dev`, which Docker
    // shows by its short name again.
    let output = format!(
        "type=docker,dest={},name=docker-export:dev,env.GREETING=hello-docker,oci-mediatypes=false,annotation.k=v",
        archive.display()
    );
    let (ok, stdout, stderr) = fx.oxctl(
        &["build", "--progress", "plain", "--output", &output],
        &definition("echo from-the-docker-archive > /greeting"),
    )?;
    assert!(ok, "build failed:\n{stderr}");
    assert!(
        stderr.contains("exporting to docker image format"),
        "{stderr}"
    );
    let config_digest = reported(&stdout, "containerd.config.digest");

    let entries = tar_entries(&std::fs::read(&archive)?);
    let manifest = &entries
        .iter()
        .find(|(p, _)| p == "manifest.json")
        .expect("a docker archive has manifest.json")
        .1;
    let manifest: serde_json::Value = serde_json::from_slice(manifest)?;
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["docker-export:dev"])
    );
    assert_eq!(
        manifest[0]["Layers"].as_array().map(Vec::len),
        Some(2),
        "busybox's layer and the step's: {manifest}"
    );
    // oci-mediatypes=false: the image manifest the index names is Docker's, annotated.
    let index: serde_json::Value = serde_json::from_slice(
        &entries
            .iter()
            .find(|(p, _)| p == "index.json")
            .expect("index.json")
            .1,
    )?;
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let blob = |digest: &serde_json::Value| {
        let path = format!(
            "blobs/sha256/{}",
            digest.as_str().unwrap_or("").trim_start_matches("sha256:")
        );
        entries
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, data)| data.clone())
    };
    let image_manifest: serde_json::Value =
        serde_json::from_slice(&blob(&entry["digest"]).expect("the manifest blob"))?;
    assert_eq!(
        image_manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(image_manifest["annotations"]["k"], "v");

    let long = std::time::Duration::from_secs(120);
    let archive_arg = archive.display().to_string();
    let loaded = dockerd.docker(&["load", "-i", &archive_arg], long)?;
    assert!(loaded.contains("docker-export:dev"), "{loaded}");
    let inspected: serde_json::Value =
        serde_json::from_str(&dockerd.docker(&["image", "inspect", "docker-export:dev"], long)?)?;
    assert_eq!(
        inspected[0]["Id"],
        config_digest.as_str(),
        "Docker's image ID is the exported config's digest"
    );
    let env = inspected[0]["Config"]["Env"].to_string();
    assert!(env.contains("GREETING=hello-docker"), "{env}");
    let out = dockerd.docker(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "docker-export:dev",
            "sh",
            "-c",
            "cat /greeting; echo $GREETING",
        ],
        long,
    )?;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["from-the-docker-archive", "hello-docker"]
    );
    Ok(())
}

#[test]
fn local_output_gives_the_files_with_modes_and_symlinks() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let dest = fx.dir().join("local-out");
    let output = format!("type=local,dest={}", dest.display());
    let script = "mkdir -p /out/sub && echo data > /out/sub/file && chmod 0741 /out/sub/file \
        && ln -s sub/file /out/link && ln -s /nowhere /out/dangling && ln /out/sub/file /out/hard \
        && chmod 0710 /out/sub \
        && rm /bin/ls";
    let (ok, _, stderr) = fx.oxctl(
        &["build", "--progress", "plain", "--output", &output],
        &definition(script),
    )?;
    assert!(ok, "build failed:\n{stderr}");

    let mode = |p: &str| -> u32 {
        std::fs::symlink_metadata(dest.join(p))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(
        std::fs::read_to_string(dest.join("out/sub/file"))?,
        "data\n"
    );
    assert_eq!(mode("out/sub/file"), 0o741);
    assert_eq!(mode("out/sub"), 0o710);
    assert_eq!(
        std::fs::read_link(dest.join("out/link"))?,
        Path::new("sub/file")
    );
    assert_eq!(
        std::fs::read_link(dest.join("out/dangling"))?,
        Path::new("/nowhere"),
        "a symlink is kept as it is, not followed"
    );
    let (hard, file) = (
        std::fs::metadata(dest.join("out/hard"))?,
        std::fs::metadata(dest.join("out/sub/file"))?,
    );
    assert_eq!(hard.ino(), file.ino(), "a hard link stays one link");
    assert_eq!(
        mode("bin/busybox") & 0o111,
        0o111,
        "the base image's files too"
    );
    assert!(
        std::fs::symlink_metadata(dest.join("bin/ls")).is_err(),
        "a file the build deleted is not there"
    );
    Ok(())
}

#[test]
fn exporter_options_are_refused_by_name_before_any_work() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let dir = fx.dir().join("refused");
    std::fs::create_dir_all(&dir)?;
    let def = definition("echo never-runs > /x");
    // The daemon refuses the first four; oxctl itself refuses the rest before it reads stdin, so
    // those get none (a definition written to an oxctl that has exited breaks the pipe).
    for (output, needle, stdin) in [
        (
            format!("type=local,dest={},colour=blue", dir.display()),
            "\"colour\"",
            &def[..],
        ),
        (
            format!("type=oci,dest={}/a.tar,unpack=true", dir.display()),
            "\"unpack\"",
            &def[..],
        ),
        (
            "type=image,name=x,expose=abc/tcp".to_string(),
            "\"expose\"",
            &def[..],
        ),
        (
            "type=image,name=x,workdir=relative".to_string(),
            "\"workdir\"",
            &def[..],
        ),
        ("type=oci".to_string(), "\"dest\"", &[][..]),
        ("type=docker".to_string(), "\"dest\"", &[]),
        ("type=local,dest=-".to_string(), "\"dest\"", &[]),
        ("type=tarball,dest=x".to_string(), "tarball", &[]),
    ] {
        let (ok, _, stderr) = fx.oxctl(
            &["build", "--progress", "plain", "--output", &output],
            stdin,
        )?;
        assert!(!ok, "{output} must fail");
        assert!(stderr.contains(needle), "{output}: {stderr}");
        assert!(
            !stderr.contains("make files"),
            "{output}: nothing was built:\n{stderr}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&dir)?.count(),
        0,
        "a refused oci export leaves no partial archive"
    );
    Ok(())
}

/// `ctr content get DIGEST` as JSON.
fn content_json(fx: &Fixture, digest: &str) -> Result<serde_json::Value, Box<dyn Error>> {
    Ok(serde_json::from_str(&fx.ctr(["content", "get", digest])?)?)
}

#[test]
fn image_config_options_reach_the_config_and_ctr_run() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let name = "docker.io/library/configured:dev";
    // Quoted CSV fields hold the commas of JSON; `cmd` is split as a shell would.
    let output = [
        "type=image",
        &format!("name={name}"),
        "env.FOO=from-env",
        "env.PATH=/bin:/usr/bin",
        "label.org.example.team=oxkit",
        r#""entrypoint=[""sh"",""-c""]""#,
        "cmd='echo $FOO; pwd; id -u'",
        "workdir=/srv",
        "user=1000:1000",
        "expose=8080",
        "expose=53/udp",
        r#""config={""StopSignal"":""SIGINT"",""Volumes"":{""/data"":{}}}""#,
    ]
    .join(",");
    let stdout = build_ok(&fx, &definition("mkdir -p /srv"), &output)?;
    let reported = |key: &str| reported(&stdout, key);
    let manifest_digest = reported("containerd.image.digest");
    let listed = fx.ctr(["images", "ls"])?;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(name) && l.contains(&manifest_digest)),
        "the image record points at the manifest reported:\n{listed}"
    );
    let manifest = content_json(&fx, &manifest_digest)?;
    let config_digest = manifest["config"]["digest"].as_str().unwrap_or_default();
    assert_eq!(config_digest, reported("containerd.config.digest"));
    let config = content_json(&fx, config_digest)?;
    let run = &config["config"];
    assert_eq!(
        run["Env"],
        serde_json::json!(["PATH=/bin:/usr/bin", "FOO=from-env"]),
        "the base image's PATH replaced in place, FOO added: {run}"
    );
    assert_eq!(run["Entrypoint"], serde_json::json!(["sh", "-c"]));
    assert_eq!(run["Cmd"], serde_json::json!(["echo $FOO; pwd; id -u"]));
    assert_eq!(run["WorkingDir"], "/srv");
    assert_eq!(run["User"], "1000:1000");
    assert_eq!(
        run["Labels"],
        serde_json::json!({"org.example.team": "oxkit"})
    );
    assert_eq!(
        run["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "8080/tcp": {}})
    );
    assert_eq!(run["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(run["StopSignal"], "SIGINT");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2),
        "busybox's layer and the step's: {config}"
    );

    // `ctr run` without a command runs the configured entrypoint and cmd, with env, workdir
    // and user.
    let out = fx.run(name, &[])?;
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["from-env", "/srv", "1000"]
    );
    Ok(())
}

#[test]
fn docker_media_types_and_annotations_reach_the_manifest_and_ctr_run() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let name = "docker.io/library/docker-types:dev";
    let output = format!(
        "type=image,name={name},oci-mediatypes=false,annotation.org.opencontainers.image.source=https://example.com/app"
    );
    let stdout = build_ok(&fx, &definition("echo docker-types > /greeting"), &output)?;
    let manifest = content_json(&fx, &reported(&stdout, "containerd.image.digest"))?;
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(
        layers.len(),
        2,
        "busybox's layer and the step's: {manifest}"
    );
    for layer in layers {
        assert_eq!(
            layer["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "the base image's OCI layer is renamed too: {manifest}"
        );
    }
    assert_eq!(
        manifest["annotations"],
        serde_json::json!({"org.opencontainers.image.source": "https://example.com/app"})
    );
    let listed = fx.ctr(["images", "ls"])?;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(name) && l.contains("docker.distribution.manifest.v2")),
        "{listed}"
    );
    assert_eq!(fx.run(name, &["cat", "/greeting"])?.trim(), "docker-types");

    // Without the options the manifest is OCI's, with no annotations.
    let stdout = build_ok(
        &fx,
        &definition("echo docker-types > /greeting"),
        &format!("type=image,name={name}"),
    )?;
    let manifest = content_json(&fx, &reported(&stdout, "containerd.image.digest"))?;
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(manifest.get("annotations").is_none(), "{manifest}");
    Ok(())
}

/// The image exporter refused a base image whose record points at an index ("only
/// single-platform manifests are supported"), though the image source built on it.
#[test]
fn a_base_image_index_exports_from_the_hosts_manifest() -> TestResult {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let host = oxkit_llb::op::Platform::host().architecture;
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let base = "docker.io/library/busybox:multi";
    let built = busybox_image(base)?
        .also_for_architecture(other)
        .write_archive(&fx.image_path("multi.tar"))?;
    fx.import(&built)?;
    let listed = fx.ctr(["images", "ls"])?;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(base) && l.contains(&built.target_digest)),
        "the record points at the index:\n{listed}"
    );
    assert_ne!(built.target_digest, built.manifest_digest);

    let name = "docker.io/library/on-an-index:dev";
    let def = oxkit_llb::image(base)
        .sh("echo on-an-index > /greeting")
        .root()
        .marshal()?
        .to_bytes();
    let stdout = build_ok(&fx, &def, &format!("type=image,name={name}"))?;
    let config_digest = reported(&stdout, "containerd.config.digest");
    let config = content_json(&fx, &config_digest)?;
    assert_eq!(config["architecture"], host.as_str());
    let env = config["config"]["Env"].to_string();
    assert!(
        env.contains(&format!("OXKIT_ARCH={host}")),
        "the host's manifest's config is the base: {env}"
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2)
    );
    let out = fx.run(name, &["sh", "-c", "cat /greeting; echo $OXKIT_ARCH"])?;
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["on-an-index", host.as_str()]
    );
    Ok(())
}
