//! `RUN`: the command (shell form through the stage's `SHELL`, heredocs as BuildKit runs them),
//! its mounts, network and security mode.

use oxkit_llb::op::{CacheSharing, NetMode};
use oxkit_llb::{mkfile, scratch, FileActions, MkdirOptions, MountSpec, Owner, State};

use super::dispatch::StageBuilder;
use super::At;
use crate::instruction::{CommandLine, Network, Run, RunMount, Sharing};
use crate::DockerfileError;

/// Where a heredoc script starting with `#!` is mounted to be run (as BuildKit).
const PIPES_DIR: &str = "/dev/pipes/";

/// The directory made in a cache mount's seed to carry its `uid`, `gid` and `mode` (as BuildKit).
const CACHE_SEED_DIR: &str = "/cache";

impl StageBuilder<'_, '_> {
    /// `RUN`.
    pub(super) fn run(&mut self, run: &Run, at: At) -> Result<(), DockerfileError> {
        match run.security.as_deref() {
            None | Some("sandbox") => {}
            Some(other) => {
                return Err(self.cx.error(
                    at,
                    format!("RUN --security={other} is not supported (only sandbox)"),
                ))
            }
        }
        let mut name = {
            let state = &self.state;
            let vars = |k: &str| state.get_env(k).map(String::from);
            let text = self.cx.lexer.expand_for_display(at.text, &vars);
            self.display_text(&text, false)
        };
        let mut mounts = Vec::new();
        let args = match (&run.command, run.heredocs.as_slice()) {
            (command, []) => self.with_shell(command),
            (CommandLine::Exec(_), _) => {
                return Err(self
                    .cx
                    .error(at, "heredocs can only follow a shell-form RUN command"))
            }
            (CommandLine::Shell(text), [first, ..]) if is_lone_heredoc(text, &first.name) => {
                name.push_str(&format!(" ({})", summarize(&first.content)));
                if first.content.starts_with("#!") {
                    // A script with an interpreter line: written to a file and run as it is.
                    let script = scratch()
                        .platform(self.platform.clone())
                        .file(mkfile(&first.name, 0o755, first.content.clone()))
                        .custom_name("preparing inline document");
                    mounts.push(MountSpec::bind(PIPES_DIR, &script).readonly());
                    vec![format!("{PIPES_DIR}{}", first.name)]
                } else {
                    // The body is the script, run by the shell.
                    let mut args = self.image.shell();
                    args.push(first.content.clone());
                    args
                }
            }
            (CommandLine::Shell(text), docs) => {
                // The shell reads the heredocs itself: the command line is rebuilt with them.
                let mut full = text.clone();
                for doc in docs {
                    full.push('\n');
                    full.push_str(&doc.content);
                    full.push_str(&doc.name);
                }
                let mut args = self.image.shell();
                args.push(full);
                args
            }
        };
        for mount in &run.mounts {
            mounts.extend(self.mount(mount, at)?);
        }

        let mut step = self.state.run(args.clone());
        for m in mounts {
            step = step.mount(m);
        }
        for m in &run.mounts {
            if let RunMount::Secret { env: Some(var), .. } = m {
                let id = self.secret_id(m, at)?;
                let required = matches!(m, RunMount::Secret { required: true, .. });
                step = step.secret_env(&id, &self.expand(var, at)?, !required);
            }
        }
        if let Some(network) = run.network {
            step = step.network(match network {
                Network::Default => NetMode::Sandbox,
                Network::None => NetMode::None,
                Network::Host => NetMode::Host,
            });
        }
        let step_name = self.step_name(&name);
        step = step.custom_name(&step_name);
        if self.ignore_cache {
            step = step.ignore_cache();
        }
        // `--network` is for this step only: later steps keep the stage's, which is always the
        // default (nothing else sets it).
        self.state = step.root().network(NetMode::Sandbox);
        let created_by = format!("RUN {}", self.run_command_string(&args));
        self.image
            .history(&format!("{created_by} # buildkit"), false);
        Ok(())
    }

    /// The history text of a `RUN` (BuildKit's `runCommandString`): `|N K=V … ` then argv.
    fn run_command_string(&self, args: &[String]) -> String {
        let mut env: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.build_args {
            let v = self
                .state
                .get_env(k)
                .map(String::from)
                .or_else(|| v.clone())
                .unwrap_or_default();
            match env.iter_mut().find(|(ek, _)| ek == k) {
                Some(e) => e.1 = v,
                None => env.push((k.clone(), v)),
            }
        }
        let mut parts: Vec<String> = Vec::new();
        if !env.is_empty() {
            parts.push(format!("|{}", env.len()));
            parts.extend(env.into_iter().map(|(k, v)| format!("{k}={v}")));
        }
        parts.extend(args.iter().cloned());
        parts.join(" ")
    }

    fn secret_id(&self, mount: &RunMount, at: At) -> Result<String, DockerfileError> {
        let RunMount::Secret { id, target, .. } = mount else {
            unreachable!("only called for secret mounts")
        };
        match (id, target) {
            (Some(id), _) => self.expand(id, at),
            (None, Some(target)) => {
                let target = self.expand(target, at)?;
                Ok(target
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string())
            }
            (None, None) => Err(self
                .cx
                .error(at, "RUN --mount=type=secret: one of id, target is required")),
        }
    }

