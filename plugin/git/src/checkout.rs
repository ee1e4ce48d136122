//! Writes a commit's tree into a directory: files with git's modes (0644, 0755), symlinks,
//! directories; optionally a `.git` that holds just that commit, with the remote's URL redacted.

use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use git2::{Oid, Repository, Tree};

use crate::cache::Resolved;
use crate::error::GitError;

/// What to write besides the commit's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckoutOptions {
    /// Write only this directory of the commit (relative, `/`-separated) as the result's root.
    pub subdir: Option<String>,
    /// Keep a `.git` directory (ignored with `subdir`, as the result is not the repository's
    /// root): the commit (shallow, without its history) as `HEAD` — on its branch when the ref
    /// was one —, and `origin` set to the remote's URL without credentials.
    pub keep_git_dir: bool,
    /// Check submodules out too, recursively: each at the commit the tree records, fetched from
    /// its URL in `.gitmodules` (relative to the remote's) into its own cache repository.
    pub submodules: bool,
}

/// A submodule a checkout left empty: where, from where, at which commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Submodule {
    /// Its directory, relative to the checkout's root.
    pub(crate) path: String,
    /// Its URL as `.gitmodules` gives it (maybe relative to the superproject's remote).
    pub(crate) url: String,
    /// The commit the superproject records.
    pub(crate) commit: String,
}

const MODE_TREE: i32 = 0o040000;
const MODE_BLOB: i32 = 0o100644;
const MODE_EXEC: i32 = 0o100755;
const MODE_LINK: i32 = 0o120000;
const MODE_COMMIT: i32 = 0o160000;

pub(crate) fn checkout(
    repo: &Repository,
    resolved: &Resolved,
    redacted_url: &str,
    options: &CheckoutOptions,
    target: &Path,
) -> Result<Vec<Submodule>, GitError> {
    let commit_id = &resolved.commit;
    let oid =
        Oid::from_str(commit_id).map_err(|e| GitError::repo("parse the commit", target, e))?;
    let commit = repo
        .find_commit(oid)
        .map_err(|e| GitError::repo(format!("find commit {commit_id}"), repo.path(), e))?;
    let root = commit
        .tree()
        .map_err(|e| GitError::repo(format!("read the tree of {commit_id}"), repo.path(), e))?;
    let subdir = options
        .subdir
        .as_deref()
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty());
    let tree = match subdir {
        Some(subdir) => {
            let subdir_error = |problem: &str| GitError::Subdir {
                commit: commit_id.clone(),
                subdir: subdir.to_string(),
                problem: problem.to_string(),
            };
            let entry = root
                .get_path(Path::new(subdir))
                .map_err(|_| subdir_error("no such path"))?;
            if entry.filemode() != MODE_TREE {
                return Err(subdir_error("it is not a directory"));
            }
            repo.find_tree(entry.id())
                .map_err(|e| GitError::repo("read the subdirectory's tree", repo.path(), e))?
        }
        None => root.clone(),
    };
    let prefix = subdir.map(|s| format!("{s}/")).unwrap_or_default();
    let mut gitlinks = Vec::new();
    let mut files = Vec::new();
    plan_tree(
        repo,
        &tree,
        target,
        &prefix,
        commit_id,
        &mut gitlinks,
        &mut files,
    )?;
    write_files(repo, target, &files)?;
    if options.keep_git_dir && subdir.is_none() {
        write_git_dir(repo, resolved, oid, &tree, redacted_url, target)?;
    }
    if !options.submodules || gitlinks.is_empty() {
        return Ok(Vec::new());
    }
    let modules = match root.get_path(Path::new(".gitmodules")) {
        Ok(entry) => repo
            .find_blob(entry.id())
            .map(|b| parse_gitmodules(&String::from_utf8_lossy(b.content())))
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    Ok(gitlinks
        .into_iter()
        .filter_map(|(path, commit)| {
            let Some((_, url)) = modules.iter().find(|(p, _)| *p == path) else {
                tracing::warn!(
                    path,
                    "a submodule without a .gitmodules entry is left empty"
                );
                return None;
            };
            Some(Submodule {
                path: path[prefix.len()..].to_string(),
                url: url.clone(),
                commit: commit.to_string(),
            })
        })
        .collect())
}

