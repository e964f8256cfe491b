use super::*;

const KEY: &str = "django-insecure-vectors-+3l@7x!k#v9q(2m_e&w=z8r^t1y$u%i*o0p-a5s6d4f";
const T0: f64 = 1_700_000_000.0;
const ALICE_JSON: &str = r#"{"_auth_user_id":"1","_auth_user_backend":"django.contrib.auth.backends.ModelBackend","_auth_user_hash":"46e71aa4dc26325db0764062d24d5fb37893d3353cb24e695acc04b6d07c4b5e"}"#;

fn alice() -> String {
    db_signer().dumps(ALICE_JSON, 1_700_000_000, true)
}

fn db_signer() -> Signer {
    Signer::new("django.contrib.sessions.SessionStore", &Secret::new(KEY), &[])
}

#[test]
fn empty_session_from_the_format_doc_loads() {
    let v = db_signer().loads("e30:1r31eq:2ys4wGSmAjlhFdbeGmUOAOrjdSDVNDDFYhoydKhjlsI", None, T0).unwrap();
    assert!(v.as_object().unwrap().is_empty());
}

#[test]
fn signed_cookie_salt_differs_from_db_salt() {
    let sc = Signer::new(SIGNED_COOKIES_SALT, &Secret::new(KEY), &[]);
    let cookie = "e30:1r31eq:4CeFPRG75x317hw_B7PiSlb60Mrwrfo6dHtfpWr1vOM";
    assert!(sc.loads(cookie, Some(1209600.0), T0).is_ok());
    assert_eq!(db_signer().loads(cookie, None, T0), Err(SigningError::BadSignature));
}

#[test]
fn compressed_alice_session_loads() {
    let v = db_signer().loads(&alice(), None, T0).map_err(|e| e.to_string()).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(
        crate::django::pyjson::get(obj, "_auth_user_hash").and_then(|v| v.as_str()),
        Some("46e71aa4dc26325db0764062d24d5fb37893d3353cb24e695acc04b6d07c4b5e")
    );
}

#[test]
fn fallback_key_verifies() {
    let s =
        Signer::new("django.contrib.sessions.SessionStore", &Secret::new("new"), &[Secret::new("x"), Secret::new(KEY)]);
    assert!(s.loads(&alice(), None, T0).is_ok());
}

#[test]
fn non_canonical_signature_is_rejected() {
    // The last char of a 43-char signature carries 2 unused bits: 'I' (8) -> 'J' (9)
    // decodes to the same bytes but is not the canonical string.
    let good = alice();
    let last = good.chars().last().unwrap();
    // Flip the 2 unused low bits of the last sextet: same bytes, non-canonical text.
    const A: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = A.find(last).unwrap();
    let flipped = A.as_bytes()[idx ^ 1] as char;
    let bad = format!("{}{flipped}", &good[..good.len() - 1]);
    assert_eq!(db_signer().loads(&bad, None, T0), Err(SigningError::BadSignature));
    let padded = format!("{good}=");
    assert_eq!(db_signer().loads(&padded, None, T0), Err(SigningError::BadSignature));
}

#[test]
fn max_age_is_strictly_greater_at_sub_second_precision() {
    let sc = Signer::new(SIGNED_COOKIES_SALT, &Secret::new(KEY), &[]);
    let cookie = "e30:1r31eq:4CeFPRG75x317hw_B7PiSlb60Mrwrfo6dHtfpWr1vOM";
    assert!(sc.loads(cookie, Some(100.0), T0 + 100.0).is_ok());
    assert!(matches!(sc.loads(cookie, Some(100.0), T0 + 100.5), Err(SigningError::Expired { .. })));
    assert!(sc.loads(cookie, Some(100.0), T0 - 5000.0).is_ok(), "a future timestamp is accepted");
}

#[test]
fn no_separator_and_garbage_are_errors() {
    assert_eq!(db_signer().loads("abc", None, T0), Err(SigningError::NoSeparator));
    assert_eq!(db_signer().loads(":", None, T0), Err(SigningError::BadSignature));
}

#[test]
fn dumps_round_trips_and_matches_the_doc() {
    let s = db_signer();
    assert_eq!(s.dumps("{}", 1_700_000_000, true), "e30:1r31eq:2ys4wGSmAjlhFdbeGmUOAOrjdSDVNDDFYhoydKhjlsI");
    let json = r#"{"a":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}"#;
    let signed = s.dumps(json, 1_700_000_000, true);
    assert!(signed.starts_with('.'));
    assert!(s.loads(&signed, None, T0).is_ok());
}

#[test]
fn base62_matches_the_doc() {
    assert_eq!(b62_encode(1_700_000_000), "1r31eq");
    assert_eq!(b62_encode(1_780_000_000), "1wShJQ");
    assert_eq!(b62_decode("1wShJQ"), Some(1_780_000_000.0));
    assert_eq!(b62_decode(""), None);
    assert_eq!(b62_decode("-"), Some(-0.0));
    assert_eq!(b62_decode("a!"), None);
}

#[test]
fn python_base64_leniency() {
    assert_eq!(py_b64decode(b"e30"), Some(b"{}".to_vec()));
    assert_eq!(py_b64decode(b"e3!0"), None, "junk is skipped, then the padding is wrong");
    assert_eq!(py_b64decode(b"e3!0="), Some(b"{}".to_vec()), "junk is skipped");
    assert_eq!(py_b64decode(b"e"), None, "one dangling character");
    assert_eq!(py_b64decode(b"e30=e30"), Some(b"{}".to_vec()), "a pad sequence ends the input");
}
