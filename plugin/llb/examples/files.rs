//! The classic shape with file ops, on busybox alone (no `local://` context needed): a base
//! image, a `run` step that produces files, mkdir/mkfile on the target, and a copy between the
//! two states; a last `run` checks what arrived.
//!
//! `cargo run -p oxkit-llb --example files | oxctl build --output type=image,name=files:dev`
//! (then `ctr -n buildkit run --rm --snapshotter oxkit docker.io/library/files:dev x cat /app/VERSION`).

use oxkit_llb::{image, CopyOptions, FileActions, MkdirOptions, Owner};
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = image("docker.io/library/busybox:latest");

    // A "build" stage: produces an artifact and some noise that is not copied.
    let built = base
        .sh("mkdir -p /out && echo 'built by oxkit' > /out/app.txt && echo noise > /out/app.log")
        .custom_name("build the artifact")
        .root();

    let app = base
        .file(
            FileActions::new()
                .mkdir_with(
                    "/app/data",
                    0o750,
                    MkdirOptions {
                        make_parents: true,
                        owner: Some(Owner::Ids(1000, 1000)),
                        ..Default::default()
                    },
                )
                .mkfile("/app/VERSION", 0o644, "1.0\n")
                .copy(
                    &built,
                    "/out/*.txt",
                    "/app/",
                    CopyOptions {
                        allow_wildcard: true,
                        mode: Some(0o640),
                        owner: Some(Owner::Ids(1000, 1000)),
                        ..Default::default()
                    },
                ),
        )
        .custom_name("assemble /app")
        .sh("cat /app/VERSION /app/app.txt && test ! -e /app/app.log && stat -c '%u:%g %a %n' /app/app.txt /app/data")
        .custom_name("check /app")
        .root();

    std::io::stdout()
        .lock()
        .write_all(&app.marshal()?.to_bytes())?;
    Ok(())
}