    /// One `--mount`.
    /// `None` for a secret exposed only as an environment variable (added by the caller).
    fn mount(&mut self, mount: &RunMount, at: At) -> Result<Option<MountSpec>, DockerfileError> {
        let target_of = |b: &Self, t: &str| -> Result<String, DockerfileError> {
            let t = b.expand(t, at)?;
            let abs = super::dispatch::normalize_path(b.state.get_dir(), &t);
            if abs == "/" {
                return Err(b.cx.error(at, format!("invalid mount target {t:?}")));
            }
            Ok(abs.trim_end_matches('/').to_string())
        };
        Ok(Some(match mount {
            RunMount::Bind {
                target,
                source,
                from,
                readwrite,
            } => {
                let target = target_of(self, target)?;
                let source = match source {
                    Some(s) => self.expand(s, at)?,
                    None => String::new(),
                };
                let selector = super::dispatch::normalize_path("/", &source);
                let selector = if selector.len() > 1 {
                    selector.trim_end_matches('/').to_string()
                } else {
                    selector
                };
                let state = match from {
                    None => {
                        self.cx.context_paths.insert(selector.clone());
                        self.cx.context.clone()
                    }
                    Some(from) => {
                        let src = self.cx.source(self.index, from, at)?;
                        self.cx.source_state(&src, &self.platform.clone(), at)?
                    }
                };
                let mut spec = MountSpec::bind(&target, &state);
                if selector != "/" {
                    spec = spec.selector(&selector);
                }
                if !readwrite {
                    spec = spec.readonly();
                }
                spec
            }
            RunMount::Cache {
                target,
                id,
                sharing,
                from,
                source,
                readonly,
                mode,
                uid,
                gid,
            } => {
                let target = target_of(self, target)?;
                let id = match id {
                    Some(id) => self.expand(id, at)?,
                    None => target.clone(),
                };
                let mut spec = MountSpec::cache(&target, &id).sharing(match sharing {
                    Sharing::Shared => CacheSharing::Shared,
                    Sharing::Private => CacheSharing::Private,
                    Sharing::Locked => CacheSharing::Locked,
                });
                let (seed, selector) = self.cache_seed(from, source, (*uid, *gid, *mode), at)?;
                if let Some(seed) = seed {
                    spec = spec.seed(&seed);
                }
                if let Some(selector) = selector {
                    spec = spec.selector(&selector);
                }
                if *readonly {
                    spec = spec.readonly();
                }
                spec
            }
            RunMount::Tmpfs { target, size } => {
                let target = target_of(self, target)?;
                let mut spec = MountSpec::tmpfs(&target);
                if let Some(size) = size {
                    spec = spec.size(*size);
                }
                spec
            }
            RunMount::Secret {
                target,
                env,
                required,
                mode,
                uid,
                gid,
                ..
            } => {
                let id = self.secret_id(mount, at)?;
                if env.is_some() && target.is_none() {
                    return Ok(None);
                }
                let dest = match target {
                    Some(t) => target_of(self, t)?,
                    None => format!("/run/secrets/{id}"),
                };
                let mut spec = MountSpec::secret(&dest, &id);
                if mode.is_some() || uid.is_some() || gid.is_some() {
                    spec =
                        spec.owner_mode(uid.unwrap_or(0), gid.unwrap_or(0), mode.unwrap_or(0o400));
                }
                if !required {
                    spec = spec.optional();
                }
                spec
            }
            RunMount::Ssh { .. } => {
                return Err(self.cx.error(at, "RUN --mount=type=ssh is not supported"))
            }
        }))
    }

    /// The initial content of a cache mount, as BuildKit's `dispatchRunMounts` makes it: the
    /// `from` stage or image (scratch when none) at `source`; or, when `source` is the root and
    /// one of `uid`, `gid`, `mode` is given, a `/cache` directory made on top of it with that
    /// owner (default 0:0) and mode (default 0755) — `source` wins over them, as in BuildKit.
    /// `None` for a scratch seed without a directory (an empty cache, no input).
    fn cache_seed(
        &mut self,
        from: &Option<String>,
        source: &Option<String>,
        (uid, gid, mode): (Option<u32>, Option<u32>, Option<u32>),
        at: At,
    ) -> Result<(Option<State>, Option<String>), DockerfileError> {
        let state = match from {
            Some(from) => {
                let src = self.cx.source(self.index, from, at)?;
                self.cx.source_state(&src, &self.platform.clone(), at)?
            }
            None => scratch().platform(self.platform.clone()),
        };
        let source = match source {
            Some(s) => self.expand(s, at)?,
            None => String::new(),
        };
        let selector = super::dispatch::normalize_path("/", &source);
        let selector = selector.trim_end_matches('/');
        if !selector.is_empty() {
            return Ok((Some(state), Some(selector.to_owned())));
        }
        if uid.is_none() && gid.is_none() && mode.is_none() {
            return Ok(((!state.is_scratch()).then_some(state), None));
        }
        let dir = FileActions::new().mkdir_with(
            CACHE_SEED_DIR,
            mode.unwrap_or(0o755),
            MkdirOptions {
                owner: Some(Owner::Ids(uid.unwrap_or(0), gid.unwrap_or(0))),
                ..Default::default()
            },
        );
        let seeded = state
            .file(dir)
            .custom_name("[internal] settings cache mount permissions");
        Ok((Some(seeded), Some(CACHE_SEED_DIR.to_owned())))
    }
}

