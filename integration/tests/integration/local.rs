//! Local sources (`oxctl build --local context=DIR`) against the real oxkitd: a 20,000-file
//! context sent once, then only what changed; deletes, renames, chmods, symlink changes and an
//! edit that keeps size and mtime reach the image; touching a file or changing an excluded one
//! keeps the copy step cached; excluded files never reach the daemon; a client killed
//! mid-transfer fails that build and the next one succeeds; two directories under one name, and
//! two clients building at once, do not mix.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oxkit_integration::{Fixture, FixtureError};

type TestResult = Result<(), Box<dyn std::error::Error>>;
use oxkit_llb::{image, local, CopyOptions, FileActions};

use crate::support::{spawn_build, state_of};

const BASE: &str = "docker.io/library/busybox:latest";

/// busybox with local directory `context` copied to `/app`.
fn definition() -> Vec<u8> {
    image(BASE)
        .file(FileActions::new().copy(
            &local("context"),
            "/",
            "/app",
            CopyOptions {
                copy_dir_contents: true,
                create_dest_path: true,
                ..Default::default()
            },
        ))
        .custom_name("copy context")
        .marshal()
        .expect("marshal")
        .to_bytes()
}

/// `oxctl build` of the local directory `local` (`context=DIR`) to `output`, plain progress.
fn build_args<'a>(local: &'a str, output: &'a str) -> [&'a str; 7] {
    [
        "build",
        "--progress",
        "plain",
        "--local",
        local,
        "--output",
        output,
    ]
}

/// Builds `definition()` from `ctx` into image `name`; returns (stdout, stderr, seconds).
fn build(fx: &Fixture, ctx: &Path, name: &str) -> Result<(String, String, f64), FixtureError> {
    let local = format!("context={}", ctx.display());
    let output = format!("type=image,name={name}");
    let started = Instant::now();
    let (ok, stdout, stderr) = fx.oxctl(&build_args(&local, &output), &definition())?;
    assert!(ok, "build of {name} failed:\n{stderr}");
    // The steps' times and the transfer, for the figures in reports.
    for line in stderr.lines().filter(|l| {
        l.contains("local://context: ") || l.contains(" DONE ") || l.ends_with("CACHED")
    }) {
        eprintln!("{name}: {line}");
    }
    Ok((stdout, stderr, started.elapsed().as_secs_f64()))
}

/// "N files sent" / "1 file sent" of the local source's progress line.
fn sent(progress: &str) -> u64 {
    let line = progress
        .lines()
        .find(|l| l.contains("local://context: "))
        .unwrap_or_else(|| panic!("no local source line:\n{progress}"));
    let after = line.split("local://context: ").nth(1).unwrap();
    after.split(' ').next().unwrap().parse().unwrap()
}

/// Every file the daemon keeps in its copies of local directories.
fn received(fx: &Fixture) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&fx.oxkit_root().join("local"), &mut out);
    out
}

fn run(fx: &Fixture, image: &str, script: &str) -> Result<String, FixtureError> {
    fx.run(image, &["sh", "-c", script])
}

