//! The stage graph: what each stage starts from and reads from other stages, images and named
//! contexts, which stage is the target, and which stages the target needs.

use std::collections::BTreeSet;

use oxkit_llb::op::Platform;
use oxkit_llb::source::ImageRef;

use super::{At, Converter};
use crate::instruction::{Instruction, RunMount};
use crate::DockerfileError;

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An earlier stage.
    Stage(usize),
    /// An image reference (expanded, as written).
    Image(String),
    /// A named context (`--opt context:NAME=…`), by name.
    Context(String),
}

/// Where `COPY --from` or `RUN --mount from=` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// An earlier stage.
    Stage(usize),
    /// An image reference.
    Image(String),
    /// A named context.
    Context(String),
}

/// One stage of the plan.
#[derive(Debug, Clone)]
pub(super) struct StagePlan {
    /// What it starts from.
    pub base: Base,
    /// `FROM --platform`, expanded and parsed.
    pub platform: Option<Platform>,
    /// The name shown in step names (`build`, `stage-1`; empty for a one-stage file).
    pub display_name: String,
    /// The stage is replaced by a named context of its name: its instructions are not run.
    pub replaced: bool,
    /// The stages it needs (its base and what it reads), earlier ones only.
    pub deps: BTreeSet<usize>,
}

/// The stages, the target, and what the target needs.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub stages: Vec<StagePlan>,
    pub target: usize,
    pub needed: BTreeSet<usize>,
}

