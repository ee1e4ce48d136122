//! The file's layout, before any instruction is typed: the parser directives at the top, the
//! logical lines (line continuations joined, comment and blank lines skipped, as BuildKit's
//! parser does) and the heredoc bodies that follow a `RUN`, `COPY` or `ADD` line.

use crate::instruction::{Directives, Heredoc, Pos};
use crate::DockerfileError;

use super::words;

/// Byte offsets of the starts of the physical lines, to turn offsets into [`Pos`].
pub(super) struct LineIndex {
    /// `(start, content_end)` of each line: `content_end` excludes `\n` and a `\r` before it.
    lines: Vec<(usize, usize)>,
}

impl LineIndex {
    pub(super) fn new(text: &str) -> Self {
        let mut lines = Vec::new();
        let mut start = 0;
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                let end = if i > start && text.as_bytes()[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                lines.push((start, end));
                start = i + 1;
            }
        }
        if start < text.len() || lines.is_empty() {
            lines.push((start, text.len()));
        }
        LineIndex { lines }
    }

    /// Number of physical lines.
    pub(super) fn len(&self) -> usize {
        self.lines.len()
    }

    /// Line `i` (0-based), without its line break.
    pub(super) fn line<'t>(&self, text: &'t str, i: usize) -> &'t str {
        self.lines
            .get(i)
            .and_then(|&(s, e)| text.get(s..e))
            .unwrap_or("")
    }

    /// Start offset of line `i` (0-based), or the end of the text past the last line.
    pub(super) fn start(&self, i: usize, text: &str) -> usize {
        self.lines.get(i).map_or(text.len(), |l| l.0)
    }

    /// End offset (before the line break) of line `i` (0-based).
    pub(super) fn content_end(&self, i: usize, text: &str) -> usize {
        self.lines.get(i).map_or(text.len(), |l| l.1)
    }

    /// The 1-based line and column (in characters) of byte `offset`.
    pub(super) fn pos(&self, text: &str, offset: usize) -> Pos {
        let offset = offset.min(text.len());
        let i = match self.lines.binary_search_by(|l| l.0.cmp(&offset)) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.start(i, text).min(offset);
        // Count characters, not bytes; robust even if `offset` is not a char boundary.
        let column = text.as_bytes()[start..offset]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count()
            + 1;
        Pos {
            line: i + 1,
            column,
        }
    }
}

/// One instruction's place in the file.
#[derive(Debug)]
pub(super) struct Chunk {
    /// Offset of the keyword.
    pub(super) start: usize,
    /// Offset of the end of the logical line (before its line break).
    pub(super) line_end: usize,
    /// Offset just past the chunk: past the logical line, or past the last heredoc terminator.
    pub(super) end: usize,
    /// 0-based index of the chunk's last physical line.
    pub(super) last_line: usize,
    /// The logical line, continuations joined (BuildKit's `Original`).
    pub(super) text: String,
    /// The heredocs the line opens, in order.
    pub(super) heredocs: Vec<Heredoc>,
}

/// Go's `unicode.IsSpace`, which BuildKit trims lines with.
fn is_blank(c: char) -> bool {
    c.is_whitespace()
}

/// Whether a physical line, seen inside or between instructions, is skipped: blank or a comment.
fn skipped(line: &str) -> bool {
    let t = line.trim_start_matches(is_blank);
    t.is_empty() || t.starts_with('#')
}

/// `line` without a trailing escape character (and the spaces after it), and whether it had one.
/// As in BuildKit, an escape character preceded by another one is not a continuation.
pub(super) fn strip_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(rest) if !rest.ends_with(escape) => (rest, true),
        _ => (line, false),
    }
}

/// Joins the physical lines of (part of) one logical line as Docker does: each escape character
/// before a line break is removed with the break, and comment or blank lines in between are
/// dropped. `RUN a \` + `  b` gives `RUN a   b`.
pub(super) fn join_lines(raw: &str, escape: char) -> String {
    let mut out = String::with_capacity(raw.len());
    for (n, line) in raw.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if n > 0 && skipped(line) {
            continue;
        }
        out.push_str(strip_continuation(line, escape).0);
    }
    out
}

