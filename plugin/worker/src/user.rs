//! The user of a run step: `user[:group]` by id or by name, resolved against the root file
//! system's `/etc/passwd` and `/etc/group` as runc's `GetExecUser` does. Pure; the exec op reads
//! the files.

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Member login names.
    pub members: Vec<String>,
}

/// The ids a step runs as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups: those of `/etc/group` that list the user by name.
    pub additional_gids: Vec<u32>,
}

/// Parses `/etc/passwd` (`name:password:uid:gid:gecos:home:shell`); malformed lines and comments
/// are skipped, as libc does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || f[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                home: f.get(5).copied().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// Parses `/etc/group` (`name:password:gid:member,member`); malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 || f[0].is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` (`user[:group]`; empty is root) against the entries of the root file system
/// (empty when it has no `/etc/passwd` or `/etc/group`). A numeric user not in `passwd` runs with
/// group 0 unless a group is given; a name must exist. The error says what is missing.
pub fn resolve_user(
    spec: &str,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<ResolvedUser, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid, name) = if user.is_empty() {
        (
            0,
            0,
            passwd.iter().find(|p| p.uid == 0).map(|p| p.name.clone()),
        )
    } else if let Ok(uid) = user.parse::<u32>() {
        let entry = passwd.iter().find(|p| p.uid == uid);
        (
            uid,
            entry.map_or(0, |e| e.gid),
            entry.map(|e| e.name.clone()),
        )
    } else {
        let entry = passwd
            .iter()
            .find(|p| p.name == user)
            .ok_or_else(|| format!("no user {user:?} in the image's /etc/passwd"))?;
        (entry.uid, entry.gid, Some(entry.name.clone()))
    };
    if let Some(group) = group.filter(|g| !g.is_empty()) {
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                groups
                    .iter()
                    .find(|g| g.name == group)
                    .ok_or_else(|| format!("no group {group:?} in the image's /etc/group"))?
                    .gid
            }
        };
    }
    let mut additional_gids: Vec<u32> = match &name {
        Some(name) => groups
            .iter()
            .filter(|g| g.gid != gid && g.members.iter().any(|m| m == name))
            .map(|g| g.gid)
            .collect(),
        None => Vec::new(),
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

/// Whether `spec` can be resolved without the image's files (ids only, or root).
pub(crate) fn is_numeric(spec: &str) -> bool {
    let (user, group) = spec.split_once(':').unwrap_or((spec, ""));
    let numeric = |s: &str| s.is_empty() || s.parse::<u32>().is_ok();
    numeric(user) && numeric(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          # a comment\n\
                          broken line\n\
                          builder:x:1000:1001:Builder:/home/builder:/bin/sh\n\
                          bad:x:notanumber:1:::\n";
    const GROUP: &str = "root:x:0:\n\
                         staff:x:50:builder,other\n\
                         builder:x:1001:\n\
                         wheel:x:10:root\n";

    #[test]
    fn passwd_and_group_lines_parse_and_bad_lines_are_skipped() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[1],
            PasswdEntry {
                name: "builder".into(),
                uid: 1000,
                gid: 1001,
                home: "/home/builder".into()
            }
        );
        let g = parse_group(GROUP);
        assert_eq!(g.len(), 4);
        assert_eq!(g[1].members, ["builder", "other"]);
        assert!(g[0].members.is_empty());
    }

    #[test]
    fn users_resolve_by_id_and_by_name() {
        let p = parse_passwd(PASSWD);
        let g = parse_group(GROUP);
        let r = |s: &str| resolve_user(s, &p, &g);
        let ids = |uid, gid, extra: &[u32]| ResolvedUser {
            uid,
            gid,
            additional_gids: extra.to_vec(),
        };
        let table: &[(&str, ResolvedUser)] = &[
            ("", ids(0, 0, &[10])),
            ("root", ids(0, 0, &[10])),
            ("builder", ids(1000, 1001, &[50])),
            ("1000", ids(1000, 1001, &[50])),
            ("builder:staff", ids(1000, 50, &[])),
            ("builder:7", ids(1000, 7, &[50])),
            ("4242", ids(4242, 0, &[])),
            ("4242:4243", ids(4242, 4243, &[])),
            ("builder:", ids(1000, 1001, &[50])),
        ];
        for (spec, want) in table {
            assert_eq!(&r(spec).unwrap(), want, "{spec:?}");
        }
        assert!(r("nobody").unwrap_err().contains("no user \"nobody\""));
        assert!(r("builder:nogroup").unwrap_err().contains("no group"));
        // Without the files, only ids resolve.
        assert_eq!(resolve_user("5:6", &[], &[]).unwrap(), ids(5, 6, &[]));
        assert!(resolve_user("builder", &[], &[]).is_err());
    }

    #[test]
    fn numeric_specs_need_no_files() {
        for (spec, numeric) in [
            ("", true),
            ("0", true),
            ("1:2", true),
            ("1:", true),
            ("a", false),
            ("1:a", false),
        ] {
            assert_eq!(is_numeric(spec), numeric, "{spec:?}");
        }
    }
}
