//! The Dockerfile frontend end to end: every case of the corpus under `integration/dockerfiles/`
//! is built by the real oxkitd (`oxctl build --frontend dockerfile.v0 --local context=…
//! --local dockerfile=… --output type=oci`), and the image's config and file tree are compared
//! with what the case's `expect.json` says; a case that expects an error must fail with it.
//!
//! A case is a directory with a `Dockerfile`, an optional `context/` (the build context; an empty
//! one otherwise) and `expect.json`:
//!
//! ```json
//! {
//!   "opts": ["build-arg:A=1", "target=app"],
//!   "config": {"Env": ["PATH=…"], "Cmd": null},
//!   "image": {"author": "me"},
//!   "history": ["RUN /bin/sh -c echo hi # buildkit"],
//!   "files": {"/app/a": {"type": "file", "mode": "0644", "uid": 0, "content": "a\n"},
//!             "/gone": null},
//!   "error": ["Dockerfile:3:1", "unknown instruction"]
//! }
//! ```
//!
//! `config` keys are compared with the image config's `config` object (null: absent); `image`
//! keys with the top level; `history` lists the `created_by` of the entries after the base
//! image's, in order; a file's fields are each optional.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oxkit_integration::{read_oci_archive, Fixture, Node, OciImage};

use crate::support::build_dockerfile;
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BASE: &str = "docker.io/library/busybox:latest";

/// The corpus directory.
fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dockerfiles")
}

/// The cases, by name, in order.
fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("integration/dockerfiles exists")
        .map(|e| e.expect("readable corpus").path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    cases
}

/// Case `dir`'s build context: its `context/`, or an empty directory made under `scratch`.
fn context_of(dir: &Path, scratch: &Path) -> std::io::Result<PathBuf> {
    match dir.join("context") {
        c if c.is_dir() => Ok(c),
        _ => {
            let empty = scratch.join("empty-context");
            std::fs::create_dir_all(&empty)?;
            Ok(empty)
        }
    }
}

/// Builds case `dir` into an OCI archive; returns (success, stderr, archive bytes).
fn build_case(
    fx: &Fixture,
    dir: &Path,
    expect: &Value,
) -> Result<(bool, String, Vec<u8>), Box<dyn std::error::Error>> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let context = context_of(dir, fx.dir())?;
    let archive = fx.dir().join(format!("{name}.oci.tar"));
    let _ = std::fs::remove_file(&archive);
    let opts: Vec<&str> = expect["opts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let (ok, _, stderr) = build_dockerfile(fx, dir, &context, &opts, &archive)?;
    let bytes = if ok {
        std::fs::read(&archive)?
    } else {
        Vec::new()
    };
    Ok((ok, stderr, bytes))
}

/// What is wrong with `image` against `expect`, one line each.
fn compare(image: &OciImage, base_history: usize, expect: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    let config = &image.config["config"];
    for (key, want) in expect["config"].as_object().into_iter().flatten() {
        let got = config.get(key).unwrap_or(&Value::Null);
        if got != want {
            wrong.push(format!("config.{key}: expected {want}, got {got}"));
        }
    }
    for (key, want) in expect["image"].as_object().into_iter().flatten() {
        let got = image.config.get(key).unwrap_or(&Value::Null);
        if got != want {
            wrong.push(format!("{key}: expected {want}, got {got}"));
        }
    }
    if let Some(want) = expect["history"].as_array() {
        let got: Vec<Value> = image.config["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .skip(base_history)
                    .map(|e| e["created_by"].clone())
                    .collect()
            })
            .unwrap_or_default();
        if &got != want {
            wrong.push(format!(
                "history: expected {}, got {}",
                Value::from(want.clone()),
                Value::from(got)
            ));
        }
    }
    for (path, want) in expect["files"].as_object().into_iter().flatten() {
        let got = image.tree.get(path);
        match (want, got) {
            (Value::Null, None) => {}
            (Value::Null, Some(node)) => {
                wrong.push(format!("{path}: expected absent, got {node:?}"))
            }
            (_, None) => wrong.push(format!("{path}: missing")),
            (want, Some(node)) => wrong.extend(
                compare_node(node, want)
                    .into_iter()
                    .map(|w| format!("{path}: {w}")),
            ),
        }
    }
    wrong
}

