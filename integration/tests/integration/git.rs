//! Git sources against the real oxkitd and real git servers on 127.0.0.1 (`git daemon`, `git
//! http-backend`), with generated repositories: a branch's checkout is exactly its commit's
//! tree, and pinned to that commit it builds with the server stopped; a tag's subdirectory over
//! smart HTTP with a token secret lands in an image, the token nowhere in it or the progress; a
//! moved branch rebuilds only the steps that depend on the source, an unmoved one nothing;
//! two builds of one remote started together fetch its commit once.

use crate::support::{build_ok, spawn_build, steps_done};
use std::path::PathBuf;

use oxkit_git::testing::{
    actual_tree, expected_tree, git as run_git, sample_repo, SampleRepo, Server,
};
use oxkit_integration::{Fixture, FixtureError, TestResult};
use oxkit_llb::{git, git_with, image, CopyOptions, FileActions, GitOptions, State};

const BASE: &str = "docker.io/library/busybox:latest";

fn marshal(state: &State) -> Vec<u8> {
    state.marshal().expect("marshal").to_bytes()
}

/// The fixture, and the generated repository `repo` in its `srv/` (where the servers serve from).
fn start() -> Result<Option<(Fixture, PathBuf, SampleRepo)>, FixtureError> {
    let Some(fx) = Fixture::start_with_busybox(BASE)? else {
        return Ok(None);
    };
    let srv = fx.dir().join("srv");
    std::fs::create_dir_all(&srv).expect("mkdir srv");
    let repo = sample_repo(&srv, "repo");
    Ok(Some((fx, srv, repo)))
}

/// `base` with `source` copied to `/src`.
fn with_source(base: State, source: &State) -> State {
    base.file(FileActions::new().copy(
        source,
        "/",
        "/src",
        CopyOptions {
            copy_dir_contents: true,
            create_dest_path: true,
            ..Default::default()
        },
    ))
}

#[test]
fn a_branch_exports_exactly_its_tree_and_its_pinned_commit_builds_with_the_server_stopped(
) -> TestResult {
    let Some((fx, srv, repo)) = start()? else {
        return Ok(());
    };
    let mut server = Server::git_daemon(&srv);
    let url = server.url("repo");

    let dest = fx.dir().join("out");
    let output = format!("type=local,dest={}", dest.display());
    build_ok(&fx, &marshal(&git(&url, "main")), &output)?;
    assert_eq!(
        actual_tree(&dest),
        expected_tree(&repo.path, &repo.main, None)
    );
    assert!(!dest.join(".git").exists());

    // By commit hash nothing is asked of the server: it may be gone.
    server.stop();
    let pinned = fx.dir().join("pinned");
    let output = format!("type=local,dest={}", pinned.display());
    build_ok(&fx, &marshal(&git(&url, &repo.main)), &output)?;
    assert_eq!(
        actual_tree(&pinned),
        expected_tree(&repo.path, &repo.main, None)
    );
    Ok(())
}

#[test]
fn a_tags_subdir_over_smart_http_with_a_token_lands_in_an_image_without_the_token() -> TestResult {
    let Some((fx, srv, _)) = start()? else {
        return Ok(());
    };
    const TOKEN: &str = "s3cr3t-t0ken-xyz";
    // base64 of "x-access-token:s3cr3t-t0ken-xyz": BuildKit's GIT_AUTH_TOKEN as basic auth.
    let server = Server::http_backend(
        &srv,
        Some("Basic eC1hY2Nlc3MtdG9rZW46czNjcjN0LXQwa2VuLXh5eg=="),
    );
    let token_file = fx.dir().join("token");
    std::fs::write(&token_file, TOKEN).expect("write the token");
    let source = git_with(
        &server.url("repo"),
        "v1",
        GitOptions {
            subdir: Some("sub".into()),
            auth_token_secret: Some("GIT_AUTH_TOKEN".into()),
            ..Default::default()
        },
    );
    let def = marshal(&with_source(image(BASE), &source));
    let name = "docker.io/library/gitsub:dev";
    let output = format!("type=image,name={name}");
    let secret = format!("id=GIT_AUTH_TOKEN,src={}", token_file.display());
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "--progress", "plain", "--output", &output];
        args.extend_from_slice(extra);
        fx.oxctl(&args, &def)
    };
    let (ok, _, stderr) = build(&[])?;
    assert!(!ok, "a build without the token must fail");
    assert!(stderr.contains("authentication"), "{stderr}");

    let (ok, _, stderr) = build(&["--secret", &secret])?;
    assert!(ok, "build failed:\n{stderr}");
    assert!(
        !stderr.contains(TOKEN),
        "the token is in the progress:\n{stderr}"
    );
    assert_eq!(
        fx.run(name, &["/bin/sh", "-c", "cat /src/dir/file.txt; ls /src"])?,
        "in a subdir\ndir\n"
    );
    assert_eq!(
        fx.run(
            name,
            &["/bin/sh", "-c", &format!("grep -rl {TOKEN} /src || true")]
        )?,
        ""
    );
    Ok(())
}

