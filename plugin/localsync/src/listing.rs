//! [`Listing`]: a client's listing, checked before anything is written: every path relative and
//! clean, sorted, unique, each entry's parent a directory of the listing (so no entry lies
//! behind a symlink), hard links naming an earlier regular file.

use std::collections::HashMap;

use crate::entry::{check_path, parent, Entry, Kind};
use crate::error::SyncError;

/// A checked listing, sorted by path (bytewise, so a directory comes before what is in it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    entries: Vec<Entry>,
}

impl Listing {
    /// Checks and sorts `entries`. Refuses (naming the entry) absolute paths, `..`, duplicate
    /// paths, entries whose parent is not a listed directory (a child of a symlink would be
    /// written through it), unsupported file types, and hard links to anything but an earlier
    /// regular file.
    pub fn new(mut entries: Vec<Entry>) -> Result<Self, SyncError> {
        let refuse = |e: &Entry, reason: &str| SyncError::Refused {
            path: e.path.clone(),
            reason: reason.to_string(),
        };
        for e in &entries {
            check_path(&e.path).map_err(|r| refuse(e, r))?;
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let mut kinds: HashMap<&str, Kind> = HashMap::with_capacity(entries.len());
        for e in &entries {
            let kind = e
                .kind()
                .ok_or_else(|| refuse(e, &format!("unsupported file type {:o}", e.mode)))?;
            let up = parent(&e.path);
            if !up.is_empty() && kinds.get(up) != Some(&Kind::Dir) {
                return Err(refuse(e, "its parent is not a directory of the listing"));
            }
            match kind {
                Kind::Symlink if e.target.is_empty() || e.target.contains('\0') => {
                    return Err(refuse(e, "a symlink without a valid target"))
                }
                Kind::HardLink if kinds.get(e.link.as_str()) != Some(&Kind::File) => {
                    return Err(refuse(e, "a hard link to no earlier regular file"))
                }
                _ => {}
            }
            if kinds.insert(&e.path, kind).is_some() {
                return Err(refuse(e, "listed twice"));
            }
        }
        Ok(Listing { entries })
    }

    /// The entries, sorted by path.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the listing is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            mode,
            ..Default::default()
        }
    }

    #[test]
    fn hostile_listings_are_refused_naming_the_entry() {
        let dir = |p: &str| e(p, Entry::DIR | 0o755);
        let file = |p: &str| e(p, Entry::FILE | 0o644);
        let link = |p: &str, t: &str| Entry {
            target: t.into(),
            ..e(p, Entry::SYMLINK | 0o777)
        };
        let cases: Vec<(Vec<Entry>, &str, &str)> = vec![
            (vec![file("../x")], "../x", "'..'"),
            (vec![file("/abs")], "/abs", "absolute"),
            (vec![dir("a"), file("a/../../x")], "a/../../x", "'..'"),
            (
                vec![link("l", "/etc"), file("l/passwd")],
                "l/passwd",
                "parent",
            ),
            (vec![file("no/parent")], "no/parent", "parent"),
            (vec![file("f"), file("f")], "f", "twice"),
            (vec![e("dev", 0o020000 | 0o600)], "dev", "unsupported"),
            (
                vec![Entry {
                    link: "missing".into(),
                    ..file("h")
                }],
                "h",
                "hard link",
            ),
        ];
        for (entries, path, reason) in cases {
            match Listing::new(entries) {
                Err(SyncError::Refused { path: p, reason: r }) => {
                    assert_eq!(p, path);
                    assert!(r.contains(reason), "{path}: {r}");
                }
                other => panic!("{path}: {other:?}"),
            }
        }
        let ok = Listing::new(vec![file("b/c"), dir("b"), file("a")]);
        let paths: Vec<_> = ok
            .unwrap()
            .entries()
            .iter()
            .map(|e| e.path.clone())
            .collect();
        assert_eq!(paths, ["a", "b", "b/c"]);
    }
}
