//! One stage, instruction by instruction: the filesystem state, the image config and the step
//! names, for every instruction but `RUN` ([`super::run`]) and `COPY`/`ADD` ([`super::copy`]).

use serde_json::{json, Value};

use oxkit_llb::op::Platform;
use oxkit_llb::{FileActions, MkdirOptions, Owner, State};

use super::config::{go_duration, go_list, go_quoted_list, Image};
use super::stages::{Base, Plan};
use super::{At, Built, Converter};
use crate::instruction::{CommandLine, Healthcheck, Instruction, Located};
use crate::DockerfileError;

/// A stage being converted.
pub(super) struct StageBuilder<'c, 'a> {
    pub cx: &'c mut Converter<'a>,
    /// The stage's index.
    pub index: usize,
    pub state: State,
    pub image: Image,
    /// Declared `ARG`s and their values (inherited from a base stage, then this stage's).
    pub build_args: Vec<(String, Option<String>)>,
    pub platform: Platform,
    /// The stage name in step names (empty: none).
    display_name: String,
    step: usize,
    total: usize,
    /// `CMD` was set in this stage (then `ENTRYPOINT` keeps it).
    cmd_set: bool,
    pub ignore_cache: bool,
    /// Dispatching the base's `ONBUILD` triggers (their step names say so).
    in_trigger: bool,
}

impl Converter<'_> {
    /// Converts stage `i` (whose dependencies are converted).
    pub(super) fn build_stage(&mut self, plan: &Plan, i: usize) -> Result<Built, DockerfileError> {
        let (mut base, pinned) = self.stage_base(plan, i)?;
        let stage = &self.df.stages[i];
        let triggers = if plan.stages[i].replaced {
            Vec::new()
        } else {
            self.triggers(plan, i, &mut base.image)?
        };
        let counted = stage
            .instructions
            .iter()
            .filter(|ins| {
                matches!(
                    ins.value,
                    Instruction::Run(_)
                        | Instruction::Copy(_)
                        | Instruction::Add(_)
                        | Instruction::Workdir(_)
                )
            })
            .count();
        let from_image = matches!(plan.stages[i].base, Base::Image(_) | Base::Context(_));
        let ignore_cache = self.ignores_cache(i);
        let mut b = StageBuilder {
            index: i,
            state: base.state,
            image: base.image,
            build_args: base.build_args,
            platform: base.platform,
            display_name: plan.stages[i].display_name.clone(),
            step: 0,
            total: counted + usize::from(from_image) + triggers.len(),
            cmd_set: false,
            ignore_cache,
            in_trigger: false,
            cx: self,
        };
        // As BuildKit: an image with no layers, or a named context, is counted in the stage's
        // steps but not named.
        if let Some(pinned) = pinned.filter(|_| !b.state.is_scratch()) {
            let name = b.step_name(&format!("FROM {pinned}"));
            b.state = b.state.custom_name(name);
        }
        if plan.stages[i].replaced {
            return Ok(b.finish());
        }
        if !matches!(plan.stages[i].base, Base::Stage(_)) {
            b.apply_base_config();
        }
        b.in_trigger = true;
        for ins in &triggers {
            b.dispatch(ins)?;
        }
        b.in_trigger = false;
        for ins in &stage.instructions {
            b.dispatch(ins)?;
        }
        Ok(b.finish())
    }

    /// The `ONBUILD` triggers stage `i` runs first (BuildKit does): those of its base stage, or
    /// its base image's (then cleared from the config), parsed, located at the stage's `FROM`.
    fn triggers(
        &self,
        plan: &Plan,
        i: usize,
        image: &mut Image,
    ) -> Result<Vec<Located<Instruction>>, DockerfileError> {
        let from = &self.df.stages[i].from;
        let texts: Vec<String> = match plan.stages[i].base {
            Base::Stage(j) => self.df.stages[j]
                .instructions
                .iter()
                .filter_map(|ins| match &ins.value {
                    Instruction::Onbuild(t) => Some(t.clone()),
                    _ => None,
                })
                .collect(),
            _ => image.on_build(),
        };
        image.unset("OnBuild");
        let mut out = Vec::new();
        for text in texts {
            let fail = |m: String| {
                self.error(
                    At::of(from),
                    format!("ONBUILD trigger {text:?} of the base image: {m}"),
                )
            };
            // A one-instruction Dockerfile with the directives of this one.
            let escape = if self.df.directives.escape == '\\' {
                String::new()
            } else {
                format!("# escape={}\n", self.df.directives.escape)
            };
            let parsed = crate::parse(
                &format!("{escape}FROM scratch\n{text}\n"),
                &self.opts.filename,
            )
            .map_err(|e| fail(e.message))?;
            let mut instructions = parsed
                .stages
                .into_iter()
                .next()
                .map(|s| s.instructions)
                .unwrap_or_default();
            if instructions.len() != 1 {
                return Err(fail("a trigger must be a single instruction".into()));
            }
            let mut ins = instructions.remove(0);
            for source in super::stages::sources_of(&ins.value) {
                if let Ok(super::stages::Source::Stage(j)) = self.source(i, source, At::of(from)) {
                    if self.built.get(j).is_none_or(Option::is_none) {
                        return Err(fail(format!(
                            "--from={source}: a trigger can only read stages the build already needs"
                        )));
                    }
                }
            }
            ins.pos = from.pos;
            ins.end_line = from.end_line;
            out.push(ins);
        }
        Ok(out)
    }
}

