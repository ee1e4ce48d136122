use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use rustix::fs::{FileType, Mode, XattrFlags, CWD};
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
use sha2::{Digest as _, Sha256};

use super::*;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips (loudly) without root, which whiteouts and overlay mounts need; under CI that fails.
fn needs_root() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "layer tests need root under CI=true"
    );
    eprintln!("SKIP: not root: whiteout and overlay tests need root");
    false
}

/// (path, type, mode, size or link target, contents) of every entry, in archive order.
fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, u32, String)> {
    let mut ar = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let (kind, mode) = (e.header().entry_type(), e.header().mode().unwrap());
        let extra = match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => e
                .link_name()
                .unwrap()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            _ => {
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                s
            }
        };
        out.push((path, kind, mode, extra));
    }
    out
}

fn sha(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn layer(upper: &Path, options: &LayerOptions) -> (Layer, Vec<u8>) {
    let mut blob = Vec::new();
    let l = write_layer(upper, &mut blob, options).unwrap();
    (l, blob)
}

#[test]
fn plain_tree_in_name_order_with_links() {
    let tmp = tempfile::tempdir().unwrap();
    let up = tmp.path();
    fs::create_dir(up.join("b")).unwrap();
    fs::write(up.join("b/z"), "zz").unwrap();
    fs::write(up.join("a"), "aaa").unwrap();
    fs::set_permissions(up.join("a"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(up.join("a"), up.join("c")).unwrap();
    symlink("b/z", up.join("s")).unwrap();
    let opts = LayerOptions {
        compression: Compression::Uncompressed,
        source_date_epoch: None,
    };
    let (l, blob) = layer(up, &opts);
    assert_eq!(
        (l.digest.as_str(), l.diff_id.as_str()),
        (sha(&blob).as_str(), sha(&blob).as_str())
    );
    assert_eq!(l.size, blob.len() as u64);
    let got = entries(&blob);
    let summary: Vec<(&str, tar::EntryType, &str)> = got
        .iter()
        .map(|(p, k, _, x)| (p.as_str(), *k, x.as_str()))
        .collect();
    use tar::EntryType as T;
    assert_eq!(
        summary,
        [
            ("a", T::Regular, "aaa"),
            ("b/", T::Directory, ""),
            ("b/z", T::Regular, "zz"),
            ("c", T::Link, "a"),
            ("s", T::Symlink, "b/z")
        ]
    );
    assert_eq!(got[0].2, 0o4755, "set-id bits survive");
}

#[test]
fn output_is_deterministic_and_compressions_agree_on_diff_id() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..50 {
        fs::write(
            tmp.path().join(format!("f{i}")),
            format!("file {i}\n").repeat(100),
        )
        .unwrap();
    }
    let mut diff_ids = BTreeMap::new();
    for c in [
        Compression::Uncompressed,
        Compression::Gzip { level: 6 },
        Compression::Zstd { level: 3 },
    ] {
        let opts = LayerOptions {
            compression: c,
            source_date_epoch: None,
        };
        let (a, blob_a) = layer(tmp.path(), &opts);
        let (b, blob_b) = layer(tmp.path(), &opts);
        assert_eq!(blob_a, blob_b, "{c:?} output must not vary");
        assert_eq!(a, b);
        assert_eq!(a.media_type, c.media_type());
        let tar = match c {
            Compression::Uncompressed => blob_a.clone(),
            Compression::Gzip { .. } => {
                let mut v = Vec::new();
                flate2::read::GzDecoder::new(&blob_a[..])
                    .read_to_end(&mut v)
                    .unwrap();
                v
            }
            Compression::Zstd { .. } => zstd::decode_all(&blob_a[..]).unwrap(),
        };
        assert_eq!(
            a.diff_id.as_str(),
            sha(&tar),
            "{c:?}: diff_id is the uncompressed tar's digest"
        );
        assert_eq!(entries(&tar).len(), 50);
        diff_ids.insert(format!("{c:?}"), a.diff_id);
    }
    assert_eq!(
        diff_ids
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        1
    );
}

#[test]
fn source_date_epoch_clamps_timestamps() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("new"), "x").unwrap();
    let opts = LayerOptions {
        compression: Compression::Uncompressed,
        source_date_epoch: Some(1000),
    };
    let (first, blob) = layer(tmp.path(), &opts);
    let mut ar = tar::Archive::new(&blob[..]);
    let e = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.header().mtime().unwrap(), 1000);
    // Touching the file changes nothing in a clamped layer.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(tmp.path().join("new"), "x").unwrap();
    assert_eq!(layer(tmp.path(), &opts).0, first);
}

