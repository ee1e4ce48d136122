//! Builds end to end: an LLB definition piped into `oxctl build`, solved by oxkitd on a real
//! containerd and runc, exported as an image that `ctr run` starts with and without oxkit.

use oxkit_integration::{Fixture, TestResult};

use crate::support::steps_done;

const BASE: &str = "docker.io/library/busybox:latest";

/// busybox, then `steps` run in order, each a shell command with a custom name.
fn definition(steps: &[(&str, &str)]) -> Vec<u8> {
    let mut state = oxkit_llb::image(BASE);
    for (name, script) in steps {
        state = state.sh(script).custom_name(name).root();
    }
    state.marshal().expect("marshal").to_bytes()
}

fn build(
    fx: &Fixture,
    def: &[u8],
    image: &str,
) -> Result<(bool, String, String), oxkit_integration::FixtureError> {
    let output = format!("type=image,name={image}");
    fx.oxctl(&["build", "--progress", "plain", "--output", &output], def)
}

#[test]
fn a_built_image_runs_with_and_without_oxkit_and_rebuilds_from_cache() -> TestResult {
    let Some(mut fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let def = definition(&[
        ("write greeting", "echo built-by-oxkit > /greeting"),
        ("list", "ls /greeting"),
    ]);
    let (ok, stdout, stderr) = build(&fx, &def, "docker.io/library/app:dev")?;
    assert!(ok, "build failed:\n{stderr}");
    assert!(
        stdout.contains("containerd.image.digest: sha256:"),
        "{stdout}"
    );
    assert!(
        stderr.contains("write greeting") && stderr.contains("DONE"),
        "{stderr}"
    );
    let listed = fx.ctr(["images", "ls", "-q"])?;
    assert!(
        listed.lines().any(|l| l == "docker.io/library/app:dev"),
        "{listed}"
    );

    let before = fx.snapshots()?;
    assert_eq!(
        fx.run("docker.io/library/app:dev", &["cat", "/greeting"])?
            .trim(),
        "built-by-oxkit"
    );
    assert_eq!(
        fx.snapshots()?,
        before,
        "ctr run through oxkit unpacked nothing"
    );
    let id = fx.unique_id("plain");
    let out = fx.ctr([
        "run",
        "--rm",
        "docker.io/library/app:dev",
        id.as_str(),
        "cat",
        "/greeting",
    ])?;
    assert_eq!(
        out.trim(),
        "built-by-oxkit",
        "the default snapshotter unpacks the exported blobs"
    );

    // The same definition again: every step cached, none run.
    let (ok, _, stderr) = build(&fx, &def, "docker.io/library/app:dev")?;
    assert!(ok, "{stderr}");
    assert_eq!(stderr.matches("CACHED").count(), 3, "{stderr}");
    assert_eq!(steps_done(&stderr), 0, "nothing ran:\n{stderr}");
    assert!(
        stderr.contains("exporting to image"),
        "the export shows as a step:\n{stderr}"
    );

    // A changed last step re-runs that step only.
    let changed = definition(&[
        ("write greeting", "echo built-by-oxkit > /greeting"),
        ("list", "ls -l /greeting"),
    ]);
    let (ok, _, stderr) = build(&fx, &changed, "docker.io/library/app:dev2")?;
    assert!(ok, "{stderr}");
    assert_eq!(
        steps_done(&stderr),
        1,
        "only the changed step ran:\n{stderr}"
    );

    // The cache outlives the daemon.
    fx.restart_oxkitd()?;
    fx.wait_snapshotter_reachable()?;
    let (ok, _, stderr) = build(&fx, &def, "docker.io/library/app:dev")?;
    assert!(ok, "{stderr}");
    assert_eq!(
        steps_done(&stderr),
        0,
        "fully cached after restarting oxkitd:\n{stderr}"
    );
    Ok(())
}

#[test]
fn a_failing_step_names_itself_and_its_exit_code_and_the_daemon_carries_on() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let def = definition(&[("doomed step", "echo about-to-fail; exit 3")]);
    let (ok, _, stderr) = build(&fx, &def, "docker.io/library/doomed:dev")?;
    assert!(!ok, "the build must fail");
    assert!(
        stderr.contains("doomed step"),
        "the error names the step:\n{stderr}"
    );
    assert!(
        stderr.contains('3'),
        "the error gives the exit code:\n{stderr}"
    );
    assert!(
        stderr.contains("about-to-fail"),
        "the error carries the output's tail:\n{stderr}"
    );
    // A malformed definition is refused cleanly too.
    let (ok, _, stderr) = build(&fx, b"not a definition", "docker.io/library/x:dev")?;
    assert!(!ok && stderr.contains("definition"), "{stderr}");
    // And the daemon still builds.
    let (ok, _, stderr) = build(
        &fx,
        &definition(&[("fine", "true")]),
        "docker.io/library/fine:dev",
    )?;
    assert!(ok, "{stderr}");
    Ok(())
}

