//! Build arguments: the platform args BuildKit predefines, the meta `ARG`s before the first
//! `FROM` (the scope of `FROM` lines), and `ARG` inside a stage.

use super::dispatch::StageBuilder;
use super::stages::format_platform;
use super::{At, Converter};
use crate::instruction::Arg;
use crate::DockerfileError;

impl Converter<'_> {
    /// The meta scope: the platform args (overridable by build args), then each meta `ARG` with
    /// its build arg, or its default expanded with what precedes it.
    pub(super) fn meta_args(&self) -> Result<Vec<(String, String)>, DockerfileError> {
        let target = &self.platform;
        // oxkit builds for the platform it runs on: the build platform is the target's.
        let build = &self.platform;
        let target_stage = self
            .opts
            .target
            .clone()
            .or_else(|| {
                self.df
                    .stages
                    .last()
                    .and_then(|s| s.from.value.name.clone())
            })
            .unwrap_or_else(|| "default".into());
        let mut globals: Vec<(String, String)> = [
            ("BUILDPLATFORM", format_platform(build)),
            ("BUILDOS", build.os.clone()),
            ("BUILDOSVERSION", build.os_version.clone()),
            ("BUILDARCH", build.architecture.clone()),
            ("BUILDVARIANT", build.variant.clone()),
            ("TARGETPLATFORM", format_platform(target)),
            ("TARGETOS", target.os.clone()),
            ("TARGETOSVERSION", target.os_version.clone()),
            ("TARGETARCH", target.architecture.clone()),
            ("TARGETVARIANT", target.variant.clone()),
            ("TARGETSTAGE", target_stage),
        ]
        .into_iter()
        .map(|(k, v)| {
            let v = self.opts.build_args.get(k).cloned().unwrap_or(v);
            (k.to_string(), v)
        })
        .collect();
        for located in &self.df.meta_args {
            for (key, default) in &located.value.args {
                let value = match (self.opts.build_args.get(key), default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => {
                        let scope = |k: &str| {
                            globals
                                .iter()
                                .rev()
                                .find(|(g, _)| g == k)
                                .map(|(_, v)| v.clone())
                        };
                        let v = self
                            .lexer
                            .expand(d, &scope)
                            .map_err(|e| self.error(At::of(located), e.message))?;
                        Some(v)
                    }
                    (None, None) => None,
                };
                if let Some(v) = value {
                    globals.retain(|(g, _)| g != key);
                    globals.push((key.clone(), v));
                }
            }
        }
        Ok(globals)
    }
}

impl StageBuilder<'_, '_> {
    /// `ARG NAME[=DEFAULT] …` in a stage: the build arg if given, else the default expanded in
    /// the stage's scope, else the meta arg of the same name. The value is visible to later
    /// instructions and `RUN` steps, not written to the image config.
    pub(super) fn arg(&mut self, arg: &Arg, at: At) -> Result<(), DockerfileError> {
        let mut commit = Vec::new();
        for (key, default) in &arg.args {
            let value = match (self.cx.opts.build_args.get(key), default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => Some(self.expand(d, at)?),
                (None, None) => self.cx.global(key),
            };
            if let Some(v) = &value {
                self.state = self.state.clone().env(key.clone(), v.clone());
            }
            commit.push(match &value {
                Some(v) => format!("{key}={v}"),
                None => key.clone(),
            });
            self.build_args.push((key.clone(), value));
        }
        self.image
            .history(&format!("ARG {}", commit.join(" ")), true);
        Ok(())
    }
}
