//! Docker's `ADD` of a local archive (BuildKit's `attemptUnpackDockerCompatibility`): tells a
//! tar archive (plain, gzip, bzip2, xz, zstd) by its content, as moby's `DecompressStream` and a
//! first `tar.Next` do, and extracts it into a directory with moby's `Untar` semantics. Every
//! entry is resolved inside the extraction directory, as moby's chroot confines it there.

use crate::copy::mkdir_all;
use crate::error::FileOpError;
use crate::fsmeta;
use crate::resolve::resolve;
use std::ffi::OsStr;
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const ACTION: &str = "copy";

/// The content of `file`, decompressed by its magic bytes (moby's `DetectCompression`).
fn decompressed(mut file: std::fs::File) -> std::io::Result<Box<dyn Read>> {
    let mut magic = [0u8; 6];
    let mut n = 0;
    while n < magic.len() {
        match file.read(&mut magic[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let stream = head.chain(file);
    let m = &magic[..n];
    Ok(if m.starts_with(&[0x1f, 0x8b, 0x08]) {
        Box::new(flate2::read::MultiGzDecoder::new(stream))
    } else if m.starts_with(b"BZh") {
        Box::new(bzip2::read::MultiBzDecoder::new(stream))
    } else if m.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(stream))
    } else if m.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::new(stream)?)
    } else {
        Box::new(stream)
    })
}

/// Whether the regular file `host` is a tar archive, maybe compressed: its decompressed content
/// starts with a valid tar header (BuildKit's `isArchivePath`). Any error reading it means no.
pub(crate) fn is_archive(host: &Path) -> bool {
    let Ok(file) = std::fs::File::open(host) else {
        return false;
    };
    let Ok(stream) = decompressed(file) else {
        return false;
    };
    let mut ar = tar::Archive::new(stream);
    let Ok(mut entries) = ar.entries() else {
        return false;
    };
    matches!(entries.next(), Some(Ok(_)))
}

/// An entry name cleaned as Go's `filepath.Clean` does: `None` when it climbs out of the
/// extraction directory (`../x`, `a/../../x`); a leading `/` is dropped, so `/abs` lands at
/// `<dest>/abs` (moby joins it under the destination). Empty for the directory itself.
fn clean_entry(name: &[u8]) -> Option<Vec<&[u8]>> {
    let rooted = name.starts_with(b"/");
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." if parts.is_empty() && rooted => {}
            b".." if parts.is_empty() => return None,
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Some(parts)
}

fn joined(parts: &[&[u8]]) -> String {
    let v: Vec<String> = parts
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    format!("/{}", v.join("/"))
}