#[test]
fn du_lists_the_cache_and_prune_empties_it() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let def = definition(&[("write data", "head -c 300000 /dev/zero > /data")]);
    let (ok, _, stderr) = build(&fx, &def, "docker.io/library/du:dev")?;
    assert!(ok, "{stderr}");

    let (ok, du, stderr) = fx.oxctl(&["du"], b"")?;
    assert!(ok, "{stderr}");
    assert!(
        du.contains("write data"),
        "the step's record is listed:\n{du}"
    );
    let total: i64 = du
        .lines()
        .find_map(|l| {
            l.strip_prefix("Total: ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no total in:\n{du}"));
    assert!(
        total >= 300_000,
        "the step's snapshot holds the data it wrote:\n{du}"
    );

    let (ok, pruned, stderr) = fx.oxctl(&["prune"], b"")?;
    assert!(ok, "{stderr}");
    assert!(pruned.contains("reclaimed from 2 records"), "{pruned}");
    let (_, du, _) = fx.oxctl(&["du"], b"")?;
    assert!(du.contains("in 0 records"), "{du}");

    // The exported image still runs; the next build runs its step again.
    assert_eq!(
        fx.run("docker.io/library/du:dev", &["wc", "-c", "/data"])?
            .split_whitespace()
            .next(),
        Some("300000")
    );
    let (ok, _, stderr) = build(&fx, &def, "docker.io/library/du:dev")?;
    assert!(ok, "{stderr}");
    assert_eq!(
        steps_done(&stderr),
        2,
        "the image's layers were applied and the step ran again after prune:\n{stderr}"
    );
    Ok(())
}

/// The shims serving this fixture's containerd (their command lines name its socket).
fn shims(fx: &Fixture) -> Vec<u32> {
    let address = fx.containerd_address().display().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args
            .first()
            .is_some_and(|a| a.ends_with("containerd-shim-runc-v2"))
            && args.iter().any(|a| a == &address)
        {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn steps_share_one_shim_that_goes_away_when_the_daemon_is_idle() -> TestResult {
    let Some(mut fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    // The default keeps the shim five minutes; the configured idle time is what is honoured.
    fx.restart_oxkitd_with_config("shim_idle_seconds = 2\n")?;
    let steps: Vec<(String, String)> = (0..4)
        .map(|i| (format!("step {i}"), format!("echo {i} >> /steps")))
        .collect();
    let steps: Vec<(&str, &str)> = steps
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (ok, _, stderr) = build(&fx, &definition(&steps), "docker.io/library/shim:dev")?;
    assert!(ok, "build failed:\n{stderr}");
    // Right after the build the keeper still holds one shim; nothing else runs.
    let keepers = fx.ctr(["containers", "ls", "-q", "labels.\"oxkit.shim-keeper\""])?;
    assert_eq!(keepers.lines().count(), 1, "one keeper: {keepers}");
    let running = shims(&fx);
    assert_eq!(running.len(), 1, "one shim for all steps: {running:?}");
    assert_eq!(
        fx.run("docker.io/library/shim:dev", &["cat", "/steps"])?
            .lines()
            .count(),
        4
    );
    // Idle: the keeper and its shim go (the `ctr run` above had a shim of its own, gone too).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let keepers = fx.ctr(["containers", "ls", "-q", "labels.\"oxkit.shim-keeper\""])?;
        let running = shims(&fx);
        if keepers.trim().is_empty() && running.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still there after 20 s: keepers {keepers:?}, shims {running:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        fx.ctr(["containers", "ls", "-q"])?.trim(),
        "",
        "no container left"
    );
    Ok(())
}

#[test]
fn a_stopping_daemon_removes_the_shared_shim() -> TestResult {
    let Some(mut fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let (ok, _, stderr) = build(
        &fx,
        &definition(&[("one", "true"), ("two", "true")]),
        "docker.io/library/stop:dev",
    )?;
    assert!(ok, "build failed:\n{stderr}");
    assert_eq!(
        shims(&fx).len(),
        1,
        "the keeper's shim runs after the build"
    );
    fx.stop_oxkitd()?;
    let keepers = fx.ctr(["containers", "ls", "-q"])?;
    assert_eq!(
        keepers.trim(),
        "",
        "the daemon removed its keeper on the way out"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !shims(&fx).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the shim outlived its last container"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}

/// The containers whose task runs (not the shim keeper, whose task is only created).
fn running_tasks(fx: &Fixture) -> Result<Vec<String>, oxkit_integration::FixtureError> {
    Ok(fx
        .ctr(["tasks", "ls"])?
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("RUNNING"))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
        .collect())
}

#[test]
fn a_client_that_goes_away_cancels_its_build() -> TestResult {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let oxctl = oxkit_integration::locate_oxkitd()?.with_file_name("oxctl");
    // Killed and reaped when dropped, whatever the test's path.
    struct Client(std::process::Child);
    impl Drop for Client {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut client = Client(
        std::process::Command::new(oxctl)
            .arg("--addr")
            .arg(format!("unix://{}", fx.build_address().display()))
            .args(["build", "--progress", "plain"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start oxctl"),
    );
    client
        .0
        .stdin
        .take()
        .expect("piped")
        .write_all(&definition(&[("sleeper", "sleep 300")]))
        .expect("write the definition");
    let deadline = Instant::now() + Duration::from_secs(30);
    while running_tasks(&fx)?.is_empty() {
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running = running_tasks(&fx)?;
        if running.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the step still runs 20 s after its client went away: {running:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The daemon carries on.
    let (ok, _, stderr) = build(
        &fx,
        &definition(&[("after", "true")]),
        "docker.io/library/after:dev",
    )?;
    assert!(ok, "{stderr}");
    Ok(())
}
