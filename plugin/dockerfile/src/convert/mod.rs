//! Dockerfile → LLB: the stages the target needs become one build definition (independent
//! stages side by side, so the solver runs them in parallel), and the target stage's image
//! config is computed with Docker's rules.

mod args;
mod config;
mod copy;
mod dispatch;
mod run;
mod stages;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use oxkit_llb::op::Platform;
use oxkit_llb::source::ImageRef;
use oxkit_llb::{
    git_with, image_with, local_with, scratch, Definition, ImageMetaResolver, ImageOptions,
    LocalOptions, State,
};

use crate::instruction::{Dockerfile, Located, Pos};
use crate::shell::Lexer;
use crate::DockerfileError;

use config::Image;
use stages::{format_platform, Base, Plan, Source};

/// `--opt no-cache[=stage1,stage2]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NoCache {
    /// Use the cache.
    #[default]
    None,
    /// Re-run every step (`no-cache=` with no value).
    All,
    /// Re-run the steps of these stages (names, lower-case).
    Stages(BTreeSet<String>),
}

/// What the build asks of the frontend (BuildKit's frontend attributes).
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// The Dockerfile's name, for errors (`Dockerfile`).
    pub filename: String,
    /// `--opt target=`: the stage to build (default: the last).
    pub target: Option<String>,
    /// `--opt build-arg:NAME=VALUE` (`SOURCE_DATE_EPOCH` among them makes the output
    /// reproducible).
    pub build_args: BTreeMap<String, String>,
    /// `--opt label:K=V`: labels added to the image config.
    pub labels: BTreeMap<String, String>,
    /// `--opt no-cache`.
    pub no_cache: NoCache,
    /// The name of the local source that holds the build context (`context`).
    pub context_name: String,
    /// `--opt context:NAME=VALUE`: named contexts replacing a stage or image `NAME` in `FROM` and
    /// `--from` (values `docker-image://REF`, `local:LOCALNAME`, a git URL, `https://…`).
    pub named_contexts: BTreeMap<String, String>,
    /// The platform built for, and the build platform (the host's).
    pub platform: Platform,
    /// Exclude patterns from `.dockerignore` (applied to every read of the build context).
    pub dockerignore: Vec<String>,
}

/// A converted Dockerfile.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The build definition whose result is the target stage's filesystem.
    pub definition: Definition,
    /// The target stage's full image config (OCI JSON: `architecture`, `os`, `config`, `rootfs`
    /// with the base image's diff IDs, `history` with the base image's entries then one per
    /// instruction, `empty_layer` set where the instruction changes no files). The exporter
    /// fills in the new layers' diff IDs.
    pub image_config: serde_json::Value,
}

/// Converts `dockerfile` into a build definition and an image config; `resolver` gives base
/// images' configs (called once per distinct image the needed stages use).
pub fn convert(
    dockerfile: &Dockerfile,
    options: &ConvertOptions,
    resolver: Arc<dyn ImageMetaResolver>,
) -> Result<Converted, DockerfileError> {
    let mut cx = Converter::new(dockerfile, options, resolver);
    cx.globals = cx.meta_args()?;
    let plan = cx.plan()?;
    // The build context is one local source whose follow paths are every path the build reads
    // from it; those are known once every stage is converted, so convert twice: the first
    // pass collects the paths, the second uses the context source made from them. (Images are
    // resolved once: the results are kept.)
    cx.build(&plan)?;
    let paths = std::mem::take(&mut cx.context_paths);
    cx.context = context_source(options, &paths);
    let (state, mut image) = cx.build(&plan)?;

    image.set_platform(&cx.platform);
    for (k, v) in &options.labels {
        image.insert("Labels", k, v.clone().into());
    }
    let definition = state.marshal().map_err(|e| {
        DockerfileError::general(
            &options.filename,
            format!("the converted build definition is invalid: {e}"),
        )
    })?;
    Ok(Converted {
        definition,
        image_config: image.into_value(),
    })
}

/// The build context source: one `local` source reading only `paths` (all of it when a path is
/// `/`), with `.dockerignore` applied.
fn context_source(options: &ConvertOptions, paths: &BTreeSet<String>) -> State {
    let follow_paths = if paths.contains("/") {
        Vec::new()
    } else {
        paths
            .iter()
            .map(|p| p.trim_start_matches('/').to_string())
            .collect()
    };
    let name = if options.context_name.is_empty() {
        "context"
    } else {
        &options.context_name
    };
    local_with(
        name,
        LocalOptions {
            follow_paths,
            exclude_patterns: options.dockerignore.clone(),
            shared_key_hint: Some(name.to_string()),
            ..Default::default()
        },
    )
    .custom_name("[internal] load build context")
}

