//! `llbgen`: the build definitions of `bench/build.sh`, for oxkit and for its peers.
//!
//! `llbgen llb --steps N [--image REF]` writes to stdout a marshalled LLB definition: the image
//! followed by N `RUN true` steps, each `/bin/sh -c "true # step i"` (distinct, so nothing
//! dedups), ready for `| oxctl build`.
//!
//! `llbgen dockerfile --steps N [--image REF]` prints the same build as a Dockerfile for BuildKit
//! (`docker build`) and buildah: `FROM REF` plus N `RUN true # step i` lines (shell form, i.e.
//! the same `/bin/sh -c` command line).

use std::io::Write;
use std::process::ExitCode;

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
    let mode = args
        .next()
        .ok_or("usage: llbgen llb|dockerfile --steps N [--image REF]")?;
    let (mut steps, mut image) = (1usize, "docker.io/library/busybox:bench".to_string());
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--steps" => steps = value.parse().map_err(|e| format!("--steps: {e}"))?,
            "--image" => image = value,
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
        "dockerfile" => {
            let mut text = format!("FROM {image}\n");
            for i in 1..=steps {
                text.push_str(&format!("RUN {}\n", step(i)));
            }
            out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
        }
        other => {
            return Err(format!(
                "unknown mode {other:?}; expected llb or dockerfile"
            ))
        }
    }
    Ok(())
}
