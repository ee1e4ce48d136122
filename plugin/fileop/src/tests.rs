//! Tests of the actions through the public API, on temp dirs. Tests that chown or mknod need
//! root: they skip loudly elsewhere, and fail under `CI=true`.

use crate::*;
use oxkit_llb::op::{
    Chown, Copy, FileAction, FileActionKind, FileInput, FileOp, Mkdir, Mkfile, Rm, Symlink, UserRef,
};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

pub(crate) fn is_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("this test needs root (chown/mknod) and CI=true forbids skipping it");
    }
    eprintln!("!!! SKIPPING: this test needs root (chown/mknod) !!!");
    false
}

fn act(kind: FileActionKind) -> FileAction {
    FileAction {
        input: FileInput::Input(0),
        secondary_input: FileInput::Input(1),
        output: Some(0),
        kind,
    }
}

fn cp(src: &str, dest: &str) -> Copy {
    Copy {
        src: src.into(),
        dest: dest.into(),
        create_dest_path: true,
        allow_wildcard: true,
        ..Default::default()
    }
}

/// [`cp`] of a directory's contents (`COPY dir/ dest`, and what the Dockerfile frontend asks).
fn cp_contents(src: &str, dest: &str) -> Copy {
    Copy {
        dir_copy_contents: true,
        ..cp(src, dest)
    }
}

