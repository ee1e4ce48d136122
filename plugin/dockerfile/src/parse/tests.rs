//! Tests of [`parse`]: one per instruction form, the layout (directives, continuations,
//! comments, heredocs), a table of broken Dockerfiles with their exact errors, and a property
//! that `parse` never panics.

use proptest::prelude::*;

use super::parse;
use crate::instruction::{
    CommandLine, Dockerfile, Healthcheck, Heredoc, Instruction, Network, Pos, RunMount, Sharing,
    SourceSpec,
};

fn ok(text: &str) -> Dockerfile {
    match parse(text, "Dockerfile") {
        Ok(d) => d,
        Err(e) => panic!("{text:?} did not parse: {e}"),
    }
}

/// The last instruction of `FROM a\n` + `body`, and its `text`.
fn last(body: &str) -> (Instruction, String) {
    let d = ok(&format!("FROM a\n{body}"));
    let i = d.stages[0]
        .instructions
        .last()
        .expect("an instruction")
        .clone();
    (i.value, i.text)
}

fn s(v: &str) -> String {
    v.to_string()
}

fn heredoc(name: &str, content: &str, expand: bool, chomp: bool) -> Heredoc {
    Heredoc {
        name: s(name),
        content: s(content),
        expand,
        chomp,
    }
}

trait IntoInstruction {
    fn into_instruction(self) -> Instruction;
}

impl IntoInstruction for crate::instruction::Run {
    fn into_instruction(self) -> Instruction {
        Instruction::Run(self)
    }
}

fn run(body: &str) -> crate::instruction::Run {
    match last(body).0 {
        Instruction::Run(r) => r,
        other => panic!("not RUN: {other:?}"),
    }
}

