//! The file op: applies an LLB file op's actions (`oxkit-fileop`) to containerd snapshots. Each
//! action gets a writable snapshot prepared on its base (an input, an earlier action's result, or
//! scratch), with the filesystems it reads (copy source, owner lookups) mounted as read-only views;
//! results that are outputs or read by later actions are committed. A copy's source input is
//! keyed by the content of exactly the paths it copies.

use std::path::PathBuf;
use std::sync::Arc;

use oxkit_containerd::Mount;
use oxkit_fileop::{ChecksumOptions, EtcFiles, FileOpPlan};
use oxkit_llb::op::{Chown, FileAction, FileActionKind, FileInput, FileOp as LlbFileOp, UserRef};
use oxkit_solver::{CacheMap, InputKey, Op, OpContext, OpError, OutputRef};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::error::WorkerError;
use crate::held::Held;
use crate::worker::{snapshot_inputs, SnapshotRef, Worker};

/// The file op's cache map for a vertex with `num_inputs` inputs: the digest of its semantic
/// definition (every action with its input references and output index; mkfile data by its
/// hash), and per input how it is keyed. An input that the op only ever copies from is keyed by
/// [`InputKey::Content`] (the checksum of the copied paths, see [`FileOpOp`]'s
/// `content_checksum`); an input that an action starts from or looks owners up in is keyed by
/// its cache key, since the whole filesystem matters.
pub fn file_cache_map(op: &LlbFileOp, num_inputs: usize) -> Result<CacheMap, WorkerError> {
    FileOpPlan::new(op, num_inputs)?;
    let actions: Vec<Value> = op.actions.iter().map(action_doc).collect();
    let doc = json!({ "actions": actions });
    let digest = format!(
        "oxkit.file.v1:sha256:{}",
        hex(&Sha256::digest(doc.to_string().as_bytes()))
    );
    let inputs = (0..num_inputs)
        .map(|n| {
            if content_keyed(op, n) {
                InputKey::Content
            } else {
                InputKey::Key
            }
        })
        .collect();
    Ok(CacheMap::new(digest).with_inputs(inputs))
}