/// `(path, url)` of each `[submodule "…"]` section of a `.gitmodules` file.
fn parse_gitmodules(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(Option<String>, Option<String>)> = None;
    let flush = |current: &mut Option<(Option<String>, Option<String>)>,
                 out: &mut Vec<(String, String)>| {
        if let Some((Some(path), Some(url))) = current.take() {
            out.push((path.trim_matches('/').to_string(), url));
        }
    };
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(&mut current, &mut out);
            current = line.starts_with("[submodule").then_some((None, None));
        } else if let (Some((path, url)), Some((key, value))) =
            (current.as_mut(), line.split_once('='))
        {
            let value = value.trim().trim_matches('"').to_string();
            match key.trim() {
                "path" => *path = Some(value),
                "url" => *url = Some(value),
                _ => {}
            }
        }
    }
    flush(&mut current, &mut out);
    out
}

/// A regular file of the checkout: where, which blob, which permission bits.
struct FileJob {
    path: PathBuf,
    rel: String,
    id: Oid,
    perm: u32,
}

/// Threads writing files at once. File creation is mostly kernel time (inode allocation,
/// directory insertion), serialised per directory but not across directories, and reading a
/// blob is inflation on the CPU: two writers, each taking whole directories, keep two cores
/// busy (`git checkout` writes with one unless told otherwise).
const WRITERS: usize = 2;
/// A tree gets one more writer per this many files: a small one is written on one thread.
const FILES_PER_EXTRA_WRITER: usize = 256;

/// Writes the regular files [`plan_tree`] found, one directory's `groups` at a time, on up
/// to [`WRITERS`] threads (`dir`, the checkout's root, names a thread that failed).
fn write_files(repo: &Repository, dir: &Path, groups: &[Vec<FileJob>]) -> Result<(), GitError> {
    let files: usize = groups.iter().map(Vec::len).sum();
    let writers = WRITERS.min(1 + files / FILES_PER_EXTRA_WRITER);
    if writers <= 1 {
        return groups
            .iter()
            .flatten()
            .try_for_each(|job| write_file(repo, job));
    }
    // Each writer reads blobs through its own handle on the repository (a handle is not
    // shared between threads); directories are taken in turn from a shared counter.
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let repo_path = repo.path().to_path_buf();
    std::thread::scope(|scope| {
        let work = || -> Result<(), GitError> {
            let repo = Repository::open(&repo_path)
                .map_err(|e| GitError::repo("open the repository", &repo_path, e))?;
            while !failed.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(group) = groups.get(i) else { break };
                for job in group {
                    if let Err(e) = write_file(&repo, job) {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok(())
        };
        let helpers: Vec<_> = (1..writers).map(|_| scope.spawn(work)).collect();
        let mut result = work();
        for helper in helpers {
            let theirs = helper.join().unwrap_or_else(|_| {
                Err(GitError::io(
                    "write",
                    dir,
                    std::io::Error::other("a checkout thread panicked"),
                ))
            });
            if result.is_ok() {
                result = theirs;
            }
        }
        result
    })
}

/// Walks `tree` into `dir`, making its directories, symlinks and submodule placeholders, and
/// adds its regular files to `groups`, one group per directory.
fn plan_tree(
    repo: &Repository,
    tree: &Tree<'_>,
    dir: &Path,
    prefix: &str,
    commit: &str,
    gitlinks: &mut Vec<(String, Oid)>,
    groups: &mut Vec<Vec<FileJob>>,
) -> Result<(), GitError> {
    let mut files = Vec::new();
    for entry in tree.iter() {
        let name = entry.name_bytes();
        let rel = format!("{prefix}{}", String::from_utf8_lossy(name));
        let bad = |problem: &str| GitError::BadEntry {
            commit: commit.to_string(),
            path: rel.clone(),
            problem: problem.to_string(),
        };
        // git itself refuses these; a crafted tree must not write outside the target.
        if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
            return Err(bad("not a valid file name"));
        }
        if name.eq_ignore_ascii_case(b".git") {
            return Err(bad("a tree may not contain .git"));
        }
        let path = dir.join(std::ffi::OsStr::from_bytes(name));
        match entry.filemode() {
            MODE_TREE => {
                make_dir(&path)?;
                let sub = repo
                    .find_tree(entry.id())
                    .map_err(|e| GitError::repo(format!("read directory {rel}"), repo.path(), e))?;
                plan_tree(
                    repo,
                    &sub,
                    &path,
                    &format!("{rel}/"),
                    commit,
                    gitlinks,
                    groups,
                )?;
            }
            mode @ (MODE_BLOB | MODE_EXEC) => files.push(FileJob {
                path,
                perm: if mode == MODE_EXEC { 0o755 } else { 0o644 },
                id: entry.id(),
                rel,
            }),
            MODE_LINK => {
                let blob = repo
                    .find_blob(entry.id())
                    .map_err(|e| GitError::repo(format!("read {rel}"), repo.path(), e))?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(blob.content()), &path)
                    .map_err(|e| GitError::io("create symlink", &path, e))?;
            }
            // A submodule: an empty directory, as git leaves one it does not check out.
            MODE_COMMIT => {
                make_dir(&path)?;
                gitlinks.push((rel.clone(), entry.id()));
            }
            other => return Err(bad(&format!("unknown mode {other:o}"))),
        }
    }
    if !files.is_empty() {
        groups.push(files);
    }
    Ok(())
}