#[test]
fn from_forms() {
    let d = ok("ARG V=1\nFROM --platform=$BUILDPLATFORM img:${V} AS Builder\nfrom scratch\n");
    assert_eq!(d.meta_args.len(), 1);
    assert_eq!(d.meta_args[0].value.args, vec![(s("V"), Some(s("1")))]);
    let f = &d.stages[0].from;
    assert_eq!(f.value.image, "img:${V}");
    assert_eq!(f.value.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(f.value.name.as_deref(), Some("builder"));
    assert_eq!(f.pos, Pos { line: 2, column: 1 });
    assert_eq!(d.stages[1].from.value.image, "scratch");
    assert_eq!(d.stages[1].from.value.name, None);
    assert!(d.stage("BUILDER").is_some());
    assert_eq!(d.stage("1").map(|(i, _)| i), Some(1));
}

#[test]
fn keywords_are_case_insensitive() {
    let d = ok("from a\nrun echo hi\nCoPy x y\n");
    assert_eq!(d.stages[0].instructions.len(), 2);
    assert_eq!(d.stages[0].instructions[0].text, "run echo hi");
}

#[test]
fn arg_forms() {
    assert_eq!(
        last("ARG a b=c d=\"e f\"\n").0,
        Instruction::Arg(crate::instruction::Arg {
            args: vec![
                (s("a"), None),
                (s("b"), Some(s("c"))),
                (s("d"), Some(s("\"e f\"")))
            ]
        })
    );
}

#[test]
fn env_and_label_keep_values_as_written() {
    assert_eq!(
        last("ENV a=\"b c\" d='$x' e=f\\ g\n").0,
        Instruction::Env(vec![
            (s("a"), s("\"b c\"")),
            (s("d"), s("'$x'")),
            (s("e"), s("f\\ g"))
        ])
    );
    assert_eq!(
        last("ENV k v  w\n").0,
        Instruction::Env(vec![(s("k"), s("v  w"))])
    );
    assert_eq!(
        last("LABEL k=v k2=\"v 2\"\n").0,
        Instruction::Label(vec![(s("k"), s("v")), (s("k2"), s("\"v 2\""))])
    );
}

#[test]
fn simple_value_instructions() {
    assert_eq!(
        last("EXPOSE 80  443/udp\n").0,
        Instruction::Expose(vec![s("80"), s("443/udp")])
    );
    assert_eq!(
        last("VOLUME [\"/a\", \"/b c\"]\n").0,
        Instruction::Volume(vec![s("/a"), s("/b c")])
    );
    assert_eq!(
        last("VOLUME /a /b\n").0,
        Instruction::Volume(vec![s("/a"), s("/b")])
    );
    assert_eq!(last("USER app:app\n").0, Instruction::User(s("app:app")));
    assert_eq!(last("WORKDIR /src\n").0, Instruction::Workdir(s("/src")));
    assert_eq!(
        last("STOPSIGNAL SIGKILL\n").0,
        Instruction::StopSignal(s("SIGKILL"))
    );
    assert_eq!(
        last("MAINTAINER Jane <j@x>\n").0,
        Instruction::Maintainer(s("Jane <j@x>"))
    );
    assert_eq!(
        last("SHELL [\"bash\", \"-c\"]\n").0,
        Instruction::Shell(vec![s("bash"), s("-c")])
    );
}

#[test]
fn json_and_shell_forms() {
    assert_eq!(
        last("CMD [\"a\", \"b c\"]\n").0,
        Instruction::Cmd(CommandLine::Exec(vec![s("a"), s("b c")]))
    );
    assert_eq!(
        last("ENTRYPOINT exec app --flag\n").0,
        Instruction::Entrypoint(CommandLine::Shell(s("exec app --flag")))
    );
    // Invalid JSON falls back to the shell form, as Docker does.
    assert_eq!(
        last("CMD [\"a\", b]\n").0,
        Instruction::Cmd(CommandLine::Shell(s("[\"a\", b]")))
    );
    assert_eq!(
        run("RUN [\"echo\", \"hi\"]\n").command,
        CommandLine::Exec(vec![s("echo"), s("hi")])
    );
    assert_eq!(
        run("RUN [ -f x ] && echo\n").command,
        CommandLine::Shell(s("[ -f x ] && echo"))
    );
}

#[test]
fn continuations_are_joined() {
    let d = ok("FROM a\nRUN echo a && \\\n  echo b\n");
    let i = &d.stages[0].instructions[0];
    assert_eq!(i.text, "RUN echo a &&   echo b");
    assert_eq!(i.pos, Pos { line: 2, column: 1 });
    assert_eq!(i.end_line, 3);
    let Instruction::Run(r) = &i.value else {
        panic!()
    };
    assert_eq!(r.command, CommandLine::Shell(s("echo a &&   echo b")));
}

#[test]
fn comments_and_blank_lines_inside_continuations_are_dropped() {
    let (i, text) = last("RUN apt-get update && \\\n# a comment\n\n    apt-get install -y x \\\n  # indented\n  && true\n");
    assert_eq!(
        text,
        "RUN apt-get update &&     apt-get install -y x   && true"
    );
    assert_eq!(
        i,
        Instruction::Run(crate::instruction::Run {
            command: CommandLine::Shell(s("apt-get update &&     apt-get install -y x   && true")),
            heredocs: vec![],
            mounts: vec![],
            network: None,
            security: None,
        })
    );
}

#[test]
fn backtick_escape_directive() {
    let d = ok("# escape=`\nFROM a\nRUN dir C:\\ `\n  && echo done\nCOPY a C:\\dst\\\n");
    assert_eq!(d.directives.escape, '`');
    let i = &d.stages[0].instructions;
    assert_eq!(i[0].text, "RUN dir C:\\   && echo done");
    assert_eq!(i[0].end_line, 4);
    let Instruction::Copy(c) = &i[1].value else {
        panic!()
    };
    assert_eq!(c.dest, "C:\\dst\\");
}

#[test]
fn directives() {
    let d = ok("# syntax=docker/dockerfile:1.7\n#check = skip=all\n# escape=\\\nFROM a\n");
    assert_eq!(
        d.directives.syntax.as_deref(),
        Some("docker/dockerfile:1.7")
    );
    assert_eq!(d.directives.check.as_deref(), Some("skip=all"));
    assert_eq!(d.directives.escape, '\\');
    // After the first non-directive line, `# escape=` is a comment.
    let d = ok("# hello\n# escape=`\nFROM a\n");
    assert_eq!(d.directives.escape, '\\');
    assert_eq!(d.directives.syntax, None);
}

#[test]
fn lone_escape_lines_are_not_instructions() {
    let d = ok("FROM a\n\\\n\\\nRUN x\n\\\n");
    assert_eq!(d.stages[0].instructions.len(), 1);
    assert_eq!(d.stages[0].instructions[0].text, "RUN x");
}

#[test]
fn bom_and_crlf() {
    let d = ok("\u{feff}FROM a\r\nRUN echo a \\\r\n  b\r\nENV x=1\r\n");
    let i = &d.stages[0].instructions;
    assert_eq!(i[0].text, "RUN echo a   b");
    assert_eq!(i[1].value, Instruction::Env(vec![(s("x"), s("1"))]));
    assert_eq!(i[1].pos, Pos { line: 4, column: 1 });
}

#[test]
fn text_keeps_trailing_whitespace_like_buildkit_original() {
    let (i, text) = last("  RUN echo hi  \n");
    assert_eq!(text, "RUN echo hi  ");
    assert_eq!(i, run("RUN echo hi\n").into_instruction());
}

#[test]
fn escaped_escape_at_line_end_is_not_a_continuation() {
    let d = ok("FROM a\nRUN echo \\\\\nRUN next\n");
    let i = &d.stages[0].instructions;
    assert_eq!(i.len(), 2);
    assert_eq!(i[0].text, "RUN echo \\\\");
    assert_eq!(i[1].text, "RUN next");
}

#[test]
fn heredoc_keeps_crlf_line_breaks() {
    let r = run("RUN <<EOF\r\necho a\r\nEOF\r\n");
    assert_eq!(r.heredocs, vec![heredoc("EOF", "echo a\r\n", true, false)]);
}

#[test]
fn flag_values_lose_quotes_like_buildkit() {
    let r = run("RUN --mount=\"type=cache,target=/c\" --network='none' true\n");
    assert!(matches!(&r.mounts[0], RunMount::Cache { target, .. } if target == "/c"));
    assert_eq!(r.network, Some(Network::None));
    let Instruction::Copy(c) = last("COPY --chown=\"app:app\" a b\n").0 else {
        panic!()
    };
    assert_eq!(c.chown.as_deref(), Some("app:app"));
}

#[test]
fn heredoc_run() {
    let r = run("RUN <<EOF\necho $HOME\n  indented\nEOF\n");
    assert_eq!(r.command, CommandLine::Shell(s("<<EOF")));
    assert_eq!(
        r.heredocs,
        vec![heredoc("EOF", "echo $HOME\n  indented\n", true, false)]
    );
}

#[test]
fn heredoc_chomp_strips_tabs() {
    let d = ok("FROM a\nRUN <<-EOF\n\techo a\n\t\techo b\n\tEOF\nRUN true\n");
    let i = &d.stages[0].instructions;
    let Instruction::Run(r) = &i[0].value else {
        panic!()
    };
    assert_eq!(
        r.heredocs,
        vec![heredoc("EOF", "echo a\necho b\n", true, true)]
    );
    assert_eq!(i[0].end_line, 5);
    assert_eq!(i[1].pos.line, 6);
}

#[test]
fn heredoc_quoted_delimiter_does_not_expand() {
    let r = run("RUN <<'EOF' bash\necho $HOME\nEOF\n");
    assert_eq!(r.command, CommandLine::Shell(s("<<'EOF' bash")));
    assert_eq!(
        r.heredocs,
        vec![heredoc("EOF", "echo $HOME\n", false, false)]
    );
    let r = run("RUN <<\"EOF\"\nx\nEOF\n");
    assert!(!r.heredocs[0].expand);
}

#[test]
fn heredoc_two_on_one_run() {
    let d = ok("FROM a\nRUN --network=none cat <<A >/a && cat <<B >/b\none\nA\ntwo\nB\nRUN next\n");
    let i = &d.stages[0].instructions;
    assert_eq!(i[0].text, "RUN --network=none cat <<A >/a && cat <<B >/b");
    let Instruction::Run(r) = &i[0].value else {
        panic!()
    };
    assert_eq!(
        r.command,
        CommandLine::Shell(s("cat <<A >/a && cat <<B >/b"))
    );
    assert_eq!(r.network, Some(Network::None));
    assert_eq!(
        r.heredocs,
        vec![
            heredoc("A", "one\n", true, false),
            heredoc("B", "two\n", true, false)
        ]
    );
    assert_eq!(i[1].text, "RUN next");
    assert_eq!(i[1].pos.line, 7);
}

#[test]
fn heredoc_copy() {
    let (i, text) = last("COPY --chmod=0644 <<EOF /etc/file\nline one\nEOF\n");
    assert_eq!(text, "COPY --chmod=0644 <<EOF /etc/file");
    let Instruction::Copy(c) = i else { panic!() };
    assert_eq!(
        c.sources,
        vec![SourceSpec::Heredoc(heredoc(
            "EOF",
            "line one\n",
            true,
            false
        ))]
    );
    assert_eq!(c.dest, "/etc/file");
    assert_eq!(c.chmod.as_deref(), Some("0644"));
}

#[test]
fn heredoc_body_is_not_parsed_as_instructions() {
    let r = run("RUN python3 <<EOF\nFROM = 1\nprint(FROM)\nEOF\n");
    assert_eq!(r.heredocs[0].content, "FROM = 1\nprint(FROM)\n");
}

#[test]
fn run_flags() {
    let r = run("RUN --mount=type=cache,target=/c,id=x,sharing=private \\\n    --mount=type=secret,id=tok,required --network=host --security=sandbox make\n");
    assert_eq!(r.command, CommandLine::Shell(s("make")));
    assert_eq!(r.network, Some(Network::Host));
    assert_eq!(r.security.as_deref(), Some("sandbox"));
    assert_eq!(
        r.mounts[0],
        RunMount::Cache {
            target: s("/c"),
            id: Some(s("x")),
            sharing: Sharing::Private,
            from: None,
            source: None,
            readonly: false,
            mode: None,
            uid: None,
            gid: None,
        }
    );
    assert!(
        matches!(&r.mounts[1], RunMount::Secret { id: Some(id), required: true, .. } if id == "tok")
    );
}

#[test]
fn copy_and_add_flags() {
    let Instruction::Copy(c) = last("COPY --from=build --chown=app --link --exclude=*.md --exclude=.git --parents=false a b/ /dst/\n").0 else { panic!() };
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("app"));
    assert!(c.link);
    assert!(!c.parents);
    assert_eq!(c.excludes, vec![s("*.md"), s(".git")]);
    assert_eq!(
        c.sources,
        vec![SourceSpec::Path(s("a")), SourceSpec::Path(s("b/"))]
    );
    assert_eq!(c.dest, "/dst/");
    let Instruction::Add(a) =
        last("ADD --checksum=sha256:00 --keep-git-dir --link=false https://x/y.tgz /\n").0
    else {
        panic!()
    };
    assert_eq!(a.checksum.as_deref(), Some("sha256:00"));
    assert!(a.keep_git_dir);
    assert!(!a.link);
    assert_eq!(a.sources, vec![SourceSpec::Path(s("https://x/y.tgz"))]);
    let Instruction::Copy(c) = last("COPY [\"a b\", \"/d\"]\n").0 else {
        panic!()
    };
    assert_eq!(c.sources, vec![SourceSpec::Path(s("a b"))]);
}

