//! Docker's variable expansion (BuildKit's `shell.Lex`): `$VAR`, `${VAR}`, `${VAR:-word}`,
//! `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`,
//! `${VAR##pat}`, `${VAR%pat}`, `${VAR%%pat}`, `${VAR/pat/repl}`, quotes and the escape character.

/// A variable lookup: the value of a name in scope, or `None` if it is not set.
pub type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Why a word cannot be expanded; `offset` is the byte offset in the word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShellError {
    /// What is wrong (`unterminated quote`, `missing '}'`, the `${VAR:?msg}` message, …).
    pub message: String,
    /// Where in the word.
    pub offset: usize,
}

/// Expands words with Docker's rules for a Dockerfile's escape character.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    escape: char,
}

impl Lexer {
    /// A lexer for escape character `escape` (`\` or `` ` ``).
    pub fn new(escape: char) -> Self {
        Lexer { escape }
    }

    /// Expands `word` as one word (BuildKit's `ProcessWord`): quotes are removed, text in single
    /// quotes is literal, text in double quotes is expanded, the escape character makes the next
    /// character literal, and an unset variable expands to nothing.
    pub fn expand(&self, word: &str, vars: Vars) -> Result<String, ShellError> {
        let mut w = Walker::new(self.escape, word, vars);
        let (text, _) = w.until(None, false)?;
        Ok(text)
    }

    /// Expands `text` as [`Lexer::expand`] does, but quotes are plain characters (BuildKit's
    /// `SkipProcessQuotes`, used for the body of a `COPY` heredoc).
    pub(crate) fn expand_keeping_quotes(
        &self,
        text: &str,
        vars: Vars,
    ) -> Result<String, ShellError> {
        let mut w = Walker::new(self.escape, text, vars);
        w.quotes = false;
        let (text, _) = w.until(None, false)?;
        Ok(text)
    }

    /// `text` as BuildKit shows a `RUN` step's name: variables that are set are expanded,
    /// unset ones and quotes are left as written (`RawQuotes`, `SkipUnsetEnv`); `text` itself
    /// when it cannot be expanded.
    pub(crate) fn expand_for_display(&self, text: &str, vars: Vars) -> String {
        let mut w = Walker::new(self.escape, text, vars);
        w.display = true;
        w.until(None, false)
            .map(|(t, _)| t)
            .unwrap_or_else(|_| text.to_string())
    }

    /// Expands `text` into words (BuildKit's `ProcessWords`): as [`Lexer::expand`], then split on
    /// whitespace that is neither quoted, escaped, nor inside a quoted expansion; the value of an
    /// unquoted `$VAR` is split too.
    pub fn expand_words(&self, text: &str, vars: Vars) -> Result<Vec<String>, ShellError> {
        let mut w = Walker::new(self.escape, text, vars);
        w.words = Some(Words::default());
        w.until(None, false)?;
        Ok(w.words.take().map(Words::finish).unwrap_or_default())
    }
}

/// The words of [`Lexer::expand_words`] as they are found.
#[derive(Default)]
struct Words {
    done: Vec<String>,
    word: String,
    in_word: bool,
}

impl Words {
    /// A character that splits words when it is whitespace.
    fn push(&mut self, c: char) {
        if !c.is_whitespace() {
            self.push_raw(c);
        } else if self.in_word && !self.word.is_empty() {
            self.done.push(std::mem::take(&mut self.word));
            self.in_word = false;
        }
    }

    fn push_raw(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn push_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.push(c));
    }

    fn push_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.done.push(self.word);
        }
        self.done
    }
}

/// One pass over a word.
struct Walker<'a> {
    escape: char,
    chars: Vec<(usize, char)>,
    len: usize,
    pos: usize,
    vars: Vars<'a>,
    /// Set while splitting into words, at the top level only.
    words: Option<Words>,
    /// Quotes are special (they are not in a `COPY` heredoc body).
    quotes: bool,
    /// Keep quotes and unset variables as written (step names).
    display: bool,
}

