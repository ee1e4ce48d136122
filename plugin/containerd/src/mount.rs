//! Mounting containerd [`Mount`]s on the host: the [`Mounter`] seam, its Linux implementation and
//! [`with_temp_mount`], for file ops and exporters that read or write a snapshot directly.

use std::ffi::CString;
use std::path::Path;

use rustix::fs::CWD;
use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, mount, mount_bind,
    mount_bind_recursive, mount_remount, move_mount, unmount, FsMountFlags, FsOpenFlags,
    MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use crate::{ContainerdError, Mount};

/// The largest mount(2) data the kernel takes: one page, including the terminating NUL. (4 KiB is
/// the smallest page size Linux runs with; larger pages only raise the limit.)
const MOUNT_DATA_MAX: usize = 4096 - 1;

/// Mounts and unmounts on the host. The kernel boundary, behind a trait so that callers can be
/// tested with a double that records calls.
pub trait Mounter: Send + Sync {
    /// Mounts `mounts` in order onto `target`, an existing directory (containerd's `mount.All`:
    /// normally one mount). On error the target is left unmounted: whatever this call mounted before
    /// the failure is unmounted again.
    fn mount(&self, mounts: &[Mount], target: &Path) -> Result<(), ContainerdError>;

    /// Unmounts everything mounted on `target`, stacked mounts included. A target with nothing
    /// mounted on it is fine. On error, some mounts may remain.
    fn unmount(&self, target: &Path) -> Result<(), ContainerdError>;
}

/// The Linux [`Mounter`]: `mount(2)` for bind (`bind`/`rbind`, `ro`/`rw`), overlay and other file
/// systems with flags and data options, as containerd's `mount_linux.go` does.
///
/// Overlay options longer than mount(2) takes (one page: long `lowerdir` lists) are passed through
/// the new mount API instead, one lower directory at a time (`lowerdir+`, Linux 6.8+); on older
/// kernels such a mount fails with a clear error. (containerd instead forks a helper that chdirs
/// to the layers' common parent and uses relative paths.)
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxMounter;

