//! oxkit's worker (`oxkit-worker`) under the real solver against a real containerd with oxkitd as
//! its `oxkit` snapshotter: the image source applies layers once into chain-ID snapshots, exec
//! steps run on runc with their output in the step's log, results are cached between solves,
//! failures name the step, its exit code and its output, cache mounts persist, users resolve.

use std::collections::BTreeSet;
use std::error::Error;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::support::{in_runtime, until};
use oxkit_containerd::{Client, Labels, Lease, LeaseOptions, LinuxMounter, SnapshotKind};
use oxkit_integration::{busybox_image, Fixture, Layer, NAMESPACE};
use oxkit_worker::oxkit_llb::op::{CacheSharing, NetMode};
use oxkit_worker::oxkit_llb::{image, scratch, MountSpec, State};
use oxkit_worker::oxkit_solver::{
    Event, EventKind, MemoryCacheStore, OutputRef, SolveError, SolveOptions, Solver, SolverConfig,
    Stream,
};
use oxkit_worker::{SnapshotRef, Worker, WorkerOptions};

type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

const BUSYBOX: &str = "docker.io/library/busybox:test";

/// A worker on a fresh lease of the fixture's containerd, with its scratch dir in the fixture's.
pub(crate) async fn worker(fx: &Fixture) -> Result<(Worker, Lease)> {
    let client = Client::connect(fx.containerd_address(), NAMESPACE).await?;
    let lease = client
        .leases()
        .create(LeaseOptions {
            expire_after: Some(Duration::from_secs(3600)),
            ..Default::default()
        })
        .await?;
    let worker = Worker::new(
        client.with_lease(&lease),
        Arc::new(LinuxMounter),
        WorkerOptions {
            scratch_dir: fx.dir().join("worker"),
            local_dir: fx.dir().join("local"),
            git_dir: fx.dir().join("git"),
            http_dir: fx.dir().join("http"),
            registry: Default::default(),
            shim_idle: std::time::Duration::from_secs(3),
        },
    )?;
    Ok((worker, lease))
}

pub(crate) fn solver(worker: &Worker) -> Solver {
    Solver::new(
        Arc::new(MemoryCacheStore::new()),
        Arc::new(worker.clone()),
        SolverConfig::default(),
    )
}

/// What one solve returned and reported.
struct Solved {
    result: std::result::Result<OutputRef, SolveError>,
    events: Vec<Event>,
}

impl Solved {
    fn output(&self) -> &OutputRef {
        match &self.result {
            Ok(o) => o,
            Err(e) => panic!("the solve failed: {}", e.chain()),
        }
    }

