//! `oxctl`: oxkit's client. Argument parsing only; the work is in `oxkit_plugin::client` and
//! `oxkit_llb`.
//!
//! `oxctl build` reads an LLB definition from stdin (as `buildctl build` does), or has the
//! daemon's Dockerfile frontend make one (`--frontend dockerfile.v0`), and streams the build's
//! progress; `oxctl debug dump-llb` prints a definition as JSON lines, one per op.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use oxkit_plugin::client::{
    client_id, context_digest, Attachables, BuildClient, CacheEntry, Destination, ExportSink,
    LocalDir, LocalDirs, Progress, ProgressMode, ProgressPrinter, RegistryAuths, SecretSpec,
    Secrets, SolveOptions, DEFAULT_ADDRESS,
};
use tokio_stream::StreamExt;

/// oxkit client.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The daemon's build API.
    #[arg(long, global = true, env = "OXKIT_HOST", default_value = DEFAULT_ADDRESS)]
    addr: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the LLB definition read from stdin, or a Dockerfile with `--frontend dockerfile.v0
    /// --local context=DIR --local dockerfile=DIR`.
    Build(Box<BuildArgs>),
    /// Show the build cache's records and their disk usage.
    Du,
    /// Drop the build cache (layer snapshots of images stay).
    Prune,
    /// Debugging aids.
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

