//! Which image a build result stands on: the image source at the bottom of its root filesystem.

use oxkit_llb::op::{FileInput, MountKind, Op};
use oxkit_llb::source::Source;
use oxkit_llb::Graph;

/// The reference of the image the result's root filesystem starts from, following exec ops'
/// root mounts and file ops' first actions down to an image source; `None` for `scratch` or a
/// result that starts elsewhere (a local or git source).
pub(super) fn base_image(graph: &Graph) -> Option<String> {
    let mut edge = graph.result()?.clone();
    loop {
        let v = graph.vertex(&edge.digest)?;
        let input = match &v.op {
            Op::Source(s) => {
                return match &s.source {
                    Source::Image(image) => Some(image.reference.to_string()),
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
            _ => return None,
        };
        edge = v.inputs.get(input)?.clone();
    }
}