/// Where an error belongs: an instruction's position and text.
#[derive(Debug, Clone, Copy)]
struct At<'a> {
    pos: Pos,
    text: &'a str,
}

impl<'a> At<'a> {
    fn of<T>(l: &'a Located<T>) -> At<'a> {
        At {
            pos: l.pos,
            text: &l.text,
        }
    }
}

/// A converted stage: its filesystem, image config, and the build args it declared (which a
/// stage starting from it inherits).
#[derive(Debug, Clone)]
struct Built {
    state: State,
    image: Image,
    build_args: Vec<(String, Option<String>)>,
    platform: Platform,
}

/// What resolving an image gave: its digest and config blob, or why it failed.
type Resolution = Result<(String, Vec<u8>), String>;

/// The conversion of one Dockerfile.
struct Converter<'a> {
    df: &'a Dockerfile,
    opts: &'a ConvertOptions,
    resolver: Arc<dyn ImageMetaResolver>,
    lexer: Lexer,
    /// The platform built for.
    platform: Platform,
    /// Meta scope: the platform args, then the meta `ARG`s with their values.
    globals: Vec<(String, String)>,
    /// The build context source.
    context: State,
    /// Paths the build reads from the context (absolute, `/` is all of it).
    context_paths: BTreeSet<String>,
    /// Resolved image configs by (reference, platform).
    resolved: BTreeMap<(String, String), Resolution>,
    /// Converted stages of the current pass.
    built: Vec<Option<Built>>,
}

impl<'a> Converter<'a> {
    fn new(
        df: &'a Dockerfile,
        opts: &'a ConvertOptions,
        resolver: Arc<dyn ImageMetaResolver>,
    ) -> Self {
        let platform = if opts.platform.os.is_empty() || opts.platform.architecture.is_empty() {
            opts.platform.or_host()
        } else {
            opts.platform.clone()
        };
        Converter {
            df,
            opts,
            resolver,
            lexer: Lexer::new(df.directives.escape),
            platform,
            globals: Vec::new(),
            context: scratch(),
            context_paths: BTreeSet::new(),
            resolved: BTreeMap::new(),
            built: Vec::new(),
        }
    }

