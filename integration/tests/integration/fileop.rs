//! File ops in builds: mkdir, mkfile and copy (between states, with owners by name and id, modes
//! and wildcards) applied to snapshots by oxkitd, checked by a `run` step and by `ctr run`;
//! caching by the content of what a copy reads; symlinks in an image never lead a file op out of
//! the snapshot; concurrent builds share a step that runs once.

use crate::support::{state_of, steps_done};
use std::process::{Command, Stdio};

use oxkit_integration::{locate_oxkitd, Fixture, FixtureError, TestResult};
use oxkit_llb::op::CacheSharing;
use oxkit_llb::{image, CopyOptions, FileActions, MkdirOptions, MkfileOptions, MountSpec, Owner};

const BASE: &str = "docker.io/library/busybox:latest";

fn build(fx: &Fixture, def: &[u8], image: &str) -> Result<(bool, String), FixtureError> {
    let output = format!("type=image,name={image}");
    let (ok, _, stderr) = fx.oxctl(&["build", "--progress", "plain", "--output", &output], def)?;
    Ok((ok, stderr))
}

/// A base with user `app` (1000, group 1001) and group `staff` (1001); a source state whose
/// unrelated file `other.log` says `noise`; files laid out on the base from the source; a check.
fn files_definition(noise: &str) -> Vec<u8> {
    let base = image(BASE)
        .sh("echo 'app:x:1000:1001::/home/app:/bin/sh' >> /etc/passwd && echo 'staff:x:1001:' >> /etc/group")
        .custom_name("add user app")
        .root();
    let source = image(BASE)
        .sh(&format!(
            "mkdir -p /src/sub && echo one > /src/a.txt && echo two > /src/b.txt \
             && echo three > /src/sub/c.conf && chmod 604 /src/sub/c.conf \
             && echo {noise} > /src/other.log"
        ))
        .custom_name("make sources")
        .root();
    let laid_out = base
        .file(
            FileActions::new()
                .mkdir_with(
                    "/app/data",
                    0o700,
                    MkdirOptions {
                        make_parents: true,
                        owner: Some(Owner::Names("app".into(), Some("staff".into()))),
                        ..Default::default()
                    },
                )
                .mkfile_with(
                    "/app/hello",
                    0o600,
                    "hi\n",
                    MkfileOptions {
                        owner: Some(Owner::Ids(7, 8)),
                        ..Default::default()
                    },
                )
                .copy(
                    &source,
                    "/src/*.txt",
                    "/app/txt/",
                    CopyOptions {
                        allow_wildcard: true,
                        create_dest_path: true,
                        mode: Some(0o640),
                        owner: Some(Owner::Names("app".into(), None)),
                        ..Default::default()
                    },
                )
                .copy(
                    &source,
                    "/src/sub/c.conf",
                    "/app/c.conf",
                    CopyOptions {
                        owner: Some(Owner::Ids(123, 456)),
                        ..Default::default()
                    },
                ),
        )
        .custom_name("lay out /app");
    laid_out
        .sh("stat -c '%n %u:%g %a' /app/data /app/hello /app/txt/a.txt /app/txt/b.txt /app/c.conf > /report \
             && cat /app/hello /app/txt/a.txt /app/txt/b.txt /app/c.conf >> /report \
             && test ! -e /app/txt/other.log && test ! -e /app/other.log")
        .custom_name("check /app")
        .root()
        .marshal()
        .expect("marshal")
        .to_bytes()
}

const REPORT: &str = "/app/data 1000:1001 700
/app/hello 7:8 600
/app/txt/a.txt 1000:1001 640
/app/txt/b.txt 1000:1001 640
/app/c.conf 123:456 604
hi
one
two
three
";

#[test]
fn file_ops_lay_out_files_and_a_copy_is_cached_by_what_it_reads() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let image_ref = "docker.io/library/files:dev";
    let (ok, progress) = build(&fx, &files_definition("noise"), image_ref)?;
    assert!(ok, "build failed:\n{progress}");
    assert_eq!(
        state_of(&progress, "lay out /app"),
        Some("DONE"),
        "{progress}"
    );
    assert_eq!(fx.run(image_ref, &["cat", "/report"])?, REPORT);
    // What the exported image holds, not only what the step saw.
    let stat = fx.run(
        image_ref,
        &[
            "stat",
            "-c",
            "%u:%g %a",
            "/app/data",
            "/app/hello",
            "/app/c.conf",
        ],
    )?;
    assert_eq!(stat, "1000:1001 700\n7:8 600\n123:456 604\n");

    // Again: every step cached.
    let (ok, progress) = build(&fx, &files_definition("noise"), image_ref)?;
    assert!(ok, "{progress}");
    assert_eq!(steps_done(&progress), 0, "nothing ran:\n{progress}");
    assert_eq!(
        state_of(&progress, "lay out /app"),
        Some("CACHED"),
        "{progress}"
    );

    // A file the copies do not read changes in the source state: the source step re-runs (its
    // files get new times too), the copy and everything after it stay cached.
    let (ok, progress) = build(
        &fx,
        &files_definition("changed"),
        "docker.io/library/files:dev2",
    )?;
    assert!(ok, "{progress}");
    assert_eq!(
        state_of(&progress, "make sources"),
        Some("DONE"),
        "{progress}"
    );
    assert_eq!(
        state_of(&progress, "lay out /app"),
        Some("CACHED"),
        "{progress}"
    );
    assert_eq!(
        state_of(&progress, "check /app"),
        Some("CACHED"),
        "{progress}"
    );
    assert_eq!(
        fx.run("docker.io/library/files:dev2", &["cat", "/report"])?,
        REPORT
    );
    Ok(())
}

