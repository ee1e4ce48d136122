//! `oxkit-mkimage`: writes an OCI image archive for `ctr images import`, without a network: the
//! busybox base image from Debian's `busybox-static`, optionally with generated layers on top.
//! Used by the README's demo and by the benchmarks.
//!
//! `oxkit-mkimage --out FILE --name REF [--layers N --files-per-layer M --file-size BYTES]
//! [--also-arch ARCH]…` (`--also-arch` makes the image an index with a manifest for this machine
//! and one for each ARCH).

use std::path::PathBuf;
use std::process::ExitCode;

use oxkit_integration::busybox_image;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxkit-mkimage: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let (mut out, mut name) = (None, "docker.io/library/busybox:oxkit".to_string());
    let (mut layers, mut files, mut size) = (0usize, 0usize, 0usize);
    let mut architectures = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(value()?)),
            "--name" => name = value()?,
            "--layers" => layers = number(value()?)?,
            "--files-per-layer" => files = number(value()?)?,
            "--file-size" => size = number(value()?)?,
            "--also-arch" => architectures.push(value()?),
            other => {
                return Err(format!(
                    "unknown argument {other:?}; see the source's doc comment"
                ))
            }
        }
    }
    let out = out.ok_or("--out FILE is required")?;
    let built = architectures
        .iter()
        .fold(
            busybox_image(&name).map_err(|e| e.to_string())?,
            |image, arch| image.also_for_architecture(arch),
        )
        .generated_layers(layers, files, size)
        .write_archive(&out)
        .map_err(|e| e.to_string())?;
    println!(
        "{} {} {}",
        built.name,
        built.target_digest,
        built.archive.display()
    );
    Ok(())
}
