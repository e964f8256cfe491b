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

mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// Sign an arbitrary `payload:ts` so it passes the HMAC and reaches the decoder.
    fn sign_raw(s: &Signer, value: &str) -> String {
        format!("{value}:{}", std::str::from_utf8(&signature(&s.keys[0], value)).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn loads_never_panics_on_random_text(s in "\\PC{0,300}") {
            let _ = db_signer().loads(&s, Some(10.0), T0);
        }

        #[test]
        fn decoding_a_validly_signed_hostile_payload_never_panics(
            dot in any::<bool>(),
            body in "[A-Za-z0-9_=+/!.:-]{0,200}",
            ts in "[-0-9A-Za-z!]{0,12}",
        ) {
            let s = db_signer();
            let value = format!("{}{body}:{ts}", if dot { "." } else { "" });
            let _ = s.loads(&sign_raw(&s, &value), Some(5.0), T0);
        }

        #[test]
        fn decoding_signed_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), zlib in any::<bool>()) {
            use base64::Engine;
            let s = db_signer();
            let data = if zlib {
                let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut z, &bytes).unwrap();
                z.finish().unwrap()
            } else {
                bytes.clone()
            };
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&data);
            let value = format!("{}{b64}:1r31eq", if zlib { "." } else { "" });
            let _ = s.loads(&sign_raw(&s, &value), None, T0);
        }

        #[test]
        fn cookie_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = crate::django::cookies::cookie_value(&bytes, "sessionid");
            let _ = crate::django::cookies::parse_cookie(&bytes);
        }
    }

    #[test]
    fn a_zip_bomb_is_capped() {
        let s = db_signer();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..(MAX_INFLATED_BYTES / zeros.len() + 2) {
            std::io::Write::write_all(&mut z, &zeros).unwrap();
        }
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(z.finish().unwrap());
        let signed = sign_raw(&s, &format!(".{b64}:1r31eq"));
        assert_eq!(s.loads(&signed, None, T0), Err(SigningError::Malformed("inflated payload too large")));
    }

    use crate::django::pyjson::Value;

    /// Signs a zlib-compressed payload of `json` with the stream cut or extended.
    fn signed_zlib(s: &Signer, json: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, json).unwrap();
        let mut bytes = z.finish().unwrap();
        edit(&mut bytes);
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        sign_raw(s, &format!(".{b64}:1r31eq"))
    }

    #[test]
    fn a_truncated_zlib_stream_is_malformed() {
        let s = db_signer();
        let signed = signed_zlib(&s, br#"{"_auth_user_id": "1", "pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#, |b| {
            b.truncate(b.len() - 6)
        });
        assert_eq!(s.loads(&signed, None, T0), Err(SigningError::Malformed("bad zlib stream")));
    }

    #[test]
    fn trailing_bytes_after_the_zlib_stream_are_ignored_like_python() {
        let s = db_signer();
        let signed = signed_zlib(&s, br#"{"a": 1}"#, |b| b.extend_from_slice(b"trailing"));
        let Value::Dict(entries) = s.loads(&signed, None, T0).unwrap() else { panic!("not an object") };
        assert_eq!(crate::django::pyjson::get(&entries, "a"), Some(&Value::Int("1".into())));
    }

    #[test]
    fn a_large_compressed_session_inflates_whole() {
        let s = db_signer();
        let json = format!(r#"{{"blob": "{}"}}"#, "ab".repeat(300_000));
        let signed = signed_zlib(&s, json.as_bytes(), |_| {});
        let Value::Dict(entries) = s.loads(&signed, None, T0).unwrap() else { panic!("not an object") };
        let blob = crate::django::pyjson::get(&entries, "blob").and_then(Value::as_str).map(str::len);
        assert_eq!(blob, Some(600_000));
    }
}
