//! The Dockerfile frontend on the build API (BuildKit's built-in `dockerfile.v0`): reads the
//! Dockerfile through the client's session, converts it with `oxkit_dockerfile` (base images'
//! configs from the daemon's image store) and hands the solve a definition and the image config
//! the exporter writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use oxkit_dockerfile::{ConvertOptions, NoCache};
use oxkit_llb::op::Platform;
use oxkit_llb::source::{ImageRef, ResolveMode};
use oxkit_llb::{Graph, ImageMetaResolver, ResolvedImageConfig};
use oxkit_localsync::{Filter, Kind, Range, CHUNK};
use oxkit_worker::{log_pull, SessionRef, Worker};
use tonic::Status;

use super::session::{self, SessionHandle};

/// The frontend names a Solve may ask for.
const DOCKERFILE_FRONTENDS: [&str; 2] = ["dockerfile.v0", "dockerfile"];

/// The largest Dockerfile read (BuildKit has no limit; this keeps a mistake from filling memory).
const MAX_DOCKERFILE: u64 = 8 << 20;

/// What a Dockerfile frontend request asks for, checked before any work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DockerfileRequest {
    /// The local directory holding the Dockerfile (`dockerfilekey`, default `dockerfile`).
    dockerfile_dir: String,
    /// The Dockerfile's path in it (`filename`, default `Dockerfile`).
    filename: String,
    /// The build context's local directory (`contextkey`, default `context`).
    context_dir: String,
    target: Option<String>,
    build_args: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    no_cache: NoCache,
    named_contexts: BTreeMap<String, String>,
}

impl DockerfileRequest {
    /// Parses frontend `name` and its attributes (BuildKit's names); unknown ones are refused.
    pub(super) fn parse(name: &str, attrs: &BTreeMap<String, String>) -> Result<Self, Status> {
        if !DOCKERFILE_FRONTENDS.contains(&name) {
            return Err(Status::invalid_argument(format!(
                "frontend {name:?} is not supported; use dockerfile.v0"
            )));
        }
        let mut request = DockerfileRequest {
            dockerfile_dir: "dockerfile".into(),
            filename: "Dockerfile".into(),
            context_dir: "context".into(),
            target: None,
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            no_cache: NoCache::None,
            named_contexts: BTreeMap::new(),
        };
        let host = host_platform();
        for (key, value) in attrs {
            let bad = |reason: &str| {
                Status::invalid_argument(format!("frontend option {key:?}: {reason}"))
            };
            if let Some(arg) = key.strip_prefix("build-arg:") {
                request.build_args.insert(arg.into(), value.clone());
            } else if let Some(label) = key.strip_prefix("label:") {
                request.labels.insert(label.into(), value.clone());
            } else if let Some(context) = key.strip_prefix("context:") {
                request.named_contexts.insert(context.into(), value.clone());
            } else {
                match key.as_str() {
                    "filename" if !value.is_empty() => request.filename = value.clone(),
                    "dockerfilekey" if !value.is_empty() => request.dockerfile_dir = value.clone(),
                    "contextkey" if !value.is_empty() => request.context_dir = value.clone(),
                    "target" => {
                        request.target = Some(value.clone()).filter(|t| !t.is_empty());
                    }
                    "no-cache" if value.is_empty() => request.no_cache = NoCache::All,
                    "no-cache" => {
                        let stages: BTreeSet<String> = value
                            .split(',')
                            .map(|s| s.trim().to_ascii_lowercase())
                            .filter(|s| !s.is_empty())
                            .collect();
                        request.no_cache = NoCache::Stages(stages);
                    }
                    "platform" if value.is_empty() || *value == host => {}
                    "platform" => {
                        return Err(bad(&format!(
                            "only the host's platform ({host}) can be built here"
                        )))
                    }
                    "filename" | "dockerfilekey" | "contextkey" => {
                        return Err(bad("needs a value"))
                    }
                    _ => {
                        return Err(bad(
                            "unknown option; expected filename, target, build-arg:NAME, \
                             label:NAME, no-cache, context:NAME, platform, contextkey, \
                             dockerfilekey",
                        ))
                    }
                }
            }
        }
        Ok(request)
    }
}

