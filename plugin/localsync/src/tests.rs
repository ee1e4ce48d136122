//! The sync engine against real directories: a walked client directory, a copy, and the tree it
//! materializes, compared with the client's.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::*;

/// The client: reads ranges from a directory; counts requests, fails after `fail_after`.
struct DirSource {
    root: PathBuf,
    requests: AtomicUsize,
    fail_after: usize,
}

impl DirSource {
    fn new(root: &Path) -> Self {
        DirSource {
            root: root.to_path_buf(),
            requests: AtomicUsize::new(0),
            fail_after: usize::MAX,
        }
    }
}

#[async_trait::async_trait]
impl Source for DirSource {
    async fn read(
        &self,
        ranges: Vec<Range>,
    ) -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error + Send + Sync>> {
        if self.requests.fetch_add(1, Ordering::SeqCst) >= self.fail_after {
            return Err("the client went away".into());
        }
        Ok(ranges
            .iter()
            .map(|r| read_range(&self.root, &r.path, r.offset, r.len))
            .collect::<Result<_, _>>()?)
    }
}

struct Env {
    _tmp: tempfile::TempDir,
    client: PathBuf,
    store: Store,
    outside: PathBuf,
    n: usize,
    out: PathBuf,
}

impl Env {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let client = tmp.path().join("client");
        let outside = tmp.path().join("outside");
        let out = tmp.path().join("out");
        for d in [&client, &outside, &out] {
            std::fs::create_dir(d).unwrap();
        }
        Env {
            store: Store::new(tmp.path().join("store")),
            client,
            outside,
            out,
            n: 0,
            _tmp: tmp,
        }
    }

    fn write(&self, path: &str, data: &str) {
        let p = self.client.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    /// Syncs the client dir (through `filter`) and materializes it; returns what was sent and
    /// where the tree is.
    async fn sync_with(&mut self, filter: &Filter, source: &DirSource) -> (Synced, PathBuf) {
        let listing = Listing::new(walk(&self.client, filter).unwrap()).unwrap();
        let mut copy = self.store.open(&Store::key("c", "ctx", "")).await.unwrap();
        let synced = copy.sync(listing, source, false).await.unwrap();
        self.n += 1;
        let dest = self.out.join(self.n.to_string());
        std::fs::create_dir(&dest).unwrap();
        copy.materialize(&dest).unwrap();
        (synced, dest)
    }

    /// Files, a directory, a symlink and a file to hard-link later, for [`Env::change`].
    fn before_changes(&self) {
        self.write("keep", "k");
        self.write("gone/x", "x");
        self.write("old name", "r");
        self.write("mode", "m");
        self.write("linked", "l");
        std::os::unix::fs::symlink("keep", self.client.join("sym")).unwrap();
    }

    /// Deletes a directory, renames, chmods, retargets the symlink and adds a hard link.
    fn change(&self) {
        let c = &self.client;
        std::fs::remove_dir_all(c.join("gone")).unwrap();
        std::fs::rename(c.join("old name"), c.join("new name")).unwrap();
        std::fs::set_permissions(c.join("mode"), PermissionsExt::from_mode(0o751)).unwrap();
        std::fs::remove_file(c.join("sym")).unwrap();
        std::os::unix::fs::symlink("mode", c.join("sym")).unwrap();
        std::fs::hard_link(c.join("linked"), c.join("linked2")).unwrap();
    }

    async fn sync(&mut self) -> (Synced, PathBuf) {
        let source = DirSource::new(&self.client);
        self.sync_with(&Filter::default(), &source).await
    }
}

/// path, type+mode, uid, gid, size, mtime, symlink target, content, inode group.
fn snapshot(root: &Path) -> Vec<String> {
    let entries = walk(root, &Filter::default()).unwrap();
    entries
        .iter()
        .map(|e| {
            let p = root.join(&e.path);
            let content = if e.mode & 0o170000 == Entry::FILE {
                String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
            } else {
                String::new()
            };
            let mtime = if e.mode & 0o170000 == Entry::DIR {
                0
            } else {
                e.mtime_ns
            };
            format!(
                "{:?} {:o} {} {} {} {} {:?} {:?} link={:?}",
                e.path, e.mode, e.uid, e.gid, e.size, mtime, e.target, content, e.link
            )
        })
        .collect()
}

