//! Build cache export and import between daemons that share nothing but a registry (Debian's
//! `docker-registry` on 127.0.0.1) or a directory: each `Fixture` is its own containerd and
//! oxkitd with its own root. A daemon that imports another's cache re-runs no step, fetches only
//! the layers of the result, and a corrupt or missing cache is a warning, not a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use oxkit_integration::{busybox_image, Fixture, FixtureError, Registry, TestResult};

use crate::support::state_of;

/// A Dockerfile build context: `Dockerfile` and `greeting.txt` in a new dir under `fx`'s.
fn context(fx: &Fixture, name: &str, dockerfile: &str) -> PathBuf {
    let dir = fx.dir().join(name);
    std::fs::create_dir_all(&dir).expect("create the context");
    std::fs::write(dir.join("Dockerfile"), dockerfile).expect("write the Dockerfile");
    std::fs::write(dir.join("greeting.txt"), "hello from the context\n").expect("write a file");
    dir
}

/// `oxctl build` of the Dockerfile in `dir` into image `name`, with `extra` arguments:
/// (success, stdout, stderr).
fn build_in(
    fx: &Fixture,
    dir: &Path,
    name: &str,
    extra: &[&str],
) -> Result<(bool, String, String), FixtureError> {
    let context = format!("context={}", dir.display());
    let dockerfile = format!("dockerfile={}", dir.display());
    let output = format!("type=image,name={name}");
    let mut args = vec![
        "build",
        "--progress",
        "plain",
        "--frontend",
        "dockerfile.v0",
        "--local",
        &context,
        "--local",
        &dockerfile,
        "--output",
        &output,
    ];
    args.extend(extra);
    fx.oxctl(&args, b"")
}

/// The "imported layer DIGEST (N bytes) from …" lines of a build's progress: (digest, size).
fn imported_layers(stderr: &str) -> Vec<(String, u64)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("imported layer ")? + "imported layer ".len()..];
            let (digest, rest) = rest.split_once(" (")?;
            let size = rest.split_once(" bytes")?.0.parse().ok()?;
            Some((digest.to_owned(), size))
        })
        .collect()
}

/// The layer digests of the manifest at `reference` in `registry`, read with skopeo.
fn registry_layers(reference: &str) -> Vec<String> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a manifest");
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("a digest").to_owned())
        .collect()
}

/// The access-log text of a whole (not ranged: a push asks with one-byte reads) fetch of blob
/// `digest` of the `cache` repository.
fn fetched(digest: &str) -> String {
    format!("GET /v2/cache/blobs/{digest} HTTP/1.1\" 200 ")
}

/// Starts a registry serving the busybox base as `busybox:cache`; `None` when the test skips.
fn registry_with_base(fx: &Fixture) -> Result<Option<(Registry, String)>, FixtureError> {
    let Some(registry) = Registry::start_or_skip()? else {
        return Ok(None);
    };
    let base = registry.reference("busybox:cache");
    let built = busybox_image(&base)?.write_archive(&fx.image_path("busybox-cache.tar"))?;
    registry.copy_in(&built.archive, "busybox:cache", false)?;
    Ok(Some((registry, base)))
}

/// A build stage writes a big file and a small one; the result takes only the small one, its
/// context's file, and records when its last step ran.
fn two_stage_dockerfile(base: &str) -> String {
    format!(
        "FROM {base} AS build\n\
         RUN head -c 3000000 /dev/urandom > /big && echo small > /small\n\
         FROM {base}\n\
         COPY --from=build /small /app/small\n\
         COPY greeting.txt /app/greeting.txt\n\
         RUN cat /app/small /app/greeting.txt > /app/out && cat /proc/sys/kernel/random/uuid > /app/stamp\n"
    )
}

const LAST_STEP: &str = "[stage-1 4/4] RUN cat /app/small /app/greeting.txt > /app/out && cat /proc/sys/kernel/random/uuid > /app/stamp";

