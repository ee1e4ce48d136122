//! Owners by name: the [`UserLookup`] seam, and [`EtcFiles`], which reads `/etc/passwd` and
//! `/etc/group` of a mounted input, resolving them inside that input's root.

use crate::error::FileOpError;
use crate::resolve::read_in_root;
use oxkit_llb::op::{Chown, FileInput, UserRef};
use std::path::PathBuf;

/// Looks up user and group names in the filesystem of one of the op's inputs.
///
/// Called while an action runs, before anything is written; a lookup has no side effects.
pub trait UserLookup {
    /// `(uid, primary gid)` of user `name` in `input`'s `/etc/passwd`; `Ok(None)` when absent.
    fn user(&self, name: &str, input: FileInput) -> Result<Option<(u32, u32)>, FileOpError>;
    /// gid of group `name` in `input`'s `/etc/group`; `Ok(None)` when absent.
    fn group(&self, name: &str, input: FileInput) -> Result<Option<u32>, FileOpError>;
}

/// [`UserLookup`] over mounted roots: reads `/etc/passwd` and `/etc/group` inside the root of the
/// named input (symlinks such as `/etc -> /elsewhere` are followed inside the root only).
#[derive(Clone, Debug, Default)]
pub struct EtcFiles {
    roots: Vec<(FileInput, PathBuf)>,
}

impl EtcFiles {
    /// No roots: every by-name lookup fails with `MissingInput`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the root at which `input` is mounted.
    pub fn with_root(mut self, input: FileInput, root: impl Into<PathBuf>) -> Self {
        self.roots.push((input, root.into()));
        self
    }

    fn read(&self, input: FileInput, file: &str) -> Result<String, FileOpError> {
        let root = self
            .roots
            .iter()
            .find(|(i, _)| *i == input)
            .map(|(_, r)| r)
            .ok_or_else(|| FileOpError::MissingInput {
                action: "chown",
                input: format!("{input:?}"),
            })?;
        let data = read_in_root("chown", root, file)?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&data).into_owned())
    }
}

/// Finds `name` in the first field of a colon-separated file; returns the fields.
fn find_entry<'a>(text: &'a str, name: &str) -> Option<Vec<&'a str>> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
}

impl UserLookup for EtcFiles {
    fn user(&self, name: &str, input: FileInput) -> Result<Option<(u32, u32)>, FileOpError> {
        let text = self.read(input, "/etc/passwd")?;
        Ok(find_entry(&text, name).and_then(|f| {
            Some((
                f.get(2)?.trim().parse().ok()?,
                f.get(3)?.trim().parse().ok()?,
            ))
        }))
    }

    fn group(&self, name: &str, input: FileInput) -> Result<Option<u32>, FileOpError> {
        let text = self.read(input, "/etc/group")?;
        Ok(find_entry(&text, name).and_then(|f| f.get(2)?.trim().parse().ok()))
    }
}

/// Resolves an owner override to `(uid, gid)` the way BuildKit does: a user by id also sets the
/// gid to that id; a user by name sets the gid to the user's primary group; a group, when given,
/// overrides the gid; an unset user is root. A numeric name missing from the files is taken as an
/// id. `None` (no override) stays `None`.
pub fn resolve_owner(
    action: &'static str,
    owner: Option<&Chown>,
    users: &dyn UserLookup,
) -> Result<Option<(u32, u32)>, FileOpError> {
    let Some(owner) = owner else {
        return Ok(None);
    };
    let (mut uid, mut gid) = (0, 0);
    match &owner.user {
        None => {}
        Some(UserRef::Id(id)) => (uid, gid) = (*id, *id),
        Some(UserRef::Name { name, input }) => {
            (uid, gid) = match users.user(name, *input)? {
                Some(ug) => ug,
                None => match name.parse::<u32>() {
                    Ok(id) => (id, id),
                    Err(_) => {
                        return Err(FileOpError::UnknownUser {
                            action,
                            kind: "user",
                            name: name.clone(),
                            file: "passwd",
                        })
                    }
                },
            }
        }
    }
    match &owner.group {
        None => {}
        Some(UserRef::Id(id)) => gid = *id,
        Some(UserRef::Name { name, input }) => {
            gid = match users.group(name, *input)? {
                Some(g) => g,
                None => name.parse::<u32>().map_err(|_| FileOpError::UnknownUser {
                    action,
                    kind: "group",
                    name: name.clone(),
                    file: "group",
                })?,
            }
        }
    }
    Ok(Some((uid, gid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("real-etc")).unwrap();
        std::os::unix::fs::symlink("/real-etc", d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("real-etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("real-etc/group"),
            "root:x:0:\nstaff:x:50:app\n",
        )
        .unwrap();
        d
    }

    fn name(n: &str) -> UserRef {
        UserRef::Name {
            name: n.into(),
            input: FileInput::Input(0),
        }
    }

    #[test]
    fn owners_resolve_like_buildkit() {
        let d = root();
        let users = EtcFiles::new().with_root(FileInput::Input(0), d.path());
        let own = |u: Option<UserRef>, g: Option<UserRef>| {
            resolve_owner("copy", Some(&Chown { user: u, group: g }), &users)
        };
        assert_eq!(own(Some(name("app")), None).unwrap(), Some((1000, 1001)));
        assert_eq!(
            own(Some(name("app")), Some(name("staff"))).unwrap(),
            Some((1000, 50))
        );
        assert_eq!(own(Some(UserRef::Id(7)), None).unwrap(), Some((7, 7)));
        assert_eq!(
            own(Some(UserRef::Id(7)), Some(UserRef::Id(8))).unwrap(),
            Some((7, 8))
        );
        assert_eq!(own(None, Some(name("staff"))).unwrap(), Some((0, 50)));
        assert_eq!(own(Some(name("1234")), None).unwrap(), Some((1234, 1234)));
        let err = own(Some(name("nobody")), None).unwrap_err();
        assert!(err.to_string().contains("unknown user \"nobody\""), "{err}");
        let err = own(None, Some(name("wheel"))).unwrap_err();
        assert!(err.to_string().contains("unknown group"), "{err}");
        assert_eq!(resolve_owner("copy", None, &users).unwrap(), None);
        let other = UserRef::Name {
            name: "app".into(),
            input: FileInput::Input(3),
        };
        assert!(matches!(
            resolve_owner(
                "copy",
                Some(&Chown {
                    user: Some(other),
                    group: None
                }),
                &users
            ),
            Err(FileOpError::MissingInput { .. })
        ));
    }
}