#[test]
fn a_20000_file_context_is_sent_once_then_only_what_changed() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let ctx = fx.dir().join("ctx");
    for d in 0..100 {
        let dir = ctx.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir)?;
        for f in 0..200 {
            std::fs::write(dir.join(format!("f{f:03}")), format!("file {d} {f}\n"))?;
        }
    }
    std::fs::write(ctx.join("keep.txt"), "keep\n")?;
    std::fs::write(ctx.join("old name"), "renamed\n")?;
    std::fs::write(ctx.join("gone"), "gone\n")?;
    std::fs::write(ctx.join("x.log"), "excluded\n")?;
    std::fs::write(ctx.join(".dockerignore"), "*.log\n")?;
    std::os::unix::fs::symlink("keep.txt", ctx.join("link"))?;

    let (stdout, stderr, cold) = build(&fx, &ctx, "docker.io/library/local:1")?;
    assert_eq!(sent(&stderr), 20_004, "{stderr}");
    assert!(stdout.contains("local.context.digest: sha256:"), "{stdout}");
    let digest = stdout
        .lines()
        .find(|l| l.starts_with("local.context.digest: "))
        .unwrap()
        .to_string();
    assert_eq!(
        run(
            &fx,
            "docker.io/library/local:1",
            "cat /app/d42/f123 /app/link; ls /app | wc -l"
        )?,
        "file 42 123\nkeep\n104\n"
    );
    let got = received(&fx);
    assert!(
        !got.iter().any(|p| p.ends_with("x.log")),
        "an excluded file reached the daemon"
    );
    eprintln!("cold: 20,004 files in {cold:.2}s");

    // One file changed: one file sent, the image has it.
    std::fs::write(ctx.join("d07/f007"), "changed\n")?;
    let (stdout, stderr, warm) = build(&fx, &ctx, "docker.io/library/local:2")?;
    assert_eq!(sent(&stderr), 1, "one file sent:\n{stderr}");
    assert_ne!(
        stdout
            .lines()
            .find(|l| l.starts_with("local.context.digest")),
        Some(digest.as_str())
    );
    assert_eq!(
        run(&fx, "docker.io/library/local:2", "cat /app/d07/f007")?,
        "changed\n"
    );
    eprintln!("one file changed: {warm:.2}s");

    // Nothing changed.
    let (_, stderr, unchanged) = build(&fx, &ctx, "docker.io/library/local:2")?;
    assert_eq!(sent(&stderr), 0, "{stderr}");
    assert_eq!(
        state_of(&stderr, "copy context"),
        Some("CACHED"),
        "{stderr}"
    );
    eprintln!("nothing changed: {unchanged:.2}s");

    // Delete, rename, chmod, symlink retarget.
    std::fs::remove_file(ctx.join("gone"))?;
    std::fs::rename(ctx.join("old name"), ctx.join("new name"))?;
    std::fs::set_permissions(
        ctx.join("keep.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o751),
    )?;
    std::fs::remove_file(ctx.join("link"))?;
    std::os::unix::fs::symlink("new name", ctx.join("link"))?;
    build(&fx, &ctx, "docker.io/library/local:3")?;
    assert_eq!(
        run(
            &fx,
            "docker.io/library/local:3",
            "test -e /app/gone || echo no-gone; cat '/app/new name'; \
             test -e '/app/old name' || echo no-old; stat -c %a /app/keep.txt; readlink /app/link"
        )?,
        "no-gone\nrenamed\nno-old\n751\nnew name\n"
    );

    // An edit that keeps size and mtime.
    let f = ctx.join("d01/f001");
    let mtime = std::fs::metadata(&f)?.modified()?;
    let before = std::fs::read(&f)?;
    let mut after = before.clone();
    after[0] = b'F';
    std::fs::write(&f, &after)?;
    std::fs::File::options()
        .write(true)
        .open(&f)?
        .set_modified(mtime)?;
    build(&fx, &ctx, "docker.io/library/local:4")?;
    assert_eq!(
        run(&fx, "docker.io/library/local:4", "cat /app/d01/f001")?,
        "File 1 1\n"
    );

    // Touching a file, or changing an excluded one, keeps the copy cached.
    std::fs::File::options()
        .write(true)
        .open(ctx.join("d02/f002"))?
        .set_modified(std::time::SystemTime::UNIX_EPOCH)?;
    std::fs::write(ctx.join("x.log"), "excluded, changed\n")?;
    let (_, stderr, _) = build(&fx, &ctx, "docker.io/library/local:5")?;
    assert_eq!(
        sent(&stderr),
        1,
        "the touched file, not the excluded one:\n{stderr}"
    );
    assert_eq!(
        state_of(&stderr, "copy context"),
        Some("CACHED"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_client_killed_mid_transfer_fails_that_build_and_the_next_succeeds() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let ctx = fx.dir().join("ctx");
    std::fs::create_dir_all(&ctx)?;
    let block: Vec<u8> = (0..(4 << 20)).map(|i| (i % 251) as u8).collect();
    for i in 0..60 {
        std::fs::write(ctx.join(format!("big{i:02}")), &block)?;
    }
    let local = format!("context={}", ctx.display());
    let mut child = fx
        .oxctl_command(&["build", "--progress", "plain", "--local", &local])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&definition())?;
    }
    // Kill it once the daemon is writing its copy.
    let deadline = Instant::now() + Duration::from_secs(60);
    let dirty = loop {
        let found = received(&fx).into_iter().any(|p| p.ends_with("dirty.json"));
        if found || Instant::now() > deadline || child.try_wait()?.is_some() {
            break found;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(dirty, "the transfer was not seen in progress");
    child.kill()?;
    child.wait()?;

    // The next build succeeds and has every file whole.
    let (_, stderr, _) = build(&fx, &ctx, "docker.io/library/after-kill:1")?;
    assert!(sent(&stderr) > 0, "{stderr}");
    let sums = run(
        &fx,
        "docker.io/library/after-kill:1",
        "md5sum /app/big* | cut -d' ' -f1 | sort -u | wc -l; ls /app | wc -l",
    )?;
    assert_eq!(sums, "1\n60\n");
    // Nothing of the killed build is left active.
    let active: Vec<String> = fx
        .snapshots()?
        .into_iter()
        .filter(|s| s.key.contains("oxkit-local") && s.kind == "Active")
        .map(|s| s.key)
        .collect();
    assert_eq!(active, Vec::<String>::new());
    Ok(())
}

#[test]
fn two_directories_under_one_name_keep_a_copy_each_and_two_clients_do_not_mix() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let make = |dir: &str, files: &[(&str, &str)]| -> std::io::Result<PathBuf> {
        let root = fx.dir().join(dir);
        std::fs::create_dir_all(&root)?;
        for (name, text) in files {
            std::fs::write(root.join(name), text)?;
        }
        Ok(root)
    };
    let a = make("ctx-a", &[("a.txt", "A"), ("common.txt", "from A")])?;
    let b = make("ctx-b", &[("b.txt", "B"), ("common.txt", "from B")])?;
    // `test -e` of both files, then the shared one.
    let show = "for f in a b; do test -e /app/$f.txt && echo has-$f; done; cat /app/common.txt";

    // One client, two directories in turn under the name `context`.
    build(&fx, &a, "docker.io/library/la:1")?;
    build(&fx, &b, "docker.io/library/lb:1")?;
    assert_eq!(run(&fx, "docker.io/library/la:1", show)?, "has-a\nfrom A");
    assert_eq!(run(&fx, "docker.io/library/lb:1", show)?, "has-b\nfrom B");
    // Each directory keeps its own copy: back to the first, only its change is sent.
    std::fs::write(a.join("a.txt"), "A, edited")?;
    let (_, stderr, _) = build(&fx, &a, "docker.io/library/la:2")?;
    assert_eq!(sent(&stderr), 1, "only the edited file:\n{stderr}");
    assert_eq!(
        run(
            &fx,
            "docker.io/library/la:2",
            "cat /app/a.txt /app/common.txt"
        )?,
        "A, editedfrom A"
    );

    // Two clients at once (each with its own client id), crossed over.
    let spawn = |state: &str, ctx: &Path, name: &str| {
        let local = format!("context={}", ctx.display());
        let output = format!("type=image,name={name}");
        let mut command = fx.oxctl_command(&build_args(&local, &output));
        command.env("XDG_STATE_HOME", fx.dir().join(state));
        spawn_build(command, &definition())
    };
    let first = spawn("client-one", &b, "docker.io/library/c1:1");
    let second = spawn("client-two", &a, "docker.io/library/c2:1");
    for child in [first, second] {
        let out = child.wait_with_output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(run(&fx, "docker.io/library/c1:1", show)?, "has-b\nfrom B");
    assert_eq!(run(&fx, "docker.io/library/c2:1", show)?, "has-a\nfrom A");
    // The daemon keeps one copy per (client, name, directory): the fixture's default client's
    // two directories, and one for each of the two clients.
    let copies = std::fs::read_dir(fx.oxkit_root().join("local"))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .count();
    assert_eq!(copies, 4, "one copy per client, name and directory");
    Ok(())
}