fn compare_node(node: &Node, want: &Value) -> Vec<String> {
    let (kind, mode, uid, gid, content, target) = match node {
        Node::Dir { mode, uid, gid } => ("dir", Some(*mode), *uid, *gid, None, None),
        Node::File {
            mode,
            uid,
            gid,
            data,
        } => ("file", Some(*mode), *uid, *gid, Some(data), None),
        Node::Symlink { uid, gid, target } => ("symlink", None, *uid, *gid, None, Some(target)),
    };
    let mut wrong = Vec::new();
    let mut check = |field: &str, got: String| {
        if let Some(w) = want.get(field) {
            let w = w
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| w.to_string());
            if w != got {
                wrong.push(format!("{field}: expected {w:?}, got {got:?}"));
            }
        }
    };
    check("type", kind.into());
    check("mode", mode.map(|m| format!("{m:04o}")).unwrap_or_default());
    check("uid", uid.to_string());
    check("gid", gid.to_string());
    check(
        "content",
        content
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default(),
    );
    check("target", target.cloned().unwrap_or_default());
    wrong
}

#[test]
fn the_dockerfile_corpus_builds_as_expected() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let base_history = busybox_history(&fx)?;
    let mut failures = BTreeMap::new();
    let cases = cases();
    assert!(cases.len() >= 10, "the corpus has {} cases", cases.len());
    for dir in &cases {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let expect: Value = serde_json::from_slice(&std::fs::read(dir.join("expect.json"))?)
            .map_err(|e| format!("{name}/expect.json: {e}"))?;
        let (ok, stderr, archive) = build_case(&fx, dir, &expect)?;
        let wrong = match (expect.get("error"), ok) {
            (Some(errors), false) => errors
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|e| !stderr.contains(e))
                .map(|e| format!("error {e:?} not in:\n{stderr}"))
                .collect(),
            (Some(_), true) => vec!["built, but an error was expected".to_string()],
            (None, false) => vec![format!("build failed:\n{stderr}")],
            (None, true) => {
                let image = read_oci_archive(&archive)?;
                let base = if expect["scratch"].as_bool() == Some(true) {
                    0
                } else {
                    base_history
                };
                compare(&image, base, &expect)
            }
        };
        if !wrong.is_empty() {
            failures.insert(name, wrong);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} Dockerfiles differ from their expect.json:\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .map(|(name, w)| format!("== {name}\n  {}", w.join("\n  ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// How many history entries the busybox base image has.
fn busybox_history(fx: &Fixture) -> Result<usize, Box<dyn std::error::Error>> {
    let dir = fx.dir().join("base-history");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("Dockerfile"), format!("FROM {BASE}\n"))?;
    let (ok, stderr, archive) = build_case(fx, &dir, &Value::Null)?;
    assert!(ok, "FROM busybox alone failed:\n{stderr}");
    let image = read_oci_archive(&archive)?;
    Ok(image.config["history"].as_array().map_or(0, Vec::len))
}

/// Differences from BuildKit (dockerd 20.10's, BuildKit 0.8) that are known and why: (case, what
/// differs — a config key, a path, or `build` when BuildKit cannot build the case — reason).
/// An entry whose difference is gone fails the test, so the list stays true.
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "copy-exclude",
        "build",
        "COPY --exclude is a dockerfile 1.7 labs flag; BuildKit 0.8 answers `Unknown flag: exclude`",
    ),
    (
        "copy-link",
        "build",
        "COPY --link came with dockerfile 1.4; BuildKit 0.8 answers `Unknown flag: link`",
    ),
    (
        "named-context-local-dir",
        "build",
        "named contexts (`--build-context`, BuildKit's `context:NAME`) came after docker 20.10",
    ),
    (
        "named-context-replaces-image",
        "build",
        "named contexts (`--build-context`, BuildKit's `context:NAME`) came after docker 20.10",
    ),
    (
        "run-network-host",
        "build",
        "RUN --network is a labs feature in BuildKit 0.8's built-in frontend (`Unknown flag: network`)",
    ),
    (
        "directives-syntax-and-check",
        "build",
        "BuildKit fetches the `# syntax=` frontend image from Docker Hub (no network here); oxkit's built-in frontend ignores the directive",
    ),
    (
        "expansion-modifiers",
        "build",
        "BuildKit 0.8's lexer knows only `${VAR:-w}`/`${VAR:+w}` (`missing ':' in substitution`); `${VAR-w}` came with later dockerfile versions",
    ),
    (
        "heredoc-copy",
        "build",
        "heredocs came with dockerfile 1.4; BuildKit 0.8's built-in frontend reads `hello $NAME` as an instruction",
    ),
    (
        "heredoc-run",
        "build",
        "heredocs came with dockerfile 1.4; BuildKit 0.8's built-in frontend reads the body as instructions",
    ),
    (
        "run-network-none",
        "build",
        "RUN --network is a labs feature in BuildKit 0.8's built-in frontend (`Unknown flag: network`)",
    ),
];

