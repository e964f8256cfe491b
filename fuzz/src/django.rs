//! Django's `Signer` and `salted_hmac`, from the format note (§1, §2, §6), with the keys of
//! `tests/django/make_fixtures.py`: the session blobs and cookies it makes through real
//! Django are the seeds, and they verify here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use switchyard::config::Secret;
use switchyard::django::signing::{Signer, DB_SALT_PREFIX, SIGNED_COOKIES_SALT};

/// make_fixtures.py's `NEW_KEY` (SECRET_KEY).
pub const SECRET_KEY: &str = "fixture-new-secret-key-\u{e9}\u{fc}-+3l@7x!k#v9q(2m_e&w=z8r^t1y$u%i";
/// make_fixtures.py's `OLD_KEY` (the one SECRET_KEY_FALLBACKS entry).
pub const SECRET_KEY_FALLBACK: &str = "fixture-old-secret-key-rotated-into-fallbacks";
/// Both keys, in the order Django tries them.
pub const KEYS: [&str; 2] = [SECRET_KEY, SECRET_KEY_FALLBACK];
/// The db / cached_db store's salt: the prefix and `SessionStore`.
pub const DB_SALT: &str = "django.contrib.sessions.SessionStore";
/// `SESSION_COOKIE_AGE` of the fixtures (two weeks).
pub const COOKIE_AGE_SECS: f64 = 1_209_600.0;
/// The salt of `get_session_auth_hash`.
pub const AUTH_HASH_SALT: &str = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash";
/// The backend every fixture logs in with.
pub const MODEL_BACKEND: &str = "django.contrib.auth.backends.ModelBackend";

/// The crate's signer for `salt`, keyed like the fixtures' Django.
pub fn signer(salt: &str) -> Signer {
    Signer::new(salt, &Secret::new(SECRET_KEY), &[Secret::new(SECRET_KEY_FALLBACK)])
}

/// Both salts the crate uses, as (salt, signer).
pub fn signers() -> [(&'static str, Signer); 2] {
    assert!(DB_SALT.starts_with(DB_SALT_PREFIX));
    [(DB_SALT, signer(DB_SALT)), (SIGNED_COOKIES_SALT, signer(SIGNED_COOKIES_SALT))]
}

fn hmac_key(salt: &str, secret: &str) -> [u8; 32] {
    Sha256::new().chain_update(salt).chain_update(secret).finalize().into()
}

/// `Signer.signature(value)`: b64url_nopad(HMAC-SHA256(SHA256(salt ‖ "signer" ‖ secret), value)).
pub fn signature(salt: &str, secret: &str, value: &[u8]) -> String {
    let key = hmac_key(&format!("{salt}signer"), secret);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(value);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// `Signer.sign(value)` under SECRET_KEY: `value ":" signature`.
pub fn sign(salt: &str, value: &str) -> String {
    format!("{value}:{}", signature(salt, SECRET_KEY, value.as_bytes()))
}

/// True when `s` is `value ":" sig` and `sig` is the canonical signature of `value` under
/// one of the keys: the only strings Django's `unsign` lets through.
pub fn is_signed(salt: &str, s: &str) -> bool {
    let Some((value, sig)) = s.rsplit_once(':') else {
        return false;
    };
    KEYS.iter().any(|k| signature(salt, k, value.as_bytes()) == sig)
}

/// `b62_encode`.
pub fn b62_encode(n: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = vec![];
    let mut n = n;
    loop {
        out.push(ALPHABET[(n % 62) as usize]);
        n /= 62;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII")
}

/// `b62_decode` in exact integer arithmetic, for values that fit in an i128.
pub fn b62_decode(s: &str) -> Option<i128> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if s.is_empty() {
        return None;
    }
    let mut n: i128 = 0;
    for c in digits.bytes() {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' => c - b'A' + 10,
            b'a'..=b'z' => c - b'a' + 36,
            _ => return None,
        };
        n = n.checked_mul(62)?.checked_add(d.into())?;
    }
    Some(if neg { -n } else { n })
}

/// `salted_hmac(AUTH_HASH_SALT, password, secret, algorithm="sha256").hexdigest()`.
pub fn auth_hash(secret: &str, password: &str) -> String {
    let key = hmac_key(AUTH_HASH_SALT, secret);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(password.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}
