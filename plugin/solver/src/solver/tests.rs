//! The solver tested with arithmetic vertices: a world that counts executions proves cache hits.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::*;
use crate::cache::{MemoryCacheStore, RedbCacheStore};
use crate::error::OpError;
use crate::op::{CacheMap, InputKey, Op, Output, ResultLoader};
use crate::progress::Stream;
use crate::remote::RemoteRef;

/// A number the world produced, identified like a snapshot.
#[derive(Debug)]
struct Num {
    id: String,
    value: i64,
}

impl Output for Num {
    fn id(&self) -> &str {
        &self.id
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn value(output: &OutputRef) -> i64 {
    output.as_any().downcast_ref::<Num>().expect("a Num").value
}

/// The worker: keeps produced numbers (the "snapshots") and counts what ran.
#[derive(Default)]
struct World {
    stored: Mutex<HashMap<String, i64>>,
    next_id: AtomicUsize,
    /// Names of executed vertices, in completion order.
    execs: Mutex<Vec<String>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// Executions dropped before they finished.
    cancelled: AtomicUsize,
    fail_loads: AtomicBool,
    /// What `Kind::Sessions` ops saw in `OpContext::sessions`, per execution.
    sessions_seen: Mutex<Vec<Vec<String>>>,
}

impl World {
    fn produce(&self, value: i64) -> OutputRef {
        let id = format!("num-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        self.stored.lock().unwrap().insert(id.clone(), value);
        Arc::new(Num { id, value })
    }

    fn execs(&self) -> Vec<String> {
        self.execs.lock().unwrap().clone()
    }

    /// Executions since the last call, sorted.
    fn take_execs(&self) -> Vec<String> {
        let mut execs = std::mem::take(&mut *self.execs.lock().unwrap());
        execs.sort();
        execs
    }
}

#[async_trait]
impl ResultLoader for World {
    async fn load(&self, id: &str) -> Result<Option<OutputRef>, OpError> {
        if self.fail_loads.load(Ordering::SeqCst) {
            return Err("the store is unreachable".into());
        }
        let value = self.stored.lock().unwrap().get(id).copied();
        Ok(value.map(|value| {
            Arc::new(Num {
                id: id.to_owned(),
                value,
            }) as OutputRef
        }))
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Const(i64),
    Add(i64),
    Sum,
    /// Reads only the last digit of its input: keyed by that digit's content.
    LastDigit,
    Fail(&'static str),
    /// Fails to describe itself for caching.
    NoCacheMap,
    /// Keys its one input by content but cannot checksum it.
    NoChecksum,
    /// Describes two inputs whatever it has.
    TwoInputMap,
    /// Records the `String` sessions its context offers, after its delay.
    Sessions,
}

struct TestOp {
    world: Arc<World>,
    kind: Kind,
    delay: Duration,
}

/// Counts an execution as running; if dropped before `finish`, counts it as cancelled.
struct Running<'a> {
    world: &'a World,
    finished: bool,
}

impl<'a> Running<'a> {
    fn start(world: &'a World) -> Self {
        let now = world.running.fetch_add(1, Ordering::SeqCst) + 1;
        world.max_running.fetch_max(now, Ordering::SeqCst);
        Running {
            world,
            finished: false,
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.world.running.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.world.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl Op for TestOp {
    async fn cache_map(&self, _ctx: &OpContext) -> Result<CacheMap, OpError> {
        Ok(match &self.kind {
            Kind::Const(v) => CacheMap::new(format!("const:{v}")),
            Kind::Add(n) => CacheMap::new(format!("add:{n}")),
            Kind::Sum => CacheMap::new("sum"),
            Kind::LastDigit => CacheMap::new("lastdigit").with_inputs(vec![InputKey::Content]),
            Kind::Fail(_) => CacheMap::new("fail"),
            Kind::NoCacheMap => return Err("cannot resolve ref main".into()),
            Kind::NoChecksum => CacheMap::new("nochecksum").with_inputs(vec![InputKey::Content]),
            Kind::TwoInputMap => {
                CacheMap::new("two").with_inputs(vec![InputKey::Key, InputKey::Key])
            }
            Kind::Sessions => CacheMap::new("sessions"),
        })
    }

    async fn content_checksum(
        &self,
        _ctx: &OpContext,
        _index: usize,
        output: &OutputRef,
    ) -> Result<String, OpError> {
        match self.kind {
            Kind::NoChecksum => Err("/src/missing: no such file".into()),
            _ => Ok(format!("digit:{}", value(output) % 10)),
        }
    }

    async fn exec(
        &self,
        ctx: &OpContext,
        inputs: Vec<OutputRef>,
    ) -> Result<Vec<OutputRef>, OpError> {
        let mut running = Running::start(&self.world);
        tokio::time::sleep(self.delay).await;
        let result = match &self.kind {
            Kind::Const(v) => *v,
            Kind::Add(n) => value(&inputs[0]) + n,
            Kind::Sum => inputs.iter().map(value).sum(),
            Kind::LastDigit => value(&inputs[0]) % 10,
            Kind::Sessions => {
                let seen = ctx.sessions::<String>();
                self.world.sessions_seen.lock().unwrap().push(seen);
                0
            }
            Kind::NoCacheMap | Kind::NoChecksum | Kind::TwoInputMap => unreachable!("never keyed"),
            Kind::Fail(msg) => {
                running.finished = true;
                return Err((*msg).into());
            }
        };
        ctx.log(Stream::Stdout, format!("= {result}"));
        running.finished = true;
        self.world
            .execs
            .lock()
            .unwrap()
            .push(ctx.vertex().name.clone());
        Ok(vec![self.world.produce(result)])
    }
}

/// Builds vertices whose digest is their op and inputs (like LLB), named for the tests.
struct Graph {
    world: Arc<World>,
}

impl Graph {
    fn vertex(&self, name: &str, kind: Kind, delay_ms: u64, inputs: &[&Arc<Vertex>]) -> Vertex {
        let digest = format!(
            "{kind:?}({})",
            inputs
                .iter()
                .map(|v| v.digest.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let op = TestOp {
            world: self.world.clone(),
            kind,
            delay: Duration::from_millis(delay_ms),
        };
        Vertex::new(digest, name, Arc::new(op))
            .with_inputs(inputs.iter().map(|v| Edge::new((*v).clone(), 0)).collect())
    }

    fn v(&self, name: &str, kind: Kind, inputs: &[&Arc<Vertex>]) -> Arc<Vertex> {
        Arc::new(self.vertex(name, kind, 0, inputs))
    }

    fn slow(&self, name: &str, kind: Kind, delay_ms: u64, inputs: &[&Arc<Vertex>]) -> Arc<Vertex> {
        Arc::new(self.vertex(name, kind, delay_ms, inputs))
    }

    /// sum(a + 10, b + 20) with a = 1 and b as given.
    fn diamond(&self, b: i64) -> Arc<Vertex> {
        let a = self.v("a", Kind::Const(1), &[]);
        let b = self.v("b", Kind::Const(b), &[]);
        let a1 = self.v("a+10", Kind::Add(10), &[&a]);
        let b1 = self.v("b+20", Kind::Add(20), &[&b]);
        self.v("sum", Kind::Sum, &[&a1, &b1])
    }
}

fn world() -> (Arc<World>, Graph) {
    let world = Arc::new(World::default());
    (world.clone(), Graph { world })
}

fn solver_with(world: &Arc<World>, store: Arc<dyn CacheStore>, max_parallelism: usize) -> Solver {
    Solver::new(store, world.clone(), SolverConfig { max_parallelism })
}

fn solver(world: &Arc<World>) -> Solver {
    solver_with(world, Arc::new(MemoryCacheStore::new()), 4)
}

struct Outcome {
    result: Result<OutputRef, SolveError>,
    events: Vec<Event>,
}

impl Outcome {
    fn value(&self) -> i64 {
        match &self.result {
            Ok(output) => value(output),
            Err(e) => panic!("solve failed: {}", e.chain()),
        }
    }

    /// (vertex name, event) for status events, in order.
    fn statuses(&self) -> Vec<(String, EventKind)> {
        self.events
            .iter()
            .filter(|e| !matches!(e.kind, EventKind::Log { .. }))
            .map(|e| (e.vertex.name.clone(), e.kind.clone()))
            .collect()
    }

    fn names_with(&self, kind: &EventKind) -> Vec<String> {
        let mut names: Vec<String> = self
            .statuses()
            .into_iter()
            .filter(|(_, k)| k == kind)
            .map(|(n, _)| n)
            .collect();
        names.sort();
        names
    }
}

async fn solve_opts(solver: &Solver, root: &Arc<Vertex>, no_cache: bool) -> Outcome {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let options = SolveOptions {
        no_cache,
        progress: Some(tx),
        ..Default::default()
    };
    let result = solver.solve(&Edge::new(root.clone(), 0), options).await;
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    Outcome { result, events }
}

async fn solve(solver: &Solver, root: &Arc<Vertex>) -> Outcome {
    solve_opts(solver, root, false).await
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn second_solve_is_fully_cached() {
    let (world, g) = world();
    let solver = solver(&world);

    let first = solve(&solver, &g.diamond(2)).await;
    assert_eq!(first.value(), 33);
    assert_eq!(
        world.take_execs(),
        sorted(&["a", "b", "a+10", "b+20", "sum"])
    );
    assert_eq!(
        first.names_with(&EventKind::Started),
        sorted(&["a", "b", "a+10", "b+20", "sum"])
    );
    assert_eq!(
        first.names_with(&EventKind::Completed),
        sorted(&["a", "b", "a+10", "b+20", "sum"])
    );
    // Each vertex starts before it completes, and its log line comes in between.
    for name in ["a", "b", "a+10", "b+20", "sum"] {
        let of: Vec<&Event> = first
            .events
            .iter()
            .filter(|e| e.vertex.name == name)
            .collect();
        assert!(
            matches!(of.first().unwrap().kind, EventKind::Started),
            "{name}: {of:?}"
        );
        assert!(
            matches!(of.last().unwrap().kind, EventKind::Completed),
            "{name}: {of:?}"
        );
        assert!(of.iter().any(|e| matches!(
            &e.kind,
            EventKind::Log {
                stream: Stream::Stdout,
                ..
            }
        )));
        assert!(of.windows(2).all(|w| w[0].time <= w[1].time));
    }

    // Same digests, new graph objects (a new definition): nothing runs, everything is cached.
    let second = solve(&solver, &g.diamond(2)).await;
    assert_eq!(second.value(), 33);
    assert!(world.take_execs().is_empty());
    assert_eq!(
        second.names_with(&EventKind::Cached),
        sorted(&["a", "b", "a+10", "b+20", "sum"])
    );
    assert!(second.names_with(&EventKind::Started).is_empty());
}

#[tokio::test]
async fn changed_leaf_reruns_exactly_its_path_to_the_root() {
    let (world, g) = world();
    let solver = solver(&world);
    assert_eq!(solve(&solver, &g.diamond(2)).await.value(), 33);
    world.take_execs();

    let changed = solve(&solver, &g.diamond(5)).await;
    assert_eq!(changed.value(), 36);
    assert_eq!(world.take_execs(), sorted(&["b", "b+20", "sum"]));
    // "a" was not needed (its dependent was cached) and is reported cached too.
    assert_eq!(
        changed.names_with(&EventKind::Cached),
        sorted(&["a", "a+10"])
    );
}

#[tokio::test]
async fn independent_vertices_run_in_parallel() {
    let (world, g) = world();
    let solver = solver(&world);
    let x = g.slow("x", Kind::Const(1), 300, &[]);
    let y = g.slow("y", Kind::Const(2), 300, &[]);
    let root = g.v("sum", Kind::Sum, &[&x, &y]);
    let start = Instant::now();
    assert_eq!(solve(&solver, &root).await.value(), 3);
    let elapsed = start.elapsed();
    assert_eq!(world.max_running.load(Ordering::SeqCst), 2);
    // One after the other would take at least 600 ms.
    assert!(elapsed < Duration::from_millis(600), "took {elapsed:?}");
}

#[tokio::test]
async fn max_parallelism_one_serializes_executions() {
    let (world, g) = world();
    let solver = solver_with(&world, Arc::new(MemoryCacheStore::new()), 1);
    let x = g.slow("x", Kind::Const(1), 200, &[]);
    let y = g.slow("y", Kind::Const(2), 200, &[]);
    let root = g.v("sum", Kind::Sum, &[&x, &y]);
    let start = Instant::now();
    assert_eq!(solve(&solver, &root).await.value(), 3);
    assert_eq!(world.max_running.load(Ordering::SeqCst), 1);
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_solves_run_a_shared_vertex_once() {
    let (world, g) = world();
    let g = Arc::new(g);
    let solver = solver_with(&world, Arc::new(MemoryCacheStore::new()), 16);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (solver, g) = (solver.clone(), g.clone());
        tasks.push(tokio::spawn(async move {
            // Each build has its own graph objects, as from its own definition.
            let shared = g.slow("shared", Kind::Const(7), 300, &[]);
            let root = g.v(&format!("root{i}"), Kind::Add(i), &[&shared]);
            let outcome = solve(&solver, &root).await;
            (i, outcome)
        }));
    }
    for task in tasks {
        let (i, outcome) = task.await.unwrap();
        assert_eq!(outcome.value(), 7 + i);
        let shared: Vec<EventKind> = outcome
            .statuses()
            .into_iter()
            .filter(|(n, _)| n == "shared")
            .map(|(_, k)| k)
            .collect();
        assert!(
            shared == [EventKind::Started, EventKind::Completed] || shared == [EventKind::Cached],
            "solve {i} saw {shared:?}"
        );
        // Solves that joined the execution also get its output.
        if shared[0] == EventKind::Started {
            assert!(outcome
                .events
                .iter()
                .any(|e| e.vertex.name == "shared" && matches!(e.kind, EventKind::Log { .. })));
        }
    }
    let execs = world.execs();
    assert_eq!(
        execs.iter().filter(|n| *n == "shared").count(),
        1,
        "{execs:?}"
    );
    assert_eq!(execs.len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_execution_sees_the_session_of_every_solve_waiting_on_it() {
    let (world, g) = world();
    let g = Arc::new(g);
    let solver = solver(&world);
    let session_solve = |name: &str, delay_ms: u64| {
        let (solver, g, name) = (solver.clone(), g.clone(), name.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let shared = g.slow("shared", Kind::Sessions, 300, &[]);
            let options = SolveOptions {
                session: Some(Attachment::new(name)),
                ..Default::default()
            };
            solver.solve(&Edge::new(shared, 0), options).await.is_ok()
        })
    };
    let first = session_solve("first", 0);
    let second = session_solve("second", 100);
    assert!(first.await.unwrap() && second.await.unwrap());
    assert_eq!(
        *world.sessions_seen.lock().unwrap(),
        [vec!["first".to_string(), "second".to_string()]]
    );
    // A session of another type is not offered; a solve without one offers none.
    let alone = g.v("alone", Kind::Sessions, &[]);
    let options = SolveOptions {
        session: Some(Attachment::new(7_u32)),
        no_cache: true,
        ..Default::default()
    };
    solver.solve(&Edge::new(alone, 0), options).await.unwrap();
    assert_eq!(world.sessions_seen.lock().unwrap()[1], Vec::<String>::new());
}

#[tokio::test]
async fn no_cache_reexecutes_everything_and_records_the_new_results() {
    let (world, g) = world();
    let solver = solver(&world);
    let first = solve(&solver, &g.diamond(2)).await;
    world.take_execs();

    let forced = solve_opts(&solver, &g.diamond(2), true).await;
    assert_eq!(forced.value(), 33);
    assert_eq!(
        world.take_execs(),
        sorted(&["a", "b", "a+10", "b+20", "sum"])
    );
    let (first_id, forced_id) = (
        first.result.unwrap().id().to_owned(),
        forced.result.unwrap().id().to_owned(),
    );
    assert_ne!(first_id, forced_id);

    let after = solve(&solver, &g.diamond(2)).await;
    assert!(world.take_execs().is_empty());
    assert_eq!(
        after.result.unwrap().id(),
        forced_id,
        "the no-cache result replaced the old record"
    );
}

#[tokio::test]
async fn ignore_cache_reruns_the_vertex_and_its_dependents_only() {
    let (world, g) = world();
    let solver = solver(&world);
    let build = |ignore: bool| {
        let a = g.v("a", Kind::Const(1), &[]);
        let x = Arc::new(
            g.vertex("x", Kind::Add(1), 0, &[&a])
                .with_ignore_cache(ignore),
        );
        let y = g.v("y", Kind::Add(2), &[&x]);
        let b = g.v("b", Kind::Const(5), &[]);
        g.v("sum", Kind::Sum, &[&y, &b])
    };
    assert_eq!(solve(&solver, &build(true)).await.value(), 9);
    world.take_execs();

    let again = solve(&solver, &build(true)).await;
    assert_eq!(again.value(), 9);
    assert_eq!(world.take_execs(), sorted(&["x", "y", "sum"]));
    assert_eq!(again.names_with(&EventKind::Cached), sorted(&["a", "b"]));

    // Without the flag, the newest results are reused.
    solve(&solver, &build(false)).await.value();
    assert!(world.take_execs().is_empty());
}

#[tokio::test]
async fn redb_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    let (world, g) = world();
    {
        let solver = solver_with(&world, Arc::new(RedbCacheStore::open(&path).unwrap()), 4);
        assert_eq!(solve(&solver, &g.diamond(2)).await.value(), 33);
        assert_eq!(world.take_execs().len(), 5);
    }
    // A new solver on the same file, as after a daemon restart (the world's results persist).
    let solver = solver_with(&world, Arc::new(RedbCacheStore::open(&path).unwrap()), 4);
    let again = solve(&solver, &g.diamond(2)).await;
    assert_eq!(again.value(), 33);
    assert!(world.take_execs().is_empty());
    assert_eq!(again.names_with(&EventKind::Cached).len(), 5);
}

#[tokio::test]
async fn gone_result_is_executed_again_and_rerecorded() {
    let (world, g) = world();
    let store = Arc::new(MemoryCacheStore::new());
    let solver = solver_with(&world, store.clone(), 4);
    let build = || {
        let a = g.v("a", Kind::Const(1), &[]);
        g.v("r", Kind::Add(1), &[&a])
    };
    let first = solve(&solver, &build()).await;
    world.take_execs();
    world
        .stored
        .lock()
        .unwrap()
        .remove(first.result.unwrap().id());

    let second = solve(&solver, &build()).await;
    assert_eq!(second.value(), 2);
    assert_eq!(
        world.take_execs(),
        sorted(&["r"]),
        "only the lost result is rebuilt"
    );
    let new_id = second.result.unwrap().id().to_owned();
    assert!(store
        .list()
        .unwrap()
        .iter()
        .any(|(_, rec)| rec.outputs == [new_id.clone()]));

    solve(&solver, &build()).await.value();
    assert!(world.take_execs().is_empty());
}

#[tokio::test]
async fn failing_loader_is_a_miss_not_a_failure() {
    let (world, g) = world();
    let solver = solver(&world);
    solve(&solver, &g.diamond(2)).await.value();
    world.take_execs();
    world.fail_loads.store(true, Ordering::SeqCst);
    assert_eq!(solve(&solver, &g.diamond(2)).await.value(), 33);
    assert_eq!(world.take_execs().len(), 5);
}

#[tokio::test]
async fn failing_op_names_its_vertex_cancels_siblings_and_spares_other_solves() {
    let (world, g) = world();
    let solver = solver(&world);
    let broken = g.slow("broken step", Kind::Fail("exit code 2"), 50, &[]);
    let slow = g.slow("slow sibling", Kind::Const(1000), 5_000, &[]);
    let root = g.v("sum", Kind::Sum, &[&broken, &slow]);

    let start = Instant::now();
    let diamond = g.diamond(2);
    let (failed, other) = tokio::join!(solve(&solver, &root), solve(&solver, &diamond));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the sibling was not cancelled"
    );
    assert_eq!(other.value(), 33);

    let err = failed.result.as_ref().unwrap_err();
    assert!(matches!(err, SolveError::Exec { .. }), "{err:?}");
    assert_eq!(err.vertex().name, "broken step");
    assert_eq!(err.vertex().digest, broken.digest);
    assert_eq!(err.op_error().unwrap().to_string(), "exit code 2");
    assert!(
        err.chain().contains("broken step") && err.chain().ends_with(": exit code 2"),
        "{}",
        err.chain()
    );
    let failed_events: Vec<_> = failed
        .statuses()
        .into_iter()
        .filter(|(_, k)| matches!(k, EventKind::Failed { .. }))
        .collect();
    assert_eq!(failed_events.len(), 1);
    assert_eq!(failed_events[0].0, "broken step");
    assert_eq!(failed.names_with(&EventKind::Canceled), ["slow sibling"]);

    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        world.cancelled.load(Ordering::SeqCst),
        1,
        "the slow sibling's execution was dropped"
    );
    assert_eq!(world.running.load(Ordering::SeqCst), 0);

    // The failure was not recorded: the next solve tries again (and fails again).
    assert!(solve(&solver, &root).await.result.is_err());
}

#[tokio::test]
async fn dropping_a_solve_cancels_executions_no_one_else_needs() {
    let (world, g) = world();
    let solver = solver(&world);
    let slow = g.slow("slow", Kind::Const(1), 5_000, &[]);
    let task = {
        let (solver, slow) = (solver.clone(), slow.clone());
        tokio::spawn(async move { solve(&solver, &slow).await.value() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(world.running.load(Ordering::SeqCst), 1);
    task.abort();
    let _ = task.await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(world.running.load(Ordering::SeqCst), 0);
    assert_eq!(world.cancelled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dropping_one_of_two_solves_keeps_the_shared_execution() {
    let (world, g) = world();
    let solver = solver(&world);
    let shared = g.slow("shared", Kind::Const(4), 300, &[]);
    let dropped = {
        let (solver, shared) = (solver.clone(), shared.clone());
        tokio::spawn(async move { solve(&solver, &shared).await.value() })
    };
    let kept = {
        let (solver, shared) = (solver.clone(), shared.clone());
        tokio::spawn(async move { solve(&solver, &shared).await.value() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    dropped.abort();
    assert_eq!(kept.await.unwrap(), 4);
    assert_eq!(world.execs(), ["shared"]);
    assert_eq!(world.cancelled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn equal_content_checksums_give_a_cache_hit() {
    let (world, g) = world();
    let solver = solver(&world);
    let build = |n: i64| {
        let x = g.v(&format!("const {n}"), Kind::Const(n), &[]);
        let digit = g.v(&format!("last digit of {n}"), Kind::LastDigit, &[&x]);
        g.v(&format!("digit of {n} + 1"), Kind::Add(1), &[&digit])
    };
    assert_eq!(solve(&solver, &build(13)).await.value(), 4);
    world.take_execs();

    // A different input whose last digit is the same: only the input itself runs.
    let other = build(23);
    let outcome = solve(&solver, &other).await;
    assert_eq!(outcome.value(), 4);
    assert_eq!(world.take_execs(), sorted(&["const 23"]));
    assert_eq!(
        outcome.names_with(&EventKind::Cached),
        sorted(&["last digit of 23", "digit of 23 + 1"])
    );

    // A different digit is a miss.
    assert_eq!(solve(&solver, &build(25)).await.value(), 6);
    assert_eq!(
        world.take_execs(),
        sorted(&["const 25", "last digit of 25", "digit of 25 + 1"])
    );
}

#[tokio::test]
async fn edge_to_a_missing_output_names_the_vertex() {
    let (world, g) = world();
    let solver = solver(&world);
    let a = g.v("a", Kind::Const(1), &[]);
    let err = solver
        .solve(&Edge::new(a.clone(), 3), SolveOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SolveError::MissingOutput {
                index: 3,
                count: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.vertex().name, "a");
}

#[tokio::test]
async fn a_vertex_needed_twice_in_one_solve_runs_once() {
    let (world, g) = world();
    let solver = solver(&world);
    let x = g.v("x", Kind::Const(3), &[]);
    let l = g.v("x+1", Kind::Add(1), &[&x]);
    let r = g.v("x+2", Kind::Add(2), &[&x]);
    let root = g.v("sum", Kind::Sum, &[&l, &r]);
    let outcome = solve(&solver, &root).await;
    assert_eq!(outcome.value(), 9);
    assert_eq!(world.take_execs(), sorted(&["x", "x+1", "x+2", "sum"]));
    assert_eq!(
        outcome.names_with(&EventKind::Started),
        sorted(&["x", "x+1", "x+2", "sum"])
    );
}

#[tokio::test]
async fn keying_errors_name_the_vertex() {
    let (world, g) = world();
    let solver = solver(&world);
    let x = g.v("x", Kind::Const(3), &[]);
    let cases = [
        (
            g.v("resolve", Kind::NoCacheMap, &[&x]),
            "computing its cache key",
            Some("cannot resolve ref main"),
        ),
        (
            g.v("checksum", Kind::NoChecksum, &[&x]),
            "checksumming input 0",
            Some("/src/missing: no such file"),
        ),
        (
            g.v("two", Kind::TwoInputMap, &[&x]),
            "has 1 inputs but its op's cache map describes 2",
            None,
        ),
    ];
    for (vertex, message, cause) in cases {
        let err = solve(&solver, &vertex).await.result.unwrap_err();
        assert_eq!(err.vertex().name, vertex.name);
        assert!(err.to_string().contains(message), "{err}");
        assert_eq!(err.op_error().map(|e| e.to_string()).as_deref(), cause);
    }
}

/// Another daemon's records: values by key, and the aliases of keys by definition.
#[derive(Default)]
struct Imported {
    world: Arc<World>,
    values: HashMap<CacheKey, Vec<i64>>,
    aliases: HashMap<CacheKey, CacheKey>,
    /// Keys loaded, in order.
    loads: Mutex<Vec<String>>,
}

#[async_trait]
impl crate::RemoteCache for Imported {
    fn alias(&self, definition_key: &CacheKey) -> Option<CacheKey> {
        self.aliases.get(definition_key).cloned()
    }

    async fn load(&self, key: &CacheKey, ctx: &OpContext) -> Option<Vec<OutputRef>> {
        let values = self.values.get(key)?;
        self.loads.lock().unwrap().push(ctx.vertex().name.clone());
        Some(values.iter().map(|v| self.world.produce(*v)).collect())
    }
}

#[tokio::test]
async fn imported_records_are_loaded_top_down_and_kept_locally() {
    // Daemon A builds and lists what it would export.
    let (world_a, g) = world();
    let solver_a = solver(&world_a);
    let c = g.v("c", Kind::Const(17), &[]);
    let d = g.v("digit", Kind::LastDigit, &[&c]);
    let e = g.v("digit+1", Kind::Add(1), &[&d]);
    let (output, records) = solver_a
        .solve_keyed(&Edge::new(e.clone(), 0), SolveOptions::default())
        .await
        .unwrap();
    assert_eq!(value(&output), 8);
    let names: Vec<&str> = records.iter().map(|r| r.vertex.name.as_str()).collect();
    assert_eq!(names, ["digit+1", "digit", "c"]);
    assert!(records[1].definition_key.is_some() && records[0].definition_key.is_none());
    let stored = world_a.stored.lock().unwrap().clone();

    // Daemon B, with an empty store, imports them.
    let world_b = Arc::new(World::default());
    let mut imported = Imported {
        world: world_b.clone(),
        ..Default::default()
    };
    for r in &records {
        let values = r.outputs.iter().map(|id| stored[id]).collect();
        imported.values.insert(r.key.clone(), values);
        if let Some(definition) = &r.definition_key {
            imported.aliases.insert(definition.clone(), r.key.clone());
        }
    }
    let imported = Arc::new(imported);
    let solver_b = solver(&world_b);
    let g_b = Graph {
        world: world_b.clone(),
    };
    let c = g_b.v("c", Kind::Const(17), &[]);
    let d = g_b.v("digit", Kind::LastDigit, &[&c]);
    let e = g_b.v("digit+1", Kind::Add(1), &[&d]);
    let options = || SolveOptions {
        remote: Some(RemoteRef(imported.clone())),
        ..Default::default()
    };
    let output = solver_b
        .solve(&Edge::new(e.clone(), 0), options())
        .await
        .unwrap();
    assert_eq!(value(&output), 8);
    // Nothing ran, and only the target was loaded: the content-keyed step was matched by its
    // key by definition, without loading its input.
    assert!(world_b.execs().is_empty());
    assert_eq!(*imported.loads.lock().unwrap(), ["digit+1"]);

    // The loaded record is now local: no load the second time.
    let output = solver_b
        .solve(&Edge::new(e.clone(), 0), options())
        .await
        .unwrap();
    assert_eq!(value(&output), 8);
    assert_eq!(imported.loads.lock().unwrap().len(), 1);

    // Without the import, a third daemon runs everything.
    let world_c = Arc::new(World::default());
    let g_c = Graph {
        world: world_c.clone(),
    };
    let c = g_c.v("c", Kind::Const(17), &[]);
    let d = g_c.v("digit", Kind::LastDigit, &[&c]);
    let e = g_c.v("digit+1", Kind::Add(1), &[&d]);
    solve(&solver(&world_c), &e).await.value();
    assert_eq!(world_c.take_execs(), sorted(&["c", "digit", "digit+1"]));
}

#[tokio::test]
async fn an_unusable_import_is_a_miss() {
    let (world, g) = world();
    let imported = Arc::new(Imported {
        world: world.clone(),
        ..Default::default()
    });
    let x = g.v("x", Kind::Const(2), &[]);
    let y = g.v("x+1", Kind::Add(1), &[&x]);
    let options = SolveOptions {
        remote: Some(RemoteRef(imported.clone())),
        ..Default::default()
    };
    let output = solver(&world)
        .solve(&Edge::new(y, 0), options)
        .await
        .unwrap();
    assert_eq!(value(&output), 3);
    assert_eq!(world.take_execs(), sorted(&["x", "x+1"]));
}

#[tokio::test]
async fn a_step_run_under_an_imported_key_is_not_recorded_under_it() {
    let chain = |g: &Graph| {
        let c = g.v("c", Kind::Const(17), &[]);
        let d = g.v("digit", Kind::LastDigit, &[&c]);
        g.v("digit+1", Kind::Add(1), &[&d])
    };
    // Another daemon's key of the content-keyed step, reachable by its key by definition,
    // without its result (a record whose layers turned out unusable).
    let (world_a, g_a) = world();
    let (_, records) = solver(&world_a)
        .solve_keyed(&Edge::new(chain(&g_a), 0), SolveOptions::default())
        .await
        .unwrap();
    let digit = records.iter().find(|r| r.vertex.name == "digit").unwrap();
    let (world, g) = world();
    let mut imported = Imported {
        world: world.clone(),
        ..Default::default()
    };
    imported
        .aliases
        .insert(digit.definition_key.clone().unwrap(), digit.key.clone());
    let store = Arc::new(MemoryCacheStore::new());
    let solver = solver_with(&world, store.clone(), 4);
    let options = SolveOptions {
        remote: Some(RemoteRef(Arc::new(imported))),
        ..Default::default()
    };
    let output = solver
        .solve(&Edge::new(chain(&g), 0), options)
        .await
        .unwrap();
    assert_eq!(value(&output), 8);
    assert_eq!(world.take_execs(), sorted(&["c", "digit", "digit+1"]));
    assert!(store.lookup(&digit.key).unwrap().is_none());
}