/// A copied file's content changing does invalidate the copy (the other side of the test above).
#[test]
fn a_copy_reruns_when_a_copied_file_changes() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let def = |content: &str| {
        let source = image(BASE)
            .sh(&format!("echo {content} > /payload"))
            .custom_name("make payload")
            .root();
        image(BASE)
            .file(FileActions::new().copy(&source, "/payload", "/copied", CopyOptions::default()))
            .custom_name("copy payload")
            .marshal()
            .expect("marshal")
            .to_bytes()
    };
    let (ok, progress) = build(&fx, &def("first"), "docker.io/library/payload:1")?;
    assert!(ok, "{progress}");
    let (ok, progress) = build(&fx, &def("second"), "docker.io/library/payload:2")?;
    assert!(ok, "{progress}");
    assert_eq!(
        state_of(&progress, "copy payload"),
        Some("DONE"),
        "{progress}"
    );
    assert_eq!(
        fx.run("docker.io/library/payload:2", &["cat", "/copied"])?,
        "second\n"
    );
    assert_eq!(
        fx.run("docker.io/library/payload:1", &["cat", "/copied"])?,
        "first\n"
    );
    Ok(())
}

/// A symlink to `/` planted in the image by a run step must not make mkfile write on the host.
#[test]
fn mkfile_through_a_symlink_to_root_writes_inside_the_snapshot() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let name = format!("oxkit-escape-{}", std::process::id());
    let host_path = std::path::Path::new("/etc").join(&name);
    assert!(
        !host_path.exists(),
        "{} exists before the test",
        host_path.display()
    );
    let def = image(BASE)
        .sh("ln -s / /escape")
        .custom_name("plant symlink")
        .root()
        .file(FileActions::new().mkfile(&format!("/escape/etc/{name}"), 0o644, "inside\n"))
        .custom_name("write through symlink")
        .marshal()
        .expect("marshal")
        .to_bytes();
    let (ok, progress) = build(&fx, &def, "docker.io/library/escape:dev")?;
    let escaped = host_path.exists();
    if escaped {
        let _ = std::fs::remove_file(&host_path);
    }
    assert!(ok, "{progress}");
    assert!(
        !escaped,
        "the file op wrote {} on the host",
        host_path.display()
    );
    assert_eq!(
        fx.run(
            "docker.io/library/escape:dev",
            &["cat", &format!("/etc/{name}")]
        )?,
        "inside\n"
    );
    Ok(())
}

/// 8 builds started at once share a first step (it appends to a file in a shared cache mount,
/// which counts its runs), then differ in a file op; all succeed and the shared step ran once.
#[test]
fn eight_concurrent_builds_share_a_step_that_runs_once() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let counter =
        || MountSpec::cache("/cache", "fileop-concurrency-count").sharing(CacheSharing::Shared);
    let shared = image(BASE)
        .sh("echo x >> /cache/count && sleep 1 && echo shared > /shared")
        .mount(counter())
        .custom_name("shared step")
        .root();
    // Fixture is not Sync, so the builds are child processes started together rather than
    // threads calling `fx.oxctl`; the command line is the same.
    let oxctl = locate_oxkitd()?.with_file_name("oxctl");
    let addr = format!("unix://{}", fx.build_address().display());
    let children = (0..8)
        .map(|i| {
            let def = shared
                .file(FileActions::new().mkfile(&format!("/build-{i}"), 0o644, format!("{i}\n")))
                .custom_name(format!("mark build {i}"))
                .marshal()
                .expect("marshal")
                .to_bytes();
            let mut child = Command::new(&oxctl)
                .args(["--addr", &addr, "build", "--progress", "plain", "--output"])
                .arg(format!("type=image,name=docker.io/library/concurrent:{i}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| FixtureError::Spawn {
                    program: oxctl.display().to_string(),
                    source,
                })?;
            std::io::Write::write_all(&mut child.stdin.take().expect("piped"), &def).map_err(
                |source| FixtureError::Io {
                    action: "write the definition to",
                    path: oxctl.clone(),
                    source,
                },
            )?;
            Ok(child)
        })
        .collect::<Result<Vec<_>, FixtureError>>()?;
    for (i, child) in children.into_iter().enumerate() {
        let out = child
            .wait_with_output()
            .map_err(|source| FixtureError::Io {
                action: "wait for",
                path: oxctl.clone(),
                source,
            })?;
        let progress = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "build {i} failed:\n{progress}");
    }
    for i in 0..8 {
        let image_ref = format!("docker.io/library/concurrent:{i}");
        let out = fx.run(&image_ref, &["cat", "/shared", &format!("/build-{i}")])?;
        assert_eq!(out, format!("shared\n{i}\n"));
    }
    // A later build reads the count out of the cache mount.
    let def = image(BASE)
        .sh("cp /cache/count /count")
        .mount(counter())
        .ignore_cache()
        .custom_name("read count")
        .root()
        .marshal()
        .expect("marshal")
        .to_bytes();
    let (ok, progress) = build(&fx, &def, "docker.io/library/concurrent:count")?;
    assert!(ok, "{progress}");
    assert_eq!(
        fx.run("docker.io/library/concurrent:count", &["cat", "/count"])?,
        "x\n",
        "the shared step ran exactly once"
    );
    Ok(())
}