#[test]
fn overlay_deletions_become_oci_whiteouts() {
    if !needs_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper, work, merged) = (
        tmp.path().join("l"),
        tmp.path().join("u"),
        tmp.path().join("w"),
        tmp.path().join("m"),
    );
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    fs::write(lower.join("gone"), "x").unwrap();
    fs::create_dir(lower.join("replaced")).unwrap();
    fs::write(lower.join("replaced/old"), "x").unwrap();
    fs::create_dir(lower.join("kept")).unwrap();
    fs::write(lower.join("kept/deleted"), "x").unwrap();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let opts = std::ffi::CString::new(opts).unwrap();
    mount(
        "overlay",
        &merged,
        "overlay",
        MountFlags::empty(),
        Some(opts.as_c_str()),
    )
    .expect("mount overlay");
    let changed = (|| -> std::io::Result<()> {
        fs::remove_file(merged.join("gone"))?;
        fs::remove_dir_all(merged.join("replaced"))?;
        fs::create_dir(merged.join("replaced"))?;
        fs::write(merged.join("replaced/new"), "n")?;
        fs::remove_file(merged.join("kept/deleted"))?;
        fs::write(merged.join("added"), "a")
    })();
    unmount(&merged, UnmountFlags::empty()).unwrap();
    changed.unwrap();

    let (_, blob) = layer(
        &upper,
        &LayerOptions {
            compression: Compression::Uncompressed,
            source_date_epoch: None,
        },
    );
    let got: Vec<(String, tar::EntryType)> = entries(&blob)
        .into_iter()
        .map(|(p, k, _, _)| (p, k))
        .collect();
    use tar::EntryType as T;
    // In the order of the names in the upper directory: the whiteout of `gone` sorts as `gone`.
    let want = [
        ("added", T::Regular),
        (".wh.gone", T::Regular),
        ("kept/", T::Directory),
        ("kept/.wh.deleted", T::Regular),
        ("replaced/", T::Directory),
        ("replaced/.wh..wh..opq", T::Regular),
        ("replaced/new", T::Regular),
    ];
    let want: Vec<(String, T)> = want.iter().map(|(p, k)| (p.to_string(), *k)).collect();
    assert_eq!(got, want);
}

#[test]
fn user_xattrs_travel_as_pax_records_and_overlay_ones_do_not() {
    if !needs_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("f");
    fs::write(&f, "x").unwrap();
    rustix::fs::setxattr(&f, "user.note", b"hello", XattrFlags::empty()).unwrap();
    rustix::fs::setxattr(&f, "trusted.overlay.origin", b"o", XattrFlags::empty()).unwrap();
    rustix::fs::mknodat(
        CWD,
        tmp.path().join("dev"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o600),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    let (_, blob) = layer(
        tmp.path(),
        &LayerOptions {
            compression: Compression::Uncompressed,
            source_date_epoch: None,
        },
    );
    let mut ar = tar::Archive::new(&blob[..]);
    let mut seen = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().into_owned();
        if path == Path::new("dev") {
            assert_eq!(e.header().entry_type(), tar::EntryType::Char);
            assert_eq!(
                (
                    e.header().device_major().unwrap(),
                    e.header().device_minor().unwrap()
                ),
                (Some(1), Some(3))
            );
            continue;
        }
        for ext in e.pax_extensions().unwrap().into_iter().flatten() {
            let ext = ext.unwrap();
            seen.push((ext.key().unwrap().to_string(), ext.value_bytes().to_vec()));
        }
    }
    assert_eq!(
        seen,
        [("SCHILY.xattr.user.note".to_string(), b"hello".to_vec())]
    );
}
