//! Which image a build result stands on: the image source at the bottom of its root filesystem.

use oxkit_llb::op::{FileInput, MountKind, Op, Platform};
use oxkit_llb::source::Source;
use oxkit_llb::Graph;

/// The reference of the image the result's root filesystem starts from, and the platform its
/// source picks a manifest for (the host's where it names none, as the image source does),
/// following exec ops' root mounts, file ops' first actions and merge ops' bottom inputs down to
/// an image source; `None` for `scratch` or a result that starts elsewhere (a local or git
/// source).
pub(super) fn base_image(graph: &Graph) -> Option<(String, Platform)> {
    let mut edge = graph.result()?.clone();
    loop {
        let v = graph.vertex(&edge.digest)?;
        let input = match &v.op {
            Op::Source(s) => {
                return match &s.source {
                    Source::Image(image) => Some((
                        image.reference.to_string(),
                        v.platform.clone().unwrap_or_else(Platform::host).or_host(),
                    )),
                    _ => None,
                }
            }
            Op::Exec(exec) => {
                exec.mounts
                    .iter()
                    .find(|m| m.dest == "/")
                    .and_then(|m| match &m.kind {
                        MountKind::Bind { input, .. } => *input,
                        _ => None,
                    })?
            }
            Op::File(file) => match file.actions.first()?.input {
                FileInput::Input(i) => i,
                _ => return None,
            },
            // The merge's snapshot is made on its bottom input.
            Op::Merge(merge) => *merge.inputs.first()?,
        };
        edge = v.inputs.get(input)?.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxkit_llb::{image, merge, mkfile, scratch, State};

    fn base_of(state: &State) -> Option<String> {
        base_image(&state.marshal().unwrap().parse().unwrap()).map(|(name, _)| name)
    }

    #[test]
    fn the_base_comes_with_the_platform_its_source_picks() {
        let arm = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            ..Default::default()
        };
        let st = oxkit_llb::image_with(
            "busybox",
            oxkit_llb::ImageOptions {
                platform: Some(arm.clone()),
                ..Default::default()
            },
        );
        let graph = st.sh("true").root().marshal().unwrap().parse().unwrap();
        assert_eq!(
            base_image(&graph),
            Some(("docker.io/library/busybox:latest".to_string(), arm))
        );
    }

    #[test]
    fn a_merge_stands_on_its_bottom_input() {
        let busybox = "docker.io/library/busybox:latest";
        let files = scratch().file(mkfile("/a", 0o644, "a"));
        let on_image = merge(&[image(busybox), files.clone()]);
        assert_eq!(base_of(&on_image).as_deref(), Some(busybox));
        assert_eq!(
            base_of(&on_image.sh("true").root()).as_deref(),
            Some(busybox)
        );
        assert_eq!(base_of(&merge(&[files, image(busybox)])), None);
    }
}