/// The image config keys compared with BuildKit's.
const COMPARED_CONFIG: [&str; 12] = [
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
];

/// Builds case `dir` with dockerd's BuildKit; returns the image, or BuildKit's error output.
fn build_with_buildkit(
    dockerd: &oxkit_integration::Dockerd,
    dir: &Path,
    expect: &Value,
) -> Result<Result<OciImage, String>, Box<dyn std::error::Error>> {
    let name = dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let tag = format!("oxk-compare/{name}:latest");
    let context = context_of(dir, dockerd.dir())?;
    let dockerfile = dir.join("Dockerfile").display().to_string();
    let context = context.display().to_string();
    let mut args = vec![
        "build",
        "--network=host",
        "--progress=plain",
        "-t",
        &tag,
        "-f",
        &dockerfile,
    ];
    let opts: Vec<String> = expect["opts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_str().map(String::from))
        .collect();
    let mut flags = Vec::new();
    for opt in &opts {
        if let Some(arg) = opt.strip_prefix("build-arg:") {
            flags.push(("--build-arg", arg));
        } else if let Some(target) = opt.strip_prefix("target=") {
            flags.push(("--target", target));
        } else if let Some(label) = opt.strip_prefix("label:") {
            flags.push(("--label", label));
        } else {
            // `docker build` 20.10 has no flag for it (e.g. named contexts).
            return Ok(Err(format!("docker build has no flag for --opt {opt}")));
        }
    }
    for (flag, value) in &flags {
        args.push(flag);
        args.push(value);
    }
    args.push(&context);
    if let Err(e) = dockerd.docker(&args, std::time::Duration::from_secs(300)) {
        return Ok(Err(e.to_string()));
    }
    let saved = dockerd.dir().join(format!("{name}.docker.tar"));
    let saved_path = saved.display().to_string();
    dockerd.docker(
        &["save", "-o", &saved_path, &tag],
        std::time::Duration::from_secs(120),
    )?;
    let image = oxkit_integration::read_docker_archive(&std::fs::read(&saved)?)?;
    Ok(Ok(image))
}

/// The differences between oxkit's image and BuildKit's: (what, description).
fn differences(ours: &OciImage, theirs: &OciImage) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for key in COMPARED_CONFIG {
        let a = ours.config["config"].get(key).unwrap_or(&Value::Null);
        let b = theirs.config["config"].get(key).unwrap_or(&Value::Null);
        // An empty list or map is the same as none.
        let empty = |v: &Value| {
            v.is_null()
                || v.as_array().is_some_and(Vec::is_empty)
                || v.as_object().is_some_and(serde_json::Map::is_empty)
                || v.as_str() == Some("")
        };
        if a != b && !(empty(a) && empty(b)) {
            out.push((key.to_string(), format!("oxkit {a}, BuildKit {b}")));
        }
    }
    for key in ["author", "architecture", "os"] {
        let a = ours.config.get(key).unwrap_or(&Value::Null);
        let b = theirs.config.get(key).unwrap_or(&Value::Null);
        if a != b {
            out.push((key.to_string(), format!("oxkit {a}, BuildKit {b}")));
        }
    }
    let paths: std::collections::BTreeSet<&String> =
        ours.tree.keys().chain(theirs.tree.keys()).collect();
    for path in paths {
        match (ours.tree.get(path), theirs.tree.get(path)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                let show = |n: Option<&Node>| match n {
                    None => "absent".to_string(),
                    Some(Node::File {
                        data,
                        mode,
                        uid,
                        gid,
                    }) => format!(
                        "file {mode:04o} {uid}:{gid} {} bytes {:?}",
                        data.len(),
                        String::from_utf8_lossy(&data[..data.len().min(40)])
                    ),
                    Some(n) => format!("{n:?}"),
                };
                out.push((
                    path.clone(),
                    format!("oxkit {}, BuildKit {}", show(a), show(b)),
                ));
            }
        }
    }
    out
}

