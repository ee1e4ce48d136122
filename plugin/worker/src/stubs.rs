//! Mount stubs: the empty files and directories the runtime creates in a step's root for mount
//! points missing there, removed again after the step so that they do not end up in its
//! snapshot (BuildKit's `MountStubsCleaner`). oxkit does this for secret mounts, whose stubs
//! would otherwise leave `/run/secrets/<id>` in the image.

use std::path::{Component, Path, PathBuf};

/// The stubs a step's mounts will create in its root, recorded before the step runs.
#[derive(Debug, Default)]
pub(crate) struct Stubs {
    /// Missing paths, deepest first.
    paths: Vec<PathBuf>,
    /// Existing directories a stub is created in, with their times before the step.
    parents: Vec<(PathBuf, std::fs::Metadata)>,
}

impl Stubs {
    /// Records which of `dests` (absolute paths in the container), and of their parents, do not
    /// exist in `root` (the root file system, mounted on the host). A destination that passes
    /// through a symlink is skipped: the runtime resolves it, and the stub may land elsewhere.
    /// Always recursive (BuildKit's `removeMountStubsRecursive`): the missing parents of a
    /// destination are stubs too.
    pub(crate) fn record<'a>(root: &Path, dests: impl IntoIterator<Item = &'a str>) -> Stubs {
        let mut stubs = Stubs::default();
        for dest in dests {
            let mut path = root.to_path_buf();
            let mut missing_from = None;
            for component in Path::new(dest).components() {
                let Component::Normal(part) = component else {
                    continue;
                };
                let parent = path.clone();
                path.push(part);
                if missing_from.is_some() {
                    stubs.paths.push(path.clone());
                    continue;
                }
                match std::fs::symlink_metadata(&path) {
                    Ok(meta) if meta.file_type().is_symlink() => break,
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        missing_from = Some(());
                        if let Ok(meta) = std::fs::metadata(&parent) {
                            stubs.parents.push((parent, meta));
                        }
                        stubs.paths.push(path.clone());
                    }
                    Err(_) => break,
                }
            }
        }
        stubs
            .paths
            .sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        stubs.paths.dedup();
        stubs
    }

    /// Removes each recorded stub that is still an empty regular file or an empty directory
    /// (anything the step put there stays), deepest first, then gives the directories they were
    /// created in back their times. Best effort: a failure leaves a stub, never loses data.
    pub(crate) fn remove(&self) {
        for path in &self.paths {
            let Ok(meta) = std::fs::symlink_metadata(path) else {
                continue;
            };
            let removed = if meta.is_dir() {
                std::fs::remove_dir(path)
            } else if meta.file_type().is_file() && meta.len() == 0 {
                std::fs::remove_file(path)
            } else {
                continue;
            };
            if let Err(e) = removed {
                tracing::debug!(path = %path.display(), error = %e, "mount stub left in place");
            }
        }
        for (dir, before) in &self.parents {
            if self.paths.contains(dir) {
                continue;
            }
            let restore = || -> std::io::Result<()> {
                let times = std::fs::FileTimes::new()
                    .set_accessed(before.accessed()?)
                    .set_modified(before.modified()?);
                std::fs::File::open(dir)?.set_times(times)
            };
            if let Err(e) = restore() {
                tracing::debug!(dir = %dir.display(), error = %e, "could not restore times");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_are_removed_and_what_the_step_wrote_stays() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("run")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/existing"), "keep").unwrap();
        std::os::unix::fs::symlink("/elsewhere", r.join("link")).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::open(r.join("run"))
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_modified(old))
            .unwrap();

        let stubs = Stubs::record(
            r,
            [
                "/run/secrets/a",
                "/run/secrets/b",
                "/etc/existing",
                "/link/x",
                "/new/c",
            ],
        );
        // What the runtime does for the mount points, and what the step does.
        std::fs::create_dir_all(r.join("run/secrets")).unwrap();
        std::fs::write(r.join("run/secrets/a"), "").unwrap();
        std::fs::write(r.join("run/secrets/b"), "").unwrap();
        std::fs::create_dir_all(r.join("new")).unwrap();
        std::fs::write(r.join("new/c"), "the step wrote this").unwrap();

        stubs.remove();
        assert!(!r.join("run/secrets").exists());
        assert!(r.join("run").is_dir());
        assert_eq!(
            std::fs::metadata(r.join("run"))
                .unwrap()
                .modified()
                .unwrap(),
            old,
            "the parent's times are restored"
        );
        assert_eq!(std::fs::read(r.join("etc/existing")).unwrap(), b"keep");
        assert_eq!(
            std::fs::read(r.join("new/c")).unwrap(),
            b"the step wrote this"
        );
    }
}
