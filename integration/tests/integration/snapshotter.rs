//! The oxkit snapshotter as containerd uses it: unpacking images, running containers, surviving
//! restarts and crashes, and giving its directories back when containerd collects garbage.

use std::fs::File;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use oxkit_integration::{
    busybox_image, busybox_layer, BuiltImage, Fixture, Layer, OciImageBuilder, TestResult,
    SNAPSHOTTER,
};

const BUSYBOX: &str = "docker.io/library/busybox:test";

/// How long containerd's garbage collection may take to reach oxkitd and oxkitd to remove directories.
const GC_TIMEOUT: Duration = Duration::from_secs(60);

fn import_busybox(fx: &Fixture) -> Result<BuiltImage, oxkit_integration::FixtureError> {
    let image = busybox_image(BUSYBOX)?.write_archive(&fx.image_path("busybox.tar"))?;
    fx.import(&image)?;
    Ok(image)
}

/// Asserts that `ctr run` on `image` works and prints what a shell echoes.
fn assert_runs(fx: &Fixture, image: &str) -> TestResult {
    let out = fx.run(image, &["/bin/sh", "-c", "echo hello-oxkit"])?;
    assert_eq!(out.trim(), "hello-oxkit", "unexpected output of ctr run");
    Ok(())
}

/// `ctr snapshots info` reaches oxkitd's Stat: it must still know the image's layer.
fn assert_layer_known(fx: &Fixture, image: &BuiltImage, when: &str) -> TestResult {
    let info = fx.ctr([
        "snapshots",
        "--snapshotter",
        SNAPSHOTTER,
        "info",
        &image.chain_ids[0],
    ])?;
    assert!(
        info.contains("Committed"),
        "`ctr snapshots info` {when}:\n{info}"
    );
    Ok(())
}

#[test]
fn busybox_imports_into_oxkit_and_runs() -> TestResult {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let image = import_busybox(&fx)?;

    let images = fx.ctr(["images", "ls", "-q"])?;
    assert!(
        images.lines().any(|l| l.trim() == BUSYBOX),
        "{BUSYBOX} not in `ctr images ls`:\n{images}"
    );
    let snapshots = fx.snapshots()?;
    let layer = snapshots.iter().find(|s| s.key == image.chain_ids[0]);
    let layer = layer.unwrap_or_else(|| {
        panic!(
            "no snapshot {} (the layer's chain ID) in {snapshots:#?}",
            image.chain_ids[0]
        )
    });
    assert_eq!(
        layer.kind, "Committed",
        "the unpacked layer must be committed: {layer:?}"
    );
    assert_eq!(
        snapshots.len(),
        1,
        "one layer, one snapshot: {snapshots:#?}"
    );

    let dirs = fx.snapshot_dirs()?;
    assert!(
        !dirs.is_empty(),
        "no directory under {}",
        fx.snapshots_dir().display()
    );
    let with_busybox: Vec<_> = dirs
        .iter()
        .filter(|d| d.join("fs/bin/busybox").is_file())
        .collect();
    assert_eq!(
        with_busybox.len(),
        1,
        "exactly one snapshot dir must hold the layer's fs/bin/busybox: {dirs:#?}"
    );
    let layer_fs = with_busybox[0].join("fs");
    assert!(
        layer_fs.join("bin/sh").is_symlink(),
        "applet symlinks missing in {}",
        layer_fs.display()
    );

    // A container writes to its own active snapshot, never into the committed layer below it.
    let out = fx.run(
        BUSYBOX,
        &[
            "/bin/sh",
            "-c",
            "echo hello-oxkit; echo written > /tmp/probe && cat /tmp/probe",
        ],
    )?;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["hello-oxkit", "written"],
        "output of ctr run"
    );
    assert!(
        !layer_fs.join("tmp/probe").exists(),
        "the container's write reached the committed layer"
    );

    // `ctr run --rm` removed the container's snapshot again.
    assert_eq!(fx.snapshots()?, snapshots, "snapshots after `ctr run --rm`");
    Ok(())
}

