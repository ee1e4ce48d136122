//! oxkit building itself, in the classic shape of BuildKit's `examples/buildkit*`: a base image,
//! a few `run` steps, the source copied in from a local directory, and the binaries copied onto
//! a slim runtime image.
//!
//! `cargo run -p oxkit-llb --example buildself | oxctl build --local context=. \
//!     --output type=image,name=docker.io/library/oxkit:dev`

use oxkit_llb::op::CacheSharing;
use oxkit_llb::{image, local_with, CopyOptions, FileActions, LocalOptions, MountSpec};
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let context = local_with(
        "context",
        LocalOptions {
            exclude_patterns: vec!["target".into(), ".git".into()],
            shared_key_hint: Some("oxkit-context".into()),
            ..Default::default()
        },
    );

    let toolchain = image("docker.io/library/rust:1-slim-bookworm")
        .env("CARGO_HOME", "/usr/local/cargo")
        .sh("apt-get update && apt-get install -y --no-install-recommends protobuf-compiler pkg-config")
        .custom_name("install build dependencies")
        .root();

    let source = toolchain.dir("/src").file(FileActions::new().copy(
        &context,
        "/",
        "/src/",
        CopyOptions {
            copy_dir_contents: true,
            create_dest_path: true,
            follow_symlinks: true,
            ..Default::default()
        },
    ));

    let built = source
        .sh("cargo build --release --locked --bin oxkitd --bin oxctl && mkdir -p /out && cp target/release/oxkitd target/release/oxctl /out/")
        .mount(MountSpec::cache("/usr/local/cargo/registry", "oxkit-cargo-registry").sharing(CacheSharing::Locked))
        .mount(MountSpec::cache("/src/target", "oxkit-target").sharing(CacheSharing::Locked))
        .custom_name("cargo build --release")
        .root();

    let runtime = image("docker.io/library/debian:bookworm-slim")
        .sh("apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*")
        .custom_name("install runtime dependencies")
        .root()
        .file(FileActions::new().copy(
            &built,
            "/out/",
            "/usr/local/bin/",
            CopyOptions { copy_dir_contents: true, create_dest_path: true, mode: Some(0o755), ..Default::default() },
        ));

    std::io::stdout()
        .lock()
        .write_all(&runtime.marshal()?.to_bytes())?;
    Ok(())
}
