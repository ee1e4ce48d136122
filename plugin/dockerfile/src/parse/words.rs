//! Word-level syntax shared by the instructions: BuildKit's word splitting (quotes and escapes
//! kept), `KEY=VALUE` lists, heredoc words, CSV fields, Go durations and go-units sizes.

/// Splits `rest` into words at unquoted whitespace, keeping quotes and escapes as written
/// (BuildKit's `parseWords`).
pub(super) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let at_end = i >= chars.len();
        let mut ch = chars.get(i).copied().unwrap_or('\0');
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                word.push(ch);
                i += 1;
                ch = chars[i];
            }
            word.push(ch);
            i += 1;
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            word.push(ch);
            i += 1;
            ch = chars[i];
        }
        word.push(ch);
        i += 1;
    }
    words
}

/// Why a `KEY=VALUE` list is malformed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NameValError {
    /// Nothing given.
    Empty,
    /// Legacy `KEY VALUE` form with no value.
    LegacyNoValue,
    /// A word without `=` in the `KEY=VALUE` form.
    NoEquals(String),
    /// `=VALUE`.
    BlankName,
}

/// `ENV`/`LABEL` arguments: `k=v k2="v 2"` or the legacy `k v w` (→ `("k", "v w")`, only if
/// `legacy`); keys and values as written (BuildKit's `parseNameVal`).
pub(super) fn name_vals(
    rest: &str,
    escape: char,
    legacy: bool,
) -> Result<Vec<(String, String)>, NameValError> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(NameValError::Empty);
    };
    if !first.contains('=') {
        if !legacy {
            return Err(NameValError::NoEquals(first.clone()));
        }
        let rest = rest.trim_start_matches(is_go_space);
        let Some(split) = rest.find(is_go_space) else {
            return Err(NameValError::LegacyNoValue);
        };
        let value = rest[split..].trim_start_matches(is_go_space);
        if value.is_empty() {
            return Err(NameValError::LegacyNoValue);
        }
        return Ok(vec![(rest[..split].to_string(), value.to_string())]);
    }
    let mut out = Vec::with_capacity(words.len());
    for word in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(NameValError::NoEquals(word));
        };
        if k.is_empty() {
            return Err(NameValError::BlankName);
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn is_go_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"`, `2<<EOF` → `(name, chomp, expand)`: BuildKit's
/// `^(\d*)<<(-?)([^<]*)$`, the name unquoted; quoting any part turns expansion off.
pub(super) fn heredoc_word(word: &str) -> Option<(String, bool, bool)> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let mut name = String::new();
    let mut quote: Option<char> = None;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (Some('\''), _) => name.push(c),
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    name.push(n);
                }
            }
            _ => name.push(c),
        }
    }
    if name.is_empty() {
        return None;
    }
    // BuildKit: expand unless unquoting the word removed quote characters.
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = quotes(&name) == quotes(rest);
    Some((name, chomp, expand))
}

/// A flag name or value as BuildKit's `extractBuilderFlags` reads it: quotes removed, and a
/// backslash takes the next character literally.
pub(super) fn unquote_flag(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Splits a CSV record (`a=b,"c=d,e"`) into fields, as Go's `encoding/csv` reads one line (how
/// BuildKit reads `--mount` and `buildctl` its `--output`): a field that starts with `"` is
/// quoted, `""` inside it is one `"`; a `"` inside an unquoted field is kept as it is.
pub fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(format!("unterminated quote in {s:?}")),
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => {}
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field in {s:?}")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
        }
        out.push(field);
    }
}

/// A Go duration (`30s`, `1m30s`, `500ms`, `1.5h`, `0`) in nanoseconds; negative durations are
/// refused.
pub(super) fn go_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration {s:?} (use a Go duration like 30s, 1m30s or 500ms)");
    let mut rest = s;
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    } else if rest.starts_with('-') {
        return Err(format!("duration {s:?} cannot be negative"));
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, r) = rest.split_at(int_len);
        let (frac, r) = match r.strip_prefix('.') {
            Some(r) => {
                let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                r.split_at(n)
            }
            None => ("", r),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let unit_len = r
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(r.len());
        let (unit, r) = r.split_at(unit_len);
        let mult: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {s:?} (e.g. 30s)")),
            _ => return Err(format!("unknown unit {unit:?} in duration {s:?}")),
        };
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let mut value = whole.checked_mul(mult).ok_or_else(bad)?;
        let mut scale = mult;
        for d in frac.chars().take(30) {
            scale /= 10;
            value += u128::from(d.to_digit(10).unwrap_or(0)) * scale;
        }
        total = total.checked_add(value).ok_or_else(bad)?;
        rest = r;
    }
    u64::try_from(total).map_err(|_| bad())
}