    /// The value of a meta-scope variable.
    fn global(&self, key: &str) -> Option<String> {
        self.globals
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// An error at `at`.
    fn error(&self, at: At, message: impl Into<String>) -> DockerfileError {
        DockerfileError::at(&self.opts.filename, at.pos, at.text, message)
    }

    /// Converts the needed stages in file order; returns the target's state and image.
    fn build(&mut self, plan: &Plan) -> Result<(State, Image), DockerfileError> {
        self.built = vec![None; self.df.stages.len()];
        for i in 0..self.df.stages.len() {
            if plan.needed.contains(&i) {
                let built = self.build_stage(plan, i)?;
                self.built[i] = Some(built);
            }
        }
        let target = self.built[plan.target]
            .take()
            .expect("the target stage is needed");
        Ok((target.state, target.image))
    }

    /// A stage built earlier in this pass.
    fn built(&self, i: usize) -> &Built {
        self.built[i]
            .as_ref()
            .expect("stages are built after the stages they need")
    }

    /// Resolves an image reference's config (once per reference and platform).
    fn resolve(&mut self, reference: &ImageRef, platform: &Platform) -> Resolution {
        let key = (reference.to_string(), format_platform(platform));
        if let Some(r) = self.resolved.get(&key) {
            return r.clone();
        }
        let r = self
            .resolver
            .resolve_image_config(&key.0, Some(platform))
            .map(|r| (r.digest, r.config))
            .map_err(|e| e.to_string());
        self.resolved.insert(key, r.clone());
        r
    }

    /// The state and config of image `reference` for `platform`: the reference pinned to the
    /// digest it resolves to, named `step_name`; or scratch when the image has no layers.
    fn image(
        &mut self,
        reference: &str,
        platform: &Platform,
        at: At,
    ) -> Result<(State, Image, String), DockerfileError> {
        let parsed = ImageRef::parse(reference)
            .map_err(|e| self.error(at, format!("invalid image reference {reference:?}: {e}")))?;
        let (digest, blob) = self
            .resolve(&parsed, platform)
            .map_err(|e| self.error(at, format!("failed to resolve image {parsed}: {e}")))?;
        let image = Image::from_blob(&blob)
            .map_err(|e| self.error(at, format!("failed to resolve image {parsed}: {e}")))?;
        let mut pinned = parsed.clone();
        if !digest.is_empty() {
            pinned.digest = Some(digest);
        }
        let pinned = pinned.to_string();
        let state = if image.has_no_layers() {
            scratch().platform(platform.clone())
        } else {
            image_with(
                &pinned,
                ImageOptions {
                    platform: Some(platform.clone()),
                    ..Default::default()
                },
            )
        };
        Ok((state, image, pinned))
    }

    /// The state and config a named context stands for.
    fn named_context(
        &mut self,
        name: &str,
        platform: &Platform,
        at: At,
    ) -> Result<(State, Image), DockerfileError> {
        let value = self.opts.named_contexts[name].clone();
        if let Some(reference) = value.strip_prefix("docker-image://") {
            let (state, image, pinned) = self.image(reference, platform, at)?;
            let state = if state.is_scratch() {
                state
            } else {
                state.custom_name(format!("[context {name}] FROM {pinned}"))
            };
            return Ok((state, image));
        }
        if let Some(local) = value.strip_prefix("local:") {
            let state = local_with(
                local,
                LocalOptions {
                    shared_key_hint: Some(local.to_string()),
                    ..Default::default()
                },
            )
            .custom_name(format!("[context {name}] load from client"));
            return Ok((state, Image::empty(platform)));
        }
        if let Some((remote, git_ref, subdir)) = copy::git_source(&value) {
            let state = git_with(
                &remote,
                &git_ref,
                oxkit_llb::GitOptions {
                    subdir,
                    ..Default::default()
                },
            )
            .custom_name(format!("[context {name}] {value}"));
            return Ok((state, Image::empty(platform)));
        }
        Err(self.error(
            at,
            format!(
                "named context {name}={value}: only docker-image://REF, local:NAME and git \
                 contexts are supported"
            ),
        ))
    }

    /// The state of a `--from` source.
    fn source_state(
        &mut self,
        source: &Source,
        platform: &Platform,
        at: At,
    ) -> Result<State, DockerfileError> {
        Ok(match source {
            Source::Stage(j) => self.built(*j).state.clone(),
            Source::Context(name) => self.named_context(name, platform, at)?.0,
            Source::Image(reference) => {
                let (state, _, pinned) = self.image(reference, platform, at)?;
                if state.is_scratch() {
                    state
                } else {
                    state.custom_name(format!("FROM {pinned}"))
                }
            }
        })
    }

    /// True when `--no-cache` asks to re-run stage `i`'s steps.
    fn ignores_cache(&self, i: usize) -> bool {
        match &self.opts.no_cache {
            NoCache::None => false,
            NoCache::All => true,
            NoCache::Stages(names) => self.df.stages[i]
                .from
                .value
                .name
                .as_ref()
                .is_some_and(|n| names.contains(n)),
        }
    }

    /// What a stage starts from: state, image config, build args and platform.
    fn stage_base(
        &mut self,
        plan: &Plan,
        i: usize,
    ) -> Result<(Built, Option<String>), DockerfileError> {
        let from = &self.df.stages[i].from;
        let at = At::of(from);
        let platform = plan.stages[i]
            .platform
            .clone()
            .unwrap_or_else(|| self.platform.clone());
        Ok(match &plan.stages[i].base {
            Base::Stage(j) => {
                let mut b = self.built(*j).clone();
                b.image.unset("OnBuild");
                (b, None)
            }
            Base::Scratch => (
                Built {
                    state: scratch().platform(platform.clone()),
                    image: Image::empty(&platform),
                    build_args: Vec::new(),
                    platform,
                },
                None,
            ),
            Base::Image(reference) => {
                let (state, image, pinned) = self.image(reference, &platform, at)?;
                (
                    Built {
                        state,
                        image,
                        build_args: Vec::new(),
                        platform,
                    },
                    Some(pinned),
                )
            }
            Base::Context(name) => {
                let (state, image) = self.named_context(name, &platform, at)?;
                (
                    Built {
                        state,
                        image,
                        build_args: Vec::new(),
                        platform,
                    },
                    None,
                )
            }
        })
    }
}
