//! The fixture itself: what it leaves behind.

use std::path::Path;

use oxkit_integration::{busybox_image, Fixture, TestResult, SNAPSHOTTER};

/// Nothing of a fixture survives its drop: no temp dir, no mount, no process using its socket.
#[test]
fn teardown_leaves_no_dir_mount_or_process() -> TestResult {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let image = busybox_image("docker.io/library/busybox:teardown")?
        .write_archive(&fx.image_path("busybox.tar"))?;
    fx.import(&image)?;
    // A task left running, as a failing test would leave it.
    let id = fx.unique_id("sleeper");
    fx.ctr([
        "run",
        "--detach",
        "--snapshotter",
        SNAPSHOTTER,
        &image.name,
        &id,
        "sleep",
        "600",
    ])?;
    let dir = fx.dir().to_owned();
    let socket = fx.containerd_address().to_owned();
    drop(fx);

    assert!(!dir.exists(), "{} still exists after drop", dir.display());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = mountinfo
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .collect();
    assert!(
        left.is_empty(),
        "mounts left below {}: {left:#?}",
        dir.display()
    );
    assert!(
        processes_with_argument(&socket).is_empty(),
        "processes still use {}",
        socket.display()
    );
    Ok(())
}

fn processes_with_argument(arg: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if cmdline
                .split(|b| *b == 0)
                .any(|a| a == arg.as_os_str().as_encoded_bytes())
            {
                found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
            }
        }
    }
    found
}