    /// Everything the steps wrote to stdout and stderr.
    fn log(&self) -> String {
        let mut out = Vec::new();
        for e in &self.events {
            if let EventKind::Log { data, .. } = &e.kind {
                out.extend_from_slice(data);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn stdout(&self) -> String {
        let mut out = Vec::new();
        for e in &self.events {
            if let EventKind::Log {
                data,
                stream: Stream::Stdout,
            } = &e.kind
            {
                out.extend_from_slice(data);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn count(&self, want: fn(&EventKind) -> bool) -> usize {
        self.events.iter().filter(|e| want(&e.kind)).count()
    }
}

async fn solve(worker: &Worker, solver: &Solver, state: &State) -> Result<Solved> {
    let graph = state.marshal()?.parse()?;
    let edge = worker.solver_edge(&graph)?.expect("the state has a result");
    let (tx, mut rx) = oxkit_worker::progress_channel();
    let result = solver
        .solve(
            &edge,
            SolveOptions {
                no_cache: false,
                progress: Some(tx),
                ..Default::default()
            },
        )
        .await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    Ok(Solved { result, events })
}

/// Polls containerd until a task runs in the namespace.
pub(crate) async fn wait_for_a_task(worker: &Worker) -> Result {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if !worker.client().tasks().list().await?.is_empty() {
            return Ok(());
        }
    }
    Err("no task appeared".into())
}

/// Polls containerd (letting background cleanups run) until there is no container, no task and
/// no active snapshot but cache mounts.
pub(crate) async fn wait_until_clean(worker: &Worker) -> Result {
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = worker.client();
    loop {
        let tasks = client.tasks().list().await?;
        let containers = client.containers().list(&[]).await?;
        let active: Vec<_> = client
            .snapshots()
            .list(&[])
            .await?
            .into_iter()
            .filter(|s| s.kind != SnapshotKind::Committed && !s.name.starts_with("cache-"))
            .map(|s| s.name)
            .collect();
        if tasks.is_empty() && containers.is_empty() && active.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "left behind: tasks {tasks:?}, containers {containers:?}, snapshots {active:?}"
            )
            .into());
        }
    }
}

/// Polls both futures until both are done.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.expect("ready"), rb.expect("ready"))
}

fn assert_no_containers_tasks_or_active_steps(fx: &Fixture) -> Result {
    let containers = fx.ctr(["containers", "ls", "-q"])?;
    assert!(
        containers.trim().is_empty(),
        "containers left: {containers}"
    );
    let tasks = fx.ctr(["tasks", "ls", "-q"])?;
    assert!(tasks.trim().is_empty(), "tasks left: {tasks}");
    let active: Vec<_> = fx
        .snapshots()?
        .into_iter()
        .filter(|s| s.kind != "Committed" && !s.key.starts_with("cache-"))
        .collect();
    assert!(active.is_empty(), "active snapshots left: {active:?}");
    Ok(())
}

/// Imports busybox into the store (unpacked into oxkit by `ctr`).
fn import_busybox(fx: &Fixture) -> Result {
    let built = busybox_image(BUSYBOX)?.write_archive(&fx.image_path("busybox.tar"))?;
    fx.import(&built)?;
    Ok(())
}

#[test]
fn a_step_s_whole_output_arrives_even_when_written_just_before_it_exits() -> Result {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    import_busybox(&fx)?;
    in_runtime(async {
        let (worker, _lease) = worker(&fx).await?;
        let solver = solver(&worker);
        // 4 MiB on each stream, the last bytes written as the process ends: far more than a FIFO
        // holds, so the shim is still copying when the process has exited.
        let state = image(BUSYBOX)
            .sh("head -c 4194304 /dev/zero | tr '\\0' o; head -c 4194304 /dev/zero | tr '\\0' e >&2; echo end")
            .root();
        let solved = solve(&worker, &solver, &state).await?;
        solved.output();
        let stdout = solved.stdout();
        assert_eq!(stdout.len(), 4 * 1024 * 1024 + 4, "every byte of stdout");
        assert!(stdout.ends_with("end\n"));
        assert_eq!(
            solved.log().len() - stdout.len(),
            4 * 1024 * 1024,
            "every byte of stderr"
        );
        worker.shutdown().await;
        Ok(())
    })
}

#[test]
fn a_run_chain_logs_its_output_commits_its_result_and_is_cached_the_second_time() -> Result {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    import_busybox(&fx)?;
    in_runtime(async {
        let (worker, lease) = worker(&fx).await?;
        let solver = solver(&worker);

        let base = image(BUSYBOX);
        let only_image = solve(&worker, &solver, &base).await?;
        let top = SnapshotRef::from_output(only_image.output()).expect("a worker snapshot");
        let config = top
            .image_config()
            .expect("an image source carries its config");
        assert!(
            config.env.iter().any(|e| e.starts_with("PATH=")),
            "{config:?}"
        );
        assert_eq!(config.cmd, ["sh"]);

        let state = base
            .sh("echo hi > /f")
            .root()
            .sh("cat /f; echo to-stderr >&2; exit 0")
            .root();
        let first = solve(&worker, &solver, &state).await?;
        let out = first.output().clone();
        assert!(first.stdout().contains("hi\n"), "log: {:?}", first.log());
        assert!(first.log().contains("to-stderr"), "log: {:?}", first.log());
        assert_eq!(
            first.count(|k| matches!(k, EventKind::Completed)),
            2,
            "both run steps ran (the image was cached by the first solve): {:?}",
            first.events
        );

        let name = SnapshotRef::from_output(&out).unwrap().name().to_owned();
        let info = worker.client().snapshots().stat(&name).await?;
        assert_eq!(info.kind, SnapshotKind::Committed);
        // The committed result has the first step's file.
        let view = fx.unique_id("view");
        let mounts = worker
            .client()
            .snapshots()
            .view(&view, Some(&name), &Labels::new())
            .await?;
        let content = oxkit_containerd::with_temp_mount(&LinuxMounter, &mounts, |root| {
            std::fs::read_to_string(root.join("f"))
        })??;
        assert_eq!(content, "hi\n");
        worker.client().snapshots().remove(&view).await?;

        // Loaded from the cache, the image still carries its config.
        let cached_image = solve(&worker, &solver, &base).await?;
        assert_eq!(cached_image.count(|k| matches!(k, EventKind::Started)), 0);
        let cached_top = SnapshotRef::from_output(cached_image.output()).unwrap();
        assert_eq!(cached_top.image_config(), Some(config));

        let second = solve(&worker, &solver, &state).await?;
        assert_eq!(second.output().id(), out.id(), "the same result");
        assert_eq!(
            second.count(|k| matches!(k, EventKind::Started)),
            0,
            "nothing may run again: {:?}",
            second.events
        );
        assert!(second.count(|k| matches!(k, EventKind::Cached)) >= 1);
        assert!(second.log().is_empty());

        // A changed last step re-runs only that step.
        let changed = base
            .sh("echo hi > /f")
            .root()
            .sh("cat /f; exit 0 # changed")
            .root();
        let third = solve(&worker, &solver, &changed).await?;
        third.output();
        assert_eq!(
            third.count(|k| matches!(k, EventKind::Started)),
            1,
            "{:?}",
            third.events
        );

        worker.shutdown().await;
        assert_no_containers_tasks_or_active_steps(&fx)?;
        lease.delete(false).await?;
        Ok(())
    })
}

#[test]
fn a_failing_step_names_itself_its_exit_code_and_its_output_and_leaves_nothing_behind() -> Result {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    import_busybox(&fx)?;
    in_runtime(async {
        let (worker, lease) = worker(&fx).await?;
        let solver = solver(&worker);
        let state = image(BUSYBOX)
            .sh("echo about-to-fail; echo on-stderr >&2; exit 7")
            .root();
        let failed = solve(&worker, &solver, &state).await?;
        let err = failed
            .result
            .as_ref()
            .expect_err("exit 7 must fail the solve");
        let chain = err.chain();
        assert!(chain.contains("exit code: 7"), "{chain}");
        assert!(
            chain.contains("about-to-fail") && chain.contains("on-stderr"),
            "{chain}"
        );
        assert!(
            err.vertex().name.contains("exit 7"),
            "the error names the step: {chain}"
        );
        assert!(chain.contains("step \""), "{chain}");
        assert_eq!(failed.count(|k| matches!(k, EventKind::Failed { .. })), 1);

        // An image the store lacks and its registry cannot give (nothing listens on port 1) is
        // a clear error that names it.
        let missing = solve(&worker, &solver, &image("127.0.0.1:1/absent:1")).await?;
        let chain = missing.result.as_ref().unwrap_err().chain();
        assert!(
            chain.contains("127.0.0.1:1/absent:1") && chain.contains("is unreachable"),
            "{chain}"
        );

        // A solve dropped while its step runs: the container, task and snapshots go away.
        let slow = image(BUSYBOX).sh("sleep 1000").root();
        match until(solve(&worker, &solver, &slow), wait_for_a_task(&worker)).await {
            Err(running) => running?,
            Ok(_) => panic!("`sleep 1000` finished"),
        }
        wait_until_clean(&worker).await?;

        // Valid exit codes other than 0.
        let ok7 = image(BUSYBOX).sh("exit 7").valid_exit_codes(&[0, 7]).root();
        solve(&worker, &solver, &ok7).await?.output();

        worker.shutdown().await;
        assert_no_containers_tasks_or_active_steps(&fx)?;
        lease.delete(false).await?;
        Ok(())
    })
}

#[test]
fn image_layers_are_applied_once_by_chain_id_and_shared() -> Result {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let name = "docker.io/library/layered:test";
    let built = busybox_image(name)?
        .layer(Layer::new().file("etc/motd", "second layer\n", 0o644))
        .write_archive(&fx.image_path("layered.tar"))?;
    // Not unpacked: the worker applies the layers itself.
    fx.ctr([
        "images",
        "import",
        "--no-unpack",
        built.archive.to_str().unwrap(),
    ])?;
    in_runtime(async {
        let before = fx.snapshot_keys()?;
        assert!(!before.contains(&built.chain_ids[0]), "{before:?}");
        let (worker, lease) = worker(&fx).await?;
        let first = solve(&worker, &solver(&worker), &image(name)).await?;
        assert_eq!(name_of(first.output()), built.chain_ids[1]);
        let rows = fx.snapshots()?;
        for (i, chain) in built.chain_ids.iter().enumerate() {
            let row = rows
                .iter()
                .find(|s| &s.key == chain)
                .expect("layer snapshot");
            assert_eq!(row.kind, "Committed");
            let parent = (i > 0).then(|| built.chain_ids[i - 1].clone());
            assert_eq!(row.parent, parent, "{row:?}");
        }
        let after_first = fx.snapshot_keys()?;
        assert_eq!(after_first.len(), before.len() + 2, "{after_first:?}");

        // Another solver (no shared cache) and another op on the same image: no new snapshots.
        let again = solve(&worker, &solver(&worker), &image(name)).await?;
        assert_eq!(name_of(again.output()), built.chain_ids[1]);
        assert_eq!(fx.snapshot_keys()?, after_first);

        // Two solves at once on an image whose layers are not applied yet: both succeed (one of
        // them finds the other's committed layer and drops its own work), sharing one chain.
        let twin = "docker.io/library/twin:test";
        let twin_built = busybox_image(twin)?
            .layer(Layer::new().file("etc/twin", "twin\n", 0o644))
            .write_archive(&fx.image_path("twin.tar"))?;
        fx.ctr([
            "images",
            "import",
            "--no-unpack",
            twin_built.archive.to_str().unwrap(),
        ])?;
        let (a, b) = join(
            solve(&worker, &solver(&worker), &image(twin)),
            solve(&worker, &solver(&worker), &image(twin)),
        )
        .await;
        let (a, b) = (a?, b?);
        assert_eq!(name_of(a.output()), twin_built.chain_ids[1]);
        assert_eq!(name_of(b.output()), twin_built.chain_ids[1]);

        // And a step on it sees both layers.
        let step = image(name).sh("cat /etc/motd; test -x /bin/busybox").root();
        let ran = solve(&worker, &solver(&worker), &step).await?;
        assert!(ran.stdout().contains("second layer"), "{}", ran.log());
        worker.shutdown().await;
        assert_no_containers_tasks_or_active_steps(&fx)?;
        lease.delete(false).await?;
        Ok(())
    })
}

#[test]
fn mounts_network_and_users_of_run_steps() -> Result {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let name = "docker.io/library/users:test";
    let users = Layer::new()
        .file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1234:2345:b:/home/builder:/bin/sh\n",
            0o644,
        )
        .file(
            "etc/group",
            "root:x:0:\nbuilder:x:2345:\nstaff:x:50:builder\n",
            0o644,
        );
    let built = busybox_image(name)?
        .layer(users)
        .write_archive(&fx.image_path("users.tar"))?;
    fx.import(&built)?;
    in_runtime(async {
        let (worker, lease) = worker(&fx).await?;
        let base = image(name);

        // A user name from the image's /etc/passwd and /etc/group; and numeric ids.
        let named = solve(
            &worker,
            &solver(&worker),
            &base.sh("id").user("builder").root(),
        )
        .await?;
        let id = named.stdout();
        assert!(id.contains("uid=1234") && id.contains("gid=2345"), "{id}");
        assert!(id.contains("50"), "supplementary group staff: {id}");
        let numeric = solve(
            &worker,
            &solver(&worker),
            &base.sh("id -u; id -g").user("4321:99").root(),
        )
        .await?;
        assert_eq!(numeric.stdout(), "4321\n99\n");
        let unknown = solve(
            &worker,
            &solver(&worker),
            &base.sh("id").user("nobody").root(),
        )
        .await?;
        let chain = unknown.result.as_ref().unwrap_err().chain();
        assert!(chain.contains("no user \"nobody\""), "{chain}");

        // Network none: loopback only.
        let none = base.sh("cat /proc/net/dev").network(NetMode::None).root();
        let none = solve(&worker, &solver(&worker), &none).await?;
        let interfaces: BTreeSet<String> = none
            .stdout()
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|n| n.trim().to_owned())
            .collect();
        assert_eq!(interfaces, BTreeSet::from(["lo".to_owned()]));

        // A cache mount keeps its files between two different solves (other solvers, too).
        let write = base
            .sh("echo kept > /cache/x")
            .mount(MountSpec::cache("/cache", "worker-test"))
            .root();
        solve(&worker, &solver(&worker), &write).await?.output();
        let read = base
            .sh("cat /cache/x")
            .mount(MountSpec::cache("/cache", "worker-test"))
            .root();
        let read = solve(&worker, &solver(&worker), &read).await?;
        assert_eq!(read.stdout(), "kept\n");

        // `locked` sharing: two steps on one cache id at once take turns.
        let turn = |n: &str| {
            base.sh(&format!(
                "if [ -e /cache/busy ]; then echo overlap; fi; touch /cache/busy; sleep 1; \
                 rm /cache/busy; echo {n}"
            ))
            .mount(MountSpec::cache("/cache", "locked-test").sharing(CacheSharing::Locked))
            .root()
        };
        let (a, b) = join(
            solve(&worker, &solver(&worker), &turn("a")),
            solve(&worker, &solver(&worker), &turn("b")),
        )
        .await;
        let (a, b) = (a?, b?);
        assert_eq!((a.stdout(), b.stdout()), ("a\n".into(), "b\n".into()));

        // A read-only bind of another step's output, from a selector down; and a tmpfs.
        let data = base
            .sh("mkdir -p /data/sub && echo bound > /data/sub/file")
            .root();
        let bind = base
            .sh("cat /mnt/file; grep -q ' /mnt .*ro,' /proc/mounts && echo read-only; grep -q ' /scratch tmpfs ' /proc/mounts && echo tmpfs")
            .mount(MountSpec::bind("/mnt", &data).readonly().selector("/data/sub"))
            .mount(MountSpec::tmpfs("/scratch"))
            .root();
        let bind = solve(&worker, &solver(&worker), &bind).await?;
        assert_eq!(bind.stdout(), "bound\nread-only\ntmpfs\n", "{}", bind.log());

        // A writable bind mount with an output: its content after the step is committed too.
        let produced = base
            .sh("echo made > /out/artifact")
            .mount(MountSpec::bind("/out", &scratch()))
            .exec();
        let artifact = produced.mount_output("/out").expect("an output for /out");
        let consume = base
            .sh("cat /in/artifact; test ! -e /artifact")
            .mount(MountSpec::bind("/in", &artifact).readonly())
            .root();
        let consumed = solve(&worker, &solver(&worker), &consume).await?;
        assert_eq!(consumed.stdout(), "made\n", "{}", consumed.log());

        worker.shutdown().await;
        assert_no_containers_tasks_or_active_steps(&fx)?;
        lease.delete(false).await?;
        Ok(())
    })
}

/// The committed snapshot's name behind a solve's output.
fn name_of(output: &OutputRef) -> &str {
    SnapshotRef::from_output(output)
        .expect("a worker snapshot")
        .name()
}
