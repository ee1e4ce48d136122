//! The typed form of a Dockerfile: stages, each a `FROM` and its instructions, every instruction
//! with its flags and arguments checked and typed, and where it stands in the file.
//!
//! Values that Docker expands with the build's variables (`$VAR`, `${VAR:-x}`, …) are kept
//! **unexpanded**, exactly as written, quotes and escapes included: `ENV a="b c" d='$x'` gives
//! `[("a", "\"b c\""), ("d", "'$x'")]`. The parser only splits words where the instruction's
//! syntax says so (respecting quotes, as BuildKit's parser does); the conversion expands each
//! word with the variables in scope at that point of the build ([`crate::shell`]), which is
//! also what removes quotes and escapes (BuildKit's `ProcessWord`). Fields that Docker never
//! expands (the text of a shell-form command, heredoc bodies) hold the final value.

use std::collections::BTreeMap;

/// Where something is in the Dockerfile: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// An instruction with where it is and how it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// Where the instruction starts (its keyword).
    pub pos: Pos,
    /// The instruction's last line (after line continuations and heredocs).
    pub end_line: usize,
    /// The instruction as written, continuations joined into one line and heredoc bodies
    /// left out (what BuildKit prints as the step's name, e.g. `RUN echo hi`).
    pub text: String,
    /// The typed instruction.
    pub value: T,
}

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The parser directives at the top of the file.
    pub directives: Directives,
    /// `ARG`s before the first `FROM` (usable in `FROM` lines only, unless redeclared).
    pub meta_args: Vec<Located<Arg>>,
    /// The stages, in file order.
    pub stages: Vec<Stage>,
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=`: accepted and ignored by the built-in frontend.
    pub syntax: Option<String>,
    /// `# escape=`: `\` unless set to `` ` ``.
    pub escape: char,
    /// `# check=`: accepted and ignored.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// One stage: a `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The stage's `FROM`.
    pub from: Located<From>,
    /// The stage's instructions after `FROM`.
    pub instructions: Vec<Located<Instruction>>,
}

/// `FROM [--platform=P] IMAGE [AS NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The image (unexpanded; expanded with the meta args): a reference, `scratch`, or an
    /// earlier stage's name.
    pub image: String,
    /// `--platform` (unexpanded; expanded with the meta args and the platform args).
    pub platform: Option<String>,
    /// `AS NAME`, lower-cased as Docker does.
    pub name: Option<String>,
}

/// A command in exec form (a JSON array) or shell form (one string, run by the stage's shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// `["a", "b"]`: the words as given.
    Exec(Vec<String>),
    /// `a b`: the text, line continuations removed.
    Shell(String),
}

/// A here-document (`<<EOF`, `<<-EOF`, `<<"EOF"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word (`EOF`), without quotes.
    pub name: String,
    /// The body, each line ending with a newline; leading tabs already removed for `<<-`.
    pub content: String,
    /// The delimiter was not quoted: variables in the body are expanded (by the shell for
    /// `RUN`, by the frontend for `COPY`).
    pub expand: bool,
    /// `<<-`: leading tabs were removed.
    pub chomp: bool,
}

/// Every instruction that may follow `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`.
    Entrypoint(CommandLine),
    /// `LABEL k=v …` (keys and values as written).
    Label(Vec<(String, String)>),
    /// `MAINTAINER name`.
    Maintainer(String),
    /// `EXPOSE 80 443/udp …` (unexpanded words).
    Expose(Vec<String>),
    /// `ENV k=v …` or the legacy `ENV k v` (keys and values as written; for the legacy form the
    /// value is the rest of the line).
    Env(Vec<(String, String)>),
    /// `ADD`.
    Add(Add),
    /// `COPY`.
    Copy(Copy),
    /// `VOLUME ["/a"]` or `VOLUME /a /b` (unexpanded).
    Volume(Vec<String>),
    /// `USER name[:group]` (unexpanded).
    User(String),
    /// `WORKDIR path` (unexpanded).
    Workdir(String),
    /// `ARG name[=default] …` (BuildKit allows several per line).
    Arg(Arg),
    /// `ONBUILD INSTRUCTION …`: the trigger as written after `ONBUILD` (stored in the image
    /// config; run by builds that start `FROM` this image).
    Onbuild(String),
    /// `STOPSIGNAL SIG` (unexpanded).
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `SHELL ["sh", "-c"]` (JSON form only, as Docker requires).
    Shell(Vec<String>),
}

/// `ARG NAME[=DEFAULT] …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// Each declared name and its default (unexpanded), in order.
    pub args: Vec<(String, Option<String>)>,
}

/// `RUN [--mount=…]… [--network=…] [--security=…] COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: CommandLine,
    /// Heredocs that follow the command line (`RUN <<EOF` …), in order.
    pub heredocs: Vec<Heredoc>,
    /// `--mount` flags, in order.
    pub mounts: Vec<RunMount>,
    /// `--network`.
    pub network: Option<Network>,
    /// `--security=insecure|sandbox` (only `sandbox` is supported; the conversion refuses
    /// `insecure`).
    pub security: Option<String>,
}