fn assert_same(client: &Path, dest: &Path) {
    assert_eq!(snapshot(dest), snapshot(client));
}

#[tokio::test]
async fn a_first_sync_copies_everything_and_an_unchanged_one_nothing() {
    let mut env = Env::new();
    env.write("a.txt", "one");
    env.write("dir/b.txt", "two");
    std::fs::create_dir(env.client.join("empty")).unwrap();
    let (first, dest) = env.sync().await;
    assert_eq!((first.files, first.bytes), (2, 6));
    assert_same(&env.client, &dest);
    let (again, dest) = env.sync().await;
    assert_eq!((again.files, again.bytes), (0, 0));
    assert_eq!(again.digest, first.digest);
    assert_same(&env.client, &dest);
}

/// Many batches written at once: files in many directories, one of several chunks (its
/// ranges in different batches), empty ones; the tree and the digest are as for any sync.
#[tokio::test]
async fn a_sync_of_many_batches_writes_every_file_whole() {
    let mut env = Env::new();
    for d in 0..30 {
        for f in 0..20 {
            env.write(&format!("d{d}/f{f}"), &format!("{d}.{f};").repeat(2000 + f));
        }
        env.write(&format!("d{d}/empty"), "");
    }
    let big = "0123456789abcdef".repeat((2 * CHUNK as usize + 4096) / 16);
    env.write("big/file", &big);
    let (first, dest) = env.sync().await;
    assert_eq!(first.files, 30 * 21 + 1);
    assert!(first.bytes > 2 * CHUNK + 30 * 20 * 10_000);
    assert_same(&env.client, &dest);

    // The same content synced whole by a store that never saw it gives the same digest.
    let fresh = Store::new(env.out.join("fresh-store"));
    let mut copy = fresh.open(&Store::key("c", "ctx", "")).await.unwrap();
    let listing = Listing::new(walk(&env.client, &Filter::default()).unwrap()).unwrap();
    let again = copy
        .sync(listing, &DirSource::new(&env.client), true)
        .await
        .unwrap();
    assert_eq!(again.digest, first.digest);
    // Materialized with links (the files placed on several threads), the tree is the same.
    let linked = env.out.join("linked");
    std::fs::create_dir(&linked).unwrap();
    copy.materialize_linked(&linked, &linked).unwrap();
    assert_same(&env.client, &linked);
}

#[tokio::test]
async fn an_edit_keeping_size_and_mtime_is_caught_by_ctime() {
    let mut env = Env::new();
    env.write("f", "aaaa");
    env.write("g", "gggg");
    let (first, _) = env.sync().await;
    let f = env.client.join("f");
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&f, "bbbb").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(std::fs::metadata(&f).unwrap().modified().unwrap(), mtime);
    let (synced, dest) = env.sync().await;
    assert_eq!(synced.files, 1, "only f is sent again");
    assert_eq!(std::fs::read_to_string(dest.join("f")).unwrap(), "bbbb");
    assert_ne!(synced.digest, first.digest);
}

