//! Build secrets end to end, through `oxctl build --secret` and the real oxkitd: a step sees a
//! secret mount's file (owner, mode, read-only tmpfs) and a secret env variable; the value is
//! found nowhere afterwards — not in the exported files, the layer blobs, the snapshots, the
//! cache records, the daemons' logs or the progress output — and no secrets tmpfs stays mounted;
//! a new value keeps the step cached; a missing required secret fails naming it, an optional one
//! does not.

use std::error::Error;
use std::future::Future;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use oxkit_integration::{eventually, locate_oxkitd, Fixture};
use oxkit_llb::MountSpec;
use oxkit_worker::oxkit_solver::{Attachment, SolveOptions};
use oxkit_worker::{ClientSession, SessionError, SessionRef};
use sha2::{Digest as _, Sha256};

use crate::support::{in_runtime, until};

type TestResult = Result<(), Box<dyn Error>>;

const BASE: &str = "docker.io/library/busybox:latest";
const STEP: &str = "use secrets";
/// The client-side variable the env secret is read from (`--secret id=envtok,env=…`).
const CLIENT_VAR: &str = "OXKIT_TEST_SECRET_VALUE";

/// busybox, then one step that prints what it sees of secret `tok` (mounted at
/// `/run/secrets/tok`, uid/gid 1000, mode 0440), of secret `plain` (at its default place) and of
/// secret `envtok` as `$TOKEN` — hashes, never the values — and writes a file.
fn definition() -> Vec<u8> {
    oxkit_llb::image(BASE)
        .sh("set -e; \
             echo \"file $(sha256sum < /run/secrets/tok)\"; \
             echo \"plain $(sha256sum < /run/secrets/plain)\"; \
             echo \"env $(printf %s \"$TOKEN\" | sha256sum)\"; \
             echo \"owner $(stat -c '%a %u %g' /run/secrets/tok)\"; \
             echo \"default $(stat -c '%a %u %g' /run/secrets/plain)\"; \
             echo \"mount $(grep ' /run/secrets/tok ' /proc/mounts)\"; \
             if echo x > /run/secrets/tok; then echo writable; fi; \
             echo built-$((6 * 7)) > /built")
        .mount(MountSpec::secret("/run/secrets/tok", "tok").owner_mode(1000, 1000, 0o440))
        .mount(MountSpec::secret("", "plain"))
        .secret_env("envtok", "TOKEN", false)
        .custom_name(STEP)
        .root()
        .marshal()
        .expect("marshal")
        .to_bytes()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Values no other file holds by chance.
fn value(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("oxkit-{what}-{}-{nanos}", std::process::id())
}

/// The secrets of one build: `tok` and `plain` from files, `envtok` from the client's env.
struct Secrets {
    dir: tempfile::TempDir,
    file: String,
    plain: String,
    env: String,
}

impl Secrets {
    fn new() -> Result<Self, Box<dyn Error>> {
        let s = Secrets {
            dir: tempfile::tempdir()?,
            file: value("file"),
            plain: value("plain"),
            env: value("env"),
        };
        std::fs::write(s.dir.path().join("tok"), &s.file)?;
        std::fs::write(s.dir.path().join("plain"), &s.plain)?;
        Ok(s)
    }

    fn args(&self) -> Vec<String> {
        let p = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            "--secret".into(),
            format!("id=tok,src={}", p("tok")),
            "--secret".into(),
            format!("id=plain,src={}", p("plain")),
            "--secret".into(),
            format!("id=envtok,env={CLIENT_VAR}"),
        ]
    }
}