#[test]
fn healthcheck() {
    assert_eq!(
        last("HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=0 --start-interval=2s --retries=4 CMD curl -f http://x/\n").0,
        Instruction::Healthcheck(Healthcheck::Check {
            command: CommandLine::Shell(s("curl -f http://x/")),
            interval: Some(90_000_000_000),
            timeout: Some(500_000_000),
            start_period: Some(0),
            start_interval: Some(2_000_000_000),
            retries: Some(4),
        })
    );
    assert_eq!(
        last("HEALTHCHECK NONE\n").0,
        Instruction::Healthcheck(Healthcheck::None)
    );
}

#[test]
fn onbuild_keeps_the_trigger() {
    assert_eq!(
        last("ONBUILD RUN echo \\\n  hi\n").0,
        Instruction::Onbuild(s("RUN echo   hi"))
    );
    assert_eq!(
        last("onbuild COPY . /app\n").0,
        Instruction::Onbuild(s("COPY . /app"))
    );
}

#[test]
fn columns_count_characters() {
    let e = parse("FROM a\nRUN --mount=type=ä,target=/x e\n", "f").unwrap_err();
    assert_eq!(e.pos, Some(Pos { line: 2, column: 5 }));
    let e = parse("FROM a\nENV ä=1 b\n", "f").unwrap_err();
    assert_eq!(e.pos, Some(Pos { line: 2, column: 5 }));
    let e = parse("FROM a AS ok\nFROM b AS ü\n", "f").unwrap_err();
    assert_eq!(
        e.pos,
        Some(Pos {
            line: 2,
            column: 11
        })
    );
}

