//! Helpers the test modules share: running an async test body, racing a cancellation, a build
//! through `oxctl` that must succeed or several started at once, the state of a step in plain progress.

use std::error::Error;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use oxkit_containerd::testing::block_on;

/// Runs a test's async body; an error panics while the fixture is alive, so that it prints both
/// daemons' logs.
pub fn in_runtime(
    body: impl Future<Output = Result<(), Box<dyn Error>>>,
) -> Result<(), Box<dyn Error>> {
    if let Err(e) = block_on(body) {
        panic!("{e}");
    }
    Ok(())
}

/// Polls `a` and `b` together and returns as soon as `b` finishes; `a` is dropped unfinished then
/// (a cancelled build step). Returns `a`'s output instead if it finishes first.
pub async fn until<A: Future, B: Future>(a: A, b: B) -> Result<A::Output, B::Output> {
    let (mut a, mut b) = (pin!(a), pin!(b));
    poll_fn(|cx| {
        if let Poll::Ready(out) = b.as_mut().poll(cx) {
            return Poll::Ready(Err(out));
        }
        a.as_mut().poll(cx).map(Ok)
    })
    .await
}

/// Runs `oxctl build --progress plain --output OUTPUT` on `def` and returns what it printed on
/// stdout (the exporter's response); a failed build panics with oxctl's stderr.
pub fn build_ok(
    fx: &oxkit_integration::Fixture,
    def: &[u8],
    output: &str,
) -> Result<String, oxkit_integration::FixtureError> {
    let (ok, stdout, stderr) =
        fx.oxctl(&["build", "--progress", "plain", "--output", output], def)?;
    assert!(ok, "build --output {output} failed:\n{stderr}");
    Ok(stdout)
}

/// Starts `command` (an `oxctl build`, from [`oxkit_integration::Fixture::oxctl_command`]) with
/// `def` on its stdin and its stdout and stderr piped, without waiting: builds that run at once.
pub fn spawn_build(mut command: std::process::Command, def: &[u8]) -> std::process::Child {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start oxctl");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(def)
        .expect("write the definition");
    child
}

/// How many steps ran (plain progress `#N DONE` lines), not counting the export.
pub fn steps_done(stderr: &str) -> usize {
    let export = stderr.lines().find_map(|l| {
        let (n, name) = l.split_once(' ')?;
        (name == "exporting to image").then(|| n.to_owned())
    });
    stderr
        .lines()
        .filter_map(|l| l.strip_suffix('s')?.split_once(" DONE "))
        .filter(|(n, _)| Some(*n) != export.as_deref())
        .count()
}

/// How plain progress reports the vertex named `name`: `Some("CACHED")`, `Some("DONE")`, …
pub fn state_of<'a>(progress: &'a str, name: &str) -> Option<&'a str> {
    let number = progress.lines().find_map(|l| {
        let (n, rest) = l.split_once(' ')?;
        (rest == name && n.starts_with('#')).then_some(n)
    })?;
    progress.lines().find_map(|l| {
        let rest = l.strip_prefix(number)?.strip_prefix(' ')?;
        ["CACHED", "DONE", "ERROR"]
            .into_iter()
            .find(|s| rest.starts_with(s))
    })
}

/// `oxctl build --frontend dockerfile.v0` of the `Dockerfile` in `dockerfile_dir` with build
/// context `context` and `opts` as `--opt`s, into OCI archive `archive`, plain progress:
/// (success, stdout, stderr).
pub fn build_dockerfile(
    fx: &oxkit_integration::Fixture,
    dockerfile_dir: &std::path::Path,
    context: &std::path::Path,
    opts: &[&str],
    archive: &std::path::Path,
) -> Result<(bool, String, String), oxkit_integration::FixtureError> {
    let mut args = vec![
        "build".to_string(),
        "--progress".into(),
        "plain".into(),
        "--frontend".into(),
        "dockerfile.v0".into(),
        "--local".into(),
        format!("context={}", context.display()),
        "--local".into(),
        format!("dockerfile={}", dockerfile_dir.display()),
        "--output".into(),
        format!("type=oci,dest={}", archive.display()),
    ];
    for opt in opts {
        args.push("--opt".into());
        args.push((*opt).to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fx.oxctl(&args, b"")
}