impl Converter<'_> {
    /// Plans the build: expands each `FROM` with the meta args, finds every stage's
    /// dependencies, and the stages the target needs.
    pub(super) fn plan(&self) -> Result<Plan, DockerfileError> {
        let df = self.df;
        if df.stages.is_empty() {
            return Err(DockerfileError::general(
                &self.opts.filename,
                "the Dockerfile has no stages to build (no FROM instruction)",
            ));
        }
        let mut stages = Vec::with_capacity(df.stages.len());
        // As BuildKit: every `--from` naming an image counts as a stage when deciding whether
        // step names carry a stage name.
        let mut state_count = df.stages.len();
        for (i, stage) in df.stages.iter().enumerate() {
            let from = &stage.from;
            let at = At {
                pos: from.pos,
                text: &from.text,
            };
            let globals = |k: &str| self.global(k);
            let image = self
                .lexer
                .expand(&from.value.image, &globals)
                .map_err(|e| self.error(at, e.message))?;
            if image.is_empty() {
                return Err(self.error(
                    at,
                    format!("base name ({}) should not be blank", from.value.image),
                ));
            }
            let platform = match &from.value.platform {
                None => None,
                Some(p) => {
                    let expanded = self
                        .lexer
                        .expand(p, &globals)
                        .map_err(|e| self.error(at, e.message))?;
                    Some(parse_platform(&expanded).map_err(|m| self.error(at, m))?)
                }
            };
            let name = from.value.name.clone();
            let replaced = name
                .as_ref()
                .is_some_and(|n| self.opts.named_contexts.contains_key(n));
            let earlier = |n: &str| {
                let lower = n.to_ascii_lowercase();
                df.stages[..i]
                    .iter()
                    .position(|s| s.from.value.name.as_deref() == Some(lower.as_str()))
            };
            let base = if replaced {
                Base::Context(name.clone().unwrap_or_default())
            } else if image.eq_ignore_ascii_case("scratch") {
                Base::Scratch
            } else if let Some(j) = earlier(&image) {
                Base::Stage(j)
            } else if self.opts.named_contexts.contains_key(&image) {
                Base::Context(image.clone())
            } else {
                ImageRef::parse(&image).map_err(|e| {
                    self.error(
                        at,
                        format!(
                            "{image} is neither an earlier stage nor a valid image reference: {e}"
                        ),
                    )
                })?;
                Base::Image(image.clone())
            };
            let mut deps = BTreeSet::new();
            if let Base::Stage(j) = base {
                deps.insert(j);
            }
            if !replaced {
                for ins in &stage.instructions {
                    for from in sources_of(&ins.value) {
                        let at = At::of(ins);
                        match self.source(i, from, at)? {
                            Source::Stage(j) => {
                                deps.insert(j);
                            }
                            _ => state_count += 1,
                        }
                    }
                }
            }
            stages.push(StagePlan {
                base,
                platform,
                display_name: name.unwrap_or_else(|| format!("stage-{i}")),
                replaced,
                deps,
            });
        }
        if state_count == 1 {
            stages[0].display_name.clear();
        }
        let target = match &self.opts.target {
            None => df.stages.len() - 1,
            Some(t) => match df.stage(t) {
                Some((i, _)) => i,
                None => {
                    let names: Vec<String> = stages
                        .iter()
                        .enumerate()
                        .map(|(i, s)| match &df.stages[i].from.value.name {
                            Some(n) => n.clone(),
                            None => format!("{i} (unnamed: {})", s.display_name),
                        })
                        .collect();
                    return Err(DockerfileError::general(
                        &self.opts.filename,
                        format!(
                            "target stage \"{t}\" could not be found; the stages are: {}",
                            names.join(", ")
                        ),
                    ));
                }
            },
        };
        let mut needed = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(s) = todo.pop() {
            if needed.insert(s) {
                todo.extend(stages[s].deps.iter().copied());
            }
        }
        Ok(Plan {
            stages,
            target,
            needed,
        })
    }

    /// What `--from=from` of an instruction of stage `current` names: an earlier stage (by
    /// name or index), a named context, or an image.
    pub(super) fn source(
        &self,
        current: usize,
        from: &str,
        at: At,
    ) -> Result<Source, DockerfileError> {
        let df = self.df;
        let none = |_: &str| None;
        if self.lexer.expand(from, &none).ok().as_deref() != Some(from) {
            return Err(self.error(
                at,
                format!(
                    "--from={from}: variable expansion is not supported for --from; define a new \
                     stage with FROM using ARG from global scope as a workaround"
                ),
            ));
        }
        let lower = from.to_ascii_lowercase();
        let stage = df
            .stages
            .iter()
            .position(|s| s.from.value.name.as_deref() == Some(lower.as_str()))
            .map(Ok)
            .or_else(|| {
                from.parse::<usize>().ok().map(|n| {
                    if n < df.stages.len() {
                        Ok(n)
                    } else {
                        Err(self.error(at, format!("invalid stage index {n}")))
                    }
                })
            })
            .transpose()?;
        let here = self.plan_name(current);
        match stage {
            Some(j) if j == current => Err(self.error(
                at,
                format!("circular dependency detected on stage: {here} reads from itself (--from={from})"),
            )),
            Some(j) if j > current => Err(self.error(
                at,
                format!(
                    "cannot read from stage {from:?}: it needs to be defined before current stage {here:?}"
                ),
            )),
            Some(j) => Ok(Source::Stage(j)),
            None if self.opts.named_contexts.contains_key(from) => {
                Ok(Source::Context(from.to_string()))
            }
            None => match ImageRef::parse(from) {
                Ok(_) => Ok(Source::Image(from.to_string())),
                Err(e) => Err(self.error(
                    at,
                    format!("--from={from} is neither a stage name nor a valid image reference: {e}"),
                )),
            },
        }
    }

    /// A stage's name for messages: its `AS` name, or `stage-N`.
    fn plan_name(&self, i: usize) -> String {
        self.df.stages[i]
            .from
            .value
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{i}"))
    }
}

/// The `--from` values an instruction reads (`COPY --from`, `RUN --mount from=`).
pub(super) fn sources_of(ins: &Instruction) -> Vec<&str> {
    match ins {
        Instruction::Copy(c) => c.from.as_deref().into_iter().collect(),
        Instruction::Run(r) => r
            .mounts
            .iter()
            .filter_map(|m| match m {
                RunMount::Bind { from, .. } | RunMount::Cache { from, .. } => from.as_deref(),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `os/arch[/variant]` (`linux/amd64`, `linux/arm/v7`).
pub(super) fn parse_platform(s: &str) -> Result<Platform, String> {
    let parts: Vec<&str> = s.split('/').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "invalid platform {s:?}: expected os/arch[/variant], e.g. linux/amd64"
        ));
    }
    Ok(Platform {
        os: parts[0].to_ascii_lowercase(),
        architecture: parts[1].to_ascii_lowercase(),
        variant: parts
            .get(2)
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_default(),
        ..Default::default()
    })
}

/// `os/arch[/variant]` of a platform, as BuildKit prints it.
pub(super) fn format_platform(p: &Platform) -> String {
    let mut s = format!("{}/{}", p.os, p.architecture);
    if !p.variant.is_empty() {
        s.push('/');
        s.push_str(&p.variant);
    }
    s
}