#[test]
fn error_display_quotes_the_line() {
    let e = parse("FROM a\nFOO bar\n", "build/Dockerfile").unwrap_err();
    assert_eq!(
        e.to_string(),
        "build/Dockerfile:2:1: unknown instruction: FOO\n  2 | FOO bar"
    );
}

/// Broken Dockerfiles: (input, message, line, column).
const BROKEN: &[(&str, &str, usize, usize)] = &[
    ("FROM a\nFOO bar\n", "unknown instruction: FOO", 2, 1),
    ("FROM a\n  foo bar\n", "unknown instruction: foo", 2, 3),
    ("FROM a\nRUN --foo=1 echo\n", "unknown flag: --foo (RUN accepts --mount, --network, --security)", 2, 5),
    ("FROM --pltform=linux/amd64 a\n", "unknown flag: --pltform (FROM accepts --platform)", 1, 6),
    ("FROM a\nCMD --serve\n", "unknown flag: --serve (CMD accepts no flags)", 2, 5),
    ("FROM a\nENV --x=1 a=b\n", "unknown flag: --x (ENV accepts no flags)", 2, 5),
    ("FROM a\nADD --from=x a b\n", "unknown flag: --from (ADD accepts --chown, --chmod, --checksum, --keep-git-dir, --link, --exclude)", 2, 5),
    ("FROM a\nCOPY --link=yes a b\n", "flag --link expects true or false, not \"yes\"", 2, 6),
    ("FROM a\nCOPY --from a b\n", "flag --from needs a value (--from=VALUE)", 2, 6),
    ("FROM a\nCOPY --chown=1 --chown=2 a b\n", "duplicate flag: --chown", 2, 16),
    ("FROM a\nRUN --network=bridge echo\n", "unsupported network mode \"bridge\" (use default, none or host)", 2, 5),
    ("FROM a\nRUN --security=weird x\n", "unsupported security mode \"weird\" (use sandbox or insecure)", 2, 5),
    ("FROM a\nRUN --mount=type=nfs,target=/x echo\n", "unsupported mount type \"nfs\" (use bind, cache, tmpfs, secret or ssh)", 2, 5),
    ("FROM a\nRUN --mount=type=cache echo\n", "mount type=cache needs target=PATH", 2, 5),
    ("FROM a\nRUN --mount=type=tmpfs,target=/t,size=huge echo\n", "invalid size \"huge\" (use bytes or a suffix like 64m or 1g)", 2, 5),
    ("FROM a\nRUN --mount=type=cache,target=/x,uid=abc echo\n", "mount uid \"abc\" is not a number", 2, 5),
    ("FROM a\n  RUN --mount=type=secret echo\n", "mount type=secret needs id=, target= or env=", 2, 7),
    ("FROM a\nRUN <<EOF\necho\n", "unterminated heredoc <<EOF (started on line 2): add a line `EOF` after its body", 2, 1),
    ("FROM a\nRUN <<-END\n\techo\n  END\n", "unterminated heredoc <<-END (started on line 2): add a line `END` after its body", 2, 1),
    ("FROM a\nCOPY onlyone\n", "COPY needs SRC... DEST", 2, 1),
    ("FROM a\nRUN\n", "RUN needs a command", 2, 1),
    ("FROM a\nENTRYPOINT\n", "ENTRYPOINT needs a command", 2, 1),
    ("FROM a\nUSER\n", "USER needs a user (USER NAME[:GROUP])", 2, 1),
    ("FROM a\nENV\n", "ENV needs KEY=VALUE", 2, 1),
    ("FROM a\nENV FOO\n", "ENV needs KEY=VALUE (or the legacy ENV KEY VALUE)", 2, 5),
    ("FROM a\nENV a=1 b\n", "ENV needs KEY=VALUE: \"b\" has no '='", 2, 5),
    ("FROM a\nENV =x\n", "ENV needs KEY=VALUE: a key cannot be blank", 2, 5),
    ("FROM a\nLABEL k v\n", "LABEL needs KEY=VALUE: \"k\" has no '='", 2, 7),
    ("FROM a\nARG =x\n", "ARG needs NAME[=DEFAULT]: a name cannot be blank", 2, 5),
    ("FROM a\nCMD [\"a\", 1]\n", "when using JSON array syntax, arrays must be comprised of strings only", 2, 1),
    ("FROM a\nCOPY [\"a\", 1]\n", "when using JSON array syntax, arrays must be comprised of strings only", 2, 1),
    ("FROM a\nSHELL /bin/sh -c\n", "SHELL needs the JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]", 2, 7),
    ("RUN echo\nFROM a\n", "RUN before the first FROM: only ARG may come before FROM", 1, 1),
    ("ARG x\n\nENV a=b\nFROM a\n", "ENV before the first FROM: only ARG may come before FROM", 3, 1),
    ("FROM a AS 1st\n", "invalid stage name \"1st\": a name starts with a letter and holds only letters, digits, '-', '_' and '.'", 1, 11),
    ("FROM a AS my/stage\n", "invalid stage name \"my/stage\": a name starts with a letter and holds only letters, digits, '-', '_' and '.'", 1, 11),
    ("FROM a AS one\nRUN x\nFROM b AS One\n", "duplicate stage name \"one\": already defined on line 1, redefined on line 3", 3, 11),
    ("FROM a b c\n", "FROM needs IMAGE [AS NAME]", 1, 8),
    ("FROM a\nHEALTHCHECK --interval=30 CMD true\n", "flag --interval: missing unit in duration \"30\" (e.g. 30s)", 2, 13),
    ("FROM a\nHEALTHCHECK --timeout=10us CMD true\n", "flag --timeout cannot be less than 1ms (got 10us)", 2, 13),
    ("FROM a\nHEALTHCHECK --start-period=5y CMD true\n", "flag --start-period: unknown unit \"y\" in duration \"5y\"", 2, 13),
    ("FROM a\nHEALTHCHECK --retries=-1 CMD true\n", "flag --retries cannot be -1", 2, 13),
    ("FROM a\nHEALTHCHECK --interval=1s NONE\n", "HEALTHCHECK NONE takes no flags (got --interval)", 2, 13),
    ("FROM a\nHEALTHCHECK CMD\n", "HEALTHCHECK CMD needs a command", 2, 1),
    ("FROM a\nONBUILD FROM b\n", "ONBUILD FROM is not allowed as a trigger", 2, 1),
    ("FROM a\nONBUILD MAINTAINER me\n", "ONBUILD MAINTAINER is not allowed as a trigger", 2, 1),
    ("FROM a\nONBUILD ONBUILD RUN x\n", "ONBUILD ONBUILD is not allowed as a trigger", 2, 9),
    ("FROM a\nONBUILD   \n", "ONBUILD needs an instruction (ONBUILD RUN …)", 2, 1),
    ("FROM a\nONBUILD\n", "ONBUILD needs an instruction (ONBUILD RUN …)", 2, 1),
    ("FROM a\nONBUILD RUN --bogus x\n", "unknown flag: --bogus (RUN accepts --mount, --network, --security)", 2, 13),
    ("# escape=x\nFROM a\n", "invalid escape directive value \"x\": use \\ or `", 1, 10),
    ("# escape=`\n# escape=\\\nFROM a\n", "only one escape parser directive can be used", 2, 1),
];

