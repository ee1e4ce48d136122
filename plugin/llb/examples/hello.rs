//! The smallest useful build: busybox plus one file written by a `run` step.
//!
//! `cargo run -p oxkit-llb --example hello | oxctl build --output type=image,name=hello:dev`
//! (or `| oxctl debug dump-llb` to read it).

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let state = oxkit_llb::image("docker.io/library/busybox:latest")
        .sh("echo 'hello from oxkit' > /hello.txt")
        .custom_name("write /hello.txt")
        .root();
    let def = state.marshal()?;
    std::io::stdout().lock().write_all(&def.to_bytes())?;
    Ok(())
}
