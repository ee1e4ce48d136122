//! `COPY` and `ADD`: sources from the build context, a stage, an image or a named context,
//! inline heredoc files, and for `ADD` http(s) and git URLs and the extraction of local
//! archives; one file op per instruction.

use oxkit_llb::{
    git_with, http_with, mkfile, scratch, CopyOptions, FileActions, GitOptions, HttpOptions, Owner,
    State,
};

use super::dispatch::{normalize_path, parse_owner, StageBuilder};
use super::At;
use crate::instruction::{Add, Copy, SourceSpec};
use crate::DockerfileError;

/// What one `COPY`/`ADD` does, flags expanded.
struct Transfer<'s> {
    /// `COPY` or `ADD`.
    keyword: &'static str,
    sources: &'s [SourceSpec],
    dest: &'s str,
    /// Where relative sources are read: `None` for the build context.
    from: Option<State>,
    chown: Option<&'s String>,
    chmod: Option<&'s String>,
    excludes: &'s [String],
    checksum: Option<&'s String>,
    keep_git_dir: bool,
}

impl StageBuilder<'_, '_> {
    /// `COPY`.
    pub(super) fn copy(&mut self, copy: &Copy, at: At) -> Result<(), DockerfileError> {
        if copy.parents {
            return Err(self.cx.error(at, "COPY --parents is not supported yet"));
        }
        let from = match &copy.from {
            None => None,
            Some(f) => {
                let source = self.cx.source(self.index, f, at)?;
                let platform = self.platform.clone();
                Some(self.cx.source_state(&source, &platform, at)?)
            }
        };
        self.transfer(
            Transfer {
                keyword: "COPY",
                sources: &copy.sources,
                dest: &copy.dest,
                from,
                chown: copy.chown.as_ref(),
                chmod: copy.chmod.as_ref(),
                excludes: &copy.excludes,
                checksum: None,
                keep_git_dir: false,
            },
            at,
        )
    }

    /// `ADD`.
    pub(super) fn add(&mut self, add: &Add, at: At) -> Result<(), DockerfileError> {
        self.transfer(
            Transfer {
                keyword: "ADD",
                sources: &add.sources,
                dest: &add.dest,
                from: None,
                chown: add.chown.as_ref(),
                chmod: add.chmod.as_ref(),
                excludes: &add.excludes,
                checksum: add.checksum.as_ref(),
                keep_git_dir: add.keep_git_dir,
            },
            at,
        )
    }