/// Extracts the archive `src` into the existing directory `dest` (a host path without symlinks,
/// as [`resolve`] returns; `dest_path` names it in errors). Owners are the archive's unless
/// `owner` overrides them (BuildKit passes the copy's chown as `ChownOpts`); modes and times
/// are the archive's. An existing entry is replaced, except a directory by a directory, which
/// takes the entry's metadata. Entries climbing out with `..` and hard links to outside are
/// refused, as moby's breakout checks do; absolute names and symlinks (absolute or not) are
/// resolved inside `dest`, as moby's chroot does. Device nodes that cannot be made (no
/// `CAP_MKNOD`) are skipped, as moby does in a user namespace.
pub(crate) fn unpack(
    src: &Path,
    src_path: &str,
    dest: &Path,
    dest_path: &str,
    owner: Option<(u32, u32)>,
) -> Result<(), FileOpError> {
    let read_err = |op, e| FileOpError::io(ACTION, src_path, op, src, e);
    let file = std::fs::File::open(src).map_err(|e| read_err("open", e))?;
    let stream = decompressed(file).map_err(|e| read_err("decompress", e))?;
    let mut ar = tar::Archive::new(stream);
    let mut dirs: Vec<(PathBuf, i64, i64)> = Vec::new();
    for entry in ar.entries().map_err(|e| read_err("read archive", e))? {
        let mut entry = entry.map_err(|e| read_err("read archive", e))?;
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            continue;
        }
        let name = entry.path_bytes().into_owned();
        let refused = |what: &str| FileOpError::Invalid {
            action: ACTION,
            reason: format!(
                "{src_path}: archive entry {:?} {what} (extracting into {dest_path})",
                String::from_utf8_lossy(&name)
            ),
        };
        let Some(parts) = clean_entry(&name) else {
            return Err(refused("is outside of the destination"));
        };
        let entry_path = format!("{dest_path}{}", joined(&parts));
        let io = |op, h: &Path, e| FileOpError::io(ACTION, &entry_path, op, h, e);
        let Some((base, parent)) = parts.split_last() else {
            // The directory itself (`./`): moby skips it.
            if kind.is_dir() {
                continue;
            }
            return Err(refused("is not a directory but names the destination"));
        };
        let parent_host = resolve(ACTION, dest, &joined(parent), true)?;
        mkdir_all(ACTION, &entry_path, dest, &parent_host, 0o755, None, None)?;
        let t = parent_host.join(OsStr::from_bytes(base));
        match std::fs::symlink_metadata(&t) {
            Ok(m) if m.is_dir() && kind.is_dir() => {}
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&t).map_err(|e| io("remove", &t, e))?,
            Ok(_) => std::fs::remove_file(&t).map_err(|e| io("remove", &t, e))?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("lstat", &t, e)),
        }
        let h = entry.header();
        let mode = h.mode().map_err(|e| read_err("read archive", e))? & 0o7777;
        let mut uid = h.uid().map_err(|e| read_err("read archive", e))? as u32;
        let mut gid = h.gid().map_err(|e| read_err("read archive", e))? as u32;
        let mut mtime = h.mtime().map_err(|e| read_err("read archive", e))? as i64 * 1_000_000_000;
        let dev = (
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        );
        let mut xattrs: Vec<(String, Vec<u8>)> = Vec::new();
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                let (Ok(k), v) = (ext.key(), ext.value_bytes()) else {
                    continue;
                };
                let num = std::str::from_utf8(v).ok();
                match k {
                    "uid" => uid = num.and_then(|s| s.parse().ok()).unwrap_or(uid),
                    "gid" => gid = num.and_then(|s| s.parse().ok()).unwrap_or(gid),
                    "mtime" => {
                        if let Some(t) = num.and_then(|s| s.parse::<f64>().ok()) {
                            mtime = (t * 1e9) as i64;
                        }
                    }
                    k if k.starts_with("SCHILY.xattr.") => {
                        xattrs.push((k["SCHILY.xattr.".len()..].to_string(), v.to_vec()))
                    }
                    _ => {}
                }
            }
        }
        let (uid, gid) = owner.unwrap_or((uid, gid));
        let link_name = || -> Result<Vec<u8>, FileOpError> {
            Ok(entry
                .link_name_bytes()
                .ok_or_else(|| refused("is a link without a target"))?
                .into_owned())
        };
        match kind {
            k if k.is_file() => {
                // create_new: O_EXCL never follows a symlink planted at the target.
                let mut to = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&t)
                    .map_err(|e| io("create", &t, e))?;
                std::io::copy(&mut entry, &mut to).map_err(|e| io("write", &t, e))?;
            }
            k if k.is_dir() => {
                if !t.is_dir() {
                    std::fs::create_dir(&t).map_err(|e| io("mkdir", &t, e))?;
                }
            }
            k if k.is_symlink() => {
                let target = link_name()?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &t)
                    .map_err(|e| io("symlink", &t, e))?;
            }
            k if k.is_hard_link() => {
                let target = link_name()?;
                let Some(tp) = clean_entry(&target) else {
                    return Err(refused("is a hard link to outside of the destination"));
                };
                let first = resolve(ACTION, dest, &joined(&tp), false)?;
                std::fs::hard_link(&first, &t).map_err(|e| io("link", &t, e))?;
            }
            k if k.is_character_special() || k.is_block_special() || k.is_fifo() => {
                let ft = if k.is_fifo() {
                    rustix::fs::FileType::Fifo
                } else if k.is_block_special() {
                    rustix::fs::FileType::BlockDevice
                } else {
                    rustix::fs::FileType::CharacterDevice
                };
                let made = rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &t,
                    ft,
                    rustix::fs::Mode::from_raw_mode(mode),
                    rustix::fs::makedev(dev.0, dev.1),
                );
                match made {
                    Ok(()) => {}
                    Err(rustix::io::Errno::PERM) if !k.is_fifo() => {
                        tracing::warn!(path = %entry_path, "cannot make device node; skipped");
                        continue;
                    }
                    Err(e) => return Err(io("mknod", &t, e.into())),
                }
            }
            _ => return Err(refused("has a type oxkit cannot extract")),
        }
        // As moby's createTarFile: owner, xattrs, mode (not of a symlink), then times.
        fsmeta::lchown(&t, uid, gid).map_err(|e| io("chown", &t, e))?;
        for (k, v) in &xattrs {
            if let Err(e) =
                rustix::fs::lsetxattr(&t, k.as_str(), v, rustix::fs::XattrFlags::empty())
            {
                tracing::debug!(xattr = %k, path = %entry_path, error = %e, "xattr not set");
            }
        }
        if !kind.is_symlink() {
            fsmeta::chmod(&t, mode).map_err(|e| io("chmod", &t, e))?;
        }
        if kind.is_dir() {
            // Last: extracting into a directory changes its times.
            dirs.push((t, mtime, mtime));
        } else {
            fsmeta::set_times(&t, mtime, mtime).map_err(|e| io("utimes", &t, e))?;
        }
    }
    for (d, atime, mtime) in dirs {
        fsmeta::set_times(&d, atime, mtime)
            .map_err(|e| FileOpError::io(ACTION, dest_path, "utimes", &d, e))?;
    }
    Ok(())
}