/// A size in bytes as go-units' `RAMInBytes` reads it: `1024`, `64m`, `1.5g`, `512KiB`
/// (binary multiples).
pub(super) fn ram_in_bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {s:?} (use bytes or a suffix like 64m or 1g)");
    let num_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(num_len);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.contains("..") {
        return Err(bad());
    }
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0f64.powi(3),
        "t" => 1024.0f64.powi(4),
        "p" => 1024.0f64.powi(5),
        _ => return Err(bad()),
    };
    // go-units accepts `1.2.3` by its regex but fails to parse it as a float.
    let value: f64 = num.parse().map_err(|_| bad())?;
    let bytes = value * mult;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words(r#"a="b c" d='$x' e\ f"#, '\\'),
            vec![r#"a="b c""#, "d='$x'", r"e\ f"]
        );
        assert_eq!(parse_words("  ", '\\'), Vec::<String>::new());
        assert_eq!(parse_words(r#"a="" "#, '\\'), vec![r#"a="""#]);
        assert_eq!(parse_words("a` b", '`'), vec!["a` b"]);
    }

    #[test]
    fn name_vals_new_and_legacy() {
        assert_eq!(
            name_vals(r#"k=v k2="v 2""#, '\\', true).unwrap(),
            vec![("k".into(), "v".into()), ("k2".into(), "\"v 2\"".into())]
        );
        assert_eq!(
            name_vals("k v  w", '\\', true).unwrap(),
            vec![("k".into(), "v  w".into())]
        );
        assert_eq!(name_vals("k", '\\', true), Err(NameValError::LegacyNoValue));
        assert_eq!(
            name_vals("k v", '\\', false),
            Err(NameValError::NoEquals("k".into()))
        );
        assert_eq!(
            name_vals("a=1 b", '\\', true),
            Err(NameValError::NoEquals("b".into()))
        );
        assert_eq!(name_vals("=1", '\\', true), Err(NameValError::BlankName));
    }

    #[test]
    fn heredoc_words() {
        assert_eq!(heredoc_word("<<EOF"), Some(("EOF".into(), false, true)));
        assert_eq!(heredoc_word("<<-EOF"), Some(("EOF".into(), true, true)));
        assert_eq!(
            heredoc_word("<<\"EOF\""),
            Some(("EOF".into(), false, false))
        );
        assert_eq!(heredoc_word("<<'E'OF"), Some(("EOF".into(), false, false)));
        assert_eq!(heredoc_word("<<\\EOF"), Some(("EOF".into(), false, true)));
        assert_eq!(heredoc_word("2<<EOF"), Some(("EOF".into(), false, true)));
        assert_eq!(heredoc_word("<<"), None);
        assert_eq!(heredoc_word("a<<EOF"), None);
        assert_eq!(heredoc_word("<<<EOF"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration("30s"), Ok(30_000_000_000));
        assert_eq!(go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(go_duration("500ms"), Ok(500_000_000));
        assert_eq!(go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(go_duration("0"), Ok(0));
        assert!(go_duration("30").is_err());
        assert!(go_duration("-1s").is_err());
        assert!(go_duration("1x").is_err());
        assert!(go_duration("").is_err());
        assert!(go_duration(".s").is_err());
        assert!(go_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(ram_in_bytes("1024"), Ok(1024));
        assert_eq!(ram_in_bytes("64m"), Ok(64 << 20));
        assert_eq!(ram_in_bytes("1g"), Ok(1 << 30));
        assert_eq!(ram_in_bytes("1.5k"), Ok(1536));
        assert_eq!(ram_in_bytes("2MiB"), Ok(2 << 20));
        assert_eq!(ram_in_bytes("2 GB"), Ok(2 << 30));
        assert!(ram_in_bytes("m").is_err());
        assert!(ram_in_bytes("1x").is_err());
        assert!(ram_in_bytes("1..2").is_err());
    }

    #[test]
    fn csv() {
        assert_eq!(csv_fields("a=b,c").unwrap(), vec!["a=b", "c"]);
        assert_eq!(csv_fields("\"a=b,c\",d").unwrap(), vec!["a=b,c", "d"]);
        assert_eq!(csv_fields("").unwrap(), vec![""]);
        assert!(csv_fields("\"a").is_err());
    }
}