#[test]
fn the_dockerfile_corpus_builds_as_buildkit_builds_it() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let Some(dockerd) = oxkit_integration::Dockerd::start_if_installed()? else {
        return Ok(());
    };
    let base = oxkit_integration::busybox_image(BASE)?
        .write_archive(&dockerd.dir().join("busybox.oci.tar"))?;
    dockerd.load(&base)?;
    let mut unexplained = Vec::new();
    let mut seen_known = std::collections::BTreeSet::new();
    let mut compared_paths = 0;
    let cases: Vec<PathBuf> = cases()
        .into_iter()
        .filter(|d| {
            std::fs::read(d.join("expect.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|e| e.get("error").is_none())
        })
        .collect();
    for dir in &cases {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let expect: Value = serde_json::from_slice(&std::fs::read(dir.join("expect.json"))?)?;
        let known = |what: &str| {
            KNOWN_DIFFERENCES
                .iter()
                .any(|(case, w, _)| *case == name && *w == what)
        };
        let theirs = match build_with_buildkit(&dockerd, dir, &expect)? {
            Ok(image) => image,
            Err(_) if known("build") => {
                seen_known.insert((name.clone(), "build".to_string()));
                continue;
            }
            Err(e) => {
                unexplained.push(format!("{name}: BuildKit cannot build it: {e}"));
                continue;
            }
        };
        let (ok, stderr, archive) = build_case(&fx, dir, &expect)?;
        if !ok {
            unexplained.push(format!("{name}: oxkit cannot build it:\n{stderr}"));
            continue;
        }
        let ours = read_oci_archive(&archive)?;
        compared_paths += ours.tree.len();
        for (what, description) in differences(&ours, &theirs) {
            if known(&what) {
                seen_known.insert((name.clone(), what));
            } else {
                unexplained.push(format!("{name}: {what}: {description}"));
            }
        }
    }
    for (case, what, reason) in KNOWN_DIFFERENCES {
        if !seen_known.contains(&(case.to_string(), what.to_string())) {
            unexplained.push(format!(
                "{case}: {what} is listed as a known difference ({reason}) but no longer differs"
            ));
        }
    }
    eprintln!(
        "compared {} Dockerfiles with BuildKit: {compared_paths} paths, {} known differences",
        cases.len(),
        seen_known.len()
    );
    assert!(
        unexplained.is_empty(),
        "{} differences from BuildKit over {} Dockerfiles:\n{}",
        unexplained.len(),
        cases.len(),
        unexplained.join("\n")
    );
    Ok(())
}

#[test]
fn independent_stages_run_at_the_same_time() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let dir = fx.dir().join("parallel");
    std::fs::create_dir_all(&dir)?;
    let mut dockerfile = String::new();
    for stage in ["a", "b", "c"] {
        dockerfile.push_str(&format!(
            "FROM busybox AS {stage}\nRUN sleep 2 && echo {stage} > /{stage}\n"
        ));
    }
    dockerfile.push_str("FROM busybox\n");
    for stage in ["a", "b", "c"] {
        dockerfile.push_str(&format!("COPY --from={stage} /{stage} /{stage}\n"));
    }
    std::fs::write(dir.join("Dockerfile"), dockerfile)?;
    let started = std::time::Instant::now();
    let (ok, stderr, archive) = build_case(&fx, &dir, &Value::Null)?;
    let took = started.elapsed();
    assert!(ok, "{stderr}");
    eprintln!("three stages of `sleep 2` took {took:.1?}");
    // Every sleep started before any of them finished (plain progress: `#N NAME` when a step
    // starts, `#N DONE` when it ends).
    let lines: Vec<&str> = stderr.lines().collect();
    let sleeps: Vec<(&str, usize)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let (n, name) = l.split_once(' ')?;
            (n.starts_with('#') && name.contains("RUN sleep 2")).then_some((n, i))
        })
        .collect();
    assert_eq!(sleeps.len(), 3, "three sleep steps in:\n{stderr}");
    let last_start = sleeps.iter().map(|(_, i)| *i).max().unwrap_or(0);
    let first_done = sleeps
        .iter()
        .filter_map(|(n, _)| {
            lines
                .iter()
                .position(|l| l.starts_with(&format!("{n} DONE")))
        })
        .min()
        .expect("the sleeps finished");
    assert!(
        last_start < first_done,
        "a sleep started only after another finished:\n{stderr}"
    );
    let image = read_oci_archive(&archive)?;
    for stage in ["a", "b", "c"] {
        assert!(
            matches!(image.tree.get(&format!("/{stage}")), Some(Node::File { data, .. }) if data == format!("{stage}\n").as_bytes()),
            "/{stage} in the image"
        );
    }
    Ok(())
}