impl DockerfileRequest {
    /// The `SOURCE_DATE_EPOCH` build arg (seconds since 1970), which makes the export
    /// reproducible as in BuildKit; `None` when not given.
    pub(super) fn source_date_epoch(&self) -> Result<Option<i64>, Status> {
        self.build_args
            .get("SOURCE_DATE_EPOCH")
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|e| *e >= 0)
                    .ok_or_else(|| {
                        Status::invalid_argument(format!(
                        "build-arg:SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970"
                    ))
                    })
            })
            .transpose()
    }
}

/// The host platform as `os/arch[/variant]`.
fn host_platform() -> String {
    let p = Platform::host();
    match p.variant.as_str() {
        "" => format!("{}/{}", p.os, p.architecture),
        v => format!("{}/{}/{v}", p.os, p.architecture),
    }
}

/// What the frontend made: the graph to solve and the image config to export.
pub(super) struct Frontend {
    /// The build definition, parsed.
    pub(super) graph: Graph,
    /// The target stage's image config.
    pub(super) image_config: serde_json::Value,
}

/// Reads the Dockerfile `request` names from `session` and converts it.
pub(super) async fn dockerfile(
    worker: &Worker,
    session: &SessionHandle,
    request: &DockerfileRequest,
) -> Result<Frontend, Status> {
    let text = read_dockerfile(session, request).await?;
    let options = ConvertOptions {
        filename: request.filename.clone(),
        target: request.target.clone(),
        build_args: request.build_args.clone(),
        labels: request.labels.clone(),
        no_cache: request.no_cache.clone(),
        context_name: request.context_dir.clone(),
        named_contexts: request.named_contexts.clone(),
        platform: Platform::host(),
        // The client applies the context's .dockerignore before anything is sent.
        dockerignore: Vec::new(),
    };
    let resolver = Arc::new(StoreResolver {
        worker: worker.clone(),
        sessions: vec![Arc::new(session.clone()) as SessionRef],
        runtime: tokio::runtime::Handle::current(),
    });
    let filename = request.filename.clone();
    // The resolver blocks on the daemon's runtime: the conversion runs off it.
    let converted = tokio::task::spawn_blocking(move || {
        let dockerfile = oxkit_dockerfile::parse(&text, &filename)?;
        oxkit_dockerfile::convert(&dockerfile, &options, resolver)
    })
    .await
    .map_err(|e| Status::internal(format!("the Dockerfile frontend stopped: {e}")))?
    .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let graph = converted.definition.parse().map_err(|e| {
        Status::internal(format!(
            "the Dockerfile frontend made an invalid definition: {e}"
        ))
    })?;
    Ok(Frontend {
        graph,
        image_config: converted.image_config,
    })
}

/// The Dockerfile's text, read from the client's local directory.
async fn read_dockerfile(
    session: &SessionHandle,
    request: &DockerfileRequest,
) -> Result<String, Status> {
    let (dir, name) = (&request.dockerfile_dir, &request.filename);
    let path = name.trim_start_matches("./").to_string();
    let filter = Filter {
        include: vec![path.clone()],
        exclude: Vec::new(),
        follow: vec![path.clone()],
    };
    let listing = session
        .list_local(dir, &filter)
        .await
        .map_err(|e| read_failed(dir, name, &e))?;
    let entry = listing
        .iter()
        .find(|e| e.path == path && e.kind() == Some(Kind::File))
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "failed to read the Dockerfile: no file {name:?} in local directory {dir:?}"
            ))
        })?;
    if entry.size > MAX_DOCKERFILE {
        return Err(Status::invalid_argument(format!(
            "the Dockerfile {name:?} is {} bytes; the limit is {MAX_DOCKERFILE}",
            entry.size
        )));
    }
    let mut data = Vec::with_capacity(entry.size as usize);
    while (data.len() as u64) < entry.size {
        let offset = data.len() as u64;
        let len = (entry.size - offset).min(CHUNK);
        let range = Range {
            path: path.clone(),
            offset,
            len,
        };
        let chunk = session
            .read_local(dir, vec![range])
            .await
            .map_err(|e| read_failed(dir, name, &e))?
            .pop()
            .unwrap_or_default();
        if chunk.is_empty() {
            break;
        }
        data.extend_from_slice(&chunk);
    }
    String::from_utf8(data)
        .map_err(|_| Status::invalid_argument(format!("the Dockerfile {name:?} is not UTF-8 text")))
}

