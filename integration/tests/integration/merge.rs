//! Merge ops in builds, with BuildKit's semantics: inputs layered in order as if their layer
//! chains were concatenated — later files win, deletions in a later input's own chain apply
//! (opaque directories included), a file a later input merely lacks stays; the merged tree is
//! what a `run` step on it sees and what the exported image holds under `ctr run`.

use crate::support::steps_done;
use oxkit_integration::{Fixture, FixtureError, TestResult};
use oxkit_llb::{image, merge, mkdir, mkfile, rm, scratch, State};

const BASE: &str = "docker.io/library/busybox:latest";

/// Builds `state` into image `name`; returns (success, plain progress).
fn build(fx: &Fixture, state: &State, name: &str) -> Result<(bool, String), FixtureError> {
    let def = state.marshal().expect("marshal").to_bytes();
    let output = format!("type=image,name={name}");
    let (ok, _, stderr) = fx.oxctl(&["build", "--progress", "plain", "--output", &output], &def)?;
    Ok((ok, stderr))
}

/// Runs `script` in image `name` with `ctr run` and returns what it printed.
fn run(fx: &Fixture, name: &str, script: &str) -> Result<String, FixtureError> {
    fx.run(name, &["/bin/sh", "-c", script])
}

#[test]
fn an_image_merged_with_a_scratch_state_has_both_and_runs() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let files = scratch().file(mkfile("/a", 0o640, "from a\n"));
    let merged = merge(&[image(BASE), scratch(), files]);
    let name = "docker.io/library/merged:dev";
    let (ok, progress) = build(&fx, &merged, name)?;
    assert!(ok, "build failed:\n{progress}");
    // The image's own config (Cmd `sh`, PATH) comes along from the bottom input.
    assert_eq!(
        run(
            &fx,
            name,
            "cat /a; stat -c %a /a; test -x /bin/sh && ls /bin/ls"
        )?,
        "from a\n640\n/bin/ls\n"
    );
    assert_eq!(fx.run(name, &["ls", "/a"])?, "/a\n");
    // The merge's work snapshot and the views of the layers it replayed are gone.
    let left: Vec<String> = fx
        .snapshots()?
        .into_iter()
        .filter(|s| s.key.starts_with("oxkit-merge-") && s.kind != "Committed")
        .map(|s| format!("{} {}", s.kind, s.key))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // Again: cached, nothing runs.
    let (ok, progress) = build(&fx, &merged, name)?;
    assert!(ok, "{progress}");
    assert_eq!(steps_done(&progress), 0, "nothing ran:\n{progress}");
    Ok(())
}

#[test]
fn deletions_in_a_later_chain_apply_but_a_missing_file_deletes_nothing() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let a = image(BASE).file(
        mkfile("/from-a", 0o644, "a\n")
            .mkfile("/same", 0o644, "a\n")
            .mkfile("/etc/from-a", 0o644, "a\n"),
    );
    // busybox's /bin/ls removed by a file op.
    let no_ls = image(BASE).file(rm("/bin/ls"));
    // A state that has /bin (without ls) and /same but lacks everything else of `a`.
    let lacks = scratch().file(
        mkdir("/bin", 0o755)
            .mkfile("/bin/extra", 0o755, "#!/bin/sh\necho extra\n")
            .mkfile("/same", 0o644, "lacks\n"),
    );
    // /etc replaced wholesale by a run step: overlay marks the new /etc opaque.
    let new_etc = image(BASE)
        .sh("rm -rf /etc && mkdir /etc && echo new > /etc/new")
        .root();

    let cases: [(&str, State, &str, &str); 5] = [
        (
            "deleted",
            merge(&[a.clone(), no_ls.clone()]),
            "test ! -e /bin/ls && test -x /bin/sh && cat /from-a /same",
            "a\na\n",
        ),
        (
            "lacking",
            merge(&[a.clone(), lacks.clone()]),
            "test -e /bin/ls && /bin/extra && cat /from-a /same /etc/from-a",
            "extra\na\nlacks\na\n",
        ),
        (
            "reversed",
            merge(&[lacks.clone(), a.clone()]),
            "test -e /bin/ls && /bin/extra && cat /same",
            "extra\na\n",
        ),
        (
            "opaque",
            merge(&[a, new_etc]),
            "test ! -e /etc/from-a && test ! -e /etc/passwd && cat /etc/new /from-a",
            "new\na\n",
        ),
        // The same input twice: its whole chain counts again on top of what came between.
        (
            "repeated",
            merge(&[no_ls.clone(), lacks, no_ls]),
            "test ! -e /bin/ls && /bin/extra && cat /same",
            "extra\nlacks\n",
        ),
    ];
    for (case, state, script, want) in cases {
        let name = format!("docker.io/library/merge-{case}:dev");
        let (ok, progress) = build(&fx, &state, &name)?;
        assert!(ok, "{case}: build failed:\n{progress}");
        assert_eq!(run(&fx, &name, script)?, want, "{case}");
        // The exported layers say the same to containerd's own snapshotter, which unpacks them.
        let id = fx.unique_id("unpacked");
        let unpacked = fx.ctr(["run", "--rm", &name, &id, "/bin/sh", "-c", script])?;
        assert_eq!(unpacked, want, "{case}, unpacked by containerd");
    }
    Ok(())
}

#[test]
fn a_run_step_on_a_merge_sees_the_merged_tree() -> TestResult {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(());
    };
    let one = scratch().file(mkdir("/opt", 0o755).mkfile("/opt/one", 0o644, "one\n"));
    let two = image(BASE)
        .sh("mkdir -p /opt && echo two > /opt/two && rm /bin/cat")
        .root();
    let merged = merge(&[image(BASE), one, two]);
    let checked = merged
        .sh("ls /opt > /report && test ! -e /bin/cat && echo ok >> /report")
        .custom_name("check merged tree")
        .root();
    let name = "docker.io/library/merge-run:dev";
    let (ok, progress) = build(&fx, &checked, name)?;
    assert!(ok, "build failed:\n{progress}");
    assert_eq!(
        run(&fx, name, "test ! -e /bin/cat && /bin/busybox cat /report")?,
        "one\ntwo\nok\n"
    );
    Ok(())
}