#[test]
fn source_date_epoch_makes_uncached_builds_identical() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let dir = fx.dir().join("reproducible");
    std::fs::create_dir_all(dir.join("context"))?;
    std::fs::write(dir.join("context/a.txt"), "a\n")?;
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM busybox\nCOPY a.txt /a\nRUN echo built > /b && mkdir /d\nWORKDIR /w\nENV X=1\n",
    )?;
    let build = |n: u32| -> Result<(String, OciImage), Box<dyn std::error::Error>> {
        let archive = fx.dir().join(format!("reproducible-{n}.tar"));
        let (ok, stdout, stderr) = build_dockerfile(
            &fx,
            &dir,
            &dir.join("context"),
            &["build-arg:SOURCE_DATE_EPOCH=0", "no-cache="],
            &archive,
        )?;
        assert!(ok, "{stderr}");
        for step in [
            "[2/4] COPY a.txt /a",
            "[3/4] RUN echo built > /b && mkdir /d",
        ] {
            assert_eq!(
                crate::support::state_of(&stderr, step),
                Some("DONE"),
                "no-cache re-runs {step}:\n{stderr}"
            );
        }
        let digest = stdout
            .lines()
            .find_map(|l| l.strip_prefix("containerd.image.digest: "))
            .ok_or_else(|| format!("no digest in {stdout}"))?
            .to_string();
        Ok((digest, read_oci_archive(&std::fs::read(&archive)?)?))
    };
    let (first, image) = build(1)?;
    // Let the clock move past a second, so that unclamped times would differ.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (second, _) = build(2)?;
    assert_eq!(first, second, "two builds with SOURCE_DATE_EPOCH=0 differ");
    assert_eq!(image.config["created"], "1970-01-01T00:00:00Z");
    for entry in image.config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .skip(1)
    {
        assert_eq!(entry["created"], "1970-01-01T00:00:00Z", "{entry}");
    }
    Ok(())
}

#[test]
fn only_what_the_dockerfile_reads_is_sent() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let dir = fx.dir().join("reads");
    let context = dir.join("context");
    std::fs::create_dir_all(context.join("src/sub"))?;
    std::fs::create_dir_all(context.join("unused"))?;
    std::fs::write(context.join("used.txt"), "used\n")?;
    std::fs::write(context.join("src/a.rs"), "a\n")?;
    std::fs::write(context.join("src/sub/b.rs"), "b\n")?;
    std::fs::write(context.join("src/skip.md"), "md\n")?;
    for i in 0..50 {
        std::fs::write(context.join(format!("unused/f{i}")), "never sent\n")?;
    }
    std::fs::write(context.join(".dockerignore"), "src/skip.md\n")?;
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM busybox AS other\nCOPY unused /unused\nFROM busybox\nCOPY used.txt /\nCOPY src /src\n",
    )?;
    let (ok, stderr, archive) = build_case(&fx, &dir, &Value::Null)?;
    assert!(ok, "{stderr}");
    // What reached the daemon: its copy of the context holds only what the target stage reads
    // (the stage that copies `unused` is not needed), minus what .dockerignore excludes.
    let root = fx.oxkit_root().join("local");
    let mut received = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                received.push(name.to_string());
            }
        }
    }
    for name in ["used.txt", "a.rs", "b.rs"] {
        assert!(
            received.iter().any(|r| r == name),
            "{name} was sent: {received:?}"
        );
    }
    for name in ["skip.md", "f0", "f49"] {
        assert!(
            !received.iter().any(|r| r == name),
            "{name} was not to be sent: {received:?}"
        );
    }
    let image = read_oci_archive(&archive)?;
    assert!(image.tree.contains_key("/src/sub/b.rs"));
    assert!(!image.tree.contains_key("/src/skip.md"));
    assert!(!image.tree.contains_key("/unused"));
    Ok(())
}