impl<'a> Walker<'a> {
    fn new(escape: char, text: &str, vars: Vars<'a>) -> Self {
        Walker {
            escape,
            chars: text.char_indices().collect(),
            len: text.len(),
            pos: 0,
            vars,
            words: None,
            quotes: true,
            display: false,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn offset(&self) -> usize {
        self.chars.get(self.pos).map_or(self.len, |&(o, _)| o)
    }

    fn error(&self, message: impl Into<String>) -> ShellError {
        ShellError {
            message: message.into(),
            offset: self.offset(),
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        (self.vars)(name)
    }

    /// Reads up to `stop` (consumed; `None`: the end). `raw_escapes` keeps escape characters in
    /// the result (for patterns). Returns the text and whether `stop` was found.
    fn until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, bool), ShellError> {
        // Only the top-level walk collects words; nested ones (inside `${…}`) do not.
        let mut words = if stop.is_none() {
            self.words.take()
        } else {
            None
        };
        let mut out = String::new();
        let result = loop {
            let Some(c) = self.peek() else {
                break match stop {
                    Some(s) => Err(self.error(format!(
                        "unexpected end of statement while looking for matching {s}"
                    ))),
                    None => Ok(false),
                };
            };
            if Some(c) == stop {
                self.pos += 1;
                break Ok(true);
            }
            let special = match c {
                '$' => Some(self.dollar()),
                '\'' if self.quotes => Some(self.single_quoted()),
                '"' if self.quotes => Some(self.double_quoted()),
                _ => None,
            };
            if let Some(expanded) = special {
                let expanded = match expanded {
                    Ok(e) => e,
                    Err(e) => break Err(e),
                };
                if let Some(w) = &mut words {
                    if c == '$' {
                        w.push_str(&expanded);
                    } else {
                        w.push_raw_str(&expanded);
                    }
                }
                out.push_str(&expanded);
                continue;
            }
            self.pos += 1;
            if c == self.escape {
                if raw_escapes {
                    out.push(c);
                    if let Some(w) = &mut words {
                        w.push_raw(c);
                    }
                }
                // An escape at the very end is dropped.
                let Some(escaped) = self.next() else {
                    continue;
                };
                if let Some(w) = &mut words {
                    w.push_raw(escaped);
                }
                out.push(escaped);
            } else {
                if let Some(w) = &mut words {
                    w.push(c);
                }
                out.push(c);
            }
        };
        if stop.is_none() {
            self.words = words;
        }
        result.map(|found| (out, found))
    }

    fn single_quoted(&mut self) -> Result<String, ShellError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(self.error(
                        "unexpected end of statement while looking for matching single-quote",
                    ))
                }
                Some('\'') if self.display => return Ok(format!("'{out}'")),
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, ShellError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(self.error(
                        "unexpected end of statement while looking for matching double-quote",
                    ))
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(if self.display {
                        format!("\"{out}\"")
                    } else {
                        out
                    });
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) => {
                    self.pos += 1;
                    if c == self.escape {
                        match self.peek() {
                            // Only these may be escaped; other escapes stay as written.
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.pos += 1;
                                out.push(n);
                            }
                            None => {}
                            Some(_) => out.push(c),
                        }
                    } else {
                        out.push(c);
                    }
                }
            }
        }
    }

    /// A name after `$`: letters, digits and `_`; or all the digits of a positional parameter;
    /// or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.pos += 1;
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            self.pos += 1;
            name.push(c);
        }
        name
    }

    fn dollar(&mut self) -> Result<String, ShellError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.display => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(self.error("syntax error: missing '}'")),
            Some('{' | '}' | ':') => return Err(self.error("syntax error: bad substitution")),
            _ => {}
        }
        let name = self.name();
        let Some(op) = self.next() else {
            return Err(self.error("syntax error: missing '}'"));
        };
        match op {
            '}' => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.display => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let colon = op == ':';
                let op = if colon {
                    self.next()
                        .ok_or_else(|| self.error("syntax error: missing '}'"))?
                } else {
                    op
                };
                let raw = op == '#' || op == '%';
                if colon && (raw || !matches!(op, '+' | '-' | '?')) {
                    return Err(self.error(format!("unsupported modifier (:{op}) in substitution")));
                }
                let (word, _) = self.until(Some('}'), raw).map_err(|e| {
                    if self.peek().is_none() {
                        self.error("syntax error: missing '}'")
                    } else {
                        e
                    }
                })?;
                let value = self.lookup(&name);
                if value.is_none() && self.display {
                    let colon = if colon { ":" } else { "" };
                    return Ok(format!("${{{name}{colon}{op}{word}}}"));
                }
                let unset = match &value {
                    None => true,
                    Some(v) => colon && v.is_empty(),
                };
                match op {
                    '-' => Ok(if unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if unset { String::new() } else { word }),
                    '?' => match value {
                        Some(v) if !unset => Ok(v),
                        v => {
                            let what = if v.is_none() { "unset" } else { "empty" };
                            let message = if word.is_empty() {
                                format!("is not allowed to be {what}")
                            } else {
                                word
                            };
                            Err(self.error(format!("{name}: {message}")))
                        }
                    },
                    _ => {
                        let value = value.unwrap_or_default();
                        let (greedy, pattern) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        let pattern = Glob::parse(&pattern, self.escape);
                        Ok(if op == '#' {
                            pattern.trim_prefix(&value, greedy)
                        } else {
                            pattern.trim_suffix(&value, greedy)
                        })
                    }
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let (pattern, _) = self.until(Some('/'), true).map_err(|e| {
                    if self.peek().is_none() {
                        self.error("syntax error: missing '/' in ${}")
                    } else {
                        e
                    }
                })?;
                let (replacement, _) = self.until(Some('}'), true).map_err(|e| {
                    if self.peek().is_none() {
                        self.error("syntax error: missing '}'")
                    } else {
                        e
                    }
                })?;
                let Some(value) = self
                    .lookup(&name)
                    .or_else(|| (!self.display).then(String::new))
                else {
                    let slash = if all { "//" } else { "/" };
                    return Ok(format!("${{{name}{slash}{pattern}/{replacement}}}"));
                };
                Ok(Glob::parse(&pattern, self.escape).replace(&value, &replacement, all))
            }
            other => Err(self.error(format!("unsupported modifier ({other}) in substitution"))),
        }
    }
}