#[test]
fn a_second_daemon_imports_the_registry_cache_reruns_nothing_and_fetches_only_the_result(
) -> TestResult {
    let Some(first) = Fixture::start()? else {
        return Ok(());
    };
    let Some((registry, base)) = registry_with_base(&first)? else {
        return Ok(());
    };
    let cache = registry.reference("cache:app");
    let dir = context(&first, "app", &two_stage_dockerfile(&base));
    let export = format!("type=registry,ref={cache},mode=max");
    let (ok, stdout, stderr) = build_in(&first, &dir, "app:1", &["--export-cache", &export])?;
    assert!(ok, "the exporting build failed:\n{stderr}");
    assert!(
        stderr.contains(&format!("exporting cache to {cache}")),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("cache.{cache}.records: ")),
        "{stdout}"
    );
    let stamp = first.run("app:1", &["cat", "/app/stamp"])?;

    // mode=max: the base, the build stage's layer, and the result's three.
    let cached_layers = registry_layers(&cache);
    assert_eq!(cached_layers.len(), 5, "{cached_layers:?}");
    // mode=min (the default), from the same (now cached) build: the result's layers only.
    let min = registry.reference("cache:min");
    let export = format!("type=registry,ref={min}");
    let (ok, _, stderr) = build_in(&first, &dir, "app:1", &["--export-cache", &export])?;
    assert!(ok, "{stderr}");
    let min_layers = registry_layers(&min);
    assert_eq!(min_layers.len(), 4, "{min_layers:?}");
    assert!(min_layers.iter().all(|l| cached_layers.contains(l)));

    // Another daemon, another containerd, nothing shared but the registry.
    let Some(second) = Fixture::start()? else {
        return Ok(());
    };
    let dir = context(&second, "app", &two_stage_dockerfile(&base));
    let import = format!("type=registry,ref={cache}");
    let (ok, _, stderr) = build_in(&second, &dir, "app:2", &["--import-cache", &import])?;
    assert!(ok, "the importing build failed:\n{stderr}");
    for step in [
        "[build 2/2] RUN head -c 3000000 /dev/urandom > /big && echo small > /small",
        LAST_STEP,
    ] {
        assert_eq!(state_of(&stderr, step), Some("CACHED"), "{step}:\n{stderr}");
    }
    assert_eq!(
        second.run("app:2", &["cat", "/app/stamp"])?,
        stamp,
        "the last step did not run again"
    );
    assert_eq!(
        second.run("app:2", &["cat", "/app/out"])?,
        "small\nhello from the context\n"
    );
    // Only the result's own layers came from the cache (the base came from its own
    // repository); the build stage's 3 MB layer was never fetched.
    let imported = imported_layers(&stderr);
    assert_eq!(imported.len(), 3, "{stderr}");
    for (digest, size) in &imported {
        assert!(cached_layers.contains(digest), "{digest} is a cached layer");
        assert!(*size < 1_000_000, "{digest}: {size} bytes");
        assert!(registry.requests(&fetched(digest)) > 0);
    }
    for digest in &cached_layers {
        if !imported.iter().any(|(d, _)| d == digest) {
            assert_eq!(
                registry.requests(&fetched(digest)),
                0,
                "{digest} was fetched:\n{}",
                registry.log()
            );
        }
    }

    // Imported records are local now: a rebuild without the import is fully cached.
    let (ok, _, stderr) = build_in(&second, &dir, "app:3", &[])?;
    assert!(ok, "{stderr}");
    assert_eq!(state_of(&stderr, LAST_STEP), Some("CACHED"), "{stderr}");

    // A changed context file: the steps after it run, the ones before stay imported.
    let Some(third) = Fixture::start()? else {
        return Ok(());
    };
    let changed = context(&third, "changed", &two_stage_dockerfile(&base));
    std::fs::write(changed.join("greeting.txt"), "changed\n").expect("write");
    let (ok, _, stderr) = build_in(&third, &changed, "app:4", &["--import-cache", &import])?;
    assert!(ok, "{stderr}");
    assert_eq!(state_of(&stderr, LAST_STEP), Some("DONE"), "{stderr}");
    assert_eq!(
        third.run("app:4", &["cat", "/app/out"])?,
        "small\nchanged\n"
    );
    Ok(())
}

