//! `llbgen`: the build definitions of `bench/build.sh`, for oxkit and for its peers.
//!
//! `llbgen llb --steps N [--image REF]` writes to stdout a marshalled LLB definition: the image
//! followed by N `RUN true` steps, each `/bin/sh -c "true # step i"` (distinct, so nothing
//! dedups), ready for `| oxctl build`.
//!
//! `llbgen dockerfile --steps N [--image REF]` prints the same build as a Dockerfile for BuildKit
//! (`docker build`) and buildah: `FROM REF` plus N `RUN true # step i` lines (shell form, i.e.
//! the same `/bin/sh -c` command line).
//!
//! `llbgen copy-context [--image REF]` writes the definition of `bench/local.sh`: the image with
//! the local directory `context` (`oxctl build --local context=DIR`) copied to `/app`, i.e. a
//! Dockerfile's `COPY . /app`.
//!
//! `llbgen git --url URL#REF` writes the definition of `bench/git.sh`: the checkout of `REF`
//! (branch, tag or commit) of the repository at `URL` and nothing else, ready for
//! `| oxctl build --output type=local,dest=…`.
//!
//! `llbgen pull --image REF` writes the definition of `bench/registry.sh`: the image alone, with
//! resolve mode `pull` (always asked from its registry; the blobs the store lacks fetched, the
//! layers applied into snapshots), ready for `| oxctl build` without an output.

use std::io::Write;
use std::process::ExitCode;

use oxkit_llb::source::ResolveMode;
use oxkit_llb::{CopyOptions, FileActions, ImageOptions};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llbgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or(
        "usage: llbgen llb|dockerfile|copy-context|git|pull [--steps N] [--image REF] [--url URL#REF]",
    )?;
    let (mut steps, mut image) = (1usize, "docker.io/library/busybox:bench".to_string());
    let mut url = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--steps" => steps = value.parse().map_err(|e| format!("--steps: {e}"))?,
            "--image" => image = value,
            "--url" => url = Some(value),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let step = |i: usize| format!("true # step {i}");
    let mut out = std::io::stdout().lock();
    match mode.as_str() {
        "llb" => {
            let mut state = oxkit_llb::image(&image);
            for i in 1..=steps {
                let script = step(i);
                state = state
                    .sh(&script)
                    .custom_name(&format!("RUN {script}"))
                    .root();
            }
            let def = state.marshal().map_err(|e| e.to_string())?;
            out.write_all(&def.to_bytes()).map_err(|e| e.to_string())?;
        }
        "copy-context" => {
            let copy = FileActions::new().copy(
                &oxkit_llb::local("context"),
                "/",
                "/app",
                CopyOptions {
                    copy_dir_contents: true,
                    create_dest_path: true,
                    ..Default::default()
                },
            );
            let state = oxkit_llb::image(&image)
                .file(copy)
                .custom_name("COPY . /app");
            let def = state.marshal().map_err(|e| e.to_string())?;
            out.write_all(&def.to_bytes()).map_err(|e| e.to_string())?;
        }
        "dockerfile" => {
            let mut text = format!("FROM {image}\n");
            for i in 1..=steps {
                text.push_str(&format!("RUN {}\n", step(i)));
            }
            out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
        }
        "git" => {
            let url = url.ok_or("git needs --url URL#REF")?;
            let (remote, git_ref) = url.split_once('#').unwrap_or((&url, ""));
            let def = oxkit_llb::git(remote, git_ref)
                .marshal()
                .map_err(|e| e.to_string())?;
            out.write_all(&def.to_bytes()).map_err(|e| e.to_string())?;
        }
        "pull" => {
            let options = ImageOptions {
                resolve_mode: ResolveMode::ForcePull,
                ..Default::default()
            };
            let def = oxkit_llb::image_with(&image, options)
                .marshal()
                .map_err(|e| e.to_string())?;
            out.write_all(&def.to_bytes()).map_err(|e| e.to_string())?;
        }
        other => {
            return Err(format!(
                "unknown mode {other:?}; expected llb, dockerfile, copy-context, git or pull"
            ))
        }
    }
    Ok(())
}
