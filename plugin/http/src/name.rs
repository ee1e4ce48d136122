//! The name a downloaded file gets, by BuildKit's rules (`getFileName`, `SafeFileName`).

/// The name of the file a download of `url` is written to: `manual` (the source's
/// `http.filename`) if given, else the `filename` parameter of the response's
/// `Content-Disposition`, else the URL path's last segment (percent-decoded), else `index`.
/// Whatever is chosen is reduced to its last path component; a name that is empty, `.`, `..` or
/// holds control characters becomes `index`.
pub fn file_name(url: &str, manual: Option<&str>, content_disposition: Option<&str>) -> String {
    if let Some(name) = manual.filter(|m| !m.is_empty()) {
        return safe_file_name(name);
    }
    if let Some(name) = content_disposition.and_then(disposition_file_name) {
        if !name.ends_with('/') && !base(&name).is_empty() {
            return safe_file_name(&name);
        }
    }
    let path = url_path(url);
    let last = base(path.trim_end_matches('/'));
    if last.is_empty() {
        return DEFAULT_NAME.to_string();
    }
    safe_file_name(&percent_decode(last))
}

/// BuildKit named such files `index` before it chose `download`; oxkit keeps `index`.
const DEFAULT_NAME: &str = "index";

fn safe_file_name(name: &str) -> String {
    let name = base(name.trim().trim_end_matches('/'));
    if name.is_empty() || name == "." || name == ".." || name.chars().any(char::is_control) {
        DEFAULT_NAME.to_string()
    } else {
        name.to_string()
    }
}

/// The last `/`-separated component.
fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The path of `url`: after the authority, before the query or fragment.
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    rest.find('/').map_or("", |i| &rest[i..])
}

/// `%XX` escapes decoded; the input itself if the result is not UTF-8.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// The `filename` parameter of a `Content-Disposition` value (quoted or a token).
fn disposition_file_name(value: &str) -> Option<String> {
    let mut params = value.split(';').skip(1);
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("filename") {
            return None;
        }
        let v = v.trim();
        let v = match v.strip_prefix('"') {
            Some(q) => q
                .strip_suffix('"')?
                .replace("\\\"", "\"")
                .replace("\\\\", "\\"),
            None => v.to_string(),
        };
        Some(v).filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_buildkit() {
        let cases: &[(&str, Option<&str>, Option<&str>, &str)] = &[
            ("https://h/a/b.tar.gz", None, None, "b.tar.gz"),
            ("https://h/a/b.tar.gz?x=1#f", None, None, "b.tar.gz"),
            ("https://h/a/dir/", None, None, "dir"),
            ("https://h/", None, None, "index"),
            ("https://h", None, None, "index"),
            ("https://h/a%20b.txt", None, None, "a b.txt"),
            ("https://h/a/..", None, None, "index"),
            (
                "https://h/a/b",
                Some("given"),
                Some("attachment; filename=cd"),
                "given",
            ),
            ("https://h/a/b", Some("../x/y"), None, "y"),
            (
                "https://h/a/b",
                None,
                Some("attachment; filename=\"c d.txt\""),
                "c d.txt",
            ),
            (
                "https://h/a/b",
                None,
                Some("attachment; filename=../../etc/passwd"),
                "passwd",
            ),
            (
                "https://h/a/b",
                None,
                Some("attachment; filename=dir/"),
                "b",
            ),
            ("https://h/a/b", None, Some("inline"), "b"),
            ("https://h/a/b%0A", None, None, "b"),
            ("https://h/a/b%01c", None, None, "index"),
        ];
        for (url, manual, cd, want) in cases {
            assert_eq!(
                file_name(url, *manual, *cd),
                *want,
                "{url} {manual:?} {cd:?}"
            );
        }
    }
}
