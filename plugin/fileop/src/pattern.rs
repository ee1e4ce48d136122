//! Path patterns: Go `filepath.Match`-style wildcards (`*`, `?`, `[..]`) for copy and rm sources,
//! `.dockerignore`-style exclude patterns (`**`, `!` exceptions, later patterns win) and
//! BuildKit's include patterns (a directory is entered while a pattern could still match below it).

use regex::Regex;

/// Compiles one pattern to an anchored regex. With `doublestar`, `**` matches any number of
/// path components (`**/` also none); without, `*` never crosses a `/`.
fn compile(pattern: &str, doublestar: bool) -> Result<Regex, String> {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if in_class {
            match c {
                ']' => {
                    in_class = false;
                    re.push(']');
                }
                '\\' if i + 1 < chars.len() => {
                    i += 1;
                    re.push_str(&regex::escape(&chars[i].to_string()));
                }
                '[' | '&' | '~' => {
                    re.push('\\');
                    re.push(c);
                }
                _ => re.push(c),
            }
            i += 1;
            continue;
        }
        match c {
            '*' if doublestar && chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    i += 1;
                }
                if i + 1 >= chars.len() {
                    re.push_str(".*");
                } else {
                    re.push_str("(.*/)?");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                in_class = true;
                re.push('[');
                // Go spells negation `[^..]`; gitignore-style `[!..]` means the same.
                if chars.get(i + 1) == Some(&'!') {
                    i += 1;
                    re.push('^');
                }
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                re.push_str(&regex::escape(&chars[i].to_string()));
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    if in_class {
        return Err(format!(
            "unterminated character class in pattern {pattern:?}"
        ));
    }
    re.push('$');
    Regex::new(&re).map_err(|e| format!("bad pattern {pattern:?}: {e}"))
}

/// Whether `name` matches the wildcard `pattern` as Go's `filepath.Match` does (`*` and `?` never
/// match `/`). An invalid pattern matches nothing.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    compile(pattern, false).is_ok_and(|re| re.is_match(name))
}