#[test]
fn a_moved_branch_rebuilds_only_the_steps_that_depend_on_it() -> TestResult {
    let Some((fx, srv, repo)) = start()? else {
        return Ok(());
    };
    let server = Server::git_daemon(&srv);
    // An independent step, then the checkout copied in and a step that reads it.
    let def = marshal(
        &with_source(
            image(BASE).sh("echo independent > /independent").root(),
            &git(&server.url("repo"), "main"),
        )
        .sh("cat /src/README > /readme")
        .root(),
    );
    let name = "docker.io/library/gitapp:dev";
    let output = format!("type=image,name={name}");
    let build = || -> Result<usize, FixtureError> {
        let (ok, _, stderr) =
            fx.oxctl(&["build", "--progress", "plain", "--output", &output], &def)?;
        assert!(ok, "build failed:\n{stderr}");
        Ok(steps_done(&stderr))
    };
    let readme = || fx.run(name, &["cat", "/readme"]);

    assert_eq!(build()?, 5, "the base image, run, git source, copy, run");
    assert_eq!(readme()?, "third\n");
    assert_eq!(build()?, 0, "the branch did not move: everything is cached");

    std::fs::write(repo.path.join("README"), "fourth\n").expect("write");
    run_git(&repo.path, &["commit", "-q", "-am", "fourth"]);
    assert_eq!(
        build()?,
        3,
        "git source, copy and the run on top; not the independent run"
    );
    assert_eq!(readme()?, "fourth\n");
    Ok(())
}

#[test]
fn two_builds_of_one_remote_started_together_fetch_its_commit_once() -> TestResult {
    let Some((fx, srv, _)) = start()? else {
        return Ok(());
    };
    let server = Server::git_daemon(&srv);
    let url = server.url("repo");
    // Different checkouts of one commit (whole tree, a subdirectory): two cache keys, so both
    // builds run their source; only the shared bare repository can make one of them skip the
    // fetch.
    let defs = [
        marshal(&git(&url, "main")),
        marshal(&git_with(
            &url,
            "main",
            GitOptions {
                subdir: Some("sub".into()),
                ..Default::default()
            },
        )),
    ];
    let outputs: Vec<String> = (0..2)
        .map(|i| {
            format!(
                "type=local,dest={}",
                fx.dir().join(format!("out{i}")).display()
            )
        })
        .collect();
    let children: Vec<_> = defs
        .iter()
        .zip(&outputs)
        .map(|(def, output)| {
            let command = fx.oxctl_command(&["build", "--progress", "plain", "--output", output]);
            spawn_build(command, def)
        })
        .collect();
    let progress: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("wait for oxctl");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "build failed:\n{stderr}");
            stderr
        })
        .collect();
    let fetched = progress
        .iter()
        .filter(|p| p.contains(&format!("fetched {url}")))
        .count();
    let present = progress
        .iter()
        .filter(|p| p.contains("is in the git cache already"))
        .count();
    assert_eq!(
        (fetched, present),
        (1, 1),
        "one build fetches, the other finds the commit fetched:\n{}",
        progress.join("\n----\n")
    );
    Ok(())
}
