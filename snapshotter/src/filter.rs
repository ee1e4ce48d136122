//! containerd's filter syntax (`kind==active,labels."a.b"!=x`, `name~=/re/`) for List.
//!
//! Filters in the list are OR-ed; the comma-separated selectors within one filter are AND-ed.
//! A selector is a field path with an optional operator (`==`, `!=`, `~=`) and value; without an
//! operator it tests that the field is present. Matching follows containerd: `==` needs the field
//! present, `!=` compares the value even when absent (as the empty string).

use regex::Regex;

use crate::error::{Result, SnapshotError};

/// A parsed set of filters: matches when any of them matches.
#[derive(Debug, Default)]
pub struct Filter {
    any: Vec<Vec<Selector>>,
}

#[derive(Debug)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

#[derive(Debug)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

impl Filter {
    /// Parses containerd filter strings; an empty list (or only empty strings) matches everything.
    pub fn parse(filters: &[String]) -> Result<Self> {
        let mut any = Vec::new();
        for f in filters {
            if f.trim().is_empty() {
                // containerd: an empty filter matches all.
                return Ok(Filter::default());
            }
            let all =
                Parser::new(f)
                    .selectors()
                    .map_err(|reason| SnapshotError::InvalidFilter {
                        filter: f.clone(),
                        reason,
                    })?;
            any.push(all);
        }
        Ok(Filter { any })
    }

    /// Whether an object matches; `field` returns a field's value by path, `None` when absent.
    pub fn matches(&self, field: impl Fn(&[String]) -> Option<String>) -> bool {
        if self.any.is_empty() {
            return true;
        }
        self.any.iter().any(|all| {
            all.iter().all(|s| {
                let v = field(&s.path);
                match &s.op {
                    Op::Present => v.is_some(),
                    Op::Equal(want) => v.as_deref() == Some(want.as_str()),
                    Op::NotEqual(want) => v.as_deref().unwrap_or("") != want,
                    Op::Matches(re) => re.is_match(v.as_deref().unwrap_or("")),
                }
            })
        })
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser { s, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.s.len() - trimmed.len();
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.rest().chars().next()
    }

    fn selectors(&mut self) -> Result<Vec<Selector>, String> {
        let mut out = vec![self.selector()?];
        loop {
            match self.peek() {
                None => return Ok(out),
                Some(',') => {
                    self.pos += 1;
                    out.push(self.selector()?);
                }
                Some(c) => {
                    return Err(format!(
                        "unexpected {c:?} at offset {}; expected ',' or end",
                        self.pos
                    ))
                }
            }
        }
    }

    fn selector(&mut self) -> Result<Selector, String> {
        let path = self.fieldpath()?;
        let op = match self.peek() {
            None | Some(',') => {
                return Ok(Selector {
                    path,
                    op: Op::Present,
                })
            }
            Some(_) => self.operator()?,
        };
        let allow_alt = op == "~=";
        let value = self.value(allow_alt)?;
        let op = match op {
            "==" => Op::Equal(value),
            "!=" => Op::NotEqual(value),
            _ => Op::Matches(
                Regex::new(&value).map_err(|e| format!("bad regular expression {value:?}: {e}"))?,
            ),
        };
        Ok(Selector { path, op })
    }

    fn fieldpath(&mut self) -> Result<Vec<String>, String> {
        let mut path = vec![self.field()?];
        while self.peek() == Some('.') {
            self.pos += 1;
            path.push(self.field()?);
        }
        Ok(path)
    }

    fn field(&mut self) -> Result<String, String> {
        match self.peek() {
            Some('"') => self.quoted('"'),
            Some(c) if c == '_' || c.is_ascii_alphanumeric() => {
                let len = self
                    .rest()
                    .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
                    .unwrap_or(self.rest().len());
                let f = self.rest()[..len].to_string();
                self.pos += len;
                Ok(f)
            }
            Some(c) => Err(format!(
                "expected field name at offset {}, found {c:?}",
                self.pos
            )),
            None => Err("expected field name, found end of filter".into()),
        }
    }

    fn operator(&mut self) -> Result<&'static str, String> {
        for op in ["==", "!=", "~="] {
            if self.rest().starts_with(op) {
                self.pos += 2;
                return Ok(op);
            }
        }
        Err(format!(
            "expected operator (==, !=, ~=) at offset {}",
            self.pos
        ))
    }

    fn value(&mut self, allow_alt_quotes: bool) -> Result<String, String> {
        match self.peek() {
            Some('"') => self.quoted('"'),
            Some(q @ ('/' | '|')) if allow_alt_quotes => self.quoted(q),
            Some(',') | None => Err(format!("expected value at offset {}", self.pos)),
            Some(_) => {
                let len = self
                    .rest()
                    .find(|c: char| c == ',' || c.is_whitespace())
                    .unwrap_or(self.rest().len());
                let v = self.rest()[..len].to_string();
                self.pos += len;
                Ok(v)
            }
        }
    }

    /// Reads a quoted string starting at the quote, with Go-style backslash escapes.
    fn quoted(&mut self, quote: char) -> Result<String, String> {
        let start = self.pos;
        let mut chars = self.rest().char_indices().skip(1);
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => {
                    self.pos += i + c.len_utf8();
                    return Ok(out);
                }
                '\\' => {
                    let Some((_, e)) = chars.next() else { break };
                    let unescaped = match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        'a' => '\x07',
                        'b' => '\x08',
                        'f' => '\x0c',
                        'v' => '\x0b',
                        // Between the alternative quotes of a regular expression, keep the escape.
                        e if e != quote && quote != '"' => {
                            out.push('\\');
                            e
                        }
                        e => e,
                    };
                    out.push(unescaped);
                }
                c => out.push(c),
            }
        }
        Err(format!(
            "unterminated quoted string starting at offset {start}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn obj(pairs: &[(&str, &str)]) -> impl Fn(&[String]) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |path: &[String]| m.get(&path.join(".")).cloned()
    }

    fn f(s: &[&str]) -> Filter {
        Filter::parse(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn table() {
        let a = obj(&[
            ("kind", "active"),
            ("name", "a-wl"),
            ("parent", "p"),
            ("labels.l", "2"),
            ("labels.containerd.io/gc.root", "x"),
        ]);
        let cases: &[(&[&str], bool)] = &[
            (&[], true),
            (&[""], true),
            (&["kind==active"], true),
            (&["kind==view"], false),
            (&["kind==view", "name==a-wl"], true),
            (&["kind==active,labels.l==2"], true),
            (&["kind==active,labels.l==3"], false),
            (&["labels.l"], true),
            (&["labels.m"], false),
            (&[r#"labels."containerd.io/gc.root"==x"#], true),
            (&[r#"parent!="""#], true),
            (&["parent!=p"], false),
            (&["labels.m!=x"], true),
            (&["name~=/^a-/"], true),
            (&[r#"name~="^b""#], false),
            (&["name == a-wl , kind==active"], true),
        ];
        for (filters, want) in cases {
            assert_eq!(f(filters).matches(&a), *want, "{filters:?}");
        }
    }

    #[test]
    fn errors() {
        for bad in [
            "kind==",
            "kind=active",
            ",",
            "kind==a,",
            r#"labels."x"#,
            "name~=/(/",
            "a b",
        ] {
            let err = Filter::parse(&[bad.to_string()]).unwrap_err();
            assert!(
                matches!(err, SnapshotError::InvalidFilter { .. }),
                "{bad}: {err}"
            );
        }
    }
}
