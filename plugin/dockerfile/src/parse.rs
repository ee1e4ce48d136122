//! Dockerfile text → [`Dockerfile`]: parse-dockerfile finds instructions, flags, JSON forms
//! and heredocs with their byte spans; this module cuts the file into instructions the way
//! BuildKit does ([`layout`]), types each instruction's flags and arguments, and turns spans
//! into lines and columns.
//!
//! `Located::text` is the instruction's logical line exactly as BuildKit's `Original`: each
//! escape character before a line break is removed with the break (comment and blank lines
//! inside a continuation are dropped), the first line's indentation is trimmed, trailing
//! whitespace is kept, and heredoc bodies are left out — `RUN echo a && \` + `  echo b` gives
//! `RUN echo a &&   echo b`.

mod flags;
mod layout;
mod words;

pub use words::csv_fields;

#[cfg(test)]
mod tests;

use parse_dockerfile as pd;

use crate::instruction::{
    Add, Arg, CommandLine, Copy, Dockerfile, From, Healthcheck, Instruction, Located, Pos, Run,
    SourceSpec, Stage,
};
use crate::DockerfileError;

use flags::RawFlag;
use layout::{Chunk, LineIndex};
use words::NameValError;

/// Parses `text` (the contents of Dockerfile `filename`, named in errors).
pub fn parse(text: &str, filename: &str) -> Result<Dockerfile, DockerfileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let idx = LineIndex::new(text);
    let directives = layout::directives(text, &idx, filename)?;
    let ctx = Ctx {
        text,
        file: filename,
        escape: directives.escape,
        idx,
    };
    let chunks = layout::chunks(text, &ctx.idx, ctx.escape, filename)?;

    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    // Stage names and the 1-based lines that define them.
    let mut names: Vec<(String, usize)> = Vec::new();
    for chunk in &chunks {
        match ctx.instruction(chunk)? {
            Typed::From(from, name_offset) => {
                let located = ctx.locate(chunk, from);
                if let Some(name) = &located.value.name {
                    if let Some((_, first)) = names.iter().find(|(n, _)| n == name) {
                        return Err(ctx.err(
                            name_offset,
                            format!(
                                "duplicate stage name {name:?}: already defined on line {first}, redefined on line {}",
                                located.pos.line
                            ),
                        ));
                    }
                    names.push((name.clone(), located.pos.line));
                }
                stages.push(Stage {
                    from: located,
                    instructions: Vec::new(),
                });
            }
            Typed::Arg(arg) => match stages.last_mut() {
                None => meta_args.push(ctx.locate(chunk, arg)),
                Some(stage) => stage
                    .instructions
                    .push(ctx.locate(chunk, Instruction::Arg(arg))),
            },
            Typed::Other(ins) => match stages.last_mut() {
                Some(stage) => stage.instructions.push(ctx.locate(chunk, ins)),
                None => {
                    return Err(ctx.err(
                        chunk.start,
                        format!(
                            "{} before the first FROM: only ARG may come before FROM",
                            keyword(&chunk.text)
                        ),
                    ))
                }
            },
        }
    }
    if stages.is_empty() {
        return Err(DockerfileError::general(
            filename,
            "no FROM instruction: a Dockerfile needs at least one stage (FROM IMAGE)",
        ));
    }
    Ok(Dockerfile {
        directives,
        meta_args,
        stages,
    })
}

/// The first word of a logical line, upper-cased.
fn keyword(line: &str) -> String {
    line.split(|c: char| c.is_ascii_whitespace())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// An instruction typed, before it is placed in a stage.
enum Typed {
    /// `FROM`, and the offset of its `AS` name (for a duplicate-name error).
    From(From, usize),
    /// `ARG` (a meta arg before the first `FROM`).
    Arg(Arg),
    /// Any other instruction.
    Other(Instruction),
}

/// The file being parsed.
struct Ctx<'t> {
    text: &'t str,
    file: &'t str,
    escape: char,
    idx: LineIndex,
}