impl StageBuilder<'_, '_> {
    fn finish(self) -> Built {
        Built {
            state: self.state,
            image: self.image,
            build_args: self.build_args,
            platform: self.platform,
        }
    }

    /// The base image's `Env` (with `PATH` added when missing), `WorkingDir` and `User` become
    /// the state's defaults.
    fn apply_base_config(&mut self) {
        if !self
            .image
            .env()
            .iter()
            .any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == "PATH")
        {
            self.image.set_env("PATH", super::config::DEFAULT_PATH);
        }
        for entry in self.image.env() {
            let (k, v) = entry.split_once('=').unwrap_or((&entry, ""));
            self.state = self.state.clone().env(k, v);
        }
        let wd = self.image.working_dir();
        if !wd.is_empty() {
            self.state = self.state.clone().dir(&wd);
        }
        let user = self.image.user();
        if !user.is_empty() {
            self.state = self.state.clone().user(user);
        }
    }

    /// The next step's name: `[stage 2/5] RUN echo hi`.
    pub(super) fn step_name(&mut self, text: &str) -> String {
        if self.total == 0 {
            return text.to_string();
        }
        self.step += 1;
        let width = self.total.to_string().len();
        let prefix = if self.display_name.is_empty() {
            String::new()
        } else {
            format!("{} ", self.display_name)
        };
        let onbuild = if self.in_trigger { "ONBUILD " } else { "" };
        format!(
            "[{prefix}{:>width$}/{}] {onbuild}{text}",
            self.step, self.total
        )
    }

    /// An instruction's text for its step name: the keyword upper-cased, variables expanded
    /// (left as written when they cannot be).
    pub(super) fn display_text(&self, text: &str, expand: bool) -> String {
        let text = if expand {
            self.expand_quiet(text).unwrap_or_else(|| text.to_string())
        } else {
            text.to_string()
        };
        match text.split_once(' ') {
            Some((kw, rest)) => format!("{} {rest}", kw.to_ascii_uppercase()),
            None => text.to_ascii_uppercase(),
        }
    }

    fn expand_quiet(&self, word: &str) -> Option<String> {
        let state = &self.state;
        let vars = |k: &str| state.get_env(k).map(String::from);
        self.cx.lexer.expand(word, &vars).ok()
    }

    /// Expands `word` with the stage's variables (its env and declared args).
    pub(super) fn expand(&self, word: &str, at: At) -> Result<String, DockerfileError> {
        let state = &self.state;
        let vars = |k: &str| state.get_env(k).map(String::from);
        self.cx
            .lexer
            .expand(word, &vars)
            .map_err(|e| self.cx.error(at, e.message))
    }

    /// Expands `text` into words with the stage's variables.
    fn expand_words(&self, text: &str, at: At) -> Result<Vec<String>, DockerfileError> {
        let state = &self.state;
        let vars = |k: &str| state.get_env(k).map(String::from);
        self.cx
            .lexer
            .expand_words(text, &vars)
            .map_err(|e| self.cx.error(at, e.message))
    }

    /// A command line as the image config and `RUN` take it: exec form as is, shell form
    /// through the stage's `SHELL`.
    pub(super) fn with_shell(&self, command: &CommandLine) -> Vec<String> {
        match command {
            CommandLine::Exec(args) => args.clone(),
            CommandLine::Shell(text) => {
                let mut args = self.image.shell();
                args.push(text.clone());
                args
            }
        }
    }

    fn dispatch(&mut self, ins: &Located<Instruction>) -> Result<(), DockerfileError> {
        let at = At::of(ins);
        match &ins.value {
            Instruction::Run(run) => self.run(run, at),
            Instruction::Copy(copy) => self.copy(copy, at),
            Instruction::Add(add) => self.add(add, at),
            Instruction::Arg(arg) => self.arg(arg, at),
            Instruction::Env(pairs) => {
                // Every word is expanded with the env before the instruction.
                let pairs = self.expand_pairs(pairs, at)?;
                let mut commit = String::from("ENV");
                for (k, v) in pairs {
                    commit.push_str(&format!(" {k}={v}"));
                    self.state = self.state.clone().env(k.clone(), v.clone());
                    self.image.set_env(&k, &v);
                }
                self.image.history(&commit, true);
                Ok(())
            }
            Instruction::Label(pairs) => {
                let pairs = self.expand_pairs(pairs, at)?;
                let mut commit = String::from("LABEL");
                for (k, v) in pairs {
                    commit.push_str(&format!(" {k}={v}"));
                    self.image.insert("Labels", &k, v.into());
                }
                self.image.history(&commit, true);
                Ok(())
            }
            Instruction::Workdir(path) => {
                let path = self.expand(path, at)?;
                self.workdir(&path, &ins.text, at)
            }
            Instruction::User(user) => {
                let user = self.expand(user, at)?;
                self.state = self.state.clone().user(user.clone());
                self.image.set("User", user.clone());
                self.image.history(&format!("USER {user}"), true);
                Ok(())
            }
            Instruction::Expose(words) => {
                let mut ports = Vec::new();
                for w in words {
                    for p in self.expand_words(w, at)? {
                        ports.extend(parse_port(&p).map_err(|m| self.cx.error(at, m))?);
                    }
                }
                for p in &ports {
                    self.image.insert("ExposedPorts", p, json!({}));
                }
                self.image
                    .history(&format!("EXPOSE {}", go_list(&ports)), true);
                Ok(())
            }
            Instruction::Volume(words) => {
                let mut volumes = Vec::new();
                for w in words {
                    let v = self.expand(w, at)?;
                    if v.is_empty() {
                        return Err(self
                            .cx
                            .error(at, "VOLUME specified can not be an empty string"));
                    }
                    volumes.push(v);
                }
                for v in &volumes {
                    self.image.insert("Volumes", v, json!({}));
                }
                self.image
                    .history(&format!("VOLUME {}", go_list(&volumes)), true);
                Ok(())
            }
            Instruction::StopSignal(sig) => {
                let sig = self.expand(sig, at)?;
                let valid = !sig.is_empty()
                    && (sig.bytes().all(|b| b.is_ascii_digit())
                        || sig
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-'));
                if !valid {
                    return Err(self.cx.error(at, format!("invalid signal: {sig}")));
                }
                self.image.set("StopSignal", sig.clone());
                self.image.history(&format!("STOPSIGNAL {sig}"), true);
                Ok(())
            }
            Instruction::Cmd(command) => {
                let args = self.with_shell(command);
                self.image.set("Cmd", args.clone());
                self.image.set("ArgsEscaped", true);
                self.cmd_set = true;
                self.image
                    .history(&format!("CMD {}", go_quoted_list(&args)), true);
                Ok(())
            }
            Instruction::Entrypoint(command) => {
                let args = self.with_shell(command);
                self.image.set("Entrypoint", args.clone());
                // Docker's rule: a new entrypoint drops the inherited CMD.
                if !self.cmd_set {
                    self.image.unset("Cmd");
                }
                self.image
                    .history(&format!("ENTRYPOINT {}", go_quoted_list(&args)), true);
                Ok(())
            }
            Instruction::Shell(shell) => {
                self.image.set("Shell", shell.clone());
                self.image
                    .history(&format!("SHELL {}", go_list(shell)), true);
                Ok(())
            }
            Instruction::Healthcheck(check) => {
                let (config, commit) = healthcheck(check);
                self.image.set("Healthcheck", config);
                self.image.history(&format!("HEALTHCHECK {commit}"), true);
                Ok(())
            }
            Instruction::Onbuild(trigger) => {
                self.image.push("OnBuild", trigger);
                Ok(())
            }
            Instruction::Maintainer(name) => {
                self.image.set_author(name);
                self.image.history(&format!("MAINTAINER {name}"), true);
                Ok(())
            }
        }
    }

    fn expand_pairs(
        &self,
        pairs: &[(String, String)],
        at: At,
    ) -> Result<Vec<(String, String)>, DockerfileError> {
        pairs
            .iter()
            .map(|(k, v)| Ok((self.expand(k, at)?, self.expand(v, at)?)))
            .collect()
    }

    /// `WORKDIR`: relative to the previous one; created (`mkdir -p`, owned by the stage's user)
    /// unless it is `/`.
    fn workdir(&mut self, path: &str, text: &str, at: At) -> Result<(), DockerfileError> {
        let current = self.image.working_dir();
        let base = if current.is_empty() { "/" } else { &current };
        let wd = normalize_path(base, path);
        let wd = if wd.len() > 1 {
            wd.trim_end_matches('/').to_string()
        } else {
            wd
        };
        self.image.set("WorkingDir", wd.clone());
        self.state = self.state.clone().dir(&wd);
        let layer = wd != "/";
        if layer {
            let user = self.image.user();
            let owner = if user.is_empty() {
                None
            } else {
                Some(
                    parse_owner(&user)
                        .map_err(|m| self.cx.error(at, format!("USER {user}: {m}")))?,
                )
            };
            let name = self.step_name(&self.display_text(text, true));
            let mut state = self
                .state
                .file(FileActions::new().mkdir_with(
                    &wd,
                    0o755,
                    MkdirOptions {
                        make_parents: true,
                        owner,
                        timestamp: None,
                    },
                ))
                .custom_name(name);
            if self.ignore_cache {
                state = state.ignore_cache();
            }
            self.state = state;
        }
        self.image.history(&format!("WORKDIR {wd}"), !layer);
        Ok(())
    }
}