/// `oxctl build`'s arguments.
#[derive(clap::Args)]
struct BuildArgs {
    /// The daemon's frontend that makes the definition: `dockerfile.v0` (alias `dockerfile`)
    /// reads `Dockerfile` from the local directory `dockerfile` and the build context from
    /// `context`. Without it, the definition is read from stdin.
    #[arg(long)]
    frontend: Option<String>,
    /// A frontend option `k=v` (repeatable): `filename=`, `target=`, `build-arg:NAME=V`,
    /// `label:NAME=V`, `no-cache[=stage,…]`, `context:NAME=V`, `platform=`.
    #[arg(long = "opt")]
    opt: Vec<String>,
    /// Where the result goes: `type=image,name=REF[,compression=zstd]` (into containerd),
    /// `type=oci,dest=FILE|-[,name=REF]` (an OCI archive), `type=docker,dest=FILE|-[,name=REF]`
    /// (an archive for `docker load`) or `type=local,dest=DIR` (the result's files).
    /// `image`, `oci` and `docker` also take the image config's `env.NAME=V`,
    /// `label.NAME=V`, `entrypoint`, `cmd`, `workdir`, `user`, `expose` and `config=JSON`,
    /// and `oci-mediatypes=true|false` and `annotation.KEY=V` for the manifest;
    /// quote a field with commas as CSV does: `"cmd=[""sh"",""-c"",""x""]"`.
    #[arg(long)]
    output: Option<String>,
    /// Older spelling of --output's type (`--exporter image --exporter-opt name=…`).
    #[arg(long)]
    exporter: Option<String>,
    /// An exporter option `k=v` for --exporter (repeatable).
    #[arg(long = "exporter-opt")]
    exporter_opt: Vec<String>,
    /// Progress display: auto, tty, plain, rawjson.
    #[arg(long, default_value = "auto")]
    progress: ProgressMode,
    /// Re-run every step.
    #[arg(long)]
    no_cache: bool,
    /// A secret the build may ask for: `id=NAME,src=FILE` or `id=NAME,env=VAR`
    /// (repeatable). Read when oxctl starts and served from memory.
    #[arg(long)]
    secret: Vec<String>,
    /// A local directory the build may read as `local://NAME`: `NAME=DIR` (repeatable).
    /// Sent incrementally; the `.dockerignore` of the one named `context` applies.
    #[arg(long)]
    local: Vec<String>,
    /// Export the build cache (repeatable), as buildctl: `type=registry,ref=REF[,mode=max]`,
    /// `type=local,dest=DIR[,tag=T][,mode=max]` or `type=inline` (in the image's config);
    /// also `compression=`, `ignore-error=true`.
    #[arg(long = "export-cache")]
    export_cache: Vec<String>,
    /// Import a build cache (repeatable): `type=registry,ref=REF` (a cache, or an image with
    /// an inline cache), `type=local,src=DIR[,tag=T]`, or just `REF`.
    #[arg(long = "import-cache")]
    import_cache: Vec<String>,
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Read an LLB definition from stdin and print each op as a JSON line.
    DumpLlb,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => build(&cli.addr, *args),
        Command::Du => with_client(&cli.addr, du),
        Command::Prune => with_client(&cli.addr, prune),
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

/// A build's `--export-cache` and `--import-cache`.
struct Caches {
    exports: Vec<CacheEntry>,
    imports: Vec<CacheEntry>,
}

fn parse_caches(specs: &[String]) -> anyhow::Result<Vec<CacheEntry>> {
    specs
        .iter()
        .map(|s| CacheEntry::parse(s).map_err(anyhow::Error::from))
        .collect()
}

fn build(addr: &str, args: BuildArgs) -> anyhow::Result<()> {
    let BuildArgs {
        frontend,
        opt,
        output,
        exporter,
        exporter_opt,
        progress: mode,
        no_cache,
        secret: secrets,
        local: locals,
        export_cache,
        import_cache,
    } = args;
    let (exporter, mut exporter_attrs) =
        oxkit_cmd::output::exporter_options(output.as_deref(), exporter, &exporter_opt)?;
    let frontend = oxkit_cmd::frontend::Frontend::parse(frontend, &opt)?;
    let caches = Caches {
        exports: parse_caches(&export_cache)?,
        imports: parse_caches(&import_cache)?,
    };
    let dest = Destination::take(&exporter, &mut exporter_attrs)?;
    let specs = secrets
        .iter()
        .map(|s| SecretSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let locals = locals
        .iter()
        .map(|s| LocalDir::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let served = Arc::new(Attachables {
        secrets: Secrets::load(&specs)?,
        locals: LocalDirs::new(locals),
        client_id: client_id(),
        registry_auths: RegistryAuths::from_env(),
    });
    let mut definition = Vec::new();
    if frontend.is_none() {
        std::io::stdin()
            .read_to_end(&mut definition)
            .context("failed to read the definition from stdin")?;
        if definition.is_empty() {
            bail!("no build definition on stdin; pipe one in, e.g. `cargo run -p oxkit-llb --example hello | oxctl build`, or build a Dockerfile with --frontend dockerfile.v0");
        }
    }
    let (frontend, frontend_attrs) = frontend.map(|f| (f.name, f.attrs)).unwrap_or_default();
    let mode = match mode {
        ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Tty,
        ProgressMode::Auto => ProgressMode::Plain,
        other => other,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let plan = definition.clone();
    rt.block_on(async {
        let mut sink = ExportSink::open(&dest)?;
        let mut client = BuildClient::connect(addr).await?;
        let mut events = Box::pin(
            client
                .solve_with_session(
                    SolveOptions {
                        definition,
                        exporter,
                        exporter_attrs,
                        no_cache,
                        frontend,
                        frontend_attrs,
                        cache_exports: caches.exports,
                        cache_imports: caches.imports,
                        ..Default::default()
                    },
                    served,
                )
                .await?,
        );
        let mut printer = ProgressPrinter::new(std::io::stderr(), mode);
        // A definition that does not parse gets its error from the daemon.
        if let Ok(graph) = oxkit_llb::Graph::from_bytes(&plan) {
            printer.plan(graph.vertices().iter().map(|v| v.digest.to_string()));
        }
        let mut tick = tokio::time::interval(Duration::from_millis(150));
        let mut result = None;
        let mut contexts = BTreeMap::new();
        loop {
            tokio::select! {
                event = events.next() => match event {
                    None => break,
                    Some(Err(e)) => {
                        printer.tick();
                        return Err(anyhow::Error::new(e).context("build failed"));
                    }
                    Some(Ok(Progress::Result(r))) => result = Some(r),
                    Some(Ok(Progress::Export(data))) => sink.write(data).await?,
                    Some(Ok(p @ Progress::Log { .. })) => {
                        if let Progress::Log { data, .. } = &p {
                            contexts.extend(context_digest(data));
                        }
                        printer.event(&p)
                    }
                    Some(Ok(p)) => printer.event(&p),
                },
                _ = tick.tick() => printer.tick(),
            }
        }
        printer.tick();
        let result = result.context("the daemon ended the build without a result")?;
        sink.finish().await?;
        // With `dest=-` the archive has stdout to itself.
        let mut out: Box<dyn Write> = if dest.is_stdout() {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        for (k, v) in result {
            writeln!(out, "{k}: {v}")?;
        }
        for (name, digest) in contexts {
            writeln!(out, "local.{name}.digest: {digest}")?;
        }
        Ok(())
    })
}

/// Runs `f` with a connection to the daemon on a small runtime.
fn with_client<F>(addr: &str, f: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&mut BuildClient) -> anyhow::Result<()>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    rt.block_on(async {
        let mut client = BuildClient::connect(addr).await?;
        f(&mut client).await
    })
}

async fn du(client: &mut BuildClient) -> anyhow::Result<()> {
    let records = client.disk_usage().await?;
    let mut out = std::io::stdout();
    writeln!(out, "{:<24} {:>12}  DESCRIPTION", "ID", "SIZE")?;
    let mut total = 0;
    for r in &records {
        let id: String =
            r.id.trim_start_matches("sha256:")
                .chars()
                .take(24)
                .collect();
        writeln!(out, "{id:<24} {:>12}  {}", r.size, r.description)?;
        total += r.size;
    }
    writeln!(out, "Total: {total} bytes in {} records", records.len())?;
    Ok(())
}

async fn prune(client: &mut BuildClient) -> anyhow::Result<()> {
    let (records, reclaimed) = client.prune().await?;
    println!("Total: {reclaimed} bytes reclaimed from {records} records");
    Ok(())
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