    fn transfer(&mut self, t: Transfer, at: At) -> Result<(), DockerfileError> {
        let is_add = t.keyword == "ADD";
        let dest_word = self.expand(t.dest, at)?;
        let mut dest = normalize_path(self.state.get_dir(), &dest_word);
        if t.sources.len() > 1 && !dest.ends_with('/') {
            dest.push('/');
        }
        let chown = t.chown.map(|c| self.expand(c, at)).transpose()?;
        let owner = match &chown {
            Some(c) => {
                Some(parse_owner(c).map_err(|m| self.cx.error(at, format!("--chown={c}: {m}")))?)
            }
            None => None,
        };
        let chmod = t.chmod.map(|c| self.expand(c, at)).transpose()?;
        let mode = match &chmod {
            Some(c) => Some(parse_chmod(c).map_err(|m| self.cx.error(at, m))?),
            None => None,
        };
        let excludes = t
            .excludes
            .iter()
            .map(|e| self.expand(e, at))
            .collect::<Result<Vec<_>, _>>()?;
        let checksum = t.checksum.map(|c| self.expand(c, at)).transpose()?;
        if checksum.is_some() && t.sources.len() != 1 {
            return Err(self
                .cx
                .error(at, "checksum can't be specified for multiple sources"));
        }
        // Without --chown, files from the build context, URLs, git and heredocs belong to root
        // (BuildKit's local source resets owners to 0:0); files from a stage or an image keep
        // their owner.
        let default_owner = |from_stage: bool| {
            owner
                .clone()
                .or_else(|| (!from_stage).then_some(Owner::Ids(0, 0)))
        };
        let name = self.step_name(&self.display_text(at.text, true));

        let mut actions = FileActions::new();
        let mut commit = String::from(t.keyword);
        if let Some(c) = &chown {
            commit.push_str(&format!(" --chown={c}"));
        }
        if let Some(c) = &chmod {
            commit.push_str(&format!(" --chmod={c}"));
        }
        for source in t.sources {
            match source {
                SourceSpec::Heredoc(doc) => {
                    commit.push_str(&format!(" <<{}", doc.name));
                    let data = if doc.expand {
                        let state = &self.state;
                        let vars = |k: &str| state.get_env(k).map(String::from);
                        self.cx
                            .lexer
                            .expand_keeping_quotes(&doc.content, &vars)
                            .map_err(|e| self.cx.error(at, e.message))?
                    } else {
                        doc.content.clone()
                    };
                    let file = scratch()
                        .platform(self.platform.clone())
                        .file(mkfile(&doc.name, 0o644, data))
                        .custom_name("preparing inline document");
                    actions = actions.copy(
                        &file,
                        &doc.name,
                        &dest,
                        CopyOptions {
                            owner: default_owner(false),
                            mode,
                            create_dest_path: true,
                            ..Default::default()
                        },
                    );
                }
                SourceSpec::Path(raw) => {
                    let src = self.expand(raw, at)?;
                    commit.push_str(&format!(" {src}"));
                    let git = git_source(&src);
                    let http = git.is_none()
                        && (src.starts_with("http://") || src.starts_with("https://"));
                    if checksum.is_some() && git.is_none() && !http {
                        return Err(self
                            .cx
                            .error(at, "checksum requires HTTP(S) or Git sources"));
                    }
                    if let Some((remote, git_ref, subdir)) = git {
                        if !is_add {
                            return Err(self.cx.error(at, "source can't be a git ref for COPY"));
                        }
                        let repo = git_with(
                            &remote,
                            &git_ref,
                            GitOptions {
                                subdir,
                                keep_git_dir: t.keep_git_dir,
                                checksum: checksum.clone(),
                                ..Default::default()
                            },
                        )
                        .custom_name(name.clone());
                        actions = actions.copy(
                            &repo,
                            "/",
                            &dest,
                            CopyOptions {
                                owner: default_owner(false),
                                mode,
                                copy_dir_contents: true,
                                create_dest_path: true,
                                exclude_patterns: excludes.clone(),
                                ..Default::default()
                            },
                        );
                    } else if http {
                        if !is_add {
                            return Err(self.cx.error(at, "source can't be a URL for COPY"));
                        }
                        let file = url_file_name(&src);
                        let download = http_with(
                            &src,
                            HttpOptions {
                                checksum: checksum.clone(),
                                filename: Some(file.clone()),
                                ..Default::default()
                            },
                        )
                        .custom_name(name.clone());
                        actions = actions.copy(
                            &download,
                            &file,
                            &dest,
                            CopyOptions {
                                owner: default_owner(false),
                                mode,
                                create_dest_path: true,
                                exclude_patterns: excludes.clone(),
                                ..Default::default()
                            },
                        );
                    } else {
                        let path = normalize_path("/", &src);
                        let path = if path.len() > 1 {
                            path.trim_end_matches('/').to_string()
                        } else {
                            path
                        };
                        let from = match &t.from {
                            Some(state) => state.clone(),
                            None => {
                                self.cx.context_paths.insert(path.clone());
                                self.cx.context.clone()
                            }
                        };
                        actions = actions.copy(
                            &from,
                            &path,
                            &dest,
                            CopyOptions {
                                owner: default_owner(t.from.is_some()),
                                mode,
                                follow_symlinks: true,
                                copy_dir_contents: true,
                                create_dest_path: true,
                                allow_wildcard: true,
                                // As BuildKit: a wildcard matching nothing copies nothing.
                                allow_empty_wildcard: true,
                                exclude_patterns: excludes.clone(),
                                // As BuildKit: ADD extracts a local archive (told by content),
                                // never a downloaded one.
                                attempt_unpack_docker_compatibility: is_add,
                                ..Default::default()
                            },
                        );
                    }
                }
            }
        }
        commit.push_str(&format!(" {dest_word}"));
        let mut state = self.state.file(actions).custom_name(name);
        if self.ignore_cache {
            state = state.ignore_cache();
        }
        self.state = state;
        self.image.history(&format!("{commit} # buildkit"), false);
        Ok(())
    }
}

/// `--chmod`: an octal mode up to 07777. Symbolic modes (`u+x`) are refused.
fn parse_chmod(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        Ok(_) => Err(format!(
            "invalid chmod parameter: '{s}'. it should be octal string and between 0 and 07777"
        )),
        Err(_) if s.chars().all(|c| "ugoa+-=rwxXst,".contains(c)) && !s.is_empty() => Err(format!(
            "--chmod={s}: symbolic modes are not supported yet; use an octal mode such as 0755"
        )),
        Err(_) => Err(format!(
            "invalid chmod parameter: '{s}'. it should be octal string and between 0 and 07777"
        )),
    }
}

