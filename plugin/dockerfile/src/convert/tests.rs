//! Conversion tests: Dockerfiles built as typed values, converted with a resolver double, and
//! checked on the marshalled definition (parsed back into a graph) and the image config.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;

use oxkit_llb::op::{ExecOp, FileActionKind, MountKind, NetMode, Op, Platform};
use oxkit_llb::{Digest, Graph, ImageMetaResolver, ResolvedImageConfig, Vertex};

use super::{convert, ConvertOptions, Converted, NoCache};
use crate::instruction::*;
use crate::DockerfileError;

// ---- a resolver double -------------------------------------------------------------------

/// Resolves every image to a busybox-like config (`Env` PATH, `Cmd ["sh"]`, one layer);
/// `entry` images also have an entrypoint, `trigger` images an ONBUILD trigger. Counts calls.
#[derive(Default)]
struct Registry {
    calls: AtomicUsize,
    refs: std::sync::Mutex<Vec<String>>,
}

impl ImageMetaResolver for Registry {
    fn resolve_image_config(
        &self,
        reference: &str,
        _platform: Option<&Platform>,
    ) -> Result<ResolvedImageConfig, Box<dyn std::error::Error + Send + Sync>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.refs.lock().unwrap().push(reference.to_string());
        if reference.contains("missing") {
            return Err("not found".into());
        }
        let mut config = json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:1111111111111111111111111111111111111111111111111111111111111111"]},
            "history": [{"created_by": "BusyBox 1.36.1 (glibc), Debian 12"}]
        });
        if reference.contains("entry") {
            config["config"]["Entrypoint"] = json!(["/entry"]);
        }
        if reference.contains("trigger") {
            config["config"]["OnBuild"] = json!(["RUN echo triggered"]);
        }
        Ok(ResolvedImageConfig {
            digest: format!("sha256:{}", "ab".repeat(32)),
            config: serde_json::to_vec(&config).unwrap(),
        })
    }
}

// ---- building Dockerfiles ----------------------------------------------------------------

fn at<T>(line: usize, text: &str, value: T) -> Located<T> {
    Located {
        pos: Pos { line, column: 1 },
        end_line: line,
        text: text.into(),
        value,
    }
}

fn from(line: usize, image: &str, name: Option<&str>) -> Located<From> {
    let text = match name {
        Some(n) => format!("FROM {image} AS {n}"),
        None => format!("FROM {image}"),
    };
    at(
        line,
        &text,
        From {
            image: image.into(),
            platform: None,
            name: name.map(String::from),
        },
    )
}

fn stage(from: Located<From>, instructions: Vec<Located<Instruction>>) -> Stage {
    Stage { from, instructions }
}

fn dockerfile(stages: Vec<Stage>) -> Dockerfile {
    Dockerfile {
        directives: Directives::default(),
        meta_args: Vec::new(),
        stages,
    }
}

fn plain_run(command: CommandLine) -> Run {
    Run {
        command,
        heredocs: Vec::new(),
        mounts: Vec::new(),
        network: None,
        security: None,
    }
}

fn run(line: usize, cmd: &str) -> Located<Instruction> {
    at(
        line,
        &format!("RUN {cmd}"),
        Instruction::Run(plain_run(CommandLine::Shell(cmd.into()))),
    )
}

fn run_with(line: usize, text: &str, r: Run) -> Located<Instruction> {
    at(line, text, Instruction::Run(r))
}

fn copy_value(sources: &[&str], dest: &str, from: Option<&str>) -> Copy {
    Copy {
        sources: sources
            .iter()
            .map(|s| SourceSpec::Path(s.to_string()))
            .collect(),
        dest: dest.into(),
        from: from.map(String::from),
        chown: None,
        chmod: None,
        link: false,
        excludes: Vec::new(),
        parents: false,
    }
}

fn copy(line: usize, sources: &[&str], dest: &str, from: Option<&str>) -> Located<Instruction> {
    let mut text = String::from("COPY");
    if let Some(f) = from {
        text.push_str(&format!(" --from={f}"));
    }
    for s in sources {
        text.push_str(&format!(" {s}"));
    }
    text.push_str(&format!(" {dest}"));
    at(
        line,
        &text,
        Instruction::Copy(copy_value(sources, dest, from)),
    )
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn env(line: usize, p: &[(&str, &str)]) -> Located<Instruction> {
    let text: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
    at(
        line,
        &format!("ENV {}", text.join(" ")),
        Instruction::Env(pairs(p)),
    )
}

fn arg_value(args: &[(&str, Option<&str>)]) -> Arg {
    Arg {
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(String::from)))
            .collect(),
    }
}

fn arg(line: usize, args: &[(&str, Option<&str>)]) -> Located<Instruction> {
    at(line, "ARG …", Instruction::Arg(arg_value(args)))
}

fn ins(line: usize, text: &str, i: Instruction) -> Located<Instruction> {
    at(line, text, i)
}

// ---- converting and looking at the result ------------------------------------------------