/// `--network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// `default`: the daemon's default (host here).
    Default,
    /// `none`.
    None,
    /// `host`.
    Host,
}

/// `--mount=type=…,…` of `RUN` (string values unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    /// `type=bind` (the default type): a path of a stage, image or the context, read-only
    /// unless `rw`.
    Bind {
        /// `target`/`dst`/`destination`.
        target: String,
        /// `source`/`src`: path in `from` (default: its root).
        source: Option<String>,
        /// `from`: a stage name, image or named context (default: the build context).
        from: Option<String>,
        /// `rw`/`readwrite`.
        readwrite: bool,
    },
    /// `type=cache`: a persistent cache directory.
    Cache {
        /// `target`.
        target: String,
        /// `id` (default: the target).
        id: Option<String>,
        /// `sharing=shared|private|locked` (default shared).
        sharing: Sharing,
        /// `from`: the stage or image whose `source` path seeds an empty cache.
        from: Option<String>,
        /// `source`: path in `from`.
        source: Option<String>,
        /// `ro`/`readonly`.
        readonly: bool,
        /// `mode` (octal, default 0755).
        mode: Option<u32>,
        /// `uid` (default 0).
        uid: Option<u32>,
        /// `gid` (default 0).
        gid: Option<u32>,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// `target`.
        target: String,
        /// `size` in bytes (`size=64m` style values are converted).
        size: Option<u64>,
    },
    /// `type=secret`.
    Secret {
        /// `id` (default: the target's file name).
        id: Option<String>,
        /// `target` (default `/run/secrets/<id>`).
        target: Option<String>,
        /// `env`: expose the secret as this environment variable instead of (or besides) a file.
        env: Option<String>,
        /// `required` (default false: a missing secret is skipped).
        required: bool,
        /// `mode` (octal, default 0400).
        mode: Option<u32>,
        /// `uid`.
        uid: Option<u32>,
        /// `gid`.
        gid: Option<u32>,
    },
    /// `type=ssh` (parsed so the conversion can refuse it by name).
    Ssh {
        /// `id` (default `default`).
        id: Option<String>,
        /// `target`.
        target: Option<String>,
        /// `required`.
        required: bool,
    },
}

/// Cache mount sharing modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// Concurrent builds share one directory.
    #[default]
    Shared,
    /// Each concurrent build gets its own.
    Private,
    /// Builds take turns.
    Locked,
}

/// A `COPY`/`ADD` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A path (or for `ADD` a URL), unexpanded.
    Path(String),
    /// An inline file (`COPY <<EOF /dest`).
    Heredoc(Heredoc),
}

/// `COPY [flags] SRC… DEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Sources (at least one).
    pub sources: Vec<SourceSpec>,
    /// Destination (unexpanded).
    pub dest: String,
    /// `--from=stage|image|context` (unexpanded).
    pub from: Option<String>,
    /// `--chown=user[:group]` (unexpanded).
    pub chown: Option<String>,
    /// `--chmod=0755` or symbolic (unexpanded).
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--exclude=PATTERN` (repeatable, unexpanded).
    pub excludes: Vec<String>,
    /// `--parents`.
    pub parents: bool,
}

/// `ADD [flags] SRC… DEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    /// Sources (local paths, `http(s)://` URLs, git URLs), at least one.
    pub sources: Vec<SourceSpec>,
    /// Destination (unexpanded).
    pub dest: String,
    /// `--chown` (unexpanded).
    pub chown: Option<String>,
    /// `--chmod` (unexpanded).
    pub chmod: Option<String>,
    /// `--checksum=sha256:…` (unexpanded).
    pub checksum: Option<String>,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--link`.
    pub link: bool,
    /// `--exclude=PATTERN` (repeatable, unexpanded).
    pub excludes: Vec<String>,
}

/// `HEALTHCHECK [options] CMD …` or `HEALTHCHECK NONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `NONE`: disable the base image's healthcheck.
    None,
    /// `CMD`.
    Check {
        /// The command (shell form becomes `CMD-SHELL`, exec form `CMD`).
        command: CommandLine,
        /// `--interval` in nanoseconds.
        interval: Option<u64>,
        /// `--timeout` in nanoseconds.
        timeout: Option<u64>,
        /// `--start-period` in nanoseconds.
        start_period: Option<u64>,
        /// `--start-interval` in nanoseconds.
        start_interval: Option<u64>,
        /// `--retries`.
        retries: Option<u32>,
    },
}

impl Dockerfile {
    /// The stage named `name` (names are lower-case), or with index `name` (`0`, `1`, …).
    pub fn stage(&self, name: &str) -> Option<(usize, &Stage)> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .enumerate()
            .find(|(_, s)| s.from.value.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .and_then(|i| self.stages.get(i).map(|s| (i, s)))
            })
    }

    /// The default values the meta args declare (unexpanded), by name.
    pub fn meta_arg_defaults(&self) -> BTreeMap<String, Option<String>> {
        self.meta_args
            .iter()
            .flat_map(|a| a.value.args.iter().cloned())
            .collect()
    }
}