/// `oxctl build --progress plain --output OUTPUT` with `secrets` served (the env one through
/// oxctl's environment); returns (success, stdout, stderr).
fn build(
    fx: &Fixture,
    def: &[u8],
    output: &str,
    secrets: &Secrets,
) -> Result<(bool, String, String), Box<dyn Error>> {
    use std::io::Write as _;
    let mut child = Command::new(locate_oxkitd()?.with_file_name("oxctl"))
        .arg("--addr")
        .arg(format!("unix://{}", fx.build_address().display()))
        .args(["build", "--progress", "plain", "--output", output])
        .args(secrets.args())
        .env(CLIENT_VAR, &secrets.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("piped").write_all(def)?;
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Whether plain progress reports the step named `name` as cached.
fn cached(progress: &str, name: &str) -> bool {
    let lines: Vec<&str> = progress.lines().collect();
    lines
        .windows(2)
        .any(|w| w[0].ends_with(&format!(" {name}")) && w[1].ends_with(" CACHED"))
}

/// Every regular file under `dir` (symlinks not followed) whose content — or, for a gzip
/// stream such as a layer blob, whose decompressed content — contains `needle`, except `skip`.
fn files_containing(dir: &Path, needle: &[u8], skip: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && !skip.contains(&path) {
                let Ok(data) = std::fs::read(&path) else {
                    continue;
                };
                let mut plain = Vec::new();
                if data.starts_with(&[0x1f, 0x8b]) {
                    let _ =
                        flate2::read::MultiGzDecoder::new(data.as_slice()).read_to_end(&mut plain);
                }
                if contains(&data, needle) || contains(&plain, needle) {
                    found.push(path);
                }
            }
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The host mounts of secrets tmpfses below the fixture's dir.
fn secret_mounts(fx: &Fixture) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(fx.dir().to_str().unwrap()) && l.contains("oxkit-secrets"))
        .map(str::to_owned)
        .collect()
}

/// Waits until containerd has deleted every step's container (they go in the background, and
/// their records hold the env secrets until then). The shim keeper, which holds no secret and
/// outlives the steps, is not one.
fn containers_gone(fx: &Fixture) -> Result<(), Box<dyn Error>> {
    eventually(
        "the steps' containers deleted",
        Duration::from_secs(30),
        || {
            let ls = |filters: &[&str]| {
                let mut args = vec!["containers", "ls", "-q"];
                args.extend(filters);
                fx.ctr(args).map_err(|e| e.to_string())
            };
            let keepers = ls(&["labels.\"oxkit.shim-keeper\""])?;
            let steps: Vec<String> = ls(&[])?
                .lines()
                .filter(|id| !keepers.lines().any(|k| k == *id))
                .map(str::to_owned)
                .collect();
            if steps.is_empty() {
                Ok(())
            } else {
                Err(steps.join("\n"))
            }
        },
    )?;
    Ok(())
}

#[test]
fn a_secret_reaches_its_step_and_nowhere_else() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let secrets = Secrets::new()?;
    let def = definition();
    let (ok, _, progress) = build(&fx, &def, "type=image,name=secret:dev", &secrets)?;
    assert!(ok, "the build failed:\n{progress}");

    // What the step saw: the values (by hash), owner and mode, a read-only tmpfs.
    for (what, v) in [
        ("file", &secrets.file),
        ("plain", &secrets.plain),
        ("env", &secrets.env),
    ] {
        let line = format!("{what} {}", sha256_hex(v.as_bytes()));
        assert!(progress.contains(&line), "no {line:?} in:\n{progress}");
    }
    assert!(progress.contains("owner 440 1000 1000"), "{progress}");
    assert!(
        progress.contains("default 400 0 0"),
        "a secret without a destination is at /run/secrets/<id>, root's, mode 0400:\n{progress}"
    );
    let mount = progress
        .lines()
        .find(|l| l.contains("mount tmpfs /run/secrets/tok tmpfs"))
        .unwrap_or_else(|| panic!("the secret is not on a tmpfs:\n{progress}"));
    assert!(mount.contains(" ro,"), "{mount}");
    assert!(!progress.contains("writable"), "{progress}");

    // The same build exported as files: cached, with the step's file and no trace of a mount.
    let out = fx.dir().join("out");
    let output = format!("type=local,dest={}", out.display());
    let (ok, _, progress2) = build(&fx, &def, &output, &secrets)?;
    assert!(ok, "{progress2}");
    assert!(cached(&progress2, STEP), "{progress2}");
    assert_eq!(std::fs::read_to_string(out.join("built"))?, "built-42\n");
    assert!(
        !out.join("run/secrets").exists(),
        "the secret mounts' stubs are removed from the step's result"
    );

    // A new value: the step stays cached (a value is not part of its key), and does not run.
    let changed = Secrets::new()?;
    let (ok, _, progress3) = build(&fx, &def, &output, &changed)?;
    assert!(ok, "{progress3}");
    assert!(
        cached(&progress3, STEP),
        "a new secret value re-ran the step:\n{progress3}"
    );
    assert!(!progress3.contains(&sha256_hex(changed.file.as_bytes())));

    // The values are nowhere: not in the progress output, and not in any file of the daemons
    // (layer blobs, image configs, snapshots, cache records, logs) or in the exported files.
    containers_gone(&fx)?;
    assert!(
        secret_mounts(&fx).is_empty(),
        "secrets tmpfs left mounted: {:#?}",
        secret_mounts(&fx)
    );
    // The search sees into layer blobs: it finds what the step wrote in one.
    let blobs = fx
        .dir()
        .join("containerd/root/io.containerd.content.v1.content/blobs");
    assert!(!files_containing(&blobs, b"built-42", &[]).is_empty());
    // The env secret's value did travel in a container's spec, which containerd keeps in its
    // metadata database while the container exists (as with BuildKit): the record is deleted,
    // but a freed database page may still hold its bytes.
    let metadata_db = fx
        .dir()
        .join("containerd/root/io.containerd.metadata.v1.bolt/meta.db");
    for s in [&secrets, &changed] {
        for (what, v, skip) in [
            ("file", &s.file, Vec::new()),
            ("plain", &s.plain, Vec::new()),
            ("env", &s.env, vec![metadata_db.clone()]),
        ] {
            for p in [&progress, &progress2, &progress3] {
                assert!(
                    !p.contains(v.as_str()),
                    "the {what} secret is in the progress"
                );
            }
            let found = files_containing(fx.dir(), v.as_bytes(), &skip);
            assert!(
                found.is_empty(),
                "the {what} secret's value is in {found:#?}"
            );
        }
    }
    Ok(())
}