fn options() -> ConvertOptions {
    ConvertOptions {
        filename: "Dockerfile".into(),
        context_name: "context".into(),
        platform: Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn convert_with(
    df: &Dockerfile,
    opts: &ConvertOptions,
) -> Result<(Converted, Graph), DockerfileError> {
    let c = convert(df, opts, Arc::new(Registry::default()))?;
    let graph = c.definition.parse().expect("the definition parses back");
    Ok((c, graph))
}

/// Dockerfile `text` parsed and converted with [`options`]: the graph of its definition. For
/// the instruction modules' own tests.
pub(super) fn graph_of(text: &str) -> Graph {
    let df = crate::parse(text, "Dockerfile").expect("parses");
    convert_with(&df, &options()).expect("converts").1
}

fn ok(df: &Dockerfile) -> (Converted, Graph) {
    convert_with(df, &options()).expect("converts")
}

fn err(df: &Dockerfile, opts: &ConvertOptions) -> DockerfileError {
    convert_with(df, opts).expect_err("fails")
}

fn execs(g: &Graph) -> Vec<(&Vertex, &ExecOp)> {
    g.vertices()
        .iter()
        .filter_map(|v| match &v.op {
            Op::Exec(e) => Some((v, e)),
            _ => None,
        })
        .collect()
}

/// The exec whose last argument is `script`.
fn exec<'g>(g: &'g Graph, script: &str) -> (&'g Vertex, &'g ExecOp) {
    execs(g)
        .into_iter()
        .find(|(_, e)| e.meta.args.last().map(String::as_str) == Some(script))
        .unwrap_or_else(|| panic!("no exec running {script:?}"))
}

fn ancestors(g: &Graph, v: &Vertex) -> BTreeSet<Digest> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<Digest> = v.inputs.iter().map(|e| e.digest.clone()).collect();
    while let Some(d) = todo.pop() {
        if seen.insert(d.clone()) {
            todo.extend(
                g.vertex(&d)
                    .unwrap()
                    .inputs
                    .iter()
                    .map(|e| e.digest.clone()),
            );
        }
    }
    seen
}

fn sources(g: &Graph) -> Vec<(String, BTreeMap<String, String>)> {
    g.vertices()
        .iter()
        .filter_map(|v| match &v.op {
            Op::Source(s) => Some((s.identifier.clone(), s.attrs.clone())),
            _ => None,
        })
        .collect()
}