#[test]
fn snapshots_survive_an_oxkitd_restart() -> TestResult {
    let Some(mut fx) = Fixture::start()? else {
        return Ok(());
    };
    let image = import_busybox(&fx)?;
    let before = fx.snapshots()?;
    let dirs_before = fx.snapshot_dirs()?;

    let status = fx.stop_oxkitd()?.expect("oxkitd was running");
    assert!(
        status.success(),
        "oxkitd must exit 0 on SIGTERM, exited with {status}"
    );
    fx.start_oxkitd()?;
    fx.wait_snapshotter_reachable()?;

    assert_eq!(
        fx.snapshots()?,
        before,
        "containerd's snapshots after restarting oxkitd"
    );
    for dir in &dirs_before {
        assert!(
            dir.join("fs").is_dir(),
            "{} lost its fs after restarting oxkitd",
            dir.display()
        );
    }
    assert_layer_known(&fx, &image, "after restarting oxkitd")?;
    assert_runs(&fx, BUSYBOX)?;

    // And once more, with a container's snapshot prepared and removed in between.
    fx.restart_oxkitd()?;
    fx.wait_snapshotter_reachable()?;
    assert_runs(&fx, BUSYBOX)
}

#[test]
fn snapshots_survive_a_containerd_restart() -> TestResult {
    let Some(mut fx) = Fixture::start()? else {
        return Ok(());
    };
    let image = import_busybox(&fx)?;
    let before = fx.snapshots()?;
    let dirs_before = fx.snapshot_dirs()?;

    fx.restart_containerd()?;
    fx.wait_snapshotter_reachable()?;

    assert_eq!(
        fx.snapshots()?,
        before,
        "containerd's snapshots after restarting containerd"
    );
    assert_eq!(
        fx.snapshot_dirs()?,
        dirs_before,
        "snapshot dirs after restarting containerd"
    );
    assert_layer_known(&fx, &image, "after restarting containerd")?;
    assert_runs(&fx, BUSYBOX)
}

#[test]
fn removing_the_image_removes_its_snapshot_dirs() -> TestResult {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    import_busybox(&fx)?;
    assert_runs(&fx, BUSYBOX)?;
    assert!(
        !fx.snapshot_dirs()?.is_empty(),
        "nothing under {} after import",
        fx.snapshots_dir().display()
    );

    // --sync runs containerd's garbage collection and waits for it: containerd sweeps the image's
    // snapshots from its metadata and calls oxkitd's Remove for each, then Cleanup.
    fx.ctr(["images", "rm", "--sync", BUSYBOX])?;
    let snapshots = fx.snapshots()?;
    assert!(
        snapshots.is_empty(),
        "containerd still lists snapshots after `images rm --sync`: {snapshots:#?}"
    );
    oxkit_integration::eventually(
        format!("{} to be empty", fx.snapshots_dir().display()),
        GC_TIMEOUT,
        || match fx.snapshot_dirs() {
            Ok(dirs) if dirs.is_empty() => Ok(()),
            Ok(dirs) => Err(format!("{dirs:?}")),
            Err(err) => Err(err.to_string()),
        },
    )?;
    Ok(())
}