/// Whether input `n` is read only as the source of copies (and read at all).
fn content_keyed(op: &LlbFileOp, n: usize) -> bool {
    let this = FileInput::Input(n);
    let mut copied = false;
    for a in &op.actions {
        if a.input == this || oxkit_fileop::owner_inputs(a).contains(&this) {
            return false;
        }
        if matches!(a.kind, FileActionKind::Copy(_)) && a.secondary_input == this {
            copied = true;
        }
    }
    copied
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn input_doc(i: FileInput) -> Value {
    match i {
        FileInput::Scratch => json!("scratch"),
        FileInput::Input(n) => json!({ "input": n }),
        FileInput::Action(n) => json!({ "action": n }),
    }
}

fn owner_doc(o: Option<&Chown>) -> Value {
    let user = |u: &Option<UserRef>| match u {
        None => Value::Null,
        Some(UserRef::Id(id)) => json!({ "id": id }),
        Some(UserRef::Name { name, input }) => json!({ "name": name, "in": input_doc(*input) }),
    };
    match o {
        None => Value::Null,
        Some(c) => json!({ "user": user(&c.user), "group": user(&c.group) }),
    }
}

fn action_doc(a: &FileAction) -> Value {
    let kind = match &a.kind {
        FileActionKind::Copy(c) => json!({ "copy": {
            "src": c.src, "dest": c.dest, "owner": owner_doc(c.owner.as_ref()), "mode": c.mode,
            "follow_symlink": c.follow_symlink, "dir_copy_contents": c.dir_copy_contents,
            "create_dest_path": c.create_dest_path, "allow_wildcard": c.allow_wildcard,
            "allow_empty_wildcard": c.allow_empty_wildcard, "timestamp": c.timestamp,
            "include": c.include_patterns, "exclude": c.exclude_patterns,
            "replace": c.always_replace_existing_dest_paths,
        }}),
        FileActionKind::Mkfile(m) => json!({ "mkfile": {
            "path": m.path, "mode": m.mode, "data": hex(&Sha256::digest(&m.data)),
            "owner": owner_doc(m.owner.as_ref()), "timestamp": m.timestamp,
        }}),
        FileActionKind::Mkdir(m) => json!({ "mkdir": {
            "path": m.path, "mode": m.mode, "make_parents": m.make_parents,
            "owner": owner_doc(m.owner.as_ref()), "timestamp": m.timestamp,
        }}),
        FileActionKind::Rm(r) => json!({ "rm": {
            "path": r.path, "allow_not_found": r.allow_not_found,
            "allow_wildcard": r.allow_wildcard,
        }}),
        FileActionKind::Symlink(s) => json!({ "symlink": {
            "oldpath": s.oldpath, "newpath": s.newpath,
            "owner": owner_doc(s.owner.as_ref()), "timestamp": s.timestamp,
        }}),
    };
    let mut kind = kind;
    if let FileActionKind::Copy(c) = &a.kind {
        // Only when set, so that the keys of every other copy stay what they were.
        if c.attempt_unpack {
            kind["copy"]["unpack"] = json!(true);
        }
    }
    // The secondary input only means something for copy.
    let secondary = match a.kind {
        FileActionKind::Copy(_) => input_doc(a.secondary_input),
        _ => Value::Null,
    };
    json!({ "input": input_doc(a.input), "secondary": secondary, "output": a.output,
        "kind": kind })
}

/// The filesystems action `a` reads besides its base: its copy source and owner lookups, once
/// each.
fn read_inputs(a: &FileAction) -> Vec<FileInput> {
    let mut out = Vec::new();
    if matches!(a.kind, FileActionKind::Copy(_)) {
        out.push(a.secondary_input);
    }
    for i in oxkit_fileop::owner_inputs(a) {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Actions whose result is used only as the base of one later action and is no output: that
/// action continues on the same mounted snapshot instead of a committed copy.
fn fused(op: &LlbFileOp) -> Vec<bool> {
    let n = op.actions.len();
    let mut as_base = vec![0usize; n];
    let mut read = vec![false; n];
    for a in &op.actions {
        if let FileInput::Action(j) = a.input {
            as_base[j] += 1;
        }
        for i in read_inputs(a) {
            if let FileInput::Action(j) = i {
                read[j] = true;
            }
        }
    }
    (0..n)
        .map(|j| op.actions[j].output.is_none() && as_base[j] == 1 && !read[j])
        .collect()
}

/// The checksum options of a copy (what selects the paths it reads).
fn checksum_options(c: &oxkit_llb::op::Copy) -> ChecksumOptions {
    ChecksumOptions {
        follow_symlinks: c.follow_symlink,
        allow_wildcard: c.allow_wildcard,
        allow_empty_wildcard: c.allow_empty_wildcard,
        include_patterns: c.include_patterns.clone(),
        exclude_patterns: c.exclude_patterns.clone(),
    }
}

/// The file op on a worker's snapshots. One output per output index of its actions.
pub struct FileOpOp {
    worker: Worker,
    op: LlbFileOp,
    num_inputs: usize,
}

impl FileOpOp {
    /// The file op `op` of a vertex with `num_inputs` inputs, on `worker`.
    pub fn new(worker: Worker, op: LlbFileOp, num_inputs: usize) -> Self {
        Self {
            worker,
            op,
            num_inputs,
        }
    }
}

/// Where an action's result is.
enum ActionResult {
    /// Still mounted and writable (fused into the next action that starts from it).
    Active { key: String, dir: PathBuf },
    /// Committed under this name.
    Committed(String),
    /// Discarded (neither an output nor read later).
    Gone,
}

impl FileOpOp {
    /// Runs every action in plan order; returns the committed outputs by index.
    async fn run(
        &self,
        inputs: &[SnapshotRef],
        held: &mut Held,
    ) -> Result<Vec<(usize, String)>, WorkerError> {
        let plan = FileOpPlan::new(&self.op, inputs.len())?;
        let fused = fused(&self.op);
        let mut results: Vec<ActionResult> = Vec::with_capacity(plan.actions.len());
        let committed = |results: &[ActionResult], j: usize| match results.get(j) {
            Some(ActionResult::Committed(name)) => Ok(name.clone()),
            _ => Err(WorkerError::InvalidOp(format!(
                "file action {j}'s result is used but was not kept"
            ))),
        };
        let mut outputs = Vec::new();
        let linked = std::sync::Arc::default();
        for planned in &plan.actions {
            let action = &self.op.actions[planned.index];
            // The writable filesystem the action changes.
            let (key, dest) = match planned.base {
                FileInput::Scratch => held.attach(None, true).await?,
                FileInput::Input(n) => held.attach(Some(inputs[n].name()), true).await?,
                FileInput::Action(j) if fused[j] => {
                    match std::mem::replace(&mut results[j], ActionResult::Gone) {
                        ActionResult::Active { key, dir } => (key, dir),
                        _ => unreachable!("a fused action's result stays active"),
                    }
                }
                FileInput::Action(j) => {
                    let parent = committed(&results, j)?;
                    held.attach(Some(&parent), true).await?
                }
            };
            // The filesystems it reads, as read-only views.
            let mut views: Vec<(String, PathBuf)> = Vec::new();
            let mut roots: Vec<(FileInput, PathBuf)> = Vec::new();
            for read in read_inputs(action) {
                let dir = match read {
                    FileInput::Scratch => held.empty_dir()?,
                    FileInput::Input(n) => {
                        let (k, d) = held.attach(Some(inputs[n].name()), false).await?;
                        views.push((k, d.clone()));
                        d
                    }
                    FileInput::Action(j) => {
                        let parent = committed(&results, j)?;
                        let (k, d) = held.attach(Some(&parent), false).await?;
                        views.push((k, d.clone()));
                        d
                    }
                };
                roots.push((read, dir));
            }
            let source = planned
                .source
                .and_then(|s| roots.iter().find(|(i, _)| *i == s).map(|(_, d)| d.clone()));
            let users = roots
                .into_iter()
                .fold(EtcFiles::new(), |u, (i, d)| u.with_root(i, d));
            // Where the source's files and the destination's writes really are, so that a copy
            // can share files by hard links (`oxkit_fileop::LayerPaths`).
            let paths = oxkit_fileop::LayerPaths {
                source: source.as_ref().and_then(|dir| {
                    let layers = Mount::view_layers(held.mounts_of(dir)?)?;
                    Some((dir.clone(), layers))
                }),
                dest: held
                    .mounts_of(&dest)
                    .and_then(Mount::active_upper)
                    .map(|upper| (dest.clone(), upper)),
                linked: std::sync::Arc::clone(&linked),
                // Committed or detached (unmounted) right after; a fused result stays mounted.
                dest_last_use: !fused[planned.index],
            };
            let action_owned = action.clone();
            let dest_dir = dest.clone();
            tokio::task::spawn_blocking(move || {
                oxkit_fileop::apply(
                    &dest_dir,
                    &action_owned,
                    source.as_deref(),
                    &users,
                    Some(&paths),
                )
            })
            .await
            .map_err(|e| WorkerError::InvalidOp(format!("the file action task failed: {e}")))??;
            for (k, d) in views {
                held.detach(&k, &d).await?;
            }
            let result = if fused[planned.index] {
                ActionResult::Active { key, dir: dest }
            } else if planned.output.is_some() || planned.needed_later {
                let name = held.commit(&key, &dest).await?;
                if let Some(o) = planned.output {
                    outputs.push((o, name.clone()));
                }
                ActionResult::Committed(name)
            } else {
                held.detach(&key, &dest).await?;
                ActionResult::Gone
            };
            results.push(result);
        }
        // Intermediate results no output depends on can go; those that are parents of an
        // output cannot be removed (containerd refuses) and stay with the lease.
        let kept: Vec<String> = outputs.iter().map(|(_, n)| n.clone()).collect();
        let snapshots = self.worker.client().snapshots();
        for name in held.committed.clone().into_iter().rev() {
            if !kept.contains(&name) {
                if let Err(e) = snapshots.remove(&name).await {
                    tracing::debug!(name, error = %e, "an intermediate file op result stays");
                }
            }
        }
        outputs.sort();
        for (expected, (index, _)) in outputs.iter().enumerate() {
            if *index != expected {
                return Err(WorkerError::InvalidOp(format!(
                    "the file op's outputs are not numbered 0..{}: output {expected} is missing \
                     or repeated",
                    outputs.len()
                )));
            }
        }
        Ok(outputs)
    }
}

/// The checksum of what `op`'s copies read from input `index`, mounted at `root`: each copy's
/// [`oxkit_fileop::content_checksum`] of its source path, in action order.
fn copied_content_checksum(
    op: &LlbFileOp,
    index: usize,
    root: &std::path::Path,
    known: Option<&oxkit_fileop::KnownDigests>,
) -> Result<String, WorkerError> {
    let mut h = Sha256::new();
    for a in &op.actions {
        if let FileActionKind::Copy(c) = &a.kind {
            if a.secondary_input == FileInput::Input(index) {
                let sum = oxkit_fileop::content_checksum_with(
                    root,
                    std::slice::from_ref(&c.src),
                    &checksum_options(c),
                    known,
                )?;
                h.update(sum.to_string().as_bytes());
                h.update(b"\n");
            }
        }
    }
    Ok(format!(
        "oxkit.file.content.v1:sha256:{}",
        hex(&h.finalize())
    ))
}

/// The snapshot label that records [`copied_content_checksum`] of `op`'s input `index`: named
/// by what selects the paths read (each copy's source and checksum options), so two ops that
/// read the same paths of a snapshot share it.
fn checksum_memo_label(op: &LlbFileOp, index: usize) -> String {
    let mut h = Sha256::new();
    for a in &op.actions {
        if let FileActionKind::Copy(c) = &a.kind {
            if a.secondary_input == FileInput::Input(index) {
                h.update(format!("{:?}\n{:?}\n", c.src, checksum_options(c)).as_bytes());
            }
        }
    }
    format!("oxkit.io/checksum.v1.{}", hex(&h.finalize()))
}

#[async_trait::async_trait]
impl Op for FileOpOp {
    async fn cache_map(&self, _: &OpContext) -> Result<CacheMap, OpError> {
        Ok(file_cache_map(&self.op, self.num_inputs)?)
    }

    async fn content_checksum(
        &self,
        _: &OpContext,
        index: usize,
        output: &OutputRef,
    ) -> Result<String, OpError> {
        let snapshot = snapshot_inputs(std::slice::from_ref(output))?.remove(0);
        // A committed snapshot never changes: the checksum made for it once (for the same
        // selection) is recorded on it, and later builds read it back instead of hashing again.
        let memo = checksum_memo_label(&self.op, index);
        let snapshots = self.worker.client().snapshots();
        if let Ok(info) = snapshots.stat(snapshot.name()).await {
            if let Some(sum) = info.labels.get(&memo) {
                return Ok(sum.clone());
            }
        }
        let mut held = Held::new(self.worker.clone(), "oxkit-file");
        let result = async {
            let (_, root) = held.attach(Some(snapshot.name()), false).await?;
            let op = self.op.clone();
            let known = self.worker.known_digests(snapshot.name());
            tokio::task::spawn_blocking(move || {
                copied_content_checksum(&op, index, &root, known.as_deref())
            })
            .await
            .map_err(|e| WorkerError::InvalidOp(format!("the checksum task failed: {e}")))?
        }
        .await;
        held.cleanup(false).await;
        let sum = result?;
        let labels = oxkit_containerd::Labels::from([(memo, sum.clone())]);
        if let Err(e) = snapshots.update_labels(snapshot.name(), &labels).await {
            tracing::debug!(snapshot = snapshot.name(), error = %e, "could not record a checksum");
        }
        Ok(sum)
    }

    async fn exec(&self, _: &OpContext, inputs: Vec<OutputRef>) -> Result<Vec<OutputRef>, OpError> {
        let inputs = snapshot_inputs(&inputs)?;
        let mut held = Held::new(self.worker.clone(), "oxkit-file");
        let ran = self.run(&inputs, &mut held).await;
        held.cleanup(ran.is_err()).await;
        Ok(ran?
            .into_iter()
            .map(|(_, name)| Arc::new(SnapshotRef::new(name)) as OutputRef)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxkit_llb::op::{Copy, Mkdir, Mkfile, Rm};

    fn copy_from(n: usize, src: &str) -> FileAction {
        FileAction {
            input: FileInput::Input(0),
            secondary_input: FileInput::Input(n),
            output: None,
            kind: FileActionKind::Copy(Copy {
                src: src.into(),
                dest: "/dst/".into(),
                ..Default::default()
            }),
        }
    }

    fn mkdir(input: FileInput, output: Option<usize>) -> FileAction {
        FileAction {
            input,
            secondary_input: FileInput::Scratch,
            output,
            kind: FileActionKind::Mkdir(Mkdir {
                path: "/d".into(),
                mode: 0o755,
                ..Default::default()
            }),
        }
    }

    /// mkdir on input 0, then copy from input 1 onto it, as the builder chains them.
    fn chain() -> LlbFileOp {
        let mut copy = copy_from(1, "/src/*.txt");
        copy.input = FileInput::Action(0);
        copy.output = Some(0);
        LlbFileOp {
            actions: vec![mkdir(FileInput::Input(0), None), copy],
        }
    }

    #[test]
    fn copy_sources_are_keyed_by_content_and_bases_by_key() {
        let map = file_cache_map(&chain(), 2).unwrap();
        assert!(map.digest.starts_with("oxkit.file.v1:sha256:"));
        assert_eq!(map.inputs, vec![InputKey::Key, InputKey::Content]);

        // Copying within one filesystem: it is the base too, so the whole of it counts.
        let mut op = chain();
        op.actions[1].secondary_input = FileInput::Input(0);
        assert_eq!(file_cache_map(&op, 1).unwrap().inputs, vec![InputKey::Key]);

        // An owner looked up by name in the copy source makes its /etc count as well.
        let mut op = chain();
        if let FileActionKind::Copy(c) = &mut op.actions[1].kind {
            c.owner = Some(Chown {
                user: Some(UserRef::Name {
                    name: "app".into(),
                    input: FileInput::Input(1),
                }),
                group: None,
            });
        }
        assert_eq!(
            file_cache_map(&op, 2).unwrap().inputs,
            vec![InputKey::Key, InputKey::Key]
        );

        // An unused input stays keyed by its key.
        assert_eq!(
            file_cache_map(&chain(), 3).unwrap().inputs,
            vec![InputKey::Key, InputKey::Content, InputKey::Key]
        );
    }

    #[test]
    fn semantic_fields_change_the_digest() {
        let d = file_cache_map(&chain(), 2).unwrap().digest;
        assert_eq!(d, file_cache_map(&chain(), 2).unwrap().digest, "stable");
        type Change = Box<dyn Fn(&mut LlbFileOp)>;
        let copy = |f: fn(&mut Copy)| -> Change {
            Box::new(move |op: &mut LlbFileOp| {
                if let FileActionKind::Copy(c) = &mut op.actions[1].kind {
                    f(c)
                }
            })
        };
        let changes: Vec<(&str, Change)> = vec![
            ("src", copy(|c| c.src = "/other".into())),
            ("dest", copy(|c| c.dest = "/x/".into())),
            ("mode", copy(|c| c.mode = Some(0o600))),
            ("follow", copy(|c| c.follow_symlink = true)),
            ("contents", copy(|c| c.dir_copy_contents = true)),
            ("create dest", copy(|c| c.create_dest_path = true)),
            ("wildcard", copy(|c| c.allow_wildcard = true)),
            ("exclude", copy(|c| c.exclude_patterns = vec!["*.o".into()])),
            ("timestamp", copy(|c| c.timestamp = Some(1))),
            ("unpack", copy(|c| c.attempt_unpack = true)),
            (
                "owner",
                copy(|c| {
                    c.owner = Some(Chown {
                        user: Some(UserRef::Id(1)),
                        group: None,
                    })
                }),
            ),
            ("output", Box::new(|op| op.actions[1].output = Some(1))),
            (
                "source input",
                Box::new(|op| op.actions[1].secondary_input = FileInput::Scratch),
            ),
            (
                "base",
                Box::new(|op| op.actions[0].input = FileInput::Scratch),
            ),
            (
                "mkdir",
                Box::new(|op| {
                    if let FileActionKind::Mkdir(m) = &mut op.actions[0].kind {
                        m.mode = 0o700
                    }
                }),
            ),
            (
                "extra action",
                Box::new(|op| {
                    op.actions.push(FileAction {
                        input: FileInput::Action(1),
                        secondary_input: FileInput::Scratch,
                        output: None,
                        kind: FileActionKind::Rm(Rm {
                            path: "/d".into(),
                            ..Default::default()
                        }),
                    })
                }),
            ),
        ];
        for (what, change) in changes {
            let mut op = chain();
            change(&mut op);
            assert_ne!(
                file_cache_map(&op, 2).unwrap().digest,
                d,
                "{what} must change the digest"
            );
        }
        // mkfile content counts; the secondary input of a non-copy action does not.
        let mkfile = |data: &str| LlbFileOp {
            actions: vec![FileAction {
                input: FileInput::Input(0),
                secondary_input: FileInput::Scratch,
                output: Some(0),
                kind: FileActionKind::Mkfile(Mkfile {
                    path: "/f".into(),
                    mode: 0o644,
                    data: data.into(),
                    ..Default::default()
                }),
            }],
        };
        let a = file_cache_map(&mkfile("a"), 1).unwrap().digest;
        assert_ne!(a, file_cache_map(&mkfile("b"), 1).unwrap().digest);
        let mut op = mkfile("a");
        op.actions[0].secondary_input = FileInput::Input(0);
        assert_eq!(a, file_cache_map(&op, 1).unwrap().digest);
    }

    #[test]
    fn bad_references_are_rejected_before_any_work() {
        let mut op = chain();
        op.actions[0].input = FileInput::Action(1);
        assert!(file_cache_map(&op, 2).is_err());
        assert!(file_cache_map(&chain(), 1).is_err(), "input 1 missing");
    }

    #[test]
    fn a_result_used_once_as_the_next_base_stays_mounted() {
        assert_eq!(fused(&chain()), vec![true, false]);
        // Read by a copy as well: it must be committed.
        let mut op = chain();
        op.actions.push(FileAction {
            secondary_input: FileInput::Action(0),
            input: FileInput::Input(0),
            output: Some(1),
            ..copy_from(0, "/d")
        });
        assert_eq!(fused(&op), vec![false, false, false]);
        // Two actions start from it: committed.
        let op = LlbFileOp {
            actions: vec![
                mkdir(FileInput::Scratch, None),
                mkdir(FileInput::Action(0), Some(0)),
                mkdir(FileInput::Action(0), Some(1)),
            ],
        };
        assert_eq!(fused(&op), vec![false, false, false]);
        // An output is always committed.
        let op = LlbFileOp {
            actions: vec![
                mkdir(FileInput::Scratch, Some(0)),
                mkdir(FileInput::Action(0), Some(1)),
            ],
        };
        assert_eq!(fused(&op), vec![false, false]);
    }

    #[test]
    fn owner_and_source_reads_are_listed_once() {
        let mut a = copy_from(1, "/x");
        if let FileActionKind::Copy(c) = &mut a.kind {
            c.owner = Some(Chown {
                user: Some(UserRef::Name {
                    name: "app".into(),
                    input: FileInput::Input(0),
                }),
                group: Some(UserRef::Name {
                    name: "staff".into(),
                    input: FileInput::Input(0),
                }),
            });
        }
        assert_eq!(
            read_inputs(&a),
            vec![FileInput::Input(1), FileInput::Input(0)]
        );
        assert!(read_inputs(&mkdir(FileInput::Input(0), None)).is_empty());
    }

    #[test]
    fn the_content_checksum_covers_exactly_the_copied_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/a.txt"), "one").unwrap();
        std::fs::write(root.join("src/b.txt"), "two").unwrap();
        std::fs::write(root.join("src/other.log"), "noise").unwrap();
        let mut op = chain();
        if let FileActionKind::Copy(c) = &mut op.actions[1].kind {
            c.allow_wildcard = true;
        }
        let sum = || copied_content_checksum(&op, 1, root, None).unwrap();
        let first = sum();
        assert!(first.starts_with("oxkit.file.content.v1:sha256:"));

        // Unrelated file changed, copied file touched: same checksum.
        std::fs::write(root.join("src/other.log"), "changed").unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(root.join("src/a.txt"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        drop(f);
        assert_eq!(sum(), first);

        // A copied file's content, or a new match of the wildcard: different.
        std::fs::write(root.join("src/a.txt"), "ONE").unwrap();
        let changed = sum();
        assert_ne!(changed, first);
        std::fs::write(root.join("src/c.txt"), "three").unwrap();
        assert_ne!(sum(), changed);

        // Input 0 is not copied from: nothing read, a fixed checksum.
        assert_eq!(
            copied_content_checksum(&op, 0, root, None).unwrap(),
            copied_content_checksum(&op, 0, dir.path().join("src").as_path(), None).unwrap()
        );
        // A missing source fails as the copy would.
        std::fs::remove_dir_all(root.join("src")).unwrap();
        assert!(copied_content_checksum(&op, 1, root, None).is_err());
    }
}