/// A git source of `ADD`: (remote, ref, subdir) from `URL[#ref[:subdir]]`, for `git@…`,
/// `git://…`, `ssh://…` and http(s) URLs whose path ends in `.git`.
pub(super) fn git_source(src: &str) -> Option<(String, String, Option<String>)> {
    let (remote, fragment) = match src.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (src, None),
    };
    let is_git = remote.starts_with("git@")
        || remote.starts_with("git://")
        || remote.starts_with("ssh://")
        || ((remote.starts_with("https://") || remote.starts_with("http://"))
            && remote.trim_end_matches('/').ends_with(".git"));
    if !is_git {
        return None;
    }
    let (git_ref, subdir) = match fragment {
        None => (String::new(), None),
        Some(f) => match f.split_once(':') {
            Some((r, d)) => (r.to_string(), Some(d.to_string()).filter(|d| !d.is_empty())),
            None => (f.to_string(), None),
        },
    };
    Some((remote.to_string(), git_ref, subdir))
}

/// The file name a download gets: the URL path's last segment (BuildKit's `__unnamed__` when
/// there is none).
fn url_file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    match rest.split_once('/') {
        Some((_, path)) => match path.trim_end_matches('/').rsplit('/').next() {
            Some(name) if !name.is_empty() && !path.ends_with('/') => name.to_string(),
            _ => "__unnamed__".into(),
        },
        None => "__unnamed__".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_is_octal_only() {
        assert_eq!(parse_chmod("0755"), Ok(0o755));
        assert_eq!(parse_chmod("644"), Ok(0o644));
        assert!(parse_chmod("10000")
            .unwrap_err()
            .contains("between 0 and 07777"));
        assert!(parse_chmod("u+x").unwrap_err().contains("symbolic"));
        assert!(parse_chmod("9").unwrap_err().contains("octal"));
    }

    #[test]
    fn git_and_http_sources_are_told_apart() {
        assert_eq!(
            git_source("https://github.com/o/r.git#v1:docs"),
            Some((
                "https://github.com/o/r.git".into(),
                "v1".into(),
                Some("docs".into())
            ))
        );
        assert_eq!(
            git_source("git@github.com:o/r.git"),
            Some(("git@github.com:o/r.git".into(), String::new(), None))
        );
        assert_eq!(git_source("https://example.com/a.tar.gz"), None);
        assert_eq!(
            url_file_name("https://example.com/dl/a.tar.gz?x=1"),
            "a.tar.gz"
        );
        assert_eq!(url_file_name("https://example.com/"), "__unnamed__");
        assert_eq!(url_file_name("https://example.com"), "__unnamed__");
    }

    /// `ADD` of a local path asks for Docker's archive extraction (the file op decides by
    /// content, so a name like `notes.txt` is flagged too); `ADD` of a URL and `COPY` never do.
    #[test]
    fn add_of_a_local_source_attempts_unpack_and_nothing_else_does() {
        use oxkit_llb::op::{FileActionKind, Op};

        let text = "FROM scratch\n\
                    ADD app.tar.gz notes.txt /opt/\n\
                    ADD --chown=7:8 --chmod=0640 plain.tar /p/\n\
                    ADD https://example.com/r.tar.gz /dl/\n\
                    COPY b.tar /c/\n";
        let g = super::super::tests::graph_of(text);
        let mut copies: Vec<(String, String, bool, Option<u32>, bool)> = g
            .vertices()
            .iter()
            .filter_map(|v| match &v.op {
                Op::File(f) => Some(f.actions.clone()),
                _ => None,
            })
            .flatten()
            .filter_map(|a| match a.kind {
                FileActionKind::Copy(c) => {
                    Some((c.src, c.dest, c.attempt_unpack, c.mode, c.owner.is_some()))
                }
                _ => None,
            })
            .collect();
        copies.sort();
        let want = |src: &str, dest: &str, unpack, mode, owner| {
            (src.to_string(), dest.to_string(), unpack, mode, owner)
        };
        assert_eq!(
            copies,
            vec![
                want("/app.tar.gz", "/opt/", true, None, true),
                want("/b.tar", "/c/", false, None, true),
                want("/notes.txt", "/opt/", true, None, true),
                want("/plain.tar", "/p/", true, Some(0o640), true),
                want("/r.tar.gz", "/dl/", false, None, true),
            ]
        );
    }
}
