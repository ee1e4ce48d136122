//! `oxctl`: oxkit's client. Argument parsing only; the work is in the library crates.
//!
//! Today: `oxctl debug dump-llb` (a definition on stdin, printed as JSON lines, one per op, as
//! `buildctl debug dump-llb` prints them). `build`, `du` and `prune` arrive with the build API.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// oxkit client.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Debugging aids.
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Read an LLB definition from stdin and print each op as a JSON line.
    DumpLlb,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Debug {
            command: DebugCommand::DumpLlb,
        } => dump_llb(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxctl: {}", oxkit_cmd::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn dump_llb() -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .context("failed to read the definition from stdin")?;
    let def =
        oxkit_llb::Definition::from_bytes(&bytes).context("stdin is not an LLB definition")?;
    let json = oxkit_llb::dump_llb(&def).context("failed to dump the definition")?;
    std::io::stdout()
        .write_all(json.as_bytes())
        .context("failed to write to stdout")
}
