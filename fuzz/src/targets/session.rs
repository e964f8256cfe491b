//! What the session bridge does with a blob whose signature is good: the envelope
//! (`.` flag, Python's lenient base64, zlib, base62 timestamp), `pyjson`, then
//! `AuthPolicy::claims` and `verify` (django-session-format.md §2, §6). The target signs
//! the input itself, so every input reaches the decoder.
//!
//! The first byte picks what the rest is (bits 0-1) and the policy (bit 2: UUID pks,
//! bit 3: the user row is inactive):
//! - 0 or 3, *envelope*: the text before the signature, `[.]b64:ts`.
//! - 1, *json*: the payload; the target wraps it plain and zlib-compressed.
//! - 2, *zlib*: a raw zlib stream; the target wraps it with the `.` flag.
//!
//! Properties: nothing panics; decoding agrees with independent decoders (strict base64,
//! miniz_oxide's one-shot inflate with the same size cap, `pyjson` on the bytes), so the
//! envelope adds and loses nothing; a user comes out of `verify` exactly when the session
//! names an allowed backend, the row is active or the backend lets inactive users in, and
//! `_auth_user_hash` is the HMAC of the row's password under SECRET_KEY or the fallback.

use std::io::Write;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use switchyard::config::Secret;
use switchyard::django::auth::{AuthPolicy, PkType, UserRow, BACKEND_SESSION_KEY, HASH_SESSION_KEY};
use switchyard::django::pyjson::{self, Value};
use switchyard::django::signing::{SigningError, MAX_INFLATED_BYTES};
use switchyard::django::{Anonymous, Identity};

use crate::django::{auth_hash, b62_encode, sign, signer, DB_SALT, KEYS, MODEL_BACKEND};
use crate::pyjson::same;

const NOW: f64 = 1_780_000_000.0;
/// The password column of the user row every session is checked against.
const PASSWORD: &str = "pbkdf2_sha256$1000000$fuzz$c2FsdGVkLWhhc2gtb2YtdGhlLWZ1enotcGFzc3dvcmQ=";
const ALLOW_ALL: &str = "django.contrib.auth.backends.AllowAllUsersModelBackend";

/// Checks the properties above on one input; panics when one does not hold.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let signer = signer(DB_SALT);
    let ts = b62_encode(NOW as u64 - 60);
    let decoded = match mode & 3 {
        1 => {
            let expected = pyjson::parse_latin1(rest).ok();
            let plain = format!("{}:{ts}", URL_SAFE_NO_PAD.encode(rest));
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(rest).expect("to a Vec");
            let compressed = format!(".{}:{ts}", URL_SAFE_NO_PAD.encode(z.finish().expect("to a Vec")));
            for value in [plain, compressed] {
                let got = signer.loads(&sign(DB_SALT, &value), None, NOW);
                match (&got, &expected) {
                    (Ok(v), Some(e)) => assert!(same(v, e), "{value:?}: {v:?} != {e:?}"),
                    (Err(SigningError::Malformed(_)), None) => {}
                    _ => panic!("{value:?}: loads gave {got:?}, pyjson {expected:?}"),
                }
            }
            expected
        }
        2 => {
            let value = format!(".{}:{ts}", URL_SAFE_NO_PAD.encode(rest));
            let got = signer.loads(&sign(DB_SALT, &value), None, NOW);
            let inflated = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(rest, MAX_INFLATED_BYTES).ok();
            let expected = inflated.as_deref().map(pyjson::parse_latin1);
            match (&got, &expected) {
                (Ok(v), Some(Ok(e))) => assert!(same(v, e), "{v:?} != {e:?}"),
                (Err(SigningError::Malformed(_)), None | Some(Err(_))) => {}
                _ => panic!("zlib {rest:?}: loads gave {got:?}, miniz_oxide + pyjson {expected:?}"),
            }
            got.ok()
        }
        _ => {
            let Ok(value) = std::str::from_utf8(rest) else { return };
            let got = signer.loads_with_timestamp(&sign(DB_SALT, value), None, NOW);
            if let Some(expected) = strict_decode(value) {
                match (&got, &expected) {
                    (Ok((v, _)), Some(e)) => assert!(same(v, e), "{value:?}: {v:?} != {e:?}"),
                    (Err(SigningError::Malformed(_)), None) => {}
                    _ => panic!("{value:?}: loads gave {got:?}, strict decoding {expected:?}"),
                }
            }
            got.ok().map(|(v, _)| v)
        }
    };
    if let Some(session) = decoded {
        check_user(&session, mode & 4 != 0, mode & 8 == 0);
    }
}

/// The envelope decoded with a strict (canonical) base64 reader, when the text is canonical:
/// `Some(None)` when it decodes but is not a session Django could read.
fn strict_decode(value: &str) -> Option<Option<Value>> {
    let (payload, ts) = value.rsplit_once(':')?;
    crate::django::b62_decode(ts)?;
    let (compressed, b64) = match payload.strip_prefix('.') {
        Some(b64) => (true, b64),
        None => (false, payload),
    };
    let raw = URL_SAFE_NO_PAD.decode(b64).ok()?;
    let bytes = if compressed {
        match miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&raw, MAX_INFLATED_BYTES) {
            Ok(bytes) => bytes,
            Err(_) => return Some(None),
        }
    } else {
        raw
    };
    Some(pyjson::parse_latin1(&bytes).ok())
}

/// `claims` then `verify` against a row with `PASSWORD`, compared with what Django decides.
fn check_user(session: &Value, uuid_pk: bool, is_active: bool) {
    let secret = Secret::new(KEYS[0]);
    let fallbacks = [Secret::new(KEYS[1])];
    let pk_type = if uuid_pk { PkType::Uuid } else { PkType::Int };
    let policy = AuthPolicy::new(vec![MODEL_BACKEND.into(), ALLOW_ALL.into()], true, pk_type, &secret, &fallbacks);
    let Ok(claims) = policy.claims(session) else { return };
    let obj = session.as_object().expect("claims come from an object");
    let backend = pyjson::get(obj, BACKEND_SESSION_KEY).and_then(Value::as_str);
    assert!(matches!(backend, Some(MODEL_BACKEND | ALLOW_ALL)), "claims with backend {backend:?}");
    assert_eq!(policy.verify(&claims, None), Identity::Anonymous(Anonymous::NoSuchUser));

    let row = UserRow {
        id: claims.pk.to_id_string(),
        username: "alice".into(),
        password: PASSWORD.into(),
        is_active,
        is_staff: false,
        is_superuser: false,
    };
    let hash = pyjson::get(obj, HASH_SESSION_KEY).and_then(Value::as_str);
    let hash_ok = KEYS.iter().any(|k| hash == Some(auth_hash(k, PASSWORD).as_str()));
    let may_enter = is_active || backend == Some(ALLOW_ALL);
    match policy.verify(&claims, Some(row)) {
        Identity::User(user) => {
            assert!(hash_ok && may_enter, "{session:?} let in (active: {is_active})");
            assert_eq!(user.id, claims.pk.to_id_string());
        }
        Identity::Anonymous(reason) => assert!(!(hash_ok && may_enter), "{session:?} refused: {reason}"),
    }
}
