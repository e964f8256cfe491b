//! The `Cookie` request header, read exactly as Django's `django.http.cookie.parse_cookie`
//! reads it (django-session-format.md §5).
//!
//! Django splits on `;`, splits each part on its first `=` (a part without `=` is a value
//! with an empty name), strips whitespace from name and value, unquotes the value with
//! Python's `http.cookies._unquote`, and stores the pairs in a dict, so the last duplicate
//! wins. Names are case-sensitive. Under WSGI the header reaches Django as latin-1 text, so
//! this module reads bytes as latin-1 and strips what Python's `str.strip()` strips.
//!
//! Merging several `Cookie` headers is the caller's job: join them with `"; "` first.

use std::borrow::Cow;

/// The value of cookie `name` in a `Cookie` header, as Django's `request.COOKIES[name]`
/// would hold it; `None` when the cookie is absent.
///
/// Called once per upgrade with the merged header. Allocates only for the returned value
/// when it is not plain ASCII or when it was quoted.
pub fn cookie_value<'a>(header: &'a [u8], name: &str) -> Option<Cow<'a, str>> {
    let mut found: Option<&'a [u8]> = None;
    for chunk in header.split(|&b| b == b';') {
        let (key, val) = match chunk.iter().position(|&b| b == b'=') {
            Some(i) => (&chunk[..i], &chunk[i + 1..]),
            None => (&chunk[..0], chunk),
        };
        let key = py_strip(key);
        if key == name.as_bytes() {
            // `if key or val:` never skips here: the name we look for is not empty.
            found = Some(py_strip(val));
        }
    }
    found.map(|raw| unquote(latin1(raw)))
}

/// Several `Cookie` headers (HTTP/2 clients may split them) as one, joined with `"; "` as
/// Django 6 joins them (django-session-format.md §5). Forward the same merged header to
/// Django so that both read the same cookies.
pub fn merge_headers<'a>(headers: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for h in headers {
        let h = h.strip_suffix(b"; ").unwrap_or(h);
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(h);
    }
    out
}

/// Every cookie in the header, in Django's dict semantics (last duplicate wins, kept at
/// the position where the name first appeared). Used by tests and the `whois` command.
pub fn parse_cookie(header: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for chunk in header.split(|&b| b == b';') {
        let (key, val) = match chunk.iter().position(|&b| b == b'=') {
            Some(i) => (&chunk[..i], &chunk[i + 1..]),
            None => (&chunk[..0], chunk),
        };
        let (key, val) = (py_strip(key), py_strip(val));
        if key.is_empty() && val.is_empty() {
            continue;
        }
        let key = latin1(key).into_owned();
        let val = unquote(latin1(val)).into_owned();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = val,
            None => out.push((key, val)),
        }
    }
    out
}

/// Python's `str.isspace()` for a latin-1 character.
fn py_is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f | 0x85 | 0xa0)
}

fn py_strip(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !py_is_space(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !py_is_space(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Bytes as latin-1 text, as WSGI hands headers to Django.
fn latin1(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) if bytes.is_ascii() => Cow::Borrowed(s),
        _ => Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
    }
}

/// Python's `http.cookies._unquote`: only a value wrapped in double quotes is touched;
/// inside, `\ooo` (first digit 0-3) is an octal character and `\x` is `x` (any character
/// except a newline, which `.` does not match).
fn unquote(s: Cow<'_, str>) -> Cow<'_, str> {
    let inner = match s.as_bytes() {
        [b'"', .., b'"'] if s.len() >= 2 => &s[1..s.len() - 1],
        _ => return s,
    };
    let chars: Vec<char> = inner.chars().collect();
    let mut out = String::with_capacity(inner.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            let octal = chars.len() >= i + 4
                && ('0'..='3').contains(&chars[i + 1])
                && ('0'..='7').contains(&chars[i + 2])
                && ('0'..='7').contains(&chars[i + 3]);
            if octal {
                let v = chars[i + 1..i + 4].iter().fold(0u32, |a, d| a * 8 + (*d as u32 - '0' as u32));
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                i += 4;
                continue;
            }
            if chars[i + 1] != '\n' {
                out.push(chars[i + 1]);
                i += 2;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(h: &str, name: &str) -> Option<String> {
        cookie_value(h.as_bytes(), name).map(|c| c.into_owned())
    }

    #[test]
    fn last_duplicate_wins() {
        assert_eq!(get("sessionid=aaa; sessionid=bbb", "sessionid").as_deref(), Some("bbb"));
    }

    #[test]
    fn names_are_case_sensitive() {
        assert_eq!(get("SessionId=aaa", "sessionid"), None);
    }

    #[test]
    fn whitespace_is_stripped_like_python() {
        assert_eq!(get(" \t sessionid = abc \x1f; x=1", "sessionid").as_deref(), Some("abc"));
    }

    #[test]
    fn quoted_values_are_unquoted() {
        assert_eq!(get(r#"sessionid="a\"b\\c\101\z""#, "sessionid").as_deref(), Some("a\"b\\cAz"));
        assert_eq!(get(r#"sessionid=""#, "sessionid").as_deref(), Some("\""));
        assert_eq!(get(r#"sessionid="""#, "sessionid").as_deref(), Some(""));
    }

    #[test]
    fn part_without_equals_has_empty_name() {
        assert_eq!(parse_cookie(b"abc; a=1"), vec![("".into(), "abc".into()), ("a".into(), "1".into())]);
    }

    #[test]
    fn value_keeps_later_equals_signs() {
        assert_eq!(get("sessionid=a=b", "sessionid").as_deref(), Some("a=b"));
    }

    #[test]
    fn several_headers_merge_with_semicolons() {
        let merged = merge_headers([&b"a=1; "[..], b"sessionid=K"]);
        assert_eq!(merged, b"a=1; sessionid=K");
        assert_eq!(get(std::str::from_utf8(&merged).unwrap(), "sessionid").as_deref(), Some("K"));
    }

    #[test]
    fn latin1_bytes_are_chars() {
        assert_eq!(cookie_value(b"sessionid=\xe9t\xa0", "sessionid").unwrap(), "\u{e9}t");
    }
}