#[test]
fn an_image_with_128_layers_unpacks_and_runs() -> TestResult {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    const LAYERS: usize = 128;
    // Each middle layer adds a file and overwrites /layer, so reading /layer shows which layer the
    // overlay puts on top: the lower directories must be stacked in image order.
    let mut builder = OciImageBuilder::new("docker.io/library/deep:test")
        .layer(busybox_layer()?.file("bottom", "from-the-bottom-layer\n", 0o644))
        .env("PATH=/bin")
        .cmd(["sh"]);
    for n in 1..LAYERS - 1 {
        builder = builder.layer(Layer::from_files([
            (format!("data/{n:03}"), format!("{n}\n")),
            ("layer".into(), format!("{n}\n")),
        ]));
    }
    builder = builder.layer(Layer::new().file("top", "from-the-top-layer\n", 0o644));
    assert_eq!(builder.layer_count(), LAYERS);
    let image = builder.write_archive(&fx.image_path("deep.tar"))?;
    fx.import(&image)?;

    let snapshots = fx.snapshots()?;
    assert_eq!(snapshots.len(), LAYERS, "one committed snapshot per layer");
    let top = image.chain_ids.last().unwrap();
    assert!(
        snapshots
            .iter()
            .any(|s| &s.key == top && s.kind == "Committed"),
        "no committed top layer {top}"
    );

    let out = fx.run(
        &image.name,
        &["/bin/sh", "-c", "cat /bottom /top /layer; ls /data | wc -l"],
    )?;
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "from-the-bottom-layer",
            "from-the-top-layer",
            &(LAYERS - 2).to_string(),
            &(LAYERS - 2).to_string()
        ],
        "bottom file, top file, the topmost /layer, count of /data entries"
    );
    Ok(())
}

#[test]
fn oxkitd_killed_during_an_import_recovers_without_orphan_dirs() -> TestResult {
    let Some(mut fx) = Fixture::start()? else {
        return Ok(());
    };
    const LAYERS: usize = 64;
    // Big enough that the import is still running when the first directories appear.
    let image = busybox_image("docker.io/library/crash:test")?
        .generated_layers(LAYERS - 1, 200, 512)
        .write_archive(&fx.image_path("crash.tar"))?;

    let log = fx.dir().join("interrupted-import.log");
    let log_file = File::create(&log).expect("create the import log");
    let mut import = fx
        .ctr_command(["images", "import", "--snapshotter", SNAPSHOTTER])
        .arg(&image.archive)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("duplicate the log file"))
        .stderr(log_file)
        .spawn()
        .expect("start ctr images import");

    // Kill oxkitd as soon as the import is under way.
    let started = Instant::now();
    loop {
        if let Some(status) = import.try_wait().expect("poll ctr") {
            panic!(
                "the import finished ({status}) before oxkitd could be killed; make the test image bigger. Its output:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if fx.snapshot_dirs()?.len() >= 8 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the import made no snapshot dirs in 2 minutes"
        );
        thread::sleep(Duration::from_millis(5));
    }
    fx.kill_oxkitd()?;
    eprintln!(
        "killed oxkitd after {:?} with {} snapshot dirs",
        started.elapsed(),
        fx.snapshot_dirs()?.len()
    );
    let status = loop {
        if let Some(status) = import.try_wait().expect("poll ctr") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = import.kill();
            panic!("ctr images import hangs after oxkitd was killed");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !status.success(),
        "the import must fail when oxkitd dies under it; it printed:\n{output}"
    );

    fx.start_oxkitd()?;
    fx.wait_snapshotter_reachable()?;
    fx.import(&image)?;
    eprintln!(
        "re-imported after {:?}: {} snapshots, {} dirs",
        started.elapsed(),
        fx.snapshots()?.len(),
        fx.snapshot_dirs()?.len()
    );
    let out = fx.run(&image.name, &["/bin/sh", "-c", "ls /data | wc -l"])?;
    assert_eq!(
        out.trim(),
        (LAYERS - 1).to_string(),
        "layers visible in the container"
    );

    // After a garbage collection every directory belongs to a snapshot containerd knows: what the
    // killed import left is either removed through containerd or cleaned up by oxkitd.
    fx.collect_garbage()?;
    let count = fx.wait_dirs_match_snapshots(GC_TIMEOUT)?;
    eprintln!(
        "after garbage collection at {:?}: {count} snapshots and dirs",
        started.elapsed()
    );
    assert_eq!(
        count, LAYERS,
        "one snapshot (and one dir) per layer of the image"
    );
    Ok(())
}