#[test]
fn a_missing_required_secret_fails_naming_it_and_a_missing_optional_one_does_not() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let secrets = Secrets::new()?;
    let output = "type=image,name=secret:missing";
    let required_mount = oxkit_llb::image(BASE)
        .sh("echo ran-$((1 + 1))")
        .mount(MountSpec::secret("", "absent"))
        .root()
        .marshal()?
        .to_bytes();
    let (ok, _, stderr) = build(&fx, &required_mount, output, &secrets)?;
    assert!(!ok, "a step with a missing required secret ran:\n{stderr}");
    assert!(stderr.contains("secret \"absent\""), "{stderr}");
    assert!(!stderr.contains("ran-2"), "{stderr}");

    let required_env = oxkit_llb::image(BASE)
        .sh("echo ran-$((1 + 1))")
        .secret_env("absent-env", "NOPE", false)
        .root()
        .marshal()?
        .to_bytes();
    let (ok, _, stderr) = build(&fx, &required_env, output, &secrets)?;
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("secret \"absent-env\""), "{stderr}");

    // The daemon goes on serving; optional secrets that are missing are skipped (no file, and
    // the variable is empty, as in BuildKit), the others are there.
    let optional = oxkit_llb::image(BASE)
        .sh(
            "set -e; [ ! -e /run/secrets/absent ]; [ \"${OPT-unset}\" = '' ]; \
             [ -s /run/secrets/tok ]; echo optional-ok",
        )
        .mount(MountSpec::secret("", "absent").optional())
        .mount(MountSpec::secret("", "tok"))
        .secret_env("absent", "OPT", true)
        .root()
        .marshal()?
        .to_bytes();
    let (ok, _, stderr) = build(&fx, &optional, output, &secrets)?;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("optional-ok"), "{stderr}");

    containers_gone(&fx)?;
    assert!(
        secret_mounts(&fx).is_empty(),
        "secrets tmpfs left mounted: {:#?}",
        secret_mounts(&fx)
    );
    Ok(())
}

/// A session that serves one secret, `tok`.
struct OneSecret;

// `ClientSession` is an `async_trait`; its one async method written out by hand.
impl ClientSession for OneSecret {
    fn id(&self) -> &str {
        "one-secret"
    }

    fn get_secret<'a, 'b, 'f>(
        &'a self,
        id: &'b str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, SessionError>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            match id {
                "tok" => Ok(b"cancelled-step-secret".to_vec()),
                _ => Err(SessionError::NotFound {
                    session: "one-secret".into(),
                    what: format!("secret {id:?}"),
                }),
            }
        })
    }
}

/// A solve dropped while its step runs (a cancelled build) unmounts the step's secrets tmpfs,
/// which is mounted on the host, under the worker's scratch dir, while the step runs.
#[test]
fn a_cancelled_step_leaves_no_secrets_tmpfs() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    in_runtime(async {
        let (worker, lease) = crate::worker::worker(&fx).await?;
        let solver = crate::worker::solver(&worker);
        let slow = oxkit_llb::image(BASE)
            .sh("sleep 1000")
            .mount(MountSpec::secret("", "tok"))
            .root();
        let graph = slow.marshal()?.parse()?;
        let edge = worker.solver_edge(&graph)?.expect("a result");
        let session: SessionRef = Arc::new(OneSecret);
        let solving = solver.solve(
            &edge,
            SolveOptions {
                no_cache: false,
                progress: None,
                session: Some(Attachment::new(session)),
                ..Default::default()
            },
        );
        // The step's own task (not the shim group's keeper) runs, with its secret mounted.
        let running = async {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let tasks = worker.client().tasks().list().await?;
                let mounted = secret_mounts(&fx);
                if tasks.iter().any(|t| !t.ends_with("-keeper")) && !mounted.is_empty() {
                    return Ok::<_, Box<dyn Error>>(mounted);
                }
                if std::time::Instant::now() > deadline {
                    return Err(format!("the step did not start: tasks {tasks:?}").into());
                }
            }
        };
        let mounted = match until(solving, running).await {
            Err(running) => running?,
            Ok(_) => panic!("`sleep 1000` finished"),
        };
        assert_eq!(mounted.len(), 1, "{mounted:#?}");
        assert!(mounted[0].contains(" tmpfs "), "{mounted:#?}");
        crate::worker::wait_until_clean(&worker).await?;
        // Unmounted before the step's snapshots are removed.
        assert!(secret_mounts(&fx).is_empty(), "{:#?}", secret_mounts(&fx));
        worker.shutdown().await;
        lease.delete(false).await?;
        Ok(())
    })
}