#[tokio::test]
async fn deletes_renames_chmods_symlinks_hard_links_and_odd_names_propagate() {
    let mut env = Env::new();
    env.before_changes();
    env.sync().await;

    env.change();
    env.write("ünï cödé\nnewline", "odd");
    std::fs::create_dir(env.client.join("empty dir")).unwrap();
    let (synced, dest) = env.sync().await;
    assert_same(&env.client, &dest);
    assert!(!dest.join("gone").exists());
    let (a, b) = (
        std::fs::metadata(dest.join("linked")).unwrap(),
        std::fs::metadata(dest.join("linked2")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hard link kept");
    assert_eq!(
        std::fs::read_link(dest.join("sym")).unwrap(),
        Path::new("mode")
    );
    // new name, mode (chmod changes ctime), linked (link count changes ctime), odd name.
    assert_eq!(synced.files, 4, "{synced:?}");
}

#[tokio::test]
async fn touching_a_file_keeps_the_digest_and_excluded_files_are_never_read() {
    let mut env = Env::new();
    env.write("src/main.rs", "fn main() {}");
    env.write("target/big", "build output");
    env.write("notes.md", "n");
    env.write("README.md", "r");
    let filter = Filter {
        exclude: vec!["target".into(), "*.md".into(), "!README.md".into()],
        ..Default::default()
    };
    let source = DirSource::new(&env.client);
    let (first, dest) = env.sync_with(&filter, &source).await;
    let mut names: Vec<_> = walk(&dest, &Filter::default())
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    names.sort();
    assert_eq!(names, ["README.md", "src", "src/main.rs"]);
    let f = std::fs::File::options()
        .write(true)
        .open(env.client.join("src/main.rs"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    env.write("target/big", "changed");
    let (again, _) = env.sync_with(&filter, &source).await;
    assert_eq!(again.digest, first.digest, "same content, same digest");
    assert_eq!(again.files, 1, "the touched file is sent again");

    // The same content elsewhere has the same digest.
    let mut other = Env::new();
    other.write("src/main.rs", "fn main() {}");
    other.write("README.md", "r");
    let (elsewhere, _) = other.sync().await;
    assert_eq!(elsewhere.digest, first.digest);
}

#[tokio::test]
async fn include_patterns_and_follow_paths_send_only_what_they_name() {
    let mut env = Env::new();
    env.write("Dockerfile", "FROM x");
    env.write("real/Dockerfile.dev", "FROM y");
    env.write("other", "o");
    std::os::unix::fs::symlink("real/Dockerfile.dev", env.client.join("df")).unwrap();
    let filter = Filter {
        include: vec!["Dockerfile".into()],
        follow: vec!["df".into()],
        ..Default::default()
    };
    let source = DirSource::new(&env.client);
    let (_, dest) = env.sync_with(&filter, &source).await;
    let names: Vec<_> = walk(&dest, &Filter::default())
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(names, ["Dockerfile", "df", "real", "real/Dockerfile.dev"]);
}

#[tokio::test]
async fn a_failed_transfer_is_not_trusted_and_the_next_sync_repairs_it() {
    let mut env = Env::new();
    for i in 0..50 {
        env.write(&format!("f{i:02}"), &"x".repeat(100_000));
    }
    let listing = Listing::new(walk(&env.client, &Filter::default()).unwrap()).unwrap();
    let key = Store::key("c", "ctx", "");
    let mut failing = DirSource::new(&env.client);
    failing.fail_after = 1;
    {
        let mut copy = env.store.open(&key).await.unwrap();
        let err = copy.sync(listing, &failing, false).await.unwrap_err();
        assert!(err.to_string().contains("went away"), "{err}");
        assert_eq!(copy.digest(), None);
        assert!(copy.materialize(&env.out).is_err());
    }
    // A later open still knows the copy is dirty; the next sync fixes it.
    let (synced, dest) = env.sync().await;
    assert_eq!(synced.files, 50);
    assert_same(&env.client, &dest);
}

#[tokio::test]
async fn hostile_listings_write_nothing_outside_the_copy() {
    let env = Env::new();
    let source = DirSource::new(&env.client);
    let file = |p: &str| Entry {
        path: p.into(),
        mode: Entry::FILE | 0o644,
        size: 1,
        ..Default::default()
    };
    let outside = env.outside.to_str().unwrap().to_string();
    let escape_parent = "../../outside/x".to_string();
    let hostile: Vec<Vec<Entry>> = vec![
        vec![file("../x")],
        vec![file(&escape_parent)],
        vec![file(&format!("{outside}/abs"))],
        vec![
            Entry {
                path: "l".into(),
                mode: Entry::SYMLINK | 0o777,
                target: outside.clone(),
                ..Default::default()
            },
            file("l/x"),
        ],
    ];
    for entries in hostile {
        assert!(matches!(
            Listing::new(entries),
            Err(SyncError::Refused { .. })
        ));
    }
    // A symlink is only ever created in the materialized tree, never followed: a file listed
    // after it under the same name cannot be written through it.
    let listing = Listing::new(vec![Entry {
        path: "l".into(),
        mode: Entry::SYMLINK | 0o777,
        target: outside.clone(),
        ..Default::default()
    }])
    .unwrap();
    let mut copy = env.store.open("k").await.unwrap();
    copy.sync(listing, &source, false).await.unwrap();
    let dest = env.out.join("h");
    std::fs::create_dir(&dest).unwrap();
    copy.materialize(&dest).unwrap();
    assert_eq!(std::fs::read_dir(&env.outside).unwrap().count(), 0);
    // The client side refuses to read outside its directory, or through a symlink.
    std::fs::write(env.outside.join("secret"), "s").unwrap();
    std::os::unix::fs::symlink(&env.outside, env.client.join("out")).unwrap();
    for p in ["../outside/secret", "/etc/passwd", "out/secret"] {
        assert!(read_range(&env.client, p, 0, 10).is_err(), "{p}");
    }
}

#[tokio::test]
async fn writing_onto_the_last_written_tree_gives_the_same_tree_as_writing_it_whole() {
    let env = Env::new();
    env.before_changes();
    env.write("becomes dir", "f");
    let key = Store::key("c", "ctx", "");
    let source = DirSource::new(&env.client);
    let tree = env.out.join("incremental");
    std::fs::create_dir(&tree).unwrap();
    {
        let listing = Listing::new(walk(&env.client, &Filter::default()).unwrap()).unwrap();
        let mut copy = env.store.open(&key).await.unwrap();
        copy.sync(listing, &source, false).await.unwrap();
        assert!(copy.written().is_none());
        copy.materialize(&tree).unwrap();
        copy.set_written("snap-1", 1).unwrap();
    }
    env.change();
    std::fs::remove_file(env.client.join("becomes dir")).unwrap();
    env.write("becomes dir/inside", "i");
    env.write("keep", "K");
    let listing = Listing::new(walk(&env.client, &Filter::default()).unwrap()).unwrap();
    let mut copy = env.store.open(&key).await.unwrap();
    copy.sync(listing, &source, false).await.unwrap();
    let written = copy.written().unwrap();
    assert_eq!((written.name.as_str(), written.depth), ("snap-1", 1));
    copy.materialize_onto(&tree, &written).unwrap();
    assert_same(&env.client, &tree);
    let (a, b) = (
        std::fs::metadata(tree.join("linked")).unwrap(),
        std::fs::metadata(tree.join("linked2")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hard link kept");
}

/// A tree written by hard links shares the copy's inodes, with the listing's metadata; a later
/// sync that changes a file replaces it in the copy, so the tree written before keeps its
/// content and mode.
#[tokio::test]
async fn a_linked_tree_keeps_its_files_when_the_copy_changes() {
    let env = Env::new();
    env.write("d/a", "first");
    env.write("b", "bee");
    let source = DirSource::new(&env.client);
    let key = Store::key("c", "ctx", "");
    async fn sync(env: &Env, source: &DirSource, key: &str) -> Copy {
        let listing = Listing::new(walk(&env.client, &Filter::default()).unwrap()).unwrap();
        let mut copy = env.store.open(key).await.unwrap();
        copy.sync(listing, source, false).await.unwrap();
        copy
    }
    let copy = sync(&env, &source, &key).await;
    let first = env.out.join("first");
    std::fs::create_dir(&first).unwrap();
    // `dest` and the directory it shows are the same here (no bind mount in a unit test).
    copy.materialize_linked(&first, &first).unwrap();
    drop(copy);
    let ino = |p: &Path| std::fs::symlink_metadata(p).unwrap().ino();
    let tree = env._tmp.path().join("store").join(&key).join("tree");
    assert_eq!(ino(&first.join("d/a")), ino(&tree.join("d/a")));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&first.join("b")), mode(&env.client.join("b")));

    env.write("d/a", "second");
    std::fs::set_permissions(env.client.join("b"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let copy = sync(&env, &source, &key).await;
    let second = env.out.join("second");
    std::fs::create_dir(&second).unwrap();
    copy.materialize_linked(&second, &second).unwrap();
    assert_eq!(std::fs::read_to_string(first.join("d/a")).unwrap(), "first");
    assert_eq!(
        std::fs::read_to_string(second.join("d/a")).unwrap(),
        "second"
    );
    assert_ne!(mode(&first.join("b")), 0o700);
    assert_eq!(mode(&second.join("b")), 0o700);
}