#[test]
fn local_and_inline_caches_are_imported_and_corrupt_or_missing_ones_are_skipped() -> TestResult {
    let Some(first) = Fixture::start()? else {
        return Ok(());
    };
    let Some((registry, base)) = registry_with_base(&first)? else {
        return Ok(());
    };
    let dockerfile = format!("FROM {base}\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n");
    let step = "[2/2] RUN cat /proc/sys/kernel/random/uuid > /stamp";
    let dir = context(&first, "app", &dockerfile);
    let local = first.dir().join("cache-dir");
    let image = registry.reference("app:inline");
    let (ok, _, stderr) = build_in(
        &first,
        &dir,
        &format!("{image},push=true"),
        &[
            "--export-cache",
            &format!("type=local,dest={}", local.display()),
            "--export-cache",
            "type=inline",
        ],
    )?;
    assert!(ok, "the exporting build failed:\n{stderr}");
    let stamp = first.run(&image, &["cat", "/stamp"])?;
    let index = std::fs::read_to_string(local.join("index.json")).expect("an OCI layout");
    assert!(
        index.contains("\"org.opencontainers.image.ref.name\": \"latest\""),
        "{index}"
    );

    // From the directory.
    let Some(second) = Fixture::start()? else {
        return Ok(());
    };
    let dir2 = context(&second, "app", &dockerfile);
    let import = format!("type=local,src={}", local.display());
    let (ok, _, stderr) = build_in(&second, &dir2, "app:2", &["--import-cache", &import])?;
    assert!(ok, "{stderr}");
    assert_eq!(state_of(&stderr, step), Some("CACHED"), "{stderr}");
    assert_eq!(second.run("app:2", &["cat", "/stamp"])?, stamp);

    // From the image's inline cache, in the registry.
    let Some(third) = Fixture::start()? else {
        return Ok(());
    };
    let dir3 = context(&third, "app", &dockerfile);
    let (ok, _, stderr) = build_in(&third, &dir3, "app:3", &["--import-cache", &image])?;
    assert!(ok, "{stderr}");
    assert_eq!(state_of(&stderr, step), Some("CACHED"), "{stderr}");
    assert_eq!(third.run("app:3", &["cat", "/stamp"])?, stamp);

    // A corrupt layer in the directory and a cache that does not exist: warnings, and the
    // step runs.
    for entry in std::fs::read_dir(local.join("blobs/sha256")).expect("blobs") {
        let path = entry.expect("an entry").path();
        let len = std::fs::metadata(&path).expect("stat").len();
        // The layers are the gzip files (not the JSON documents).
        if std::fs::read(&path).expect("read")[..2] == [0x1f, 0x8b] {
            std::fs::write(&path, vec![0u8; len as usize]).expect("corrupt");
        }
    }
    let Some(fourth) = Fixture::start()? else {
        return Ok(());
    };
    let dir4 = context(&fourth, "app", &dockerfile);
    let missing = registry.reference("nothing:here");
    let (ok, _, stderr) = build_in(
        &fourth,
        &dir4,
        "app:4",
        &["--import-cache", &import, "--import-cache", &missing],
    )?;
    assert!(ok, "a bad cache failed the build:\n{stderr}");
    assert!(stderr.contains("unusable, skipped"), "{stderr}");
    assert!(stderr.contains("warning: cache import skipped"), "{stderr}");
    assert_eq!(state_of(&stderr, step), Some("DONE"), "{stderr}");
    assert_ne!(fourth.run("app:4", &["cat", "/stamp"])?, stamp);

    // Bad options are refused before anything runs.
    let (ok, _, stderr) = build_in(&fourth, &dir4, "app:5", &["--export-cache", "type=gha"])?;
    assert!(!ok);
    assert!(stderr.contains("\"gha\""), "{stderr}");
    let (ok, _, stderr) = fourth.oxctl(
        &["build", "--export-cache", "type=inline"],
        &oxkit_llb::image(&base)
            .sh("true")
            .root()
            .marshal()
            .expect("marshal")
            .to_bytes(),
    )?;
    assert!(!ok);
    assert!(stderr.contains("needs an image output"), "{stderr}");
    Ok(())
}