#[test]
fn broken_dockerfiles() {
    let mut failures = Vec::new();
    for &(input, message, line, column) in BROKEN {
        match parse(input, "Dockerfile") {
            Ok(_) => failures.push(format!("{input:?}: parsed, expected {message:?}")),
            Err(e) => {
                let got = (e.message.as_str(), e.pos);
                let want = (message, Some(Pos { line, column }));
                if got != want {
                    failures.push(format!("{input:?}:\n   got {got:?}\n  want {want:?}"));
                }
                let quoted = input.lines().nth(line - 1).unwrap_or("");
                if e.line != quoted {
                    failures.push(format!("{input:?}: quoted {:?}, want {quoted:?}", e.line));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn no_stage_is_a_file_level_error() {
    for input in ["", "# only a comment\n", "ARG a=1\n"] {
        let e = parse(input, "Dockerfile").unwrap_err();
        assert_eq!(e.pos, None);
        assert_eq!(
            e.message,
            "no FROM instruction: a Dockerfile needs at least one stage (FROM IMAGE)"
        );
    }
}

fn corpus() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/corpus")
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("corpus file"))
        .collect()
}

#[test]
fn corpus_parses() {
    let files = corpus();
    assert!(files.len() >= 3);
    for text in &files {
        let d = ok(text);
        assert!(!d.stages.is_empty());
    }
}

/// Characters that matter to the parser, to make mutations interesting.
const SPECIALS: &[&str] = &[
    "\\\n",
    "`\n",
    "\n",
    "<<EOF\n",
    "<<-",
    "EOF\n",
    "\"",
    "'",
    "[",
    "]",
    "=",
    ",",
    "--",
    "#",
    " ",
    "\t",
    "\r\n",
    "ä",
    "--mount=type=cache,target=",
    "FROM ",
    "AS ",
    "ONBUILD ",
];

/// Dockerfile vocabulary, for inputs that get past the first word.
const TOKENS: &[&str] = &[
    "FROM ",
    "RUN ",
    "COPY ",
    "ADD ",
    "ENV ",
    "ARG ",
    "LABEL ",
    "CMD ",
    "ENTRYPOINT ",
    "SHELL ",
    "HEALTHCHECK ",
    "ONBUILD ",
    "VOLUME ",
    "EXPOSE ",
    "USER ",
    "WORKDIR ",
    "STOPSIGNAL ",
    "MAINTAINER ",
    "NONE",
    "CMD",
    "AS ",
    "a",
    "b=c",
    "\"",
    "'",
    "[",
    "]",
    "\"x\"",
    ", ",
    "=",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\\",
    "`",
    "\\\n",
    "#",
    "# escape=`\n",
    "# syntax=x\n",
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "EOF\n",
    "\tEOF\n",
    "--mount=",
    "type=cache,target=/x",
    "--link",
    "--from=a",
    "--interval=",
    "1m30s",
    "--platform=",
    "--network=none",
    "ä",
    "{",
    "1",
];

/// Whatever `parse` returns places things inside the file.
fn check_positions(text: &str) -> Result<(), TestCaseError> {
    let lines = text.split('\n').count();
    match parse(text, "Dockerfile") {
        Ok(d) => {
            let mut all: Vec<(Pos, usize)> =
                d.meta_args.iter().map(|a| (a.pos, a.end_line)).collect();
            for stage in &d.stages {
                all.push((stage.from.pos, stage.from.end_line));
                all.extend(stage.instructions.iter().map(|i| (i.pos, i.end_line)));
            }
            for (pos, end_line) in all {
                prop_assert!(pos.line >= 1 && pos.column >= 1);
                prop_assert!(
                    pos.line <= end_line && end_line <= lines,
                    "{pos:?} {end_line} {lines}"
                );
            }
        }
        Err(e) => {
            if let Some(pos) = e.pos {
                prop_assert!(pos.line >= 1 && pos.line <= lines && pos.column >= 1, "{e}");
            }
            prop_assert!(!e.message.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_on_arbitrary_text(text in "(?s).{0,200}") {
        let _ = parse(&text, "Dockerfile");
    }

    #[test]
    fn never_panics_on_dockerfile_like_tokens(
        tokens in proptest::collection::vec(prop::sample::select(TOKENS), 0..60),
    ) {
        check_positions(&tokens.concat())?;
    }

    #[test]
    fn never_panics_on_mutated_dockerfiles(
        file in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..3, 0usize..SPECIALS.len()), 1..8),
    ) {
        let files = corpus();
        let mut text = files[file % files.len()].clone();
        for (at, op, special) in edits {
            let boundaries: Vec<usize> =
                text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
            let i = boundaries[at.index(boundaries.len())];
            match op {
                // Insert something the parser cares about.
                0 => text.insert_str(i, SPECIALS[special]),
                // Delete a character.
                1 => {
                    if let Some(c) = text[i..].chars().next() {
                        text.replace_range(i..i + c.len_utf8(), "");
                    }
                }
                // Cut the file.
                _ => text.truncate(i),
            }
        }
        check_positions(&text)?;
    }
}