impl Mounter for LinuxMounter {
    fn mount(&self, mounts: &[Mount], target: &Path) -> Result<(), ContainerdError> {
        for (done, m) in mounts.iter().enumerate() {
            if let Err(e) = mount_one(m, target) {
                for _ in 0..done {
                    let _ = unmount(target, UnmountFlags::DETACH);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), ContainerdError> {
        // Each call removes the top mount; EINVAL means nothing (more) is mounted there.
        for _ in 0..64 {
            match unmount(target, UnmountFlags::NOFOLLOW) {
                Ok(()) => continue,
                Err(Errno::INVAL) => return Ok(()),
                Err(Errno::BUSY) => {
                    return unmount(target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW).map_err(
                        |e| ContainerdError::Unmount {
                            target: target.to_owned(),
                            source: e.into(),
                        },
                    )
                }
                Err(e) => {
                    return Err(ContainerdError::Unmount {
                        target: target.to_owned(),
                        source: e.into(),
                    })
                }
            }
        }
        Ok(())
    }
}

/// Mounts `mounts` on a fresh temporary directory, calls `f` with its path, then unmounts and
/// removes the directory (also when `f` panics). Returns what `f` returned, or the first mount or
/// unmount error (after a failed unmount the directory is left in place, still mounted).
///
/// Blocking: call it from `spawn_blocking` in async code.
pub fn with_temp_mount<M, F, R>(mounter: &M, mounts: &[Mount], f: F) -> Result<R, ContainerdError>
where
    M: Mounter + ?Sized,
    F: FnOnce(&Path) -> R,
{
    // Kept (not a TempDir): a TempDir's drop deletes recursively, which on a directory that is
    // still mounted would delete the snapshot's files. Only `remove_dir` (empty dirs) is used here.
    let dir = tempfile::Builder::new()
        .prefix("oxkit-mount-")
        .tempdir()
        .map_err(|source| ContainerdError::Io {
            action: "create a temporary mount point in",
            path: std::env::temp_dir(),
            source,
        })?
        .keep();
    if let Err(e) = mounter.mount(mounts, &dir) {
        let _ = std::fs::remove_dir(&dir);
        return Err(e);
    }
    struct Unmount<'a, M: Mounter + ?Sized>(&'a M, &'a Path, bool);
    impl<M: Mounter + ?Sized> Drop for Unmount<'_, M> {
        fn drop(&mut self) {
            // Unwinding out of `f`: unmount, then remove the dir only if that worked.
            if !self.2 && self.0.unmount(self.1).is_ok() {
                let _ = std::fs::remove_dir(self.1);
            }
        }
    }
    let mut guard = Unmount(mounter, &dir, false);
    let result = f(&dir);
    guard.2 = true;
    drop(guard);
    mounter.unmount(&dir)?;
    std::fs::remove_dir(&dir).map_err(|source| ContainerdError::Io {
        action: "remove the temporary mount point",
        path: dir.clone(),
        source,
    })?;
    Ok(result)
}

/// What a mount's options mean for mount(2).
#[derive(Debug, PartialEq, Eq)]
struct ParsedOptions {
    flags: MountFlags,
    /// Options that are not flags, in order (`key=value` or bare words): the mount data.
    data: Vec<String>,
}

/// Splits options into flags and data, as containerd's `parseMountOptions` does.
fn parse_options(options: &[String]) -> ParsedOptions {
    let mut parsed = ParsedOptions {
        flags: MountFlags::empty(),
        data: Vec::new(),
    };
    for option in options {
        let (clear, flag) = match option.as_str() {
            "async" => (true, MountFlags::SYNCHRONOUS),
            "atime" => (true, MountFlags::NOATIME),
            "bind" => (false, MountFlags::BIND),
            "defaults" => (false, MountFlags::empty()),
            "dev" => (true, MountFlags::NODEV),
            "diratime" => (true, MountFlags::NODIRATIME),
            "dirsync" => (false, MountFlags::DIRSYNC),
            "exec" => (true, MountFlags::NOEXEC),
            "noatime" => (false, MountFlags::NOATIME),
            "nodev" => (false, MountFlags::NODEV),
            "nodiratime" => (false, MountFlags::NODIRATIME),
            "noexec" => (false, MountFlags::NOEXEC),
            "norelatime" => (true, MountFlags::RELATIME),
            "nostrictatime" => (true, MountFlags::STRICTATIME),
            "nosuid" => (false, MountFlags::NOSUID),
            "rbind" => (false, MountFlags::BIND | MountFlags::REC),
            "relatime" => (false, MountFlags::RELATIME),
            "ro" => (false, MountFlags::RDONLY),
            "rw" => (true, MountFlags::RDONLY),
            "strictatime" => (false, MountFlags::STRICTATIME),
            "suid" => (true, MountFlags::NOSUID),
            "sync" => (false, MountFlags::SYNCHRONOUS),
            _ => {
                parsed.data.push(option.clone());
                continue;
            }
        };
        if clear {
            parsed.flags.remove(flag);
        } else {
            parsed.flags.insert(flag);
        }
    }
    parsed
}

fn mount_one(m: &Mount, target: &Path) -> Result<(), ContainerdError> {
    let parsed = parse_options(&m.options);
    let fail = |reason: String| ContainerdError::Mount {
        kind: m.kind.clone(),
        source_path: m.source.clone(),
        target: target.to_owned(),
        reason,
    };
    if parsed.flags.contains(MountFlags::BIND) || m.kind == "bind" {
        if !parsed.data.is_empty() {
            return Err(ContainerdError::UnsupportedMount {
                kind: m.kind.clone(),
                options: m.options.clone(),
                reason: format!("unknown bind mount options {:?}", parsed.data),
            });
        }
        let bound = if parsed.flags.contains(MountFlags::REC) {
            mount_bind_recursive(m.source.as_str(), target)
        } else {
            mount_bind(m.source.as_str(), target)
        };
        bound.map_err(|e| fail(e.to_string()))?;
        // A bind mount ignores every flag but BIND/REC: read-only and the rest take a remount.
        let rest = parsed.flags - MountFlags::BIND - MountFlags::REC;
        if !rest.is_empty() {
            if let Err(e) = mount_remount(target, MountFlags::BIND | rest, "") {
                let _ = unmount(target, UnmountFlags::DETACH);
                return Err(fail(format!("remount with {rest:?}: {e}")));
            }
        }
        return Ok(());
    }
    let data = parsed.data.join(",");
    if data.len() > MOUNT_DATA_MAX {
        if m.kind == "overlay" {
            return mount_overlay_fsconfig(m, &parsed, target).map_err(fail);
        }
        return Err(ContainerdError::UnsupportedMount {
            kind: m.kind.clone(),
            options: m.options.clone(),
            reason: format!(
                "its data is {} bytes; mount(2) takes at most {MOUNT_DATA_MAX}",
                data.len()
            ),
        });
    }
    let data = CString::new(data).map_err(|_| fail("an option contains a NUL byte".into()))?;
    mount(
        m.source.as_str(),
        target,
        m.kind.as_str(),
        parsed.flags,
        Some(data.as_c_str()),
    )
    .map_err(|e| fail(format!("{e} (options {:?})", m.options)))
}

/// Mounts an overlay whose options are too long for mount(2) with the new mount API, adding lower
/// directories one at a time. Nothing is mounted on `target` unless every step succeeded.
fn mount_overlay_fsconfig(m: &Mount, parsed: &ParsedOptions, target: &Path) -> Result<(), String> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| format!("fsopen: {e}"))?;
    fsconfig_set_string(&fs, "source", m.source.as_str())
        .map_err(|e| format!("fsconfig source: {e}"))?;
    for option in &parsed.data {
        match option.split_once('=') {
            Some(("lowerdir", dirs)) => {
                for dir in dirs.split(':') {
                    fsconfig_set_string(&fs, "lowerdir+", dir).map_err(|e| {
                        format!(
                            "its options exceed mount(2)'s {MOUNT_DATA_MAX} bytes and the kernel \
                             refused lowerdir+ (needs Linux 6.8+): {e}"
                        )
                    })?;
                }
            }
            Some((key, value)) => {
                fsconfig_set_string(&fs, key, value).map_err(|e| format!("fsconfig {key}: {e}"))?
            }
            None => fsconfig_set_flag(&fs, option.as_str())
                .map_err(|e| format!("fsconfig {option}: {e}"))?,
        }
    }
    fsconfig_create(&fs).map_err(|e| format!("fsconfig create: {e}"))?;
    let mut attrs = MountAttrFlags::empty();
    for (flag, attr) in [
        (MountFlags::RDONLY, MountAttrFlags::MOUNT_ATTR_RDONLY),
        (MountFlags::NOSUID, MountAttrFlags::MOUNT_ATTR_NOSUID),
        (MountFlags::NODEV, MountAttrFlags::MOUNT_ATTR_NODEV),
        (MountFlags::NOEXEC, MountAttrFlags::MOUNT_ATTR_NOEXEC),
        (MountFlags::NOATIME, MountAttrFlags::MOUNT_ATTR_NOATIME),
    ] {
        if parsed.flags.contains(flag) {
            attrs |= attr;
        }
    }
    let mnt =
        fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(|e| format!("fsmount: {e}"))?;
    move_mount(
        &mnt,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| format!("move_mount: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let p = parse_options(&opts(&["ro", "rbind"]));
        assert_eq!(
            p.flags,
            MountFlags::RDONLY | MountFlags::BIND | MountFlags::REC
        );
        assert!(p.data.is_empty());

        let p = parse_options(&opts(&[
            "index=off",
            "workdir=/w",
            "upperdir=/u",
            "lowerdir=/a:/b",
            "nosuid",
        ]));
        assert_eq!(p.flags, MountFlags::NOSUID);
        assert_eq!(
            p.data,
            opts(&["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"])
        );
    }

    #[test]
    fn later_options_override_earlier_ones() {
        assert_eq!(
            parse_options(&opts(&["ro", "rw"])).flags,
            MountFlags::empty()
        );
        assert_eq!(
            parse_options(&opts(&["rw", "ro"])).flags,
            MountFlags::RDONLY
        );
        assert_eq!(
            parse_options(&opts(&["nosuid", "suid", "noexec"])).flags,
            MountFlags::NOEXEC
        );
    }

    /// Records calls; fails mounts when told to.
    #[derive(Default)]
    struct Recorder {
        calls: std::sync::Mutex<Vec<String>>,
        fail_mount: bool,
    }

    impl Mounter for Recorder {
        fn mount(&self, mounts: &[Mount], target: &Path) -> Result<(), ContainerdError> {
            assert!(target.is_dir(), "the mount point must exist");
            self.calls
                .lock()
                .unwrap()
                .push(format!("mount {}", mounts[0].kind));
            if self.fail_mount {
                return Err(ContainerdError::Mount {
                    kind: mounts[0].kind.clone(),
                    source_path: mounts[0].source.clone(),
                    target: target.to_owned(),
                    reason: "refused".into(),
                });
            }
            Ok(())
        }

        fn unmount(&self, target: &Path) -> Result<(), ContainerdError> {
            assert!(target.is_dir());
            self.calls.lock().unwrap().push("unmount".into());
            Ok(())
        }
    }

    fn bind() -> Vec<Mount> {
        vec![Mount {
            kind: "bind".into(),
            source: "/nowhere".into(),
            options: opts(&["ro", "rbind"]),
        }]
    }

    #[test]
    fn with_temp_mount_unmounts_after_the_closure_and_removes_the_dir() {
        let recorder = Recorder::default();
        let mut seen = None;
        let out = with_temp_mount(&recorder, &bind(), |p| {
            seen = Some(p.to_owned());
            42
        })
        .unwrap();
        assert_eq!(out, 42);
        assert_eq!(*recorder.calls.lock().unwrap(), ["mount bind", "unmount"]);
        assert!(
            !seen.unwrap().exists(),
            "the temporary mount point must be removed"
        );
    }

    #[test]
    fn with_temp_mount_reports_a_failed_mount_without_calling_the_closure() {
        let recorder = Recorder {
            fail_mount: true,
            ..Default::default()
        };
        let err = with_temp_mount(&recorder, &bind(), |_| panic!("must not run")).unwrap_err();
        assert!(matches!(err, ContainerdError::Mount { .. }), "{err}");
        assert_eq!(*recorder.calls.lock().unwrap(), ["mount bind"]);
    }

    #[test]
    fn with_temp_mount_unmounts_when_the_closure_panics() {
        let recorder = Recorder::default();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with_temp_mount(&recorder, &bind(), |_| panic!("boom"))
        }));
        assert!(result.is_err());
        assert_eq!(*recorder.calls.lock().unwrap(), ["mount bind", "unmount"]);
    }
}