fn read_failed(dir: &str, name: &str, e: &oxkit_worker::SessionError) -> Status {
    let status = session::status(e);
    Status::new(
        status.code(),
        format!(
            "failed to read the Dockerfile {name:?} from local directory {dir:?}: {}",
            status.message()
        ),
    )
}

/// Base images' configs from the daemon's image store (pulled when it lacks them), for the conversion (which runs on a
/// blocking thread and waits for each answer).
struct StoreResolver {
    worker: Worker,
    /// The build's client, whose registry credentials a pull uses.
    sessions: Vec<SessionRef>,
    runtime: tokio::runtime::Handle,
}

impl ImageMetaResolver for StoreResolver {
    fn resolve_image_config(
        &self,
        reference: &str,
        platform: Option<&Platform>,
    ) -> Result<ResolvedImageConfig, Box<dyn std::error::Error + Send + Sync>> {
        let image = ImageRef::parse(reference)?;
        let platform = platform.cloned().unwrap_or_else(Platform::host).or_host();
        let resolved = self.runtime.block_on(self.worker.resolve_image(
            &image,
            &platform,
            ResolveMode::Default,
            &self.sessions,
            &log_pull,
        ))?;
        Ok(ResolvedImageConfig {
            digest: resolved.target.digest.to_string(),
            config: resolved.manifest.config_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_take_buildkits_names() {
        let r = DockerfileRequest::parse(
            "dockerfile.v0",
            &attrs(&[
                ("filename", "app.Dockerfile"),
                ("target", "test"),
                ("build-arg:A", "1"),
                ("label:org.x", "y"),
                ("no-cache", "a, B"),
                ("context:base", "docker-image://busybox"),
                ("platform", &host_platform()),
            ]),
        )
        .unwrap();
        assert_eq!(r.filename, "app.Dockerfile");
        assert_eq!(r.target.as_deref(), Some("test"));
        assert_eq!(r.build_args["A"], "1");
        assert_eq!(r.labels["org.x"], "y");
        assert_eq!(
            r.no_cache,
            NoCache::Stages(["a".to_string(), "b".to_string()].into())
        );
        assert_eq!(r.named_contexts["base"], "docker-image://busybox");
        assert_eq!(
            (r.context_dir.as_str(), r.dockerfile_dir.as_str()),
            ("context", "dockerfile")
        );
        let all = DockerfileRequest::parse("dockerfile", &attrs(&[("no-cache", "")])).unwrap();
        assert_eq!(all.no_cache, NoCache::All);
    }

    #[test]
    fn unknown_frontends_and_options_are_refused_by_name() {
        for (name, pairs, needle) in [
            ("gateway.v0", &[][..], "\"gateway.v0\""),
            ("dockerfile.v0", &[("foo", "1")], "\"foo\""),
            (
                "dockerfile.v0",
                &[("platform", "linux/s390x")],
                "host's platform",
            ),
            ("dockerfile.v0", &[("filename", "")], "needs a value"),
        ] {
            let e = DockerfileRequest::parse(name, &attrs(pairs)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains(needle), "{}", e.message());
        }
    }
}