/// `cargo run -p oxkit-llb --example files | oxctl build …`: the example's definition (base
/// image, runs, mkdir/mkfile/copy between states) builds, and its own check step passes.
#[test]
fn the_files_example_builds_end_to_end() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let example = locate_oxkitd()?.with_file_name("examples").join("files");
    if !example.is_file() {
        return Err(FixtureError::MissingBinary {
            what: "the files example",
            path: example,
            hint: "build it first with `cargo build -p oxkit-llb --example files`".into(),
        });
    }
    let out = Command::new(&example)
        .output()
        .map_err(|source| FixtureError::Spawn {
            program: example.display().to_string(),
            source,
        })?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, progress) = build(&fx, &out.stdout, "docker.io/library/files-example:dev")?;
    assert!(ok, "{progress}");
    assert!(
        progress.contains("built by oxkit"),
        "the check step's output:\n{progress}"
    );
    assert_eq!(
        fx.run(
            "docker.io/library/files-example:dev",
            &[
                "stat",
                "-c",
                "%n %u:%g %a",
                "/app/app.txt",
                "/app/data",
                "/app/VERSION"
            ]
        )?,
        "/app/app.txt 1000:1000 640\n/app/data 1000:1000 750\n/app/VERSION 0:0 644\n"
    );
    Ok(())
}

/// The file op's snapshots that are still active or views, and what is mounted under the worker's
/// scratch dir: both empty once builds are over.
fn leftovers(fx: &Fixture) -> Result<Vec<String>, FixtureError> {
    let mut left: Vec<String> = fx
        .snapshots()?
        .into_iter()
        .filter(|s| s.key.starts_with("oxkit-file-") && s.kind != "Committed")
        .map(|s| format!("{} {}", s.kind, s.key))
        .collect();
    let mnt = fx.oxkit_root().join("worker/mnt");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    left.extend(
        mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&*mnt.to_string_lossy()))
            .map(|m| format!("mounted {m}")),
    );
    Ok(left)
}

/// A failing file action fails the build naming the step and the path, and leaves no active
/// snapshot or mount behind (nor does a successful one).
#[test]
fn a_failing_file_action_names_the_step_and_cleans_up() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let source = image(BASE).sh("echo a > /a").custom_name("make a").root();
    let ok_def = image(BASE)
        .file(FileActions::new().mkdir("/d", 0o755).copy(
            &source,
            "/a",
            "/d/a",
            CopyOptions::default(),
        ))
        .custom_name("good copy")
        .marshal()
        .expect("marshal")
        .to_bytes();
    let (ok, progress) = build(&fx, &ok_def, "docker.io/library/good:dev")?;
    assert!(ok, "{progress}");
    assert_eq!(leftovers(&fx)?, Vec::<String>::new());

    let bad_def = image(BASE)
        .file(FileActions::new().mkdir("/d", 0o755).copy(
            &source,
            "/missing",
            "/d/x",
            CopyOptions::default(),
        ))
        .custom_name("doomed copy")
        .marshal()
        .expect("marshal")
        .to_bytes();
    let (ok, progress) = build(&fx, &bad_def, "docker.io/library/doomed:dev")?;
    assert!(!ok, "the build must fail:\n{progress}");
    assert!(
        progress.contains("doomed copy"),
        "the error names the step:\n{progress}"
    );
    assert!(
        progress.contains("/missing"),
        "the error names the path:\n{progress}"
    );
    assert_eq!(leftovers(&fx)?, Vec::<String>::new());

    // Failing in the middle of the op, after a first action and with a copy source mounted.
    let bad_def = image(BASE)
        .file(
            FileActions::new()
                .mkdir("/d", 0o755)
                .copy(&source, "/a", "/d/a", CopyOptions::default())
                .mkfile("/no/such/dir/f", 0o644, "x"),
        )
        .custom_name("doomed mkfile")
        .marshal()
        .expect("marshal")
        .to_bytes();
    let (ok, progress) = build(&fx, &bad_def, "docker.io/library/doomed:dev")?;
    assert!(!ok, "the build must fail:\n{progress}");
    assert!(
        progress.contains("doomed mkfile"),
        "the error names the step:\n{progress}"
    );
    assert!(
        progress.contains("/no/such/dir/f"),
        "the error names the path:\n{progress}"
    );
    assert_eq!(leftovers(&fx)?, Vec::<String>::new());
    Ok(())
}