/// `p` made absolute against `base`, cleaned lexically; a trailing `/` (or `.`) is kept as `/`.
pub(super) fn normalize_path(base: &str, p: &str) -> String {
    let mut out = oxkit_llb::join_path(base, p);
    let dir_like = p.ends_with("/.") || p == "." || p.is_empty();
    if dir_like && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// `user[:group]` as names or ids (`1000` alone is uid and gid 1000).
pub(super) fn parse_owner(s: &str) -> Result<Owner, String> {
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(format!("invalid user {s:?}: expected user[:group]"));
    }
    let id = |x: &str| x.parse::<u32>().ok();
    match (id(user), group.map(id)) {
        (Some(u), None) => Ok(Owner::Ids(u, u)),
        (Some(u), Some(Some(g))) => Ok(Owner::Ids(u, g)),
        (None, None) => Ok(Owner::Names(user.into(), None)),
        (None, Some(None)) => Ok(Owner::Names(user.into(), group.map(String::from))),
        _ => Err(format!(
            "{s:?} mixes a name and an id: give both as names or both as ids"
        )),
    }
}

/// One `EXPOSE` word (`80`, `80/udp`, `8000-8002/tcp`, `127.0.0.1:80:80`) as `port/proto`
/// entries.
fn parse_port(spec: &str) -> Result<Vec<String>, String> {
    let (port, proto) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    // `[ip:]hostPort:containerPort`: the container port is exposed.
    let port = port.rsplit(':').next().unwrap_or(port);
    let num = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {p}"))
    };
    let (lo, hi) = match port.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(port)?, num(port)?),
    };
    if hi < lo {
        return Err(format!("invalid port range: {port}"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// The `Healthcheck` config object of `HEALTHCHECK`, and its history text.
fn healthcheck(check: &Healthcheck) -> (Value, String) {
    match check {
        Healthcheck::None => (
            json!({"Test": ["NONE"]}),
            "{Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}"
                .to_string(),
        ),
        Healthcheck::Check {
            command,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test: Vec<String> = match command {
                CommandLine::Shell(text) => vec!["CMD-SHELL".into(), text.clone()],
                CommandLine::Exec(args) => std::iter::once("CMD".to_string())
                    .chain(args.iter().cloned())
                    .collect(),
            };
            let mut config = json!({ "Test": test });
            for (field, value) in [
                ("Interval", interval),
                ("Timeout", timeout),
                ("StartPeriod", start_period),
                ("StartInterval", start_interval),
            ] {
                if let Some(ns) = value.filter(|ns| *ns > 0) {
                    config[field] = ns.into();
                }
            }
            if let Some(r) = retries.filter(|r| *r > 0) {
                config["Retries"] = r.into();
            }
            let d = |v: &Option<u64>| go_duration(v.unwrap_or(0));
            let commit = format!(
                "{{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
                go_list(&test),
                d(interval),
                d(timeout),
                d(start_period),
                d(start_interval),
                retries.unwrap_or(0)
            );
            (config, commit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_against_the_working_directory() {
        for (base, p, want) in [
            ("/", "app", "/app"),
            ("/app", "src", "/app/src"),
            ("/app", "/abs/", "/abs/"),
            ("/app", ".", "/app/"),
            ("/app", "", "/app/"),
            ("/app", "../x", "/x"),
            ("/app", "out/", "/app/out/"),
        ] {
            assert_eq!(normalize_path(base, p), want, "{base} + {p}");
        }
    }

    #[test]
    fn owners_parse_as_names_or_ids() {
        assert_eq!(parse_owner("1000").unwrap(), Owner::Ids(1000, 1000));
        assert_eq!(parse_owner("1:2").unwrap(), Owner::Ids(1, 2));
        assert_eq!(
            parse_owner("app:staff").unwrap(),
            Owner::Names("app".into(), Some("staff".into()))
        );
        assert_eq!(
            parse_owner("app").unwrap(),
            Owner::Names("app".into(), None)
        );
        assert!(parse_owner("app:1").is_err());
        assert!(parse_owner(":1").is_err());
    }

    #[test]
    fn exposed_ports_normalize() {
        assert_eq!(parse_port("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_port("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(parse_port("8000-8001").unwrap(), ["8000/tcp", "8001/tcp"]);
        assert_eq!(parse_port("127.0.0.1:8080:80/tcp").unwrap(), ["80/tcp"]);
        assert!(parse_port("http").is_err());
    }
}