/// Reads the parser directives at the top of the file (`# escape=`, `# syntax=`, `# check=`);
/// they stop at the first line that is not one.
pub(super) fn directives(
    text: &str,
    idx: &LineIndex,
    file: &str,
) -> Result<Directives, DockerfileError> {
    let mut d = Directives::default();
    let mut seen: Vec<String> = Vec::new();
    for i in 0..idx.len() {
        let line = idx.line(text, i);
        let Some((key, value, value_col)) = directive(line) else {
            break;
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            break;
        }
        let pos = Pos {
            line: i + 1,
            column: 1,
        };
        if seen.contains(&key) {
            return Err(DockerfileError::at(
                file,
                pos,
                line,
                format!("only one {key} parser directive can be used"),
            ));
        }
        seen.push(key.clone());
        match key.as_str() {
            "syntax" => d.syntax = Some(value.to_string()),
            "check" => d.check = Some(value.to_string()),
            _ => {
                d.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        let pos = Pos {
                            line: i + 1,
                            column: value_col,
                        };
                        return Err(DockerfileError::at(
                            file,
                            pos,
                            line,
                            format!("invalid escape directive value {value:?}: use \\ or `"),
                        ));
                    }
                }
            }
        }
    }
    Ok(d)
}

/// `#[ \t]*KEY[ \t]*=[ \t]*VALUE[ \t]*` → (KEY, VALUE, 1-based column of VALUE).
fn directive(line: &str) -> Option<(&str, &str, usize)> {
    let rest = line.strip_prefix('#')?.trim_start_matches([' ', '\t']);
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let rest = rest.trim_start_matches([' ', '\t']).strip_prefix('=')?;
    let value = rest.trim_start_matches([' ', '\t']);
    let col = line.len() - value.len() + 1;
    let value = value.trim_end_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    Some((key, value, col))
}

/// Cuts the file into instructions: each a logical line plus the bodies of the heredocs it
/// opens (`RUN`, `COPY` and `ADD` only, and not in JSON form).
pub(super) fn chunks(
    text: &str,
    idx: &LineIndex,
    escape: char,
    file: &str,
) -> Result<Vec<Chunk>, DockerfileError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let line = idx.line(text, i);
        if skipped(line) {
            i += 1;
            continue;
        }
        let start = idx.start(i, text) + (line.len() - line.trim_start_matches(is_blank).len());
        let first = i;
        let mut last = i;
        let mut cont = strip_continuation(line, escape).1;
        i += 1;
        while cont && i < idx.len() {
            let l = idx.line(text, i);
            i += 1;
            if skipped(l) {
                continue;
            }
            last = i - 1;
            cont = strip_continuation(l, escape).1;
        }
        let line_end = idx.content_end(last, text);
        let joined = join_lines(text.get(start..line_end).unwrap_or(""), escape);
        if joined.trim().is_empty() {
            // A lone escape character continued into nothing: no instruction.
            continue;
        }
        let mut heredocs = Vec::new();
        let mut last_line = last;
        for (name, chomp, expand) in heredoc_words(&joined) {
            let mut content = String::new();
            loop {
                if i >= idx.len() {
                    let pos = idx.pos(text, start);
                    return Err(DockerfileError::at(
                        file,
                        pos,
                        idx.line(text, first),
                        format!(
                            "unterminated heredoc <<{}{} (started on line {}): add a line `{}` after its body",
                            if chomp { "-" } else { "" },
                            name,
                            first + 1,
                            name
                        ),
                    ));
                }
                // The body keeps its line breaks as written (`\r\n` too), as BuildKit's does.
                let raw = text
                    .get(idx.start(i, text)..idx.start(i + 1, text))
                    .unwrap_or("");
                i += 1;
                let raw = if chomp {
                    raw.trim_start_matches('\t')
                } else {
                    raw
                };
                if raw.trim_end_matches(['\r', '\n']) == name {
                    break;
                }
                content.push_str(raw);
            }
            last_line = i - 1;
            heredocs.push(Heredoc {
                name,
                content,
                expand,
                chomp,
            });
        }
        out.push(Chunk {
            start,
            line_end,
            end: idx.start(i, text),
            last_line,
            text: joined,
            heredocs,
        });
    }
    Ok(out)
}

/// The heredocs a logical line opens: `(name, chomp, expand)` for each `<<WORD` word, if the
/// instruction may have heredocs.
fn heredoc_words(line: &str) -> Vec<(String, bool, bool)> {
    if !line.contains("<<") {
        return Vec::new();
    }
    let kw_end = line.find(is_blank).unwrap_or(line.len());
    let keyword = line[..kw_end].to_ascii_uppercase();
    if !matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
        return Vec::new();
    }
    // The arguments after the flags; JSON form has no heredocs.
    let mut rest = line[kw_end..].trim_start_matches(is_blank);
    while rest.starts_with("--") {
        let end = rest.find(is_blank).unwrap_or(rest.len());
        rest = rest[end..].trim_start_matches(is_blank);
    }
    if rest.starts_with('[') && serde_json::from_str::<Vec<String>>(rest).is_ok() {
        return Vec::new();
    }
    // BuildKit finds heredoc words with a `\\`-escaped lexer whatever the escape directive.
    words::parse_words(rest, '\\')
        .iter()
        .filter_map(|w| words::heredoc_word(w))
        .collect()
}