/// Where a chunk was handed to parse-dockerfile: its text behind a prefix that sets the escape
/// character and opens a stage, so every instruction parses on its own.
///
/// Why one instruction at a time: parse-dockerfile 0.1.9 reads a `RUN` heredoc only when
/// `<<WORD` comes first and only one of them, and would read the bodies of the others
/// (`RUN cat <<A >a && cat <<B >b`) as instructions. The layout finds heredocs as BuildKit
/// does, and parse-dockerfile only ever sees one instruction plus its bodies.
struct Sub {
    text: String,
    prefix_len: usize,
    base: usize,
}

impl Sub {
    /// A parse-dockerfile byte offset → an offset in the file.
    fn map(&self, offset: usize) -> usize {
        self.base + offset.saturating_sub(self.prefix_len)
    }
}

impl Ctx<'_> {
    fn err(&self, offset: usize, message: impl Into<String>) -> DockerfileError {
        let pos = self.idx.pos(self.text, offset);
        DockerfileError::at(
            self.file,
            pos,
            self.idx.line(self.text, pos.line - 1),
            message,
        )
    }

    fn pos(&self, offset: usize) -> Pos {
        self.idx.pos(self.text, offset)
    }

    fn locate<T>(&self, chunk: &Chunk, value: T) -> Located<T> {
        Located {
            pos: self.pos(chunk.start),
            end_line: chunk.last_line + 1,
            text: chunk.text.clone(),
            value,
        }
    }

    /// Parses one chunk with parse-dockerfile and types it.
    fn instruction(&self, chunk: &Chunk) -> Result<Typed, DockerfileError> {
        let kw = keyword(&chunk.text);
        if kw == "ONBUILD" && chunk.text[kw.len()..].trim().is_empty() {
            return Err(self.err(chunk.start, "ONBUILD needs an instruction (ONBUILD RUN …)"));
        }
        let prefix = if self.escape == '`' {
            "# escape=`\nFROM scratch\n"
        } else {
            "FROM scratch\n"
        };
        let sub = Sub {
            text: format!(
                "{prefix}{}",
                self.text.get(chunk.start..chunk.end).unwrap_or("")
            ),
            prefix_len: prefix.len(),
            base: chunk.start,
        };
        let mut iter = pd::parse_iter(&sub.text).map_err(|e| self.pd_error(&sub, chunk, &e))?;
        // The prefix's `FROM scratch`.
        let _ = iter.next();
        let ins = match iter.next() {
            Some(Ok(ins)) => ins,
            Some(Err(e)) => return Err(self.pd_error(&sub, chunk, &e)),
            None => return Err(self.err(chunk.start, format!("unknown instruction: {kw}"))),
        };
        self.typed(&ins, chunk, &sub)
    }

    /// A parse-dockerfile error, placed in the file and worded for users.
    fn pd_error(&self, sub: &Sub, chunk: &Chunk, e: &pd::Error) -> DockerfileError {
        let offset = if e.line() == 0 {
            chunk.start
        } else {
            let line_start: usize = sub
                .text
                .split('\n')
                .take(e.line() - 1)
                .map(|l| l.len() + 1)
                .sum();
            sub.map(line_start + e.column().saturating_sub(1))
        };
        self.err(offset.min(chunk.end), pd_message(&format!("{e:#}")))
    }

    fn raw_flags(&self, flags: &[pd::Flag<'_>], sub: &Sub) -> Vec<RawFlag> {
        flags
            .iter()
            .map(|f| RawFlag {
                name: words::unquote_flag(&f.name.value),
                value: f.value.as_ref().map(|v| words::unquote_flag(&v.value)),
                offset: sub.map(f.span().start),
            })
            .collect()
    }

    /// The logical line from `offset` to its end, continuations joined and trimmed.
    fn tail(&self, chunk: &Chunk, offset: usize) -> String {
        let raw = self.text.get(offset..chunk.line_end).unwrap_or("");
        layout::join_lines(raw, self.escape).trim().to_string()
    }

    /// BuildKit refuses a JSON array of non-strings (`CMD ["a", 1]`) rather than run it as a
    /// shell command.
    fn json_strings_only(&self, chunk: &Chunk, args: &str) -> Result<(), DockerfileError> {
        if args.starts_with('[') {
            if let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(args) {
                if values.iter().any(|v| !v.is_string()) {
                    return Err(self.err(
                        chunk.start,
                        "when using JSON array syntax, arrays must be comprised of strings only",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The arguments after the keyword and the flags, joined.
    fn args_after(
        &self,
        chunk: &Chunk,
        keyword: &pd::Keyword,
        flags: &[pd::Flag<'_>],
        sub: &Sub,
    ) -> String {
        let after = flags.last().map_or(keyword.span.end, |f| f.span().end);
        self.tail(chunk, sub.map(after))
    }

    fn command(
        &self,
        cmd: &pd::Command<'_>,
        chunk: &Chunk,
        sub: &Sub,
    ) -> Result<CommandLine, DockerfileError> {
        let cmd = self.command_line(cmd, chunk, sub);
        if let CommandLine::Shell(text) = &cmd {
            self.json_strings_only(chunk, text)?;
        }
        Ok(cmd)
    }

    fn command_line(&self, cmd: &pd::Command<'_>, chunk: &Chunk, sub: &Sub) -> CommandLine {
        match cmd {
            pd::Command::Exec(words) => {
                CommandLine::Exec(words.value.iter().map(|w| w.value.to_string()).collect())
            }
            pd::Command::Shell(s) => CommandLine::Shell(self.tail(chunk, sub.map(s.span.start))),
            // A form newer than parse-dockerfile 0.1.9: none exists today.
            _ => CommandLine::Shell(String::new()),
        }
    }

    fn typed(
        &self,
        ins: &pd::Instruction<'_>,
        chunk: &Chunk,
        sub: &Sub,
    ) -> Result<Typed, DockerfileError> {
        let flag_err = |(offset, message): flags::FlagError| self.err(offset, message);
        self.no_flags(ins, chunk, sub)?;
        Ok(Typed::Other(match ins {
            pd::Instruction::From(f) => {
                let platform = flags::from(&self.raw_flags(&f.options, sub)).map_err(flag_err)?;
                let mut name_offset = sub.map(f.from.span.start);
                let name = match &f.as_ {
                    None => None,
                    Some((_, name)) => {
                        name_offset = sub.map(name.span.start);
                        let lower = name.value.to_ascii_lowercase();
                        if !valid_stage_name(&lower) {
                            return Err(self.err(
                                name_offset,
                                format!(
                                    "invalid stage name {:?}: a name starts with a letter and holds only letters, digits, '-', '_' and '.'",
                                    name.value
                                ),
                            ));
                        }
                        Some(lower)
                    }
                };
                let from = From {
                    image: f.image.value.to_string(),
                    platform,
                    name,
                };
                return Ok(Typed::From(from, name_offset));
            }
            pd::Instruction::Arg(a) => {
                let mut args = Vec::new();
                for word in words::parse_words(&a.arguments.value, self.escape) {
                    let (name, default) = match word.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(d.to_string())),
                        None => (word, None),
                    };
                    if name.is_empty() {
                        return Err(self.err(
                            sub.map(a.arguments.span.start),
                            "ARG needs NAME[=DEFAULT]: a name cannot be blank",
                        ));
                    }
                    args.push((name, default));
                }
                return Ok(Typed::Arg(Arg { args }));
            }
            pd::Instruction::Run(r) => {
                let f = flags::run(&self.raw_flags(&r.options, sub)).map_err(flag_err)?;
                let command = match &r.arguments {
                    pd::Command::Exec(_) => self.command(&r.arguments, chunk, sub)?,
                    // From after the flags: parse-dockerfile's span starts after a leading
                    // heredoc word, which belongs to the command line.
                    _ => {
                        let text = self.args_after(chunk, &r.run, &r.options, sub);
                        self.json_strings_only(chunk, &text)?;
                        CommandLine::Shell(text)
                    }
                };
                if command == CommandLine::Shell(String::new()) {
                    return Err(self.err(chunk.start, "RUN needs a command"));
                }
                Instruction::Run(Run {
                    command,
                    heredocs: chunk.heredocs.clone(),
                    mounts: f.mounts,
                    network: f.network,
                    security: f.security,
                })
            }
            pd::Instruction::Cmd(c) => Instruction::Cmd(self.command(&c.arguments, chunk, sub)?),
            pd::Instruction::Entrypoint(e) => {
                Instruction::Entrypoint(self.command(&e.arguments, chunk, sub)?)
            }
            pd::Instruction::Label(l) => {
                Instruction::Label(self.name_vals("LABEL", &l.arguments, false, sub)?)
            }
            pd::Instruction::Env(e) => {
                Instruction::Env(self.name_vals("ENV", &e.arguments, true, sub)?)
            }
            pd::Instruction::Maintainer(m) => Instruction::Maintainer(m.name.value.to_string()),
            pd::Instruction::Expose(e) => {
                Instruction::Expose(e.arguments.iter().map(|w| w.value.to_string()).collect())
            }
            pd::Instruction::Volume(v) => Instruction::Volume(match &v.arguments {
                pd::JsonOrStringArray::String(_)
                    if self
                        .json_strings_only(chunk, &self.args_after(chunk, &v.volume, &[], sub))
                        .is_err() =>
                {
                    return Err(self.err(
                        chunk.start,
                        "when using JSON array syntax, arrays must be comprised of strings only",
                    ))
                }
                pd::JsonOrStringArray::Json(a) => {
                    a.value.iter().map(|w| w.value.to_string()).collect()
                }
                pd::JsonOrStringArray::String(a) => a.iter().map(|w| w.value.to_string()).collect(),
            }),
            pd::Instruction::User(u) => Instruction::User(u.arguments.value.to_string()),
            pd::Instruction::Workdir(w) => Instruction::Workdir(w.arguments.value.to_string()),
            pd::Instruction::Stopsignal(s) => {
                Instruction::StopSignal(s.arguments.value.to_string())
            }
            pd::Instruction::Shell(s) => {
                Instruction::Shell(s.arguments.iter().map(|w| w.value.to_string()).collect())
            }
            pd::Instruction::Healthcheck(h) => {
                let raw = self.raw_flags(&h.options, sub);
                match &h.arguments {
                    pd::HealthcheckArguments::Cmd { arguments, .. } => {
                        let f = flags::healthcheck(&raw).map_err(flag_err)?;
                        let command = self.command(arguments, chunk, sub)?;
                        if command == CommandLine::Shell(String::new()) {
                            return Err(self.err(chunk.start, "HEALTHCHECK CMD needs a command"));
                        }
                        Instruction::Healthcheck(Healthcheck::Check {
                            command,
                            interval: f.interval,
                            timeout: f.timeout,
                            start_period: f.start_period,
                            start_interval: f.start_interval,
                            retries: f.retries,
                        })
                    }
                    _ => {
                        if let Some(f) = raw.first() {
                            return Err(self.err(
                                f.offset,
                                format!("HEALTHCHECK NONE takes no flags (got --{})", f.name),
                            ));
                        }
                        Instruction::Healthcheck(Healthcheck::None)
                    }
                }
            }
            pd::Instruction::Copy(c) => {
                let f = flags::copy(&self.raw_flags(&c.options, sub)).map_err(flag_err)?;
                self.json_strings_only(chunk, &self.args_after(chunk, &c.copy, &c.options, sub))?;
                Instruction::Copy(Copy {
                    sources: sources(&c.src, chunk),
                    dest: c.dest.value.to_string(),
                    from: f.from,
                    chown: f.chown,
                    chmod: f.chmod,
                    link: f.link,
                    excludes: f.excludes,
                    parents: f.parents,
                })
            }
            pd::Instruction::Add(a) => {
                let f = flags::add(&self.raw_flags(&a.options, sub)).map_err(flag_err)?;
                self.json_strings_only(chunk, &self.args_after(chunk, &a.add, &a.options, sub))?;
                Instruction::Add(Add {
                    sources: sources(&a.src, chunk),
                    dest: a.dest.value.to_string(),
                    chown: f.chown,
                    chmod: f.chmod,
                    checksum: f.checksum,
                    keep_git_dir: f.keep_git_dir,
                    link: f.link,
                    excludes: f.excludes,
                })
            }
            pd::Instruction::Onbuild(o) => {
                let inner_kw = match &*o.instruction {
                    pd::Instruction::From(_) => Some("FROM"),
                    pd::Instruction::Maintainer(_) => Some("MAINTAINER"),
                    pd::Instruction::Onbuild(_) => Some("ONBUILD"),
                    _ => None,
                };
                if let Some(kw) = inner_kw {
                    return Err(self.err(
                        chunk.start,
                        format!("ONBUILD {kw} is not allowed as a trigger"),
                    ));
                }
                // Check the trigger now, as Docker does; it runs in the builds FROM this image.
                self.typed(&o.instruction, chunk, sub)?;
                let trigger = chunk.text[keyword(&chunk.text).len()..]
                    .trim_start()
                    .to_string();
                Instruction::Onbuild(trigger)
            }
            _ => {
                return Err(self.err(
                    chunk.start,
                    format!("unsupported instruction: {}", keyword(&chunk.text)),
                ))
            }
        }))
    }

    /// BuildKit reads leading `--words` as flags for every instruction, so `CMD --serve` is an
    /// unknown flag of `CMD`, not a command; only `FROM`, `RUN`, `COPY`, `ADD` and `HEALTHCHECK`
    /// have flags (checked where they are typed).
    fn no_flags(
        &self,
        ins: &pd::Instruction<'_>,
        chunk: &Chunk,
        sub: &Sub,
    ) -> Result<(), DockerfileError> {
        let (keyword, name) = match ins {
            pd::Instruction::Arg(i) => (&i.arg, "ARG"),
            pd::Instruction::Cmd(i) => (&i.cmd, "CMD"),
            pd::Instruction::Entrypoint(i) => (&i.entrypoint, "ENTRYPOINT"),
            pd::Instruction::Env(i) => (&i.env, "ENV"),
            pd::Instruction::Expose(i) => (&i.expose, "EXPOSE"),
            pd::Instruction::Label(i) => (&i.label, "LABEL"),
            pd::Instruction::Maintainer(i) => (&i.maintainer, "MAINTAINER"),
            pd::Instruction::Onbuild(i) => (&i.onbuild, "ONBUILD"),
            pd::Instruction::Shell(i) => (&i.shell, "SHELL"),
            pd::Instruction::Stopsignal(i) => (&i.stopsignal, "STOPSIGNAL"),
            pd::Instruction::User(i) => (&i.user, "USER"),
            pd::Instruction::Volume(i) => (&i.volume, "VOLUME"),
            pd::Instruction::Workdir(i) => (&i.workdir, "WORKDIR"),
            _ => return Ok(()),
        };
        let start = sub.map(keyword.span.end);
        let raw = self.text.get(start..chunk.line_end).unwrap_or("");
        let word_at = start + (raw.len() - raw.trim_start().len());
        let args = self.tail(chunk, start);
        let word = args.split_whitespace().next().unwrap_or("");
        match word.strip_prefix("--") {
            Some(flag) if !flag.is_empty() => {
                let flag = flag.split('=').next().unwrap_or(flag);
                Err(self.err(
                    word_at,
                    format!("unknown flag: --{flag} ({name} accepts no flags)"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// `ENV`/`LABEL` pairs, with errors that say what was expected.
    fn name_vals(
        &self,
        kw: &str,
        args: &pd::UnescapedString<'_>,
        legacy: bool,
        sub: &Sub,
    ) -> Result<Vec<(String, String)>, DockerfileError> {
        words::name_vals(&args.value, self.escape, legacy).map_err(|e| {
            let detail = match e {
                NameValError::Empty => String::new(),
                NameValError::LegacyNoValue => format!(" (or the legacy {kw} KEY VALUE)"),
                NameValError::NoEquals(w) => format!(": {w:?} has no '='"),
                NameValError::BlankName => ": a key cannot be blank".to_string(),
            };
            self.err(
                sub.map(args.span.start),
                format!("{kw} needs KEY=VALUE{detail}"),
            )
        })
    }
}

/// `COPY`/`ADD` sources: heredoc words take the chunk's heredoc bodies in order.
fn sources(src: &[pd::Source<'_>], chunk: &Chunk) -> Vec<SourceSpec> {
    let mut heredocs = chunk.heredocs.iter();
    src.iter()
        .map(|s| match s {
            pd::Source::Path(p) if words::heredoc_word(&p.value).is_none() => {
                SourceSpec::Path(p.value.to_string())
            }
            pd::Source::Path(p) => heredocs.next().map_or_else(
                || SourceSpec::Path(p.value.to_string()),
                |h| SourceSpec::Heredoc(h.clone()),
            ),
            _ => match heredocs.next() {
                Some(h) => SourceSpec::Heredoc(h.clone()),
                // parse-dockerfile saw a heredoc the layout did not: keep its word as a path.
                None => SourceSpec::Path(String::new()),
            },
        })
        .collect()
}

/// `^[a-z][a-z0-9-_.]*$`.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// parse-dockerfile's message, reworded as this crate words errors.
fn pd_message(msg: &str) -> String {
    if let Some(w) = msg
        .strip_prefix("unknown instruction '")
        .and_then(|r| r.strip_suffix('\''))
    {
        return format!("unknown instruction: {w}");
    }
    for suffix in [
        " instruction requires at least one argument",
        " instruction requires at least two arguments",
        " instruction requires exactly one argument",
    ] {
        if let Some(w) = msg.strip_suffix(suffix) {
            let kw = w.to_ascii_uppercase();
            let usage = match kw.as_str() {
                "ENV" | "LABEL" => "KEY=VALUE",
                "ARG" => "NAME[=DEFAULT]",
                "COPY" | "ADD" => "SRC... DEST",
                "FROM" => "an image (FROM IMAGE [AS NAME])",
                "EXPOSE" => "a port (EXPOSE PORT[/PROTO])",
                "VOLUME" | "WORKDIR" => "a path",
                "RUN" | "CMD" | "ENTRYPOINT" | "HEALTHCHECK CMD" => "a command",
                "SHELL" => "an executable (SHELL [\"/bin/sh\", \"-c\"])",
                "USER" => "a user (USER NAME[:GROUP])",
                "STOPSIGNAL" => "a signal",
                "MAINTAINER" => "a name",
                _ => "an argument",
            };
            return format!("{kw} needs {usage}");
        }
    }
    match msg {
        "expected JSON array" | "invalid JSON" => {
            "SHELL needs the JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]".to_string()
        }
        "expected AS" | "expected newline or eof" => "FROM needs IMAGE [AS NAME]".to_string(),
        "expected CMD or NONE" => "HEALTHCHECK needs CMD COMMAND or NONE".to_string(),
        "expected instruction after ONBUILD" => {
            "ONBUILD needs an instruction (ONBUILD RUN …)".to_string()
        }
        "ONBUILD ONBUILD is not allowed" => {
            "ONBUILD ONBUILD is not allowed as a trigger".to_string()
        }
        _ => msg.to_string(),
    }
}
