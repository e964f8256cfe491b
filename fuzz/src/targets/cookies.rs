//! The `Cookie` header reader (`django::cookies`) on any header bytes.
//!
//! Properties: it never panics; `cookie_value` (what the bridge uses) and `parse_cookie`
//! (Django's dict) agree for every ASCII name, also for `sessionid` when it is absent;
//! names are unique; a header split in two and merged with `merge_headers` reads as the
//! first half's cookies updated by the second's (a dict `update`); a plain cookie, written
//! back as `name=value`, reads back as itself.

use switchyard::django::cookies::{cookie_value, merge_headers, parse_cookie};

/// Checks the properties above on one input; panics when one does not hold.
pub fn check(header: &[u8]) {
    let cookies = parse_cookie(header);
    for (i, (name, value)) in cookies.iter().enumerate() {
        assert!(cookies[..i].iter().all(|(n, _)| n != name), "duplicate name {name:?}");
        if !name.is_empty() && name.is_ascii() {
            assert_eq!(cookie_value(header, name).as_deref(), Some(value.as_str()), "cookie {name:?}");
        }
        if plain(name) && plain(value) && !value.starts_with('"') {
            let written = format!("{name}={value}");
            assert_eq!(parse_cookie(written.as_bytes()), [(name.clone(), value.clone())], "{written:?}");
        }
    }
    let session = cookies.iter().find(|(n, _)| n == "sessionid").map(|(_, v)| v.as_str());
    assert_eq!(cookie_value(header, "sessionid").as_deref(), session);

    let (first, second) = header.split_at(header.len() / 2);
    let mut want = parse_cookie(first);
    for (name, value) in parse_cookie(second) {
        match want.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => want.push((name, value)),
        }
    }
    assert_eq!(parse_cookie(&merge_headers([first, second])), want, "{first:?} + {second:?}");
}

/// Printable ASCII without `;` and without space at either end: survives the trip.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !s.contains(';')
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}