/// True when a `RUN` command line is only the heredoc `name` (`<<EOF`, `<<-EOF`, `<<"EOF"`).
fn is_lone_heredoc(text: &str, name: &str) -> bool {
    let Some(rest) = text.trim().strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let unquoted = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(rest);
    unquoted == name
}

/// The first line of a heredoc, with `...` when there are more (BuildKit's step name suffix).
fn summarize(doc: &str) -> String {
    let doc = doc.trim();
    let mut lines = doc.lines();
    let first = lines.next().unwrap_or_default().to_string();
    if lines.next().is_some() {
        format!("{first}...")
    } else {
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxkit_llb::op::{Chown, FileActionKind, Mkdir, MountKind, Op, UserRef};
    use oxkit_llb::Graph;

    use super::super::tests::graph_of as graph;

    /// The cache mount at `/c` of the step running `script`: its seed's op (if any) and selector.
    fn cache_at_c<'g>(g: &'g Graph, script: &str) -> (Option<&'g Op>, String) {
        let v = g
            .vertices()
            .iter()
            .find(|v| matches!(&v.op, Op::Exec(e) if e.meta.args.last().map(String::as_str) == Some(script)))
            .unwrap_or_else(|| panic!("no step runs {script}"));
        let Op::Exec(e) = &v.op else { unreachable!() };
        let m = e
            .mounts
            .iter()
            .find(|m| m.dest == "/c")
            .expect("a mount at /c");
        let MountKind::Cache {
            input, selector, ..
        } = &m.kind
        else {
            panic!("{m:?} is not a cache mount")
        };
        let seed = input.map(|i| &g.vertex(&v.inputs[i].digest).expect("the seed vertex").op);
        (seed, selector.clone())
    }

    #[test]
    fn cache_mounts_are_seeded_as_buildkit_seeds_them() {
        let g = graph(
            "FROM scratch AS seedstage\n\
             RUN mkseed\n\
             FROM scratch\n\
             RUN --mount=type=cache,target=/c,uid=1000,gid=1001,mode=0700 owned\n\
             RUN --mount=type=cache,target=/c,gid=7 group-only\n\
             RUN --mount=type=cache,target=/c,from=seedstage,source=/seed/,id=s from-path\n\
             RUN --mount=type=cache,target=/c,from=seedstage whole-stage\n\
             RUN --mount=type=cache,target=/c,source=/x,uid=5 source-wins\n\
             RUN --mount=type=cache,target=/c plain\n",
        );
        let mkdir = |uid, gid, mode| {
            FileActionKind::Mkdir(Mkdir {
                path: "/cache".into(),
                mode,
                make_parents: false,
                owner: Some(Chown {
                    user: Some(UserRef::Id(uid)),
                    group: Some(UserRef::Id(gid)),
                }),
                timestamp: None,
            })
        };
        for (script, want) in [
            ("owned", mkdir(1000, 1001, 0o700)),
            ("group-only", mkdir(0, 7, 0o755)),
        ] {
            let (seed, selector) = cache_at_c(&g, script);
            let Some(Op::File(f)) = seed else {
                panic!("{script}: seed {seed:?}")
            };
            assert_eq!(f.actions.len(), 1, "{script}");
            assert_eq!(f.actions[0].kind, want, "{script}");
            assert_eq!(selector, "/cache", "{script}");
        }
        let (seed, selector) = cache_at_c(&g, "from-path");
        assert!(matches!(seed, Some(Op::Exec(e)) if e.meta.args.last().unwrap() == "mkseed"));
        assert_eq!(selector, "/seed");
        let (seed, selector) = cache_at_c(&g, "whole-stage");
        assert!(matches!(seed, Some(Op::Exec(_))));
        assert_eq!(selector, "");
        assert_eq!(
            cache_at_c(&g, "source-wins"),
            (None, "/x".to_string()),
            "source= wins over uid= (scratch is no input)"
        );
        assert_eq!(cache_at_c(&g, "plain"), (None, String::new()));
    }

    #[test]
    fn lone_heredocs_are_recognized() {
        assert!(is_lone_heredoc("<<EOF", "EOF"));
        assert!(is_lone_heredoc("<<-EOF ", "EOF"));
        assert!(is_lone_heredoc("<<\"EOF\"", "EOF"));
        assert!(!is_lone_heredoc("cat <<EOF", "EOF"));
        assert!(!is_lone_heredoc("<<EOF > f", "EOF"));
    }

    #[test]
    fn heredoc_summaries_are_the_first_line() {
        assert_eq!(summarize("echo a\necho b\n"), "echo a...");
        assert_eq!(summarize("echo a\n"), "echo a");
    }
}