/// A shell pattern of `${VAR#pat}` and friends: `*`, `?`, and escaped literal characters
/// (BuildKit treats `[` as a literal too).
struct Glob(Vec<GlobItem>);

#[derive(Clone, Copy)]
enum GlobItem {
    Any,
    One,
    Char(char),
}

impl Glob {
    fn parse(pattern: &str, escape: char) -> Glob {
        let mut items = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            items.push(match c {
                '*' => GlobItem::Any,
                '?' => GlobItem::One,
                c if c == escape => match chars.next() {
                    Some(n) => GlobItem::Char(n),
                    None => GlobItem::Char(c),
                },
                c => GlobItem::Char(c),
            });
        }
        Glob(items)
    }

    fn matches(&self, s: &[char]) -> bool {
        fn go(p: &[GlobItem], s: &[char]) -> bool {
            match p.split_first() {
                None => s.is_empty(),
                Some((GlobItem::Any, rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
                Some((GlobItem::One, rest)) => !s.is_empty() && go(rest, &s[1..]),
                Some((GlobItem::Char(c), rest)) => s.first() == Some(c) && go(rest, &s[1..]),
            }
        }
        go(&self.0, s)
    }

    fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let ends: Vec<usize> = if greedy {
            (0..=chars.len()).rev().collect()
        } else {
            (0..=chars.len()).collect()
        };
        match ends.into_iter().find(|&e| self.matches(&chars[..e])) {
            Some(e) => chars[e..].iter().collect(),
            None => value.to_string(),
        }
    }

    fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let starts: Vec<usize> = if greedy {
            (0..=chars.len()).collect()
        } else {
            (0..=chars.len()).rev().collect()
        };
        match starts.into_iter().find(|&s| self.matches(&chars[s..])) {
            Some(s) => chars[..s].iter().collect(),
            None => value.to_string(),
        }
    }

    /// Replaces the leftmost (longest) match, or every match, of the pattern in `value`.
    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        let mut replaced = false;
        while i <= chars.len() {
            let found = if replaced && !all {
                None
            } else {
                (i..=chars.len())
                    .rev()
                    .find(|&e| self.matches(&chars[i..e]))
            };
            match found {
                Some(e) => {
                    out.push_str(replacement);
                    replaced = true;
                    if e == i {
                        if let Some(c) = chars.get(i) {
                            out.push(*c);
                        }
                        i += 1;
                    } else {
                        i = e;
                    }
                }
                None => {
                    if let Some(c) = chars.get(i) {
                        out.push(*c);
                    }
                    i += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PWD" => Some("/home".into()),
            "SHELL" => Some("bash".into()),
            "KOREAN" => Some("한국어".into()),
            "NULL" => Some(String::new()),
            "path" => Some("/usr/local/bin/app.tar.gz".into()),
            "space" => Some("abc  def".into()),
            "leading" => Some("  ab c".into()),
            _ => None,
        }
    }

    /// Docker's documented expansion cases (BuildKit's `envVarTest`); `None` is an error.
    #[test]
    fn words_expand_as_docker_does() {
        let cases: &[(&str, Option<&str>)] = &[
            ("hello", Some("hello")),
            ("he'll'o", Some("hello")),
            ("he'llo", None),
            (r"he\'llo", Some("he'llo")),
            (r"he\\'llo", None),
            (r"abc\tdef", Some("abctdef")),
            (r#""abc\tdef""#, Some(r"abc\tdef")),
            (r#""abc\\tdef""#, Some(r"abc\tdef")),
            (r"'abc\tdef'", Some(r"abc\tdef")),
            (r"hello\", Some("hello")),
            (r"hello\\", Some(r"hello\")),
            (r#""hello"#, None),
            (r#""hello\""#, None),
            (r#""hel'lo""#, Some("hel'lo")),
            ("'hello", None),
            (r"'hello\'", Some(r"hello\")),
            (r#""''""#, Some("''")),
            ("$.", Some("$.")),
            ("he$1x", Some("hex")),
            ("he$.x", Some("he$.x")),
            ("he$pwd.", Some("he.")),
            ("he$PWD", Some("he/home")),
            (r"he\$PWD", Some("he$PWD")),
            (r"he\\$PWD", Some(r"he\/home")),
            (r#""he\$PWD""#, Some("he$PWD")),
            (r#""he\\$PWD""#, Some(r"he\/home")),
            (r"\${}", Some("${}")),
            (r"he\${}xx", Some("he${}xx")),
            ("${}", None),
            ("he${}xx", None),
            ("he${hi}xx", Some("hexx")),
            ("he${PWD}", Some("he/home")),
            ("he${.}", None),
            ("he${XXX:-000}xx", Some("he000xx")),
            ("he${PWD:-000}xx", Some("he/homexx")),
            ("he${XXX:-$PWD}xx", Some("he/homexx")),
            ("he${XXX:-${PWD:-yyy}}xx", Some("he/homexx")),
            ("he${XXX:-${YYY:-yyy}}xx", Some("heyyyxx")),
            ("he${XXX:YYY}", None),
            ("he${XXX?}", None),
            ("he${XXX:?}", None),
            ("he${PWD?}", Some("he/home")),
            ("he${PWD:?}", Some("he/home")),
            ("he${NULL?}", Some("he")),
            ("he${NULL:?}", None),
            ("he${NULL-x}", Some("he")),
            ("he${NULL:-x}", Some("hex")),
            ("he${NULL+x}", Some("hex")),
            ("he${NULL:+x}", Some("he")),
            ("he${XXX:+${PWD}}xx", Some("hexx")),
            ("he${PWD:+${SHELL}}xx", Some("hebashxx")),
            ("he${PWD:+000}xx", Some("he000xx")),
            ("'he${XX}'", Some("he${XX}")),
            (r#""he'$PWD'""#, Some("he'/home'")),
            ("'$PWD'", Some("$PWD")),
            (r"'\$PWD'", Some(r"\$PWD")),
            ("he${PWD", None),
            ("he${PWD:=000}xx", None),
            ("he${PWD:+${PWD}:}xx", Some("he/home:xx")),
            (r"he${XXX:-\$PWD:}xx", Some("he$PWD:xx")),
            (r"he${XXX:-\${PWD}z}xx", Some("he${PWDz}xx")),
            ("안'녕'하세요", Some("안녕하세요")),
            ("안녕$KOREAN", Some("안녕한국어")),
            ("${{aaa}", None),
            ("${aaa}}", Some("}")),
            ("${aaa:-bbb}}", Some("bbb}")),
            ("${aaa:-bbb", None),
            ("${aaa:-bbb ${foo}", None),
            ("${aaa:-bbb {foo}", Some("bbb {foo")),
            ("${:}", None),
            ("${:-bbb}", None),
            ("${999:-bbb}aaa", Some("bbbaaa")),
            ("$001aaa", Some("aaa")),
            ("$@@@", Some("@@")),
            ("${@:-bbb}aaa", Some("bbbaaa")),
            ("$$", Some("")),
            ("${path#*/}", Some("usr/local/bin/app.tar.gz")),
            ("${path##*/}", Some("app.tar.gz")),
            ("${path%.*}", Some("/usr/local/bin/app.tar")),
            ("${path%%.*}", Some("/usr/local/bin/app")),
            ("${path#nomatch}", Some("/usr/local/bin/app.tar.gz")),
            (r"${path#/usr\/}", Some("local/bin/app.tar.gz")),
            ("${path/local/opt}", Some("/usr/opt/bin/app.tar.gz")),
            ("${path//\\//:}", Some(":usr:local:bin:app.tar.gz")),
            ("${path/a*r/X}", Some("/usr/locX.gz")),
            ("${path:#x}", None),
        ];
        let lex = Lexer::new('\\');
        for (word, want) in cases {
            let got = lex.expand(word, &env);
            match want {
                Some(w) => assert_eq!(got.as_deref(), Ok(*w), "{word}"),
                None => assert!(got.is_err(), "{word}: want an error, got {got:?}"),
            }
        }
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let lex = Lexer::new('\\');
        let msg = |w: &str| lex.expand(w, &env).unwrap_err().message;
        assert_eq!(msg("${X:?must be set}"), "X: must be set");
        assert_eq!(msg("${X?}"), "X: is not allowed to be unset");
        assert_eq!(msg("${NULL:?}"), "NULL: is not allowed to be empty");
        assert_eq!(msg("${X"), "syntax error: missing '}'");
        assert_eq!(
            msg("'a"),
            "unexpected end of statement while looking for matching single-quote"
        );
    }

    /// BuildKit's `wordsTest`.
    #[test]
    fn words_split_on_unquoted_whitespace() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("hello", Some(&["hello"])),
            ("hello${space}bye", Some(&["helloabc", "defbye"])),
            (r#"hello"${space}"bye"#, Some(&["helloabc  defbye"])),
            (r#"hello "${space}"bye"#, Some(&["hello", "abc  defbye"])),
            ("hello${leading}def", Some(&["hello", "ab", "cdef"])),
            (r#"hello"${leading}" def"#, Some(&["hello  ab c", "def"])),
            ("hello there     ", Some(&["hello", "there"])),
            (r"hello\ there", Some(&["hello there"])),
            (r#"hello" there"#, None),
            (r#"hello\" there"#, Some(&["hello\"", "there"])),
            (r#"hello"\\there""#, Some(&[r"hello\there"])),
            (r"hello'\\there'", Some(&[r"hello\\there"])),
            ("hello'$there'", Some(&["hello$there"])),
            ("80/tcp  443", Some(&["80/tcp", "443"])),
            ("", Some(&[])),
        ];
        let lex = Lexer::new('\\');
        for (text, want) in cases {
            let got = lex.expand_words(text, &env);
            match want {
                Some(w) => assert_eq!(got.unwrap(), *w, "{text}"),
                None => assert!(got.is_err(), "{text}: want an error, got {got:?}"),
            }
        }
    }

    #[test]
    fn step_names_keep_quotes_and_unset_variables() {
        let lex = Lexer::new('\\');
        for (text, want) in [
            (
                "echo \"$PWD\" '$PWD' $NOPE ${NOPE} ${NOPE:-x}",
                "echo \"/home\" '$PWD' $NOPE ${NOPE} ${NOPE:-x}",
            ),
            ("echo ${SHELL:+set}", "echo set"),
            ("echo 'unterminated", "echo 'unterminated"),
        ] {
            assert_eq!(lex.expand_for_display(text, &env), want, "{text}");
        }
    }

    #[test]
    fn backtick_is_the_escape_when_the_directive_says_so() {
        let lex = Lexer::new('`');
        assert_eq!(lex.expand(r"C:\dir`$PWD", &env).unwrap(), r"C:\dir$PWD");
        assert_eq!(lex.expand(r#""a`"b""#, &env).unwrap(), r#"a"b"#);
    }
}