fn write_file(repo: &Repository, job: &FileJob) -> Result<(), GitError> {
    let blob = repo
        .find_blob(job.id)
        .map_err(|e| GitError::repo(format!("read {}", job.rel), repo.path(), e))?;
    let path = &job.path;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(job.perm)
        .open(path)
        .map_err(|e| GitError::io("create", path, e))?;
    file.write_all(blob.content())
        .map_err(|e| GitError::io("write", path, e))?;
    file.set_permissions(std::fs::Permissions::from_mode(job.perm))
        .map_err(|e| GitError::io("set the mode of", path, e))
}

fn make_dir(path: &Path) -> Result<(), GitError> {
    std::fs::create_dir(path).map_err(|e| GitError::io("create directory", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| GitError::io("set the mode of", path, e))
}

/// A `.git` in `target` with only `commit` and its tree (packed), marked shallow, its index
/// matching the files written, `HEAD` on the commit and `origin` at `redacted_url`.
fn write_git_dir(
    repo: &Repository,
    resolved: &Resolved,
    oid: Oid,
    tree: &Tree<'_>,
    redacted_url: &str,
    target: &Path,
) -> Result<(), GitError> {
    let err = |action: &str| {
        let action = action.to_string();
        move |e: git2::Error| GitError::repo(action, target, e)
    };
    let mut pack = repo.packbuilder().map_err(err("pack the commit"))?;
    pack.insert_commit(oid).map_err(err("pack the commit"))?;
    let mut buf = git2::Buf::new();
    pack.write_buf(&mut buf).map_err(err("pack the commit"))?;
    let out = Repository::init(target).map_err(err("create .git"))?;
    {
        let odb = out.odb().map_err(err("open .git's objects"))?;
        let mut writer = odb.packwriter().map_err(err("write .git's objects"))?;
        writer
            .write_all(&buf)
            .map_err(|e| GitError::io("write the pack of", target, e))?;
        writer.commit().map_err(err("index .git's objects"))?;
    }
    let git_dir = target.join(".git");
    std::fs::write(git_dir.join("shallow"), format!("{oid}\n"))
        .map_err(|e| GitError::io("write .git/shallow in", target, e))?;
    out.remote("origin", redacted_url)
        .map_err(err("set the origin remote"))?;
    match resolved
        .refname
        .as_deref()
        .and_then(|r| r.strip_prefix("refs/heads/"))
    {
        Some(branch) => {
            out.reference(&format!("refs/heads/{branch}"), oid, true, "oxkit checkout")
                .map_err(err("create the branch"))?;
            out.reference(
                &format!("refs/remotes/origin/{branch}"),
                oid,
                true,
                "oxkit checkout",
            )
            .map_err(err("create the remote branch"))?;
            out.set_head(&format!("refs/heads/{branch}"))
                .map_err(err("set HEAD"))?;
        }
        None => {
            if let Some(tag) = resolved
                .refname
                .as_deref()
                .filter(|r| r.starts_with("refs/tags/"))
            {
                // Lightweight: the tag object (if any) is not fetched into the checkout.
                out.reference(tag, oid, true, "oxkit checkout")
                    .map_err(err("create the tag"))?;
            }
            out.set_head_detached(oid).map_err(err("set HEAD"))?;
        }
    }
    let tree = out.find_tree(tree.id()).map_err(err("read the tree"))?;
    let mut index = out.index().map_err(err("open the index"))?;
    index.read_tree(&tree).map_err(err("fill the index"))?;
    index.write().map_err(err("write the index"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree large enough for several writers: every file lands with its content and mode,
    /// directories and symlinks too; a file in the way fails the checkout, naming it.
    #[test]
    fn a_large_tree_is_written_whole_by_several_writers() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(tmp.path().join("repo.git")).unwrap();
        let mut expected = Vec::new();
        let mut root = repo.treebuilder(None).unwrap();
        for d in 0..24 {
            let mut dir = repo.treebuilder(None).unwrap();
            for f in 0..(d * 3) {
                let content = format!("{d}/{f}\n").repeat(f + 1);
                let blob = repo.blob(content.as_bytes()).unwrap();
                let mode = if f % 7 == 0 { MODE_EXEC } else { MODE_BLOB };
                dir.insert(format!("f{f}"), blob, mode).unwrap();
                expected.push((format!("d{d}/f{f}"), content, mode == MODE_EXEC));
            }
            let dir = dir.write().unwrap();
            root.insert(format!("d{d}"), dir, MODE_TREE).unwrap();
        }
        let target = repo.blob(b"d1/f0").unwrap();
        root.insert("link", target, MODE_LINK).unwrap();
        root.insert("top", repo.blob(b"top\n").unwrap(), MODE_BLOB)
            .unwrap();
        expected.push(("top".into(), "top\n".into(), false));
        let tree = repo.find_tree(root.write().unwrap()).unwrap();
        assert!(
            expected.len() > 2 * FILES_PER_EXTRA_WRITER,
            "several writers"
        );
        let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(0, 0)).unwrap();
        let commit = repo.commit(None, &sig, &sig, "c", &tree, &[]).unwrap();
        let resolved = Resolved {
            commit: commit.to_string(),
            refname: None,
        };
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        checkout(&repo, &resolved, "", &CheckoutOptions::default(), &out).unwrap();
        for (path, content, exec) in &expected {
            let file = out.join(path);
            assert_eq!(std::fs::read_to_string(&file).unwrap(), *content, "{path}");
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, if *exec { 0o755 } else { 0o644 }, "{path}");
        }
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            Path::new("d1/f0")
        );
        assert!(std::fs::read_dir(out.join("d0")).unwrap().next().is_none());

        // A file in the way of a writer fails the checkout, naming it.
        let taken = tmp.path().join("taken");
        std::fs::create_dir(&taken).unwrap();
        std::fs::write(taken.join("top"), "mine").unwrap();
        let err = checkout(&repo, &resolved, "", &CheckoutOptions::default(), &taken).unwrap_err();
        assert!(
            err.to_string()
                .contains(&taken.join("top").display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(taken.join("top")).unwrap(), "mine");
    }

    #[test]
    fn gitmodules_sections_give_path_and_url() {
        let text = "[submodule \"lib\"]\n\tpath = vendor/lib\n\turl = ../lib.git\n\
                    [core]\n\tpath = not/this\n\
                    [submodule \"x\"]\n\turl = \"https://h/x\"\n\tpath = x/\n\
                    [submodule \"no-url\"]\n\tpath = y\n";
        assert_eq!(
            parse_gitmodules(text),
            vec![
                ("vendor/lib".to_string(), "../lib.git".to_string()),
                ("x".to_string(), "https://h/x".to_string()),
            ]
        );
    }
}