/// Whether `s` contains an unescaped wildcard character.
pub(crate) fn has_wildcard(s: &str) -> bool {
    let mut esc = false;
    for c in s.chars() {
        if esc {
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if matches!(c, '*' | '?' | '[') {
            return true;
        }
    }
    false
}

/// Cleans a pattern the way `.dockerignore` does: no leading `/`, no `.` or empty components,
/// `..` applied.
fn clean_pattern(p: &str) -> String {
    crate::resolve::clean_abs(p)[1..].to_owned()
}

struct ExcludePattern {
    text: String,
    exclusion: bool,
    re: Regex,
}

/// `.dockerignore` semantics: a path is excluded when the last pattern matching it (or one of its
/// parent directories) is not a `!` exception.
pub struct ExcludeMatcher {
    patterns: Vec<ExcludePattern>,
}

impl ExcludeMatcher {
    /// Compiles the patterns; empty lines are skipped.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        for p in patterns {
            let mut p = p.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
                if p.is_empty() {
                    return Err("illegal exclusion pattern: \"!\"".into());
                }
            }
            let text = clean_pattern(p);
            if text.is_empty() {
                continue;
            }
            out.push(ExcludePattern {
                re: compile(&text, true)?,
                text,
                exclusion,
            });
        }
        Ok(ExcludeMatcher { patterns: out })
    }

    /// Whether `rel` (relative, `/`-separated) matches, itself or through any of its parent
    /// directories, later patterns winning: Docker's `patternmatcher.MatchesOrParentMatches`,
    /// which BuildKit applies to build contexts (`**/cache` excludes `a/b/cache/x`).
    pub fn matches(&self, rel: &str) -> bool {
        let mut matched = false;
        for p in &self.patterns {
            // Only a pattern that would flip the answer needs evaluating.
            if p.exclusion != matched {
                continue;
            }
            let m = p.re.is_match(rel)
                || rel
                    .match_indices('/')
                    .any(|(i, _)| p.re.is_match(&rel[..i]));
            if m {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether to skip `rel`. An excluded directory is still entered when a `!` exception could
    /// match something inside it (`dir` excluded, `!dir/keep` kept).
    pub fn excluded(&self, rel: &str, is_dir: bool) -> bool {
        if !self.matches(rel) {
            return false;
        }
        if is_dir
            && self
                .patterns
                .iter()
                .any(|p| p.exclusion && prefix_match(&p.text, rel) == Some(true))
        {
            return false;
        }
        true
    }
}

/// `Some(false)`: `pattern` matches `name` fully; `Some(true)`: `name` is a directory through
/// which `pattern` could still match something; `None`: neither.
fn prefix_match(pattern: &str, name: &str) -> Option<bool> {
    if pattern.contains("**") {
        if compile(pattern, true).is_ok_and(|re| re.is_match(name)) {
            return Some(false);
        }
        let pre: Vec<&str> = pattern
            .split('/')
            .take_while(|c| !c.contains("**"))
            .collect();
        let ok = name
            .split('/')
            .zip(pre.iter())
            .all(|(n, p)| glob_match(p, n));
        return ok.then_some(true);
    }
    let name_depth = name.split('/').count();
    let pcomps: Vec<&str> = pattern.split('/').collect();
    if pcomps.len() > name_depth {
        let truncated = pcomps[..name_depth].join("/");
        return glob_match(&truncated, name).then_some(true);
    }
    glob_match(pattern, name).then_some(false)
}

/// BuildKit's include patterns: only paths matching one of them (or inside a matching directory)
/// are copied; directories are entered while a pattern could match below them.
pub struct IncludeMatcher {
    patterns: Vec<String>,
}

impl IncludeMatcher {
    /// Compiles the patterns (an invalid one is an error).
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let patterns: Vec<String> = patterns
            .iter()
            .map(|p| clean_pattern(p.trim()))
            .filter(|p| !p.is_empty())
            .collect();
        for p in &patterns {
            compile(p, true)?;
        }
        Ok(IncludeMatcher { patterns })
    }

    /// True when there are no patterns (everything is included).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `(include, fully)`: whether to consider `rel`, and whether it matched a pattern fully (so
    /// everything below it is included without further checks). A file is included only on a
    /// full match; a directory also on a partial one (it is created only if something inside is).
    pub fn check(&self, rel: &str, is_dir: bool) -> (bool, bool) {
        let mut matched = false;
        let mut full = false;
        for p in &self.patterns {
            match prefix_match(p, rel) {
                Some(false) => {
                    matched = true;
                    full = true;
                    break;
                }
                Some(true) => matched = true,
                None => {}
            }
        }
        if !matched {
            return (false, false);
        }
        if is_dir {
            (true, full)
        } else {
            (full, full)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*.txt", "a.txt", true),
            ("*.txt", "dir/a.txt", false),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("[ab]*", "bx", true),
            ("[^ab]*", "bx", false),
            ("[!ab]*", "cx", true),
            ("[a-c]", "d", false),
            ("a.b", "axb", false),
            ("f(1)+", "f(1)+", true),
            ("\\*", "*", true),
            ("\\*", "x", false),
            ("[", "[", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(glob_match(p, n), *want, "{p} vs {n}");
        }
        assert!(has_wildcard("a/*.go"));
        assert!(!has_wildcard("a/\\*.go"));
    }

    fn ex(p: &[&str]) -> ExcludeMatcher {
        ExcludeMatcher::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn dockerignore_table() {
        let m = ex(&[
            "*.md",
            "!README.md",
            "build",
            "**/*.o",
            "/tmp/*",
            "docs/**/secret",
        ]);
        let cases: &[(&str, bool)] = &[
            ("a.md", true),
            ("README.md", false),
            ("sub/a.md", false),
            ("build", true),
            ("build/x/y", true),
            ("a.o", true),
            ("x/y/z.o", true),
            ("tmp/x", true),
            ("tmp", false),
            ("docs/secret", true),
            ("docs/a/b/secret", true),
            ("docs/a/b/public", false),
            // A parent at any depth counts (MatchesOrParentMatches).
            ("x/docs/secret/file", false),
            ("deep/build.o/inner", true),
            ("src/main.rs", false),
        ];
        for (p, want) in cases {
            assert_eq!(m.matches(p), *want, "{p}");
        }
        let m = ex(&["**/cache", "!**/cache/keep"]);
        assert!(m.matches("a/b/cache/x"));
        assert!(m.matches("cache"));
        assert!(!m.matches("a/cache/keep"));
        // Later patterns win.
        let m = ex(&["!keep", "*"]);
        assert!(m.matches("keep"));
        let m = ex(&["*", "!keep"]);
        assert!(!m.matches("keep"));
        // An excluded directory is entered when an exception points inside it.
        let m = ex(&["vendor", "!vendor/keep"]);
        assert!(!m.excluded("vendor", true));
        assert!(m.excluded("vendor/other", false));
        assert!(!m.excluded("vendor/keep", false));
    }

    #[test]
    fn include_table() {
        let m = IncludeMatcher::new(&["a/*/c".into(), "*.go".into(), "deep/**/x".into()]).unwrap();
        assert_eq!(m.check("a", true), (true, false));
        assert_eq!(m.check("a/b", true), (true, false));
        assert_eq!(m.check("a/b/c", false), (true, true));
        assert_eq!(m.check("a/b/d", false), (false, false));
        assert_eq!(m.check("main.go", false), (true, true));
        assert_eq!(m.check("main.rs", false), (false, false));
        assert_eq!(m.check("deep", true), (true, false));
        assert_eq!(m.check("deep/1/2", true), (true, false));
        assert_eq!(m.check("deep/1/2/x", false), (true, true));
        assert_eq!(m.check("other", true), (false, false));
    }
}