fn env_of<'e>(e: &'e ExecOp, key: &str) -> Option<&'e str> {
    e.meta
        .env
        .iter()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn history(c: &Converted) -> Vec<(String, bool)> {
    c.image_config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["created_by"].as_str().unwrap().to_string(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

const BUSYBOX: &str = "docker.io/library/busybox:latest@sha256:abababababababababababababababababababababababababababababababab";

// ---- tests --------------------------------------------------------------------------------

#[test]
fn a_simple_stage_runs_with_env_workdir_user_and_writes_the_config() {
    let df = dockerfile(vec![stage(
        from(1, "busybox", None),
        vec![
            env(2, &[("A", "1"), ("B", "$A-x")]),
            ins(3, "WORKDIR /app", Instruction::Workdir("/app".into())),
            ins(4, "USER 1000", Instruction::User("1000".into())),
            run(5, "echo $A"),
            copy(6, &["src/"], "dst/", None),
            ins(
                7,
                "CMD [\"run\"]",
                Instruction::Cmd(CommandLine::Exec(vec!["run".into()])),
            ),
        ],
    )]);
    let (c, g) = ok(&df);
    let (v, e) = exec(&g, "echo $A");
    assert_eq!(e.meta.args, ["/bin/sh", "-c", "echo $A"]);
    assert_eq!(env_of(e, "A"), Some("1"));
    // Each ENV instruction expands with the env before it: B does not see this A.
    assert_eq!(env_of(e, "B"), Some("-x"));
    assert_eq!(env_of(e, "PATH"), Some("/usr/sbin:/usr/bin:/sbin:/bin"));
    assert_eq!(
        (e.meta.cwd.as_str(), e.meta.user.as_str()),
        ("/app", "1000")
    );
    assert_eq!(v.metadata.custom_name(), Some("[3/4] RUN echo 1"));

    let names: Vec<&str> = g
        .vertices()
        .iter()
        .filter_map(|v| v.metadata.custom_name())
        .collect();
    assert!(
        names.contains(&format!("[1/4] FROM {BUSYBOX}").as_str()),
        "{names:?}"
    );
    assert!(names.contains(&"[2/4] WORKDIR /app"), "{names:?}");
    assert!(names.contains(&"[4/4] COPY src/ dst/"), "{names:?}");

    // WORKDIR creates the directory, owned by the user.
    let mkdir = g
        .vertices()
        .iter()
        .find_map(|v| match &v.op {
            Op::File(f) => f.actions.iter().find_map(|a| match &a.kind {
                FileActionKind::Mkdir(m) => Some(m.clone()),
                _ => None,
            }),
            _ => None,
        })
        .expect("a mkdir");
    assert_eq!((mkdir.path.as_str(), mkdir.make_parents), ("/app", true));
    // USER comes after this WORKDIR.
    assert!(mkdir.owner.is_none());

    // COPY: relative to WORKDIR, from the context, owned by root.
    let copy = g
        .vertices()
        .iter()
        .find_map(|v| match &v.op {
            Op::File(f) => f.actions.iter().find_map(|a| match &a.kind {
                FileActionKind::Copy(c) => Some(c.clone()),
                _ => None,
            }),
            _ => None,
        })
        .expect("a copy");
    assert_eq!(
        (copy.src.as_str(), copy.dest.as_str()),
        ("/src", "/app/dst/")
    );
    assert!(
        copy.allow_wildcard
            && copy.follow_symlink
            && copy.dir_copy_contents
            && copy.create_dest_path
    );

    let cfg = &c.image_config;
    assert_eq!(cfg["architecture"], "amd64");
    assert!(cfg.get("created").is_none());
    assert_eq!(
        cfg["config"]["Env"],
        json!(["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "A=1", "B=-x"])
    );
    assert_eq!(cfg["config"]["Cmd"], json!(["run"]));
    assert_eq!(cfg["config"]["WorkingDir"], "/app");
    assert_eq!(cfg["config"]["User"], "1000");
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    assert_eq!(
        history(&c),
        [
            ("BusyBox 1.36.1 (glibc), Debian 12".to_string(), false),
            ("ENV A=1 B=-x".into(), true),
            ("WORKDIR /app".into(), false),
            ("USER 1000".into(), true),
            ("RUN /bin/sh -c echo $A # buildkit".into(), false),
            ("COPY src/ dst/ # buildkit".into(), false),
            ("CMD [\"run\"]".into(), true),
        ]
    );
    assert_eq!(
        c.image_config["history"][1]["comment"],
        "buildkit.dockerfile.v0"
    );
}

#[test]
fn only_the_stages_the_target_needs_are_built_and_independent_ones_stay_apart() {
    let df = dockerfile(vec![
        stage(from(1, "busybox", Some("a")), vec![run(2, "build a")]),
        stage(
            from(3, "busybox", Some("unused")),
            vec![run(4, "build unused")],
        ),
        stage(from(5, "busybox", Some("b")), vec![run(6, "build b")]),
        stage(
            from(7, "busybox", Some("final")),
            vec![
                copy(8, &["/out"], "/a", Some("a")),
                copy(9, &["/out"], "/b", Some("b")),
            ],
        ),
    ]);
    let (_, g) = ok(&df);
    let scripts: Vec<&str> = execs(&g)
        .iter()
        .map(|(_, e)| e.meta.args[2].as_str())
        .collect();
    assert!(!scripts.contains(&"build unused"), "{scripts:?}");
    let (a, _) = exec(&g, "build a");
    let (b, _) = exec(&g, "build b");
    assert!(!ancestors(&g, b).contains(&a.digest));
    assert!(!ancestors(&g, a).contains(&b.digest));
    assert_eq!(a.metadata.custom_name(), Some("[a 2/2] RUN build a"));

    // Targeting by name or index builds only that stage's chain.
    let mut opts = options();
    opts.target = Some("b".into());
    let (_, g) = convert_with(&df, &opts).unwrap();
    assert_eq!(execs(&g).len(), 1);
    opts.target = Some("1".into());
    let (_, g) = convert_with(&df, &opts).unwrap();
    assert_eq!(exec(&g, "build unused").1.meta.args[2], "build unused");
}

#[test]
fn an_unknown_target_lists_the_stages() {
    let df = dockerfile(vec![
        stage(from(1, "busybox", Some("build")), vec![]),
        stage(from(2, "scratch", None), vec![]),
    ]);
    let mut opts = options();
    opts.target = Some("nope".into());
    let e = err(&df, &opts);
    assert_eq!(e.pos, None);
    assert!(e.message.contains("\"nope\" could not be found"), "{e}");
    assert!(
        e.message.contains("build") && e.message.contains("stage-1"),
        "{e}"
    );
}

#[test]
fn from_a_stage_inherits_its_state_config_and_args() {
    let df = dockerfile(vec![
        stage(
            from(1, "busybox", Some("base")),
            vec![
                env(2, &[("FOO", "bar")]),
                arg(3, &[("V", Some("1"))]),
                ins(
                    4,
                    "CMD [\"base\"]",
                    Instruction::Cmd(CommandLine::Exec(vec!["base".into()])),
                ),
                run(5, "make base"),
            ],
        ),
        stage(from(6, "base", None), vec![run(7, "make child")]),
    ]);
    let (c, g) = ok(&df);
    let (base, _) = exec(&g, "make base");
    let (child, e) = exec(&g, "make child");
    assert!(ancestors(&g, child).contains(&base.digest));
    assert_eq!(env_of(e, "FOO"), Some("bar"));
    assert_eq!(env_of(e, "V"), Some("1"));
    assert_eq!(c.image_config["config"]["Cmd"], json!(["base"]));
    // The base stage's history, then the child's.
    let h: Vec<String> = history(&c).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        h[1..],
        [
            "ENV FOO=bar",
            "ARG V=1",
            "CMD [\"base\"]",
            "RUN |1 V=1 /bin/sh -c make base # buildkit",
            "RUN |1 V=1 /bin/sh -c make child # buildkit",
        ]
    );
    // ARG values are not written to the image config.
    assert!(!c.image_config["config"]["Env"].to_string().contains("V=1"));
}

#[test]
fn args_are_scoped_as_buildkit_scopes_them() {
    let mut df = dockerfile(vec![stage(
        from(3, "busybox:${TAG}", None),
        vec![
            run(4, "before"),
            arg(
                5,
                &[
                    ("TAG", None),
                    ("TARGETARCH", None),
                    ("LOCAL", Some("${TAG}-local")),
                ],
            ),
            arg(
                6,
                &[
                    ("OVERRIDDEN", Some("default")),
                    ("UNDECLARED_DEFAULT", None),
                ],
            ),
            run(7, "after"),
        ],
    )]);
    df.meta_args = vec![at(1, "ARG TAG=1.36", arg_value(&[("TAG", Some("1.36"))]))];
    let registry = Arc::new(Registry::default());
    let mut opts = options();
    opts.build_args.insert("OVERRIDDEN".into(), "given".into());
    opts.build_args.insert("NOT_DECLARED".into(), "x".into());
    let c = convert(&df, &opts, registry.clone()).unwrap();
    let g = c.definition.parse().unwrap();
    assert_eq!(
        registry.refs.lock().unwrap().as_slice(),
        ["docker.io/library/busybox:1.36"]
    );
    let (_, before) = exec(&g, "before");
    assert_eq!(env_of(before, "TAG"), None, "meta args need redeclaring");
    let (_, after) = exec(&g, "after");
    assert_eq!(env_of(after, "TAG"), Some("1.36"));
    assert_eq!(env_of(after, "TARGETARCH"), Some("amd64"));
    assert_eq!(env_of(after, "LOCAL"), Some("1.36-local"));
    assert_eq!(env_of(after, "OVERRIDDEN"), Some("given"));
    assert_eq!(env_of(after, "NOT_DECLARED"), None);
    assert_eq!(env_of(after, "UNDECLARED_DEFAULT"), None);
    assert_eq!(
        c.image_config["config"]["Env"],
        json!(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
    );

    // A build arg overrides a meta arg's default in FROM.
    opts.build_args.insert("TAG".into(), "1.37".into());
    let registry = Arc::new(Registry::default());
    convert(&df, &opts, registry.clone()).unwrap();
    assert_eq!(
        registry.refs.lock().unwrap().as_slice(),
        ["docker.io/library/busybox:1.37"]
    );
}

#[test]
fn entrypoint_drops_the_inherited_cmd_unless_cmd_is_set_in_the_stage() {
    let entry = |cmd_first: bool| {
        let mut instructions = vec![ins(
            3,
            "ENTRYPOINT [\"/e\"]",
            Instruction::Entrypoint(CommandLine::Exec(vec!["/e".into()])),
        )];
        let cmd = ins(2, "CMD x", Instruction::Cmd(CommandLine::Shell("x".into())));
        if cmd_first {
            instructions.insert(0, cmd);
        }
        dockerfile(vec![stage(from(1, "busybox", None), instructions)])
    };
    let (c, _) = ok(&entry(false));
    assert!(c.image_config["config"].get("Cmd").is_none());
    assert_eq!(c.image_config["config"]["Entrypoint"], json!(["/e"]));
    let (c, _) = ok(&entry(true));
    assert_eq!(
        c.image_config["config"]["Cmd"],
        json!(["/bin/sh", "-c", "x"])
    );
}

#[test]
fn config_instructions_fill_the_image_config() {
    let df = dockerfile(vec![stage(
        from(1, "scratch", None),
        vec![
            env(2, &[("PORT", "8080")]),
            ins(
                3,
                "LABEL",
                Instruction::Label(pairs(&[("a.b", "x y"), ("$PORT", "\"q\"")])),
            ),
            ins(
                4,
                "EXPOSE",
                Instruction::Expose(vec!["$PORT".into(), "53/udp".into()]),
            ),
            ins(5, "VOLUME", Instruction::Volume(vec!["/data".into()])),
            ins(6, "STOPSIGNAL", Instruction::StopSignal("SIGTERM".into())),
            ins(
                7,
                "SHELL",
                Instruction::Shell(vec!["/bin/bash".into(), "-c".into()]),
            ),
            ins(
                8,
                "CMD",
                Instruction::Cmd(CommandLine::Shell("serve".into())),
            ),
            ins(
                9,
                "HEALTHCHECK",
                Instruction::Healthcheck(Healthcheck::Check {
                    command: CommandLine::Shell("curl -f localhost".into()),
                    interval: Some(30_000_000_000),
                    timeout: None,
                    start_period: None,
                    start_interval: None,
                    retries: Some(3),
                }),
            ),
            ins(10, "ONBUILD RUN x", Instruction::Onbuild("RUN x".into())),
            ins(11, "MAINTAINER me", Instruction::Maintainer("me".into())),
        ],
    )]);
    let mut opts = options();
    opts.labels.insert("from.cli".into(), "1".into());
    let (c, g) = convert_with(&df, &opts).unwrap();
    assert!(g.vertices().is_empty(), "nothing to build from scratch");
    let cfg = &c.image_config["config"];
    assert_eq!(
        cfg["Labels"],
        json!({"a.b": "x y", "8080": "q", "from.cli": "1"})
    );
    assert_eq!(cfg["ExposedPorts"], json!({"8080/tcp": {}, "53/udp": {}}));
    assert_eq!(cfg["Volumes"], json!({"/data": {}}));
    assert_eq!(cfg["StopSignal"], "SIGTERM");
    assert_eq!(cfg["Shell"], json!(["/bin/bash", "-c"]));
    assert_eq!(cfg["Cmd"], json!(["/bin/bash", "-c", "serve"]));
    assert_eq!(
        cfg["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 30_000_000_000u64, "Retries": 3})
    );
    assert_eq!(cfg["OnBuild"], json!(["RUN x"]));
    assert_eq!(cfg["WorkingDir"], "/");
    assert_eq!(c.image_config["author"], "me");
    assert_eq!(c.image_config["os"], "linux");
    assert_eq!(
        c.image_config["rootfs"],
        json!({"type": "layers", "diff_ids": []})
    );
    let h = history(&c);
    assert!(h.iter().all(|(_, empty)| *empty), "{h:?}");
    assert!(
        h.contains(&("EXPOSE [8080/tcp 53/udp]".into(), true)),
        "{h:?}"
    );
    assert!(h.contains(&(
        "HEALTHCHECK {Test:[CMD-SHELL curl -f localhost] Interval:30s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}".into(),
        true
    )), "{h:?}");
}

#[test]
fn the_context_is_one_local_source_reading_the_union_of_copied_paths() {
    let df = dockerfile(vec![
        stage(
            from(1, "busybox", Some("a")),
            vec![copy(2, &["go.mod", "go.sum"], "/src/", None)],
        ),
        stage(
            from(3, "busybox", None),
            vec![
                copy(4, &["./cmd/"], "/src/cmd", None),
                copy(5, &["/x"], "/x", Some("a")),
            ],
        ),
    ]);
    let mut opts = options();
    opts.dockerignore = vec!["*.md".into()];
    let (_, g) = convert_with(&df, &opts).unwrap();
    let locals: Vec<_> = sources(&g)
        .into_iter()
        .filter(|(id, _)| id.starts_with("local://"))
        .collect();
    assert_eq!(locals.len(), 1, "{locals:?}");
    let (id, attrs) = &locals[0];
    assert_eq!(id, "local://context");
    let follow: Vec<String> = serde_json::from_str(&attrs["local.followpaths"]).unwrap();
    assert_eq!(follow, ["cmd", "go.mod", "go.sum"]);
    let excludes: Vec<String> = serde_json::from_str(&attrs["local.excludepatterns"]).unwrap();
    assert_eq!(excludes, ["*.md"]);
    assert_eq!(attrs["local.sharedkeyhint"], "context");

    // Copying the whole context sends all of it.
    let df = dockerfile(vec![stage(
        from(1, "busybox", None),
        vec![copy(2, &["."], "/src", None), copy(3, &["a"], "/a", None)],
    )]);
    let (_, g) = ok(&df);
    let (_, attrs) = sources(&g)
        .into_iter()
        .find(|(id, _)| id.starts_with("local://"))
        .unwrap();
    assert!(!attrs.contains_key("local.followpaths"), "{attrs:?}");
}

#[test]
fn heredocs_become_files_and_scripts() {
    let doc = |name: &str, content: &str, expand: bool| Heredoc {
        name: name.into(),
        content: content.into(),
        expand,
        chomp: false,
    };
    let mut copy_doc = copy_value(&[], "/etc/conf", None);
    copy_doc.sources = vec![SourceSpec::Heredoc(doc("EOF", "port=$PORT \"q\"\n", true))];
    let mut lone = plain_run(CommandLine::Shell("<<EOF".into()));
    lone.heredocs = vec![doc("EOF", "echo one\necho two\n", true)];
    let mut shebang = plain_run(CommandLine::Shell("<<EOF".into()));
    shebang.heredocs = vec![doc("EOF", "#!/usr/bin/env python3\nprint(1)\n", true)];
    let mut complex = plain_run(CommandLine::Shell("cat <<EOF > /f".into()));
    complex.heredocs = vec![doc("EOF", "hello\n", true)];
    let df = dockerfile(vec![stage(
        from(1, "busybox", None),
        vec![
            env(2, &[("PORT", "80")]),
            ins(3, "COPY <<EOF /etc/conf", Instruction::Copy(copy_doc)),
            run_with(6, "RUN <<EOF", lone),
            run_with(10, "RUN <<EOF", shebang),
            run_with(14, "RUN cat <<EOF > /f", complex),
        ],
    )]);
    let (c, g) = ok(&df);
    let mkfile = g
        .vertices()
        .iter()
        .find_map(|v| match &v.op {
            Op::File(f) => f.actions.iter().find_map(|a| match &a.kind {
                FileActionKind::Mkfile(m) if m.path == "/EOF" && m.mode == 0o644 => Some(m.clone()),
                _ => None,
            }),
            _ => None,
        })
        .expect("the heredoc file");
    assert_eq!(String::from_utf8(mkfile.data).unwrap(), "port=80 \"q\"\n");

    let (v, e) = exec(&g, "echo one\necho two\n");
    assert_eq!(e.meta.args[..2], ["/bin/sh", "-c"]);
    assert_eq!(
        v.metadata.custom_name(),
        Some("[3/5] RUN <<EOF (echo one...)")
    );

    let (_, e) = execs(&g)
        .into_iter()
        .find(|(_, e)| e.meta.args == ["/dev/pipes/EOF"])
        .expect("the shebang script runs as a file");
    let pipes = e
        .mounts
        .iter()
        .find(|m| m.dest == "/dev/pipes/")
        .expect("mounted");
    assert!(pipes.readonly);

    exec(&g, "cat <<EOF > /f\nhello\nEOF");
    assert!(history(&c).contains(&("COPY <<EOF /etc/conf # buildkit".into(), false)));
}

#[test]
fn run_mounts_network_and_secrets() {
    let mut r = plain_run(CommandLine::Shell("go build".into()));
    r.network = Some(Network::None);
    r.mounts = vec![
        RunMount::Cache {
            target: "/root/.cache".into(),
            id: None,
            sharing: Sharing::Locked,
            from: None,
            source: None,
            readonly: false,
            mode: None,
            uid: None,
            gid: None,
        },
        RunMount::Bind {
            target: "src".into(),
            source: Some("app".into()),
            from: None,
            readwrite: false,
        },
        RunMount::Bind {
            target: "/tools".into(),
            source: None,
            from: Some("tools".into()),
            readwrite: false,
        },
        RunMount::Tmpfs {
            target: "/tmp".into(),
            size: Some(1 << 20),
        },
        RunMount::Secret {
            id: Some("token".into()),
            target: None,
            env: None,
            required: true,
            mode: None,
            uid: None,
            gid: None,
        },
        RunMount::Secret {
            id: Some("key".into()),
            target: None,
            env: Some("API_KEY".into()),
            required: false,
            mode: None,
            uid: None,
            gid: None,
        },
    ];
    let df = dockerfile(vec![
        stage(
            from(1, "busybox", Some("tools")),
            vec![run(2, "make tools")],
        ),
        stage(
            from(3, "busybox", None),
            vec![
                ins(4, "WORKDIR /w", Instruction::Workdir("/w".into())),
                run_with(5, "RUN --mount=… go build", r),
                run(6, "next"),
            ],
        ),
    ]);
    let (_, g) = ok(&df);
    let (v, e) = exec(&g, "go build");
    assert_eq!(e.network, NetMode::None);
    let dests: Vec<&str> = e.mounts.iter().map(|m| m.dest.as_str()).collect();
    assert_eq!(
        dests,
        [
            "/",
            "/root/.cache",
            "/w/src",
            "/tools",
            "/tmp",
            "/run/secrets/token"
        ]
    );
    assert!(matches!(&e.mounts[1].kind, MountKind::Cache { id, .. } if id == "/root/.cache"));
    assert!(matches!(&e.mounts[2].kind, MountKind::Bind { selector, .. } if selector == "/app"));
    assert!(e.mounts[2].readonly);
    assert!(matches!(&e.mounts[4].kind, MountKind::Tmpfs { size: Some(s) } if *s == 1 << 20));
    assert!(matches!(&e.mounts[5].kind, MountKind::Secret(s) if s.id == "token" && !s.optional));
    assert_eq!(e.secret_env.len(), 1);
    assert_eq!(
        (e.secret_env[0].name.as_str(), e.secret_env[0].optional),
        ("API_KEY", true)
    );
    let (tools, _) = exec(&g, "make tools");
    assert!(ancestors(&g, v).contains(&tools.digest));
    // --network is for that step only.
    assert_eq!(exec(&g, "next").1.network, NetMode::Sandbox);
}

#[test]
fn images_are_resolved_once_and_pinned() {
    let df = dockerfile(vec![
        stage(from(1, "busybox", Some("a")), vec![run(2, "a")]),
        stage(
            from(3, "busybox", None),
            vec![
                copy(4, &["/x"], "/x", Some("a")),
                copy(5, &["/bin/sh"], "/sh", Some("alpine:3")),
            ],
        ),
    ]);
    let registry = Arc::new(Registry::default());
    let c = convert(&df, &options(), registry.clone()).unwrap();
    assert_eq!(
        registry.calls.load(Ordering::SeqCst),
        2,
        "busybox and alpine"
    );
    let g = c.definition.parse().unwrap();
    let ids: Vec<String> = sources(&g).into_iter().map(|(id, _)| id).collect();
    assert!(
        ids.contains(&format!("docker-image://{BUSYBOX}")),
        "{ids:?}"
    );
    assert!(
        ids.iter()
            .any(|i| i.starts_with("docker-image://docker.io/library/alpine:3@sha256:")),
        "{ids:?}"
    );
}

#[test]
fn no_cache_marks_the_steps_of_the_chosen_stages() {
    let df = dockerfile(vec![
        stage(from(1, "busybox", Some("a")), vec![run(2, "a")]),
        stage(
            from(3, "busybox", Some("b")),
            vec![copy(4, &["/x"], "/x", Some("a")), run(5, "b")],
        ),
    ]);
    let mut opts = options();
    opts.no_cache = NoCache::Stages(["b".to_string()].into());
    let (_, g) = convert_with(&df, &opts).unwrap();
    assert!(!exec(&g, "a").0.metadata.ignore_cache);
    assert!(exec(&g, "b").0.metadata.ignore_cache);
    opts.no_cache = NoCache::All;
    let (_, g) = convert_with(&df, &opts).unwrap();
    assert!(exec(&g, "a").0.metadata.ignore_cache);
}

#[test]
fn errors_name_the_line() {
    let mut opts = options();
    opts.target = Some("me".into());
    let one = |instructions: Vec<Located<Instruction>>| {
        dockerfile(vec![
            stage(from(1, "busybox", Some("first")), vec![]),
            stage(from(2, "busybox", Some("me")), instructions),
            stage(from(20, "busybox", Some("later")), vec![]),
        ])
    };
    let cases: Vec<(Dockerfile, usize, &str)> = vec![
        (
            one(vec![copy(3, &["a"], "/", Some("me"))]),
            3,
            "circular dependency",
        ),
        (
            one(vec![copy(4, &["a"], "/", Some("later"))]),
            4,
            "needs to be defined before",
        ),
        (
            one(vec![copy(5, &["a"], "/", Some("$X"))]),
            5,
            "variable expansion is not supported for --from",
        ),
        (
            one(vec![copy(6, &["a"], "/", Some("Not A Ref"))]),
            6,
            "neither a stage name nor a valid image reference",
        ),
        (
            one(vec![ins(
                7,
                "WORKDIR ${D:?must be set}",
                Instruction::Workdir("${D:?must be set}".into()),
            )]),
            7,
            "D: must be set",
        ),
        (
            one(vec![run_with(
                8,
                "RUN --mount=type=ssh x",
                Run {
                    mounts: vec![RunMount::Ssh {
                        id: None,
                        target: None,
                        required: false,
                    }],
                    ..plain_run(CommandLine::Shell("x".into()))
                },
            )]),
            8,
            "RUN --mount=type=ssh is not supported",
        ),
        (
            one(vec![run_with(
                9,
                "RUN --security=insecure x",
                Run {
                    security: Some("insecure".into()),
                    ..plain_run(CommandLine::Shell("x".into()))
                },
            )]),
            9,
            "--security=insecure is not supported",
        ),
        (
            one(vec![ins(
                10,
                "COPY --chmod=u+x a /",
                Instruction::Copy(Copy {
                    chmod: Some("u+x".into()),
                    ..copy_value(&["a"], "/", None)
                }),
            )]),
            10,
            "symbolic modes are not supported",
        ),
        (
            one(vec![ins(
                11,
                "COPY --chown=a:1 a /",
                Instruction::Copy(Copy {
                    chown: Some("a:1".into()),
                    ..copy_value(&["a"], "/", None)
                }),
            )]),
            11,
            "mixes a name and an id",
        ),
        (
            one(vec![copy(13, &["https://example.com/x"], "/", None)]),
            13,
            "source can't be a URL for COPY",
        ),
    ];
    for (df, line, want) in cases {
        let Err(e) = convert_with(&df, &opts) else {
            panic!("line {line}: want an error {want:?}");
        };
        assert_eq!(e.pos.map(|p| p.line), Some(line), "{e}");
        assert!(e.message.contains(want), "want {want:?}, got: {e}");
        assert_eq!(e.file, "Dockerfile");
    }
}

#[test]
fn base_image_problems_are_reported_at_from() {
    let df = dockerfile(vec![stage(from(2, "missing", None), vec![])]);
    let e = err(&df, &options());
    assert_eq!(e.pos.map(|p| p.line), Some(2));
    assert!(
        e.message
            .contains("failed to resolve image docker.io/library/missing:latest: not found"),
        "{e}"
    );
}

#[test]
fn add_downloads_urls_and_checks_out_git_repositories() {
    let add = |sources: &[&str], checksum: Option<&str>| Add {
        sources: sources
            .iter()
            .map(|s| SourceSpec::Path(s.to_string()))
            .collect(),
        dest: "/opt/".into(),
        chown: Some("1:2".into()),
        chmod: Some("0600".into()),
        checksum: checksum.map(String::from),
        keep_git_dir: true,
        link: false,
        excludes: vec![],
    };
    let df = dockerfile(vec![stage(
        from(1, "busybox", None),
        vec![
            ins(
                2,
                "ADD",
                Instruction::Add(add(
                    &["https://example.com/dl/tool.bin"],
                    Some("sha256:0000000000000000000000000000000000000000000000000000000000000000"),
                )),
            ),
            ins(
                3,
                "ADD",
                Instruction::Add(add(&["https://github.com/o/r.git#v1"], None)),
            ),
        ],
    )]);
    let (_, g) = ok(&df);
    let srcs = sources(&g);
    let (_, http) = srcs
        .iter()
        .find(|(id, _)| id == "https://example.com/dl/tool.bin")
        .expect("http source");
    assert_eq!(http["http.filename"], "tool.bin");
    assert!(http["http.checksum"].starts_with("sha256:"));
    let (_, git) = srcs
        .iter()
        .find(|(id, _)| id.starts_with("git://"))
        .expect("git source");
    assert_eq!(git.get("git.keepgitdir").map(String::as_str), Some("true"));
    let copies: Vec<_> = g
        .vertices()
        .iter()
        .flat_map(|v| match &v.op {
            Op::File(f) => f
                .actions
                .iter()
                .filter_map(|a| match &a.kind {
                    FileActionKind::Copy(c) => Some(c.clone()),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        })
        .collect();
    assert_eq!(copies.len(), 2);
    assert!(copies
        .iter()
        .all(|c| c.mode == Some(0o600) && c.owner.is_some() && c.dest == "/opt/"));
}

#[test]
fn variables_expand_in_paths_and_flags() {
    let df = dockerfile(vec![stage(
        from(1, "busybox", None),
        vec![
            env(2, &[("DIR", "/srv"), ("U", "1000")]),
            ins(3, "WORKDIR $DIR", Instruction::Workdir("$DIR".into())),
            ins(4, "WORKDIR sub", Instruction::Workdir("sub".into())),
            ins(
                5,
                "COPY",
                Instruction::Copy(Copy {
                    chown: Some("$U".into()),
                    ..copy_value(&["${DIR#/}/a"], "b", None)
                }),
            ),
        ],
    )]);
    let (c, g) = ok(&df);
    assert_eq!(c.image_config["config"]["WorkingDir"], "/srv/sub");
    let copy = g
        .vertices()
        .iter()
        .find_map(|v| match &v.op {
            Op::File(f) => f.actions.iter().find_map(|a| match &a.kind {
                FileActionKind::Copy(c) => Some(c.clone()),
                _ => None,
            }),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (copy.src.as_str(), copy.dest.as_str()),
        ("/srv/a", "/srv/sub/b")
    );
    let h = history(&c);
    assert!(
        h.contains(&("COPY --chown=1000 srv/a b # buildkit".into(), false)),
        "{h:?}"
    );
}

#[test]
fn platform_args_are_in_meta_scope() {
    let mut df = dockerfile(vec![stage(
        at(
            2,
            "FROM --platform=$BUILDPLATFORM busybox:$TARGETARCH",
            From {
                image: "busybox:$TARGETARCH".into(),
                platform: Some("$BUILDPLATFORM".into()),
                name: None,
            },
        ),
        vec![],
    )]);
    df.meta_args = vec![];
    let registry = Arc::new(Registry::default());
    convert(&df, &options(), registry.clone()).unwrap();
    assert_eq!(
        registry.refs.lock().unwrap().as_slice(),
        ["docker.io/library/busybox:amd64"]
    );
}

// ---- from Dockerfile text (with the parser) ---------------------------------------------------

fn text(dockerfile: &str, opts: &ConvertOptions) -> Result<(Converted, Graph), DockerfileError> {
    let df = crate::parse(dockerfile, "Dockerfile")?;
    convert_with(&df, opts)
}

#[test]
fn onbuild_triggers_of_the_base_run_first() {
    let (c, g) = text("FROM trigger\nRUN after\n", &options()).unwrap();
    let (trigger, _) = exec(&g, "echo triggered");
    let (after, _) = exec(&g, "after");
    assert!(ancestors(&g, after).contains(&trigger.digest));
    assert_eq!(
        trigger.metadata.custom_name(),
        Some("[2/3] ONBUILD RUN echo triggered")
    );
    assert!(c.image_config["config"].get("OnBuild").is_none());

    let (c, g) = text(
        "FROM busybox AS base\nONBUILD RUN echo from base\nFROM base\nRUN child\n",
        &options(),
    )
    .unwrap();
    let (t, _) = exec(&g, "echo from base");
    assert!(ancestors(&g, exec(&g, "child").0).contains(&t.digest));
    assert!(c.image_config["config"].get("OnBuild").is_none());
    // Building the base itself keeps the trigger for images built from it.
    let mut opts = options();
    opts.target = Some("base".into());
    let (c, g) = text(
        "FROM busybox AS base\nONBUILD RUN echo from base\nFROM base\n",
        &opts,
    )
    .unwrap();
    assert!(execs(&g).is_empty());
    assert_eq!(
        c.image_config["config"]["OnBuild"],
        json!(["RUN echo from base"])
    );
}

#[test]
fn the_multistage_corpus_converts() {
    let dockerfile = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/multistage.Dockerfile"
    ))
    .unwrap();
    let df = crate::parse(&dockerfile, "Dockerfile").unwrap();
    let registry = Arc::new(Registry::default());
    let c = convert(&df, &options(), registry.clone()).unwrap();
    let g = c.definition.parse().unwrap();
    assert_eq!(
        registry.refs.lock().unwrap().as_slice(),
        [
            "docker.io/library/golang:1.22",
            "docker.io/library/debian:bookworm"
        ]
    );
    let (build, e) = exec(&g, "go build -o /out/app ./cmd/app");
    assert_eq!(build.metadata.custom_name(), Some("[build 4/4] RUN --mount=type=cache,target=/root/.cache/go-build     --mount=type=bind,source=.,target=/src,rw     go build -o /out/app ./cmd/app"));
    assert_eq!(env_of(e, "CGO_ENABLED"), Some("0"));
    assert_eq!(env_of(e, "GOFLAGS"), Some("-trimpath -mod=readonly"));
    assert_eq!(e.meta.cwd, "/src");
    let dests: Vec<&str> = e.mounts.iter().map(|m| m.dest.as_str()).collect();
    assert_eq!(dests, ["/", "/root/.cache/go-build", "/src"]);
    assert!(!e.mounts[2].readonly);
    // The bind mount reads the whole context: nothing to filter.
    let (_, attrs) = sources(&g)
        .into_iter()
        .find(|(id, _)| id == "local://context")
        .unwrap();
    assert!(!attrs.contains_key("local.followpaths"));

    let cfg = &c.image_config["config"];
    assert_eq!(cfg["Entrypoint"], json!(["/usr/local/bin/app"]));
    assert_eq!(cfg["Cmd"], json!(["--serve"]));
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["ExposedPorts"], json!({"8080/tcp": {}, "9090/udp": {}}));
    assert_eq!(
        cfg["Labels"],
        json!({"org.opencontainers.image.title": "app", "maintainer": "me"})
    );
    assert_eq!(
        cfg["Healthcheck"],
        json!({"Test": ["CMD", "/usr/local/bin/app", "health"], "Interval": 30_000_000_000u64, "Timeout": 5_000_000_000u64, "Retries": 3})
    );
    // Only the target's chain is in the history: the build stage is read, not built upon.
    let h: Vec<String> = history(&c).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        h[1],
        "LABEL org.opencontainers.image.title=app maintainer=me"
    );
    assert!(
        h.contains(
            &"COPY --chown=1000:1000 --chmod=0755 /out/app /usr/local/bin/app # buildkit"
                .to_string()
        ),
        "{h:?}"
    );
}

#[test]
fn the_heredocs_corpus_converts() {
    let dockerfile = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/heredocs.Dockerfile"
    ))
    .unwrap();
    let (c, g) = text(&dockerfile, &options()).unwrap();
    exec(&g, "set -e\necho hello > /greeting\n");
    let (_, e) = exec(&g, "<<-'SCRIPT' sh -s\necho \"$HOME not expanded\"\nSCRIPT");
    assert_eq!(e.meta.args[..2], ["/bin/sh", "-c"]);
    exec(&g, "cat <<A > /a && cat <<B > /b\nfirst\nA\nsecond\nB");
    let cfg = &c.image_config["config"];
    assert_eq!(cfg["Shell"], json!(["/bin/ash", "-eo", "pipefail", "-c"]));
    assert_eq!(cfg["OnBuild"], json!(["RUN echo triggered"]));
    assert_eq!(cfg["Volumes"], json!({"/data": {}, "/cache": {}}));
}

#[test]
fn errors_from_text_point_at_the_instruction() {
    let e = text(
        "FROM busybox\nENV A=1\nCOPY --from=nope-stage!! a /\n",
        &options(),
    )
    .unwrap_err();
    assert_eq!(e.pos.map(|p| p.line), Some(3), "{e}");
    assert_eq!(e.line, "COPY --from=nope-stage!! a /");
    let e = text(
        "FROM busybox AS a\nCOPY --from=b x /\nFROM busybox AS b\nCOPY --from=a x /\n",
        &options(),
    )
    .unwrap_err();
    assert_eq!(e.pos.map(|p| p.line), Some(2), "{e}");
    assert!(e.message.contains("needs to be defined before"), "{e}");
}

#[test]
fn named_contexts_replace_images_and_stages() {
    let mut opts = options();
    opts.named_contexts
        .insert("busybox".into(), "docker-image://alpine:3".into());
    opts.named_contexts
        .insert("deps".into(), "local:vendor".into());
    opts.named_contexts
        .insert("src".into(), "https://github.com/o/r.git#main".into());
    let df = "FROM node AS deps\nRUN never\nFROM busybox\nCOPY --from=deps /x /x\nCOPY --from=src / /src\nRUN build\n";
    let (c, g) = text(df, &opts).unwrap();
    let ids: Vec<String> = sources(&g).into_iter().map(|(id, _)| id).collect();
    assert!(
        ids.iter()
            .any(|i| i.starts_with("docker-image://docker.io/library/alpine:3@")),
        "{ids:?}"
    );
    assert!(ids.contains(&"local://vendor".to_string()), "{ids:?}");
    assert!(
        ids.iter().any(|i| i.starts_with("git://github.com/o/r")),
        "{ids:?}"
    );
    assert!(execs(&g).iter().all(|(_, e)| e.meta.args[2] != "never"));
    assert_eq!(c.image_config["config"]["Cmd"], json!(["sh"]));

    opts.named_contexts
        .insert("busybox".into(), "oci-layout://x".into());
    let e = text(df, &opts).unwrap_err();
    assert_eq!(e.pos.map(|p| p.line), Some(3), "{e}");
    assert!(e.message.contains("only docker-image://REF"), "{e}");
}