struct Env {
    _tmp: tempfile::TempDir,
    outer: std::path::PathBuf,
    dest: std::path::PathBuf,
    src: std::path::PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let outer = tmp.path().to_path_buf();
        let dest = outer.join("dest");
        let src = outer.join("src");
        std::fs::create_dir_all(dest.join("etc")).unwrap();
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(
            dest.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dest.join("etc/group"),
            "root:x:0:\napp:x:1000:\nstaff:x:50:\n",
        )
        .unwrap();
        // Host files outside both roots, which no action may touch.
        std::fs::create_dir_all(outer.join("outside")).unwrap();
        std::fs::write(outer.join("outside/secret"), "host secret").unwrap();
        Env {
            _tmp: tmp,
            outer,
            dest,
            src,
        }
    }

    fn users(&self) -> EtcFiles {
        EtcFiles::new().with_root(FileInput::Input(0), &self.dest)
    }

    fn run(&self, kind: FileActionKind) -> Result<(), FileOpError> {
        apply(&self.dest, &act(kind), Some(&self.src), &self.users(), None)
    }

    fn copy(&self, c: Copy) -> Result<(), FileOpError> {
        self.run(FileActionKind::Copy(c))
    }

    fn write_src(&self, rel: &str, data: &str) {
        let p = self.src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    fn read_dest(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dest.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn outside_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(self.outer.join("outside"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("secret")],
            "outside dir changed"
        );
        assert_eq!(
            std::fs::read_to_string(self.outer.join("outside/secret")).unwrap(),
            "host secret"
        );
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn mtime_ns(p: &Path) -> i64 {
    let m = std::fs::symlink_metadata(p).unwrap();
    m.mtime() * 1_000_000_000 + m.mtime_nsec()
}

fn name(n: &str) -> UserRef {
    UserRef::Name {
        name: n.into(),
        input: FileInput::Input(0),
    }
}

const TS: i64 = 1_600_000_000_123_456_789;

// ---- mkdir -------------------------------------------------------------------------------

#[test]
fn mkdir_mode_parents_owner_timestamp() {
    let env = Env::new();
    env.run(FileActionKind::Mkdir(Mkdir {
        path: "/a/b/c".into(),
        mode: 0o750,
        make_parents: true,
        owner: None,
        timestamp: Some(TS),
    }))
    .unwrap();
    for p in ["a", "a/b", "a/b/c"] {
        assert_eq!(mode(&env.dest.join(p)), 0o750, "{p}");
        assert_eq!(mtime_ns(&env.dest.join(p)), TS, "{p}");
    }
    // Existing directory: fine, unchanged.
    env.run(FileActionKind::Mkdir(Mkdir {
        path: "/a".into(),
        mode: 0o700,
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(mode(&env.dest.join("a")), 0o750);
    // Missing parent without make_parents.
    let err = env
        .run(FileActionKind::Mkdir(Mkdir {
            path: "/x/y".into(),
            mode: 0o755,
            ..Default::default()
        }))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("mkdir /x/y: no such file or directory"),
        "{err}"
    );
}

#[test]
fn mkdir_chown_by_name_and_id() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    env.run(FileActionKind::Mkdir(Mkdir {
        path: "/owned".into(),
        mode: 0o755,
        owner: Some(Chown {
            user: Some(name("app")),
            group: Some(name("staff")),
        }),
        ..Default::default()
    }))
    .unwrap();
    let m = std::fs::metadata(env.dest.join("owned")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 50));
    env.run(FileActionKind::Mkdir(Mkdir {
        path: "/byid".into(),
        mode: 0o755,
        owner: Some(Chown {
            user: Some(UserRef::Id(42)),
            group: None,
        }),
        ..Default::default()
    }))
    .unwrap();
    let m = std::fs::metadata(env.dest.join("byid")).unwrap();
    assert_eq!((m.uid(), m.gid()), (42, 42));
}

#[test]
fn mkdir_through_absolute_symlink_stays_in_root() {
    let env = Env::new();
    // An image with /data -> <host path of outside> and /up -> ../../outside.
    symlink(env.outer.join("outside"), env.dest.join("data")).unwrap();
    symlink("../../../outside", env.dest.join("up")).unwrap();
    for p in ["/data/new", "/up/new2", "/../outside/new3"] {
        env.run(FileActionKind::Mkdir(Mkdir {
            path: p.into(),
            mode: 0o755,
            make_parents: true,
            ..Default::default()
        }))
        .unwrap();
    }
    env.outside_untouched();
    assert!(env.dest.join("outside/new2").is_dir());
    assert!(env.dest.join("outside/new3").is_dir());
    assert!(env
        .dest
        .join(env.outer.join("outside/new").strip_prefix("/").unwrap())
        .is_dir());
}

// ---- mkfile ------------------------------------------------------------------------------

#[test]
fn mkfile_data_mode_timestamp_and_overwrite() {
    let env = Env::new();
    let mk = |data: &str, mode| {
        env.run(FileActionKind::Mkfile(Mkfile {
            path: "/etc/motd".into(),
            mode,
            data: data.into(),
            owner: None,
            timestamp: Some(TS),
        }))
    };
    mk("hello", 0o640).unwrap();
    assert_eq!(env.read_dest("etc/motd"), "hello");
    assert_eq!(mode(&env.dest.join("etc/motd")), 0o640);
    assert_eq!(mtime_ns(&env.dest.join("etc/motd")), TS);
    mk("hi", 0o600).unwrap();
    assert_eq!(env.read_dest("etc/motd"), "hi");
    assert_eq!(mode(&env.dest.join("etc/motd")), 0o600);
    let err = env
        .run(FileActionKind::Mkfile(Mkfile {
            path: "/nope/f".into(),
            mode: 0o644,
            ..Default::default()
        }))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("mkfile /nope/f: no such file or directory"),
        "{err}"
    );
}

#[test]
fn mkfile_through_symlinks_never_writes_outside() {
    let env = Env::new();
    symlink(env.outer.join("outside/secret"), env.dest.join("abs")).unwrap();
    symlink("../../outside/secret", env.dest.join("etc/rel")).unwrap();
    for p in ["/abs", "/etc/rel", "/../../outside/secret"] {
        env.run(FileActionKind::Mkfile(Mkfile {
            path: p.into(),
            mode: 0o644,
            data: b"pwned".to_vec(),
            ..Default::default()
        }))
        .unwrap_or_else(|e| {
            // A missing in-root parent is a fine outcome too; escaping is not.
            assert!(matches!(e, FileOpError::NotFound { .. }), "{p}: {e}");
        });
    }
    env.outside_untouched();
}

#[test]
fn mkfile_chown() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    env.run(FileActionKind::Mkfile(Mkfile {
        path: "/f".into(),
        mode: 0o4755,
        data: b"x".to_vec(),
        owner: Some(Chown {
            user: Some(name("app")),
            group: None,
        }),
        timestamp: None,
    }))
    .unwrap();
    let m = std::fs::metadata(env.dest.join("f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
    // chmod after chown: the setuid bit survives.
    assert_eq!(m.mode() & 0o7777, 0o4755);
}

// ---- rm ----------------------------------------------------------------------------------

#[test]
fn rm_files_dirs_wildcards_and_not_found() {
    let env = Env::new();
    std::fs::create_dir_all(env.dest.join("d/sub")).unwrap();
    std::fs::write(env.dest.join("d/sub/f"), "x").unwrap();
    std::fs::write(env.dest.join("a.log"), "x").unwrap();
    std::fs::write(env.dest.join("b.log"), "x").unwrap();
    std::fs::write(env.dest.join("keep.txt"), "x").unwrap();
    let rm = |path: &str, nf: bool, wc: bool| {
        env.run(FileActionKind::Rm(Rm {
            path: path.into(),
            allow_not_found: nf,
            allow_wildcard: wc,
        }))
    };
    rm("/d", false, false).unwrap();
    assert!(!env.dest.join("d").exists());
    rm("/*.log", false, true).unwrap();
    assert!(!env.dest.join("a.log").exists() && !env.dest.join("b.log").exists());
    assert!(env.dest.join("keep.txt").exists());
    let err = rm("/missing", false, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "rm /missing: no such file or directory in the destination"
    );
    rm("/missing", true, false).unwrap();
    assert!(matches!(
        rm("/*.none", false, true),
        Err(FileOpError::NoMatch { .. })
    ));
    rm("/*.none", true, true).unwrap();
    assert!(matches!(
        rm("/", false, false),
        Err(FileOpError::Invalid { .. })
    ));
    assert!(matches!(
        rm("/../..", true, false),
        Err(FileOpError::Invalid { .. })
    ));
}

#[test]
fn rm_removes_the_symlink_not_its_target() {
    let env = Env::new();
    symlink(env.outer.join("outside"), env.dest.join("link")).unwrap();
    symlink("/etc", env.dest.join("etclink")).unwrap();
    env.run(FileActionKind::Rm(Rm {
        path: "/link".into(),
        ..Default::default()
    }))
    .unwrap();
    env.run(FileActionKind::Rm(Rm {
        path: "/etclink".into(),
        ..Default::default()
    }))
    .unwrap();
    assert!(env.dest.join("etc/passwd").exists());
    // Removing through an absolute symlink removes the in-root target.
    symlink("/etc", env.dest.join("etclink")).unwrap();
    env.run(FileActionKind::Rm(Rm {
        path: "/etclink/group".into(),
        ..Default::default()
    }))
    .unwrap();
    assert!(!env.dest.join("etc/group").exists());
    env.outside_untouched();
}

// ---- symlink -----------------------------------------------------------------------------

#[test]
fn symlink_created_as_is_with_timestamp() {
    let env = Env::new();
    let mk = |newpath: &str| {
        env.run(FileActionKind::Symlink(Symlink {
            oldpath: "../etc/passwd".into(),
            newpath: newpath.into(),
            owner: None,
            timestamp: Some(TS),
        }))
    };
    mk("/l").unwrap();
    assert_eq!(
        std::fs::read_link(env.dest.join("l")).unwrap(),
        Path::new("../etc/passwd")
    );
    assert_eq!(mtime_ns(&env.dest.join("l")), TS);
    assert!(matches!(mk("/l"), Err(FileOpError::AlreadyExists { .. })));
    // The parent is resolved inside the root.
    symlink(env.outer.join("outside"), env.dest.join("out")).unwrap();
    let _ = mk("/out/l2");
    env.outside_untouched();
}

#[test]
fn symlink_chown_is_on_the_link() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    env.run(FileActionKind::Symlink(Symlink {
        oldpath: "/etc/passwd".into(),
        newpath: "/l".into(),
        owner: Some(Chown {
            user: Some(UserRef::Id(5)),
            group: Some(UserRef::Id(6)),
        }),
        timestamp: None,
    }))
    .unwrap();
    let m = std::fs::symlink_metadata(env.dest.join("l")).unwrap();
    assert_eq!((m.uid(), m.gid()), (5, 6));
    assert_eq!(
        std::fs::metadata(env.dest.join("etc/passwd"))
            .unwrap()
            .uid(),
        0
    );
}

// ---- copy: Docker's destination rules ------------------------------------------------------

#[test]
fn copy_destination_rules() {
    let env = Env::new();
    env.write_src("f.txt", "file");
    env.write_src("dir/a", "a");
    env.write_src("dir/sub/b", "b");
    // File to a path ending in `/`: into that (created) directory.
    env.copy(cp("/f.txt", "/into/")).unwrap();
    assert_eq!(env.read_dest("into/f.txt"), "file");
    // File to a new name.
    env.copy(cp("/f.txt", "/renamed")).unwrap();
    assert_eq!(env.read_dest("renamed"), "file");
    // File to an existing directory without slash: into it.
    env.copy(cp("/f.txt", "/into")).unwrap();
    assert_eq!(env.read_dest("into/f.txt"), "file");
    // Directory, contents flag: contents into the (new) destination.
    env.copy(cp_contents("/dir", "/c1")).unwrap();
    assert_eq!(env.read_dest("c1/a"), "a");
    assert_eq!(env.read_dest("c1/sub/b"), "b");
    // Contents flag, existing destination: merged.
    std::fs::write(env.dest.join("c1/old"), "old").unwrap();
    env.copy(cp_contents("/dir/", "/c1/")).unwrap();
    assert_eq!(env.read_dest("c1/old"), "old");
    assert!(!env.dest.join("c1/dir").exists());
    // Directory itself to a new path: the path becomes the copy.
    env.copy(cp("/dir", "/c2")).unwrap();
    assert_eq!(env.read_dest("c2/sub/b"), "b");
    // Directory itself to an existing directory: nested under its name.
    env.copy(cp("/dir", "/c2")).unwrap();
    assert_eq!(env.read_dest("c2/dir/sub/b"), "b");
    // Root of the source with contents.
    env.copy(cp_contents("/", "/all/")).unwrap();
    assert_eq!(env.read_dest("all/dir/a"), "a");
    assert_eq!(env.read_dest("all/f.txt"), "file");
}

#[test]
fn copy_errors_name_the_action_and_path() {
    let env = Env::new();
    let err = env.copy(cp("/src/missing", "/x")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "copy /src/missing: no such file or directory in the source"
    );
    env.write_src("f", "x");
    let err = env
        .copy(Copy {
            create_dest_path: false,
            ..cp("/f", "/no/such/dir/f")
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("copy /no/such/dir/f: no such file or directory in the destination"),
        "{err}"
    );
    env.copy(Copy {
        create_dest_path: true,
        ..cp("/f", "/no/such/dir/f")
    })
    .unwrap();
    assert_eq!(env.read_dest("no/such/dir/f"), "x");
}

#[test]
fn copy_wildcards() {
    let env = Env::new();
    env.write_src("a.txt", "a");
    env.write_src("b.txt", "b");
    env.write_src("c.md", "c");
    env.write_src("d1/x", "x");
    env.write_src("d2/y", "y");
    env.copy(cp("/*.txt", "/out/")).unwrap();
    assert_eq!(env.read_dest("out/a.txt"), "a");
    assert_eq!(env.read_dest("out/b.txt"), "b");
    assert!(!env.dest.join("out/c.md").exists());
    env.copy(cp("/?.md", "/out/")).unwrap();
    assert_eq!(env.read_dest("out/c.md"), "c");
    env.copy(cp("/d[12]", "/dirs/")).unwrap();
    assert_eq!(env.read_dest("dirs/d1/x"), "x");
    env.copy(cp_contents("/d*", "/flat/")).unwrap();
    assert_eq!(env.read_dest("flat/x"), "x");
    assert_eq!(env.read_dest("flat/y"), "y");
    let err = env.copy(cp("/*.none", "/out/")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "copy /*.none: no files match the wildcard in the source"
    );
    env.copy(Copy {
        allow_empty_wildcard: true,
        ..cp("/*.none", "/out/")
    })
    .unwrap();
    // Without allow_wildcard, `*` is a literal name.
    env.write_src("lit*", "star");
    env.copy(Copy {
        allow_wildcard: false,
        ..cp("/lit*", "/lit")
    })
    .unwrap();
    assert_eq!(env.read_dest("lit"), "star");
}

#[test]
fn copy_of_two_sources_into_a_new_directory_keeps_the_later_file() {
    let env = Env::new();
    env.write_src("e1/x", "first");
    env.write_src("e1/only1", "1");
    env.write_src("e2/x", "second");
    for dest in ["/merged/", "/merged"] {
        env.copy(cp_contents("/e*", dest)).unwrap();
        let d = dest.trim_matches('/');
        assert_eq!(env.read_dest(&format!("{d}/x")), "second");
        assert_eq!(env.read_dest(&format!("{d}/only1")), "1");
    }
}

#[test]
fn copy_follow_symlink_or_not() {
    let env = Env::new();
    env.write_src("real", "content");
    symlink("real", env.src.join("link")).unwrap();
    env.copy(Copy {
        follow_symlink: true,
        ..cp("/link", "/followed")
    })
    .unwrap();
    assert!(std::fs::symlink_metadata(env.dest.join("followed"))
        .unwrap()
        .is_file());
    assert_eq!(env.read_dest("followed"), "content");
    env.copy(cp("/link", "/kept")).unwrap();
    assert_eq!(
        std::fs::read_link(env.dest.join("kept")).unwrap(),
        Path::new("real")
    );
}

#[test]
fn copy_follows_symlink_inside_source_only() {
    // A symlink in the source pointing at an absolute host path or climbing out must read the
    // source root's file (or nothing), never the host's.
    let env = Env::new();
    symlink(env.outer.join("outside/secret"), env.src.join("abs")).unwrap();
    symlink("../outside/secret", env.src.join("rel")).unwrap();
    symlink("../outside", env.src.join("reldir")).unwrap();
    for (src, dest) in [
        ("/abs", "/a"),
        ("/rel", "/b"),
        ("/reldir/secret", "/c"),
        ("/../outside/secret", "/d"),
    ] {
        let err = env
            .copy(Copy {
                follow_symlink: true,
                ..cp(src, dest)
            })
            .unwrap_err();
        assert!(matches!(err, FileOpError::NotFound { .. }), "{src}: {err}");
    }
    // The same names inside the source root are what is read.
    env.write_src("outside/secret", "in-root");
    env.copy(Copy {
        follow_symlink: true,
        ..cp("/rel", "/b")
    })
    .unwrap();
    assert_eq!(env.read_dest("b"), "in-root");
    env.copy(Copy {
        follow_symlink: true,
        ..cp("/reldir/secret", "/c")
    })
    .unwrap();
    assert_eq!(env.read_dest("c"), "in-root");
}

#[test]
fn copy_never_writes_through_destination_symlinks() {
    let env = Env::new();
    env.write_src("sub/file", "data");
    env.write_src("etc/evil", "data");
    std::fs::create_dir_all(env.dest.join("app")).unwrap();
    symlink(env.outer.join("outside"), env.dest.join("app/sub")).unwrap();
    // Directory onto a symlink: refused.
    let err = env.copy(cp_contents("/", "/app/")).unwrap_err();
    assert!(matches!(err, FileOpError::WrongType { .. }), "{err}");
    env.outside_untouched();
    // …or replaced when asked.
    env.copy(Copy {
        dir_copy_contents: true,
        always_replace_existing_dest_paths: true,
        ..cp("/", "/app/")
    })
    .unwrap();
    assert_eq!(env.read_dest("app/sub/file"), "data");
    env.outside_untouched();
    // A destination that is a symlink is followed as Docker does, but re-rooted: the file lands
    // at the link's target inside the root.
    symlink(env.outer.join("outside/secret"), env.dest.join("file-link")).unwrap();
    env.copy(cp("/sub/file", "/file-link")).unwrap();
    let rerooted = env
        .dest
        .join(env.outer.join("outside/secret").strip_prefix("/").unwrap());
    assert_eq!(std::fs::read_to_string(rerooted).unwrap(), "data");
    env.outside_untouched();
    // A file onto a symlink met inside a copied tree replaces the symlink.
    std::fs::remove_file(env.dest.join("app/sub/file")).unwrap();
    symlink(
        env.outer.join("outside/secret"),
        env.dest.join("app/sub/file"),
    )
    .unwrap();
    env.copy(cp_contents("/", "/app/")).unwrap();
    assert!(std::fs::symlink_metadata(env.dest.join("app/sub/file"))
        .unwrap()
        .is_file());
    env.outside_untouched();
    // A destination path through an absolute symlink is re-rooted.
    symlink(env.outer.join("outside"), env.dest.join("hostout")).unwrap();
    env.copy(cp("/sub/file", "/hostout/")).unwrap();
    env.outside_untouched();
    symlink("../../..", env.dest.join("up")).unwrap();
    env.copy(cp("/sub/file", "/up/up-file")).unwrap();
    assert_eq!(env.read_dest("up-file"), "data");
    env.outside_untouched();
}

#[test]
fn copy_include_exclude() {
    let env = Env::new();
    for f in [
        "a.go",
        "b.rs",
        "README.md",
        "docs/x.md",
        "docs/keep.md",
        "vendor/lib/v.go",
        "node_modules/m/i.js",
        "cmd/tool/main.go",
    ] {
        env.write_src(&format!("ctx/{f}"), f);
    }
    env.copy(Copy {
        dir_copy_contents: true,
        include_patterns: vec![
            "*.go".into(),
            "docs".into(),
            "cmd/*/main.go".into(),
            "vendor".into(),
        ],
        exclude_patterns: vec![
            "docs/*.md".into(),
            "!docs/keep.md".into(),
            "vendor/lib".into(),
        ],
        ..cp("/ctx", "/out/")
    })
    .unwrap();
    let mut got = Vec::new();
    collect_files(&env.dest.join("out"), "", &mut got);
    got.sort();
    assert_eq!(
        got,
        vec![
            "a.go",
            "cmd/",
            "cmd/tool/",
            "cmd/tool/main.go",
            "docs/",
            "docs/keep.md",
            "vendor/"
        ]
    );
}

fn collect_files(dir: &Path, rel: &str, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let r = format!("{rel}{}", e.file_name().to_string_lossy());
        if e.file_type().unwrap().is_dir() {
            out.push(format!("{r}/"));
            collect_files(&e.path(), &format!("{r}/"), out);
        } else {
            out.push(r);
        }
    }
}

#[test]
fn copy_modes_timestamps_and_hard_links() {
    let env = Env::new();
    env.write_src("d/exe", "#!/bin/sh");
    std::fs::set_permissions(
        env.src.join("d/exe"),
        std::fs::Permissions::from_mode(0o751),
    )
    .unwrap();
    std::fs::set_permissions(env.src.join("d"), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::hard_link(env.src.join("d/exe"), env.src.join("d/exe2")).unwrap();
    let src_mtime = mtime_ns(&env.src.join("d/exe"));
    // Keep: modes and times from the source, hard links kept.
    env.copy(cp("/d", "/keep")).unwrap();
    assert_eq!(mode(&env.dest.join("keep/exe")), 0o751);
    assert_eq!(mode(&env.dest.join("keep")), 0o711);
    assert_eq!(mtime_ns(&env.dest.join("keep/exe")), src_mtime);
    let (a, b) = (
        std::fs::metadata(env.dest.join("keep/exe")).unwrap(),
        std::fs::metadata(env.dest.join("keep/exe2")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hard link not preserved");
    assert_eq!(a.nlink(), 2);
    // Override: chmod and timestamp on everything copied, directories included.
    env.copy(Copy {
        mode: Some(0o640),
        timestamp: Some(TS),
        ..cp("/d", "/over")
    })
    .unwrap();
    assert_eq!(mode(&env.dest.join("over/exe")), 0o640);
    assert_eq!(mode(&env.dest.join("over")), 0o640);
    assert_eq!(mtime_ns(&env.dest.join("over/exe")), TS);
    assert_eq!(mtime_ns(&env.dest.join("over")), TS);
}

#[test]
fn copy_chown_by_name_and_id_and_keeps_source_owner_by_default() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    env.write_src("d/f", "x");
    std::os::unix::fs::lchown(env.src.join("d/f"), Some(7), Some(8)).unwrap();
    symlink("f", env.src.join("d/l")).unwrap();
    env.copy(cp("/d", "/keep")).unwrap();
    let m = std::fs::metadata(env.dest.join("keep/f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (7, 8));
    env.copy(Copy {
        owner: Some(Chown {
            user: Some(name("app")),
            group: None,
        }),
        ..cp("/d", "/named/sub/")
    })
    .unwrap();
    for p in [
        "named",
        "named/sub",
        "named/sub/d",
        "named/sub/d/f",
        "named/sub/d/l",
    ] {
        let m = std::fs::symlink_metadata(env.dest.join(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1000), "{p}");
    }
    env.copy(Copy {
        owner: Some(Chown {
            user: Some(UserRef::Id(3)),
            group: Some(name("staff")),
        }),
        ..cp("/d/f", "/id")
    })
    .unwrap();
    let m = std::fs::metadata(env.dest.join("id")).unwrap();
    assert_eq!((m.uid(), m.gid()), (3, 50));
}

#[test]
fn copy_device_nodes_fifos_and_xattrs() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    std::fs::create_dir(env.src.join("dev")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        env.src.join("dev/null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        env.src.join("dev/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    env.write_src("dev/x", "x");
    let have_xattr = rustix::fs::lsetxattr(
        env.src.join("dev/x"),
        "user.oxkit",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    env.copy(cp("/dev", "/d")).unwrap();
    let m = std::fs::symlink_metadata(env.dest.join("d/null")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &m.file_type()
    ));
    assert_eq!(m.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(m.mode() & 0o7777, mode(&env.src.join("dev/null")));
    let m = std::fs::symlink_metadata(env.dest.join("d/fifo")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
    if have_xattr {
        let mut buf = [0u8; 8];
        let n = rustix::fs::lgetxattr(env.dest.join("d/x"), "user.oxkit", &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"v");
    } else {
        eprintln!("note: filesystem has no user xattrs; xattr copy not checked");
    }
}

#[test]
fn copy_from_scratch_is_not_found() {
    let env = Env::new();
    let err = apply(
        &env.dest,
        &act(FileActionKind::Copy(cp("/x", "/y"))),
        None,
        &env.users(),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, FileOpError::NotFound { .. }), "{err}");
}

// ---- checksum ----------------------------------------------------------------------------

#[test]
fn checksum_ignores_mtime_but_sees_content_mode_and_names() {
    let env = Env::new();
    env.write_src("ctx/a", "a");
    env.write_src("ctx/sub/b", "b");
    env.write_src("ctx/ignored.log", "log");
    symlink("a", env.src.join("ctx/l")).unwrap();
    let opts = ChecksumOptions {
        exclude_patterns: vec!["*.log".into()],
        ..Default::default()
    };
    let sum = || content_checksum(&env.src, &["/ctx".to_string()], &opts).unwrap();
    let first = sum();
    assert_eq!(first, sum());
    // mtime only: unchanged.
    crate::fsmeta::set_times(&env.src.join("ctx/a"), 1, 1).unwrap();
    crate::fsmeta::set_times(&env.src.join("ctx/sub"), 1, 1).unwrap();
    assert_eq!(first, sum());
    // An excluded file: unchanged.
    env.write_src("ctx/ignored.log", "other");
    assert_eq!(first, sum());
    // Content.
    env.write_src("ctx/sub/b", "B");
    let second = sum();
    assert_ne!(first, second);
    // Mode.
    std::fs::set_permissions(
        env.src.join("ctx/a"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let third = sum();
    assert_ne!(second, third);
    // Symlink target.
    std::fs::remove_file(env.src.join("ctx/l")).unwrap();
    symlink("sub/b", env.src.join("ctx/l")).unwrap();
    assert_ne!(third, sum());
    // Missing selector: the copy's error.
    assert!(matches!(
        content_checksum(&env.src, &["/none".into()], &opts),
        Err(FileOpError::NotFound { .. })
    ));
    assert!(first.as_str().starts_with("sha256:"));
}

#[test]
fn checksum_follows_wildcards_like_copy() {
    let env = Env::new();
    env.write_src("a.txt", "a");
    env.write_src("b.md", "b");
    let opts = ChecksumOptions {
        allow_wildcard: true,
        ..Default::default()
    };
    let sum = || content_checksum(&env.src, &["/*.txt".to_string()], &opts).unwrap();
    let first = sum();
    env.write_src("b.md", "changed");
    assert_eq!(first, sum());
    env.write_src("c.txt", "new");
    assert_ne!(first, sum());
}

// ---- plan --------------------------------------------------------------------------------

#[test]
fn plan_validates_references_and_marks_reuse() {
    let mk = |input, secondary, output, kind| FileAction {
        input,
        secondary_input: secondary,
        output,
        kind,
    };
    let op = FileOp {
        actions: vec![
            mk(
                FileInput::Input(0),
                FileInput::Scratch,
                None,
                FileActionKind::Mkdir(Mkdir {
                    path: "/a".into(),
                    mode: 0o755,
                    ..Default::default()
                }),
            ),
            mk(
                FileInput::Action(0),
                FileInput::Input(1),
                Some(0),
                FileActionKind::Copy(cp("/x", "/a/")),
            ),
        ],
    };
    let plan = FileOpPlan::new(&op, 2).unwrap();
    assert!(plan.actions[0].needed_later);
    assert!(!plan.actions[1].needed_later);
    assert_eq!(plan.actions[1].source, Some(FileInput::Input(1)));
    assert_eq!(plan.actions[1].output, Some(0));
    let bad = FileOp {
        actions: vec![mk(
            FileInput::Action(0),
            FileInput::Scratch,
            Some(0),
            FileActionKind::Rm(Rm::default()),
        )],
    };
    assert!(matches!(
        FileOpPlan::new(&bad, 1),
        Err(FileOpError::Invalid { .. })
    ));
    assert!(FileOpPlan::new(&op, 1).is_err());
}

#[test]
fn copy_timestamp_also_covers_created_parents() {
    let env = Env::new();
    env.write_src("d/f", "x");
    env.copy(Copy {
        timestamp: Some(TS),
        ..cp("/d/f", "/p/q/")
    })
    .unwrap();
    for p in ["p", "p/q", "p/q/f"] {
        assert_eq!(mtime_ns(&env.dest.join(p)), TS, "{p}");
    }
}

#[test]
fn copy_keeps_symlinks_inside_a_tree_as_links() {
    // Symlinks below the selected source are copied as links, whatever they point at; only the
    // selector itself is ever followed.
    let env = Env::new();
    std::fs::create_dir(env.src.join("d")).unwrap();
    symlink("/etc/passwd", env.src.join("d/abs")).unwrap();
    symlink("../../../outside", env.src.join("d/up")).unwrap();
    env.copy(Copy {
        follow_symlink: true,
        ..cp("/d", "/out")
    })
    .unwrap();
    assert_eq!(
        std::fs::read_link(env.dest.join("out/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        std::fs::read_link(env.dest.join("out/up")).unwrap(),
        Path::new("../../../outside")
    );
    env.outside_untouched();
}

#[test]
fn checksum_covers_exactly_the_included_files() {
    let env = Env::new();
    env.write_src("ctx/src/main.go", "package main");
    env.write_src("ctx/docs/readme", "docs");
    let opts = ChecksumOptions {
        include_patterns: vec!["src".into()],
        ..Default::default()
    };
    let sum = || content_checksum(&env.src, &["/ctx".to_string()], &opts).unwrap();
    let first = sum();
    env.write_src("ctx/docs/readme", "changed");
    assert_eq!(
        first,
        sum(),
        "a file the copy does not read changed the key"
    );
    env.write_src("ctx/src/main.go", "package other");
    assert_ne!(first, sum());
}

// ---- ADD's archive extraction (attempt_unpack) --------------------------------------------

/// A tar entry for [`tar_of`]: raw name (not validated, so hostile names can be written).
struct TarEntry {
    name: &'static str,
    kind: tar::EntryType,
    /// File content, or link target.
    data: &'static str,
    mode: u32,
    uid: u64,
}

fn file_entry(name: &'static str, data: &'static str) -> TarEntry {
    TarEntry {
        name,
        kind: tar::EntryType::Regular,
        data,
        mode: 0o644,
        uid: 0,
    }
}

fn tar_of(entries: &[TarEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let name = &mut h.as_gnu_mut().unwrap().name;
        name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.uid + 1);
        h.set_mtime(1_000_000);
        let data: &[u8] = if e.kind.is_file() {
            e.data.as_bytes()
        } else {
            if !e.data.is_empty() {
                h.set_link_name(e.data).unwrap();
            }
            b""
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn unpack_cp(src: &str, dest: &str) -> Copy {
    Copy {
        follow_symlink: true,
        dir_copy_contents: true,
        allow_empty_wildcard: true,
        attempt_unpack: true,
        ..cp(src, dest)
    }
}

fn app_tar() -> Vec<u8> {
    tar_of(&[
        TarEntry {
            name: "./",
            kind: tar::EntryType::Directory,
            data: "",
            mode: 0o700,
            uid: 0,
        },
        TarEntry {
            name: "app/",
            kind: tar::EntryType::Directory,
            data: "",
            mode: 0o750,
            uid: 1000,
        },
        TarEntry {
            mode: 0o755,
            uid: 1000,
            ..file_entry("app/run.sh", "#!/bin/sh\n")
        },
        TarEntry {
            name: "app/link",
            kind: tar::EntryType::Symlink,
            data: "run.sh",
            mode: 0o777,
            uid: 0,
        },
        TarEntry {
            name: "app/hard",
            kind: tar::EntryType::Link,
            data: "app/run.sh",
            mode: 0o755,
            uid: 1000,
        },
    ])
}

fn check_app(env: &Env, dir: &str) {
    let d = env.dest.join(dir);
    assert_eq!(env.read_dest(&format!("{dir}/app/run.sh")), "#!/bin/sh\n");
    assert_eq!(mode(&d.join("app/run.sh")), 0o755);
    assert_eq!(mode(&d.join("app")), 0o750);
    assert_eq!(mtime_ns(&d.join("app")), 1_000_000 * 1_000_000_000);
    assert_eq!(mtime_ns(&d.join("app/run.sh")), 1_000_000 * 1_000_000_000);
    assert_eq!(
        std::fs::read_link(d.join("app/link")).unwrap(),
        Path::new("run.sh")
    );
    let (a, b) = (
        std::fs::metadata(d.join("app/run.sh")).unwrap(),
        std::fs::metadata(d.join("app/hard")).unwrap(),
    );
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "hard link kept");
    // `./` names the destination itself: skipped, as moby does.
    assert_eq!(mode(&d), 0o755);
}

#[test]
fn add_extracts_a_gzip_tar_into_the_destination_directory() {
    let env = Env::new();
    std::fs::write(env.src.join("app.tar.gz"), gzip(&app_tar())).unwrap();
    env.copy(unpack_cp("/app.tar.gz", "/opt")).unwrap();
    check_app(&env, "opt");
    assert!(!env.dest.join("opt/app.tar.gz").exists());
    if is_root() {
        let m = std::fs::metadata(env.dest.join("opt/app/run.sh")).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (1000, 1001),
            "the archive's owner is kept"
        );
    }
}

#[test]
fn add_extracts_a_plain_tar_whatever_its_name_and_overwrites() {
    let env = Env::new();
    std::fs::write(env.src.join("notes.txt"), app_tar()).unwrap();
    env.write_src("old", "x");
    std::fs::create_dir_all(env.dest.join("x/app")).unwrap();
    std::fs::write(
        env.dest.join("x/app/run.sh"),
        "old content, longer than the new one\n",
    )
    .unwrap();
    std::fs::write(env.dest.join("x/app/keep"), "kept").unwrap();
    env.copy(unpack_cp("/notes.txt", "/x/")).unwrap();
    check_app(&env, "x");
    assert_eq!(env.read_dest("x/app/keep"), "kept", "directories merge");
}

#[test]
fn add_with_chown_owns_extracted_entries() {
    if !is_root() {
        return;
    }
    let env = Env::new();
    std::fs::write(env.src.join("a.tar"), app_tar()).unwrap();
    env.copy(Copy {
        owner: Some(Chown {
            user: Some(UserRef::Id(7)),
            group: Some(UserRef::Id(8)),
        }),
        ..unpack_cp("/a.tar", "/o/")
    })
    .unwrap();
    for p in ["o", "o/app", "o/app/run.sh", "o/app/link"] {
        let m = std::fs::symlink_metadata(env.dest.join(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (7, 8), "{p}");
    }
}

#[test]
fn add_copies_what_is_not_an_archive() {
    let env = Env::new();
    env.write_src("plain.txt", "just text\n");
    // A gzip stream whose content is no tar: named like one, still copied as a file.
    std::fs::write(env.src.join("foo.tar.gz"), gzip(b"not a tar at all\n")).unwrap();
    std::fs::write(env.src.join("empty.tar"), b"").unwrap();
    env.write_src("dir/in.tar", "no");
    for src in ["/plain.txt", "/foo.tar.gz", "/empty.tar", "/dir"] {
        env.copy(unpack_cp(src, "/c/")).unwrap();
    }
    assert_eq!(env.read_dest("c/plain.txt"), "just text\n");
    assert_eq!(
        std::fs::read(env.dest.join("c/foo.tar.gz")).unwrap(),
        gzip(b"not a tar at all\n")
    );
    assert_eq!(env.read_dest("c/empty.tar"), "");
    assert_eq!(env.read_dest("c/in.tar"), "no");
    // Without the flag an archive is a file like any other.
    std::fs::write(env.src.join("a.tar"), app_tar()).unwrap();
    env.copy(cp("/a.tar", "/n/")).unwrap();
    assert_eq!(std::fs::read(env.dest.join("n/a.tar")).unwrap(), app_tar());
}

#[test]
fn add_detects_bzip2_xz_and_zstd_by_content() {
    use std::io::Write;
    let env = Env::new();
    let raw = app_tar();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&raw).unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&raw).unwrap();
    let zst = zstd::encode_all(&raw[..], 1).unwrap();
    for (name, data) in [
        ("a.bin", bz.finish().unwrap()),
        ("b.bin", xz.finish().unwrap()),
        ("c.bin", zst),
    ] {
        std::fs::write(env.src.join(name), data).unwrap();
        env.copy(unpack_cp(&format!("/{name}"), &format!("/{name}.d/")))
            .unwrap();
        check_app(&env, &format!("{name}.d"));
    }
}

/// Hostile archives: `..` is refused (moby's breakout error); an absolute name and a symlink
/// pointing out, followed by an entry through it, land inside the destination.
#[test]
fn add_never_writes_outside_the_root() {
    let env = Env::new();
    let dotdot = tar_of(&[file_entry("../../outside/x", "evil")]);
    let inner = tar_of(&[file_entry("a/../../../outside/y", "evil")]);
    let abs = tar_of(&[file_entry("/outside/abs", "confined")]);
    let through = tar_of(&[
        TarEntry {
            name: "up",
            kind: tar::EntryType::Symlink,
            data: "../../../outside",
            mode: 0o777,
            uid: 0,
        },
        file_entry("up/z", "confined"),
        TarEntry {
            name: "root",
            kind: tar::EntryType::Symlink,
            data: "/",
            mode: 0o777,
            uid: 0,
        },
        file_entry("root/etc/passwd", "not the image's"),
    ]);
    let hard = tar_of(&[TarEntry {
        name: "h",
        kind: tar::EntryType::Link,
        data: "../../outside/secret",
        mode: 0o644,
        uid: 0,
    }]);
    for (name, data) in [
        ("dotdot", &dotdot),
        ("inner", &inner),
        ("abs", &abs),
        ("through", &through),
        ("hard", &hard),
    ] {
        std::fs::write(env.src.join(name), data).unwrap();
    }
    for name in ["dotdot", "inner", "hard"] {
        let err = env.copy(unpack_cp(&format!("/{name}"), "/d/")).unwrap_err();
        assert!(
            err.to_string().contains("outside of the destination"),
            "{name}: {err}"
        );
    }
    env.copy(unpack_cp("/abs", "/d/")).unwrap();
    assert_eq!(env.read_dest("d/outside/abs"), "confined");
    env.copy(unpack_cp("/through", "/d/")).unwrap();
    // Resolved inside the extraction directory, as in moby's chroot.
    assert_eq!(env.read_dest("d/outside/z"), "confined");
    assert_eq!(env.read_dest("d/etc/passwd"), "not the image's");
    assert!(env.read_dest("etc/passwd").starts_with("root:x:0:0"));
    env.outside_untouched();
}

#[test]
fn a_directorys_contents_copy_onto_the_root() {
    let env = Env::new();
    env.write_src("rootfs/etc/app.conf", "conf\n");
    env.write_src("rootfs/top", "top\n");
    env.copy(cp_contents("/rootfs/", "/")).unwrap();
    assert_eq!(env.read_dest("etc/app.conf"), "conf\n");
    assert_eq!(env.read_dest("top"), "top\n");
    assert!(!env.dest.join("rootfs").exists());
    env.outside_untouched();
}

/// Runs copy `c` with the source and destination each their own single layer (bind-like
/// mounts, so the real paths are the mount paths), `last_use` as [`LayerPaths::dest_last_use`].
fn copy_sharing(env: &Env, c: Copy, last_use: bool) {
    let paths = LayerPaths {
        source: Some((env.src.clone(), vec![env.src.clone()])),
        dest: Some((env.dest.clone(), env.dest.clone())),
        dest_last_use: last_use,
        ..Default::default()
    };
    let copy = act(FileActionKind::Copy(c));
    apply(&env.dest, &copy, Some(&env.src), &env.users(), Some(&paths)).unwrap();
}

fn ino(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).unwrap().ino()
}

#[test]
fn a_copy_into_a_directory_it_creates_shares_files_as_dockerfile_copy_writes_it() {
    // `COPY . /app`: the frontend's destination has no trailing slash, and the copy makes /app.
    let env = Env::new();
    env.write_src("a", "a");
    env.write_src("d/b", "b");
    // A hard link in the source stays one (as BuildKit keeps it), shared or not.
    std::fs::hard_link(env.src.join("d/b"), env.src.join("d/b2")).unwrap();
    let contents = cp_contents("/", "/app");
    copy_sharing(&env, contents, false);
    for rel in ["a", "d/b", "d/b2"] {
        let (dest, src) = (env.dest.join("app").join(rel), env.src.join(rel));
        assert_eq!(ino(&dest), ino(&src), "{rel} is shared");
    }
}

#[test]
fn a_file_copied_into_an_existing_directory_is_shared_only_on_the_mounts_last_use() {
    // `COPY --from=stage /a /a`: the destination's root existed before the copy.
    let env = Env::new();
    env.write_src("a", "a");
    env.write_src("b", "b");
    for (file, last_use) in [("a", true), ("b", false)] {
        let path = format!("/{file}");
        copy_sharing(&env, cp(&path, &path), last_use);
        assert_eq!(env.read_dest(file), file);
        let shared = ino(&env.dest.join(file)) == ino(&env.src.join(file));
        assert_eq!(shared, last_use, "{file}: shared only on the last use");
    }
    // Two names of one file into a directory that existed: one file still.
    env.write_src("hl/h", "h");
    std::fs::hard_link(env.src.join("hl/h"), env.src.join("hl/h2")).unwrap();
    let contents = cp_contents("/hl/", "/etc/");
    copy_sharing(&env, contents, true);
    for name in ["etc/h", "etc/h2"] {
        assert_eq!(
            ino(&env.dest.join(name)),
            ino(&env.src.join("hl/h")),
            "{name}"
        );
    }
    // A name that exists is replaced by a copy, never linked over.
    env.write_src("etc/passwd", "not the image's");
    copy_sharing(&env, cp("/etc/passwd", "/etc/passwd"), true);
    assert_eq!(env.read_dest("etc/passwd"), "not the image's");
    assert_ne!(
        ino(&env.dest.join("etc/passwd")),
        ino(&env.src.join("etc/passwd"))
    );
}

#[test]
fn a_copy_shares_files_it_keeps_as_they_are_and_mkfile_never_writes_through() {
    let env = Env::new();
    env.write_src("d/keep", "kept");
    env.write_src("d/sub/deep", "deep");
    env.write_src("top", "top");
    // Bind-like mounts: each root is its own layer, so the real paths are the mount paths.
    let paths = LayerPaths {
        source: Some((env.src.clone(), vec![env.src.clone()])),
        dest: Some((env.dest.clone(), env.dest.clone())),
        ..Default::default()
    };
    let run = |kind: FileActionKind| {
        apply(
            &env.dest,
            &act(kind),
            Some(&env.src),
            &env.users(),
            Some(&paths),
        )
    };
    run(FileActionKind::Copy(cp_contents("/", "/app/"))).unwrap();
    for rel in ["d/keep", "d/sub/deep", "top"] {
        assert_eq!(
            ino(&env.dest.join("app").join(rel)),
            ino(&env.src.join(rel)),
            "{rel} is shared"
        );
    }
    assert_eq!(env.read_dest("app/d/sub/deep"), "deep");

    // A mode the copy changes: copied, not shared.
    run(FileActionKind::Copy(Copy {
        mode: Some(0o600),
        ..cp("/d/keep", "/other/")
    }))
    .unwrap();
    assert_ne!(
        ino(&env.dest.join("other/keep")),
        ino(&env.src.join("d/keep"))
    );
    assert_eq!(
        std::fs::metadata(env.dest.join("other/keep"))
            .unwrap()
            .mode()
            & 0o7777,
        0o600
    );

    // Writing a shared file replaces it: the source keeps its content.
    run(FileActionKind::Mkfile(Mkfile {
        path: "/app/d/keep".into(),
        mode: 0o644,
        data: b"changed".to_vec(),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(env.read_dest("app/d/keep"), "changed");
    assert_eq!(
        std::fs::read_to_string(env.src.join("d/keep")).unwrap(),
        "kept"
    );
    env.outside_untouched();
}

#[test]
fn known_digests_stand_in_for_reading_files_whose_size_and_mtime_match() {
    use sha2::Digest as _;
    let env = Env::new();
    env.write_src("d/a", "alpha");
    env.write_src("b", "bee");
    let opts = ChecksumOptions::default();
    let sel = ["/".to_string()];
    let read = content_checksum(&env.src, &sel, &opts).unwrap();
    let meta = |rel: &str| std::fs::metadata(env.src.join(rel)).unwrap();
    let mtime = |rel: &str| meta(rel).mtime() * 1_000_000_000 + meta(rel).mtime_nsec();
    let sha = |data: &str| -> [u8; 32] { sha2::Sha256::digest(data.as_bytes()).into() };

    let mut known = KnownDigests::default();
    known.insert("d/a".into(), 5, mtime("d/a"), sha("alpha"));
    known.insert("b".into(), 3, mtime("b"), sha("bee"));
    assert_eq!(
        content_checksum_with(&env.src, &sel, &opts, Some(&known)).unwrap(),
        read,
        "the same checksum, files not read"
    );
    // A digest that matches size and mtime is taken as is (so this one changes the result)...
    known.insert("b".into(), 3, mtime("b"), sha("BEE"));
    assert_ne!(
        content_checksum_with(&env.src, &sel, &opts, Some(&known)).unwrap(),
        read
    );
    // ...one recorded for another mtime is not: the file is read.
    known.insert("b".into(), 3, mtime("b") + 1, sha("BEE"));
    assert_eq!(
        content_checksum_with(&env.src, &sel, &opts, Some(&known)).unwrap(),
        read
    );
}
