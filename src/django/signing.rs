//! Django's signed-object envelope: `django.core.signing.loads` with a `TimestampSigner`
//! (django-session-format.md §1–§2), and the secrets it is keyed with.
//!
//! ```text
//! [ "." ] b64url_nopad( json | zlib(json) ) ":" base62(ts) ":" b64url_nopad(HMAC-SHA256)
//! HMAC key = SHA256(salt ‖ "signer" ‖ secret), message = everything before the last ':'
//! ```
//!
//! The signature is compared as a *string* in constant time against the canonical
//! encoding, so a non-canonical base64 signature is rejected as Django rejects it. The
//! payload is only decoded after the HMAC has been verified. JSON parsing is `pyjson`'s;
//! what the session means is `auth`'s.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::pyjson::{self, Value};

type HmacSha256 = Hmac<Sha256>;

/// The salt of the db, cached_db, file and cache stores is `"django.contrib.sessions." +
/// the store class's `__qualname__`; this is the prefix.
pub const DB_SALT_PREFIX: &str = "django.contrib.sessions.";
/// The salt of the signed_cookies store (no qualname in it).
pub const SIGNED_COOKIES_SALT: &str = "django.contrib.sessions.backends.signed_cookies";
/// Django never limits the inflated size (it only inflates data with a valid HMAC); we
/// cap it far above any real session so that a leaked key cannot make us allocate
/// without bound.
pub const MAX_INFLATED_BYTES: usize = 8 * 1024 * 1024;

/// A secret key (SECRET_KEY or one of SECRET_KEY_FALLBACKS): config's masked type.
pub use crate::config::Secret;

/// Why a signed value did not load. Django turns every one of these into an empty
/// session; we keep them apart for the `whois` reason and the logs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SigningError {
    #[error("no ':' separator in the signed value")]
    NoSeparator,
    #[error("signature does not match under SECRET_KEY or any fallback")]
    BadSignature,
    #[error("signature older than the maximum age ({max_age_secs} s)")]
    Expired { max_age_secs: f64 },
    #[error("signed value is malformed: {0}")]
    Malformed(&'static str),
}

/// HMAC keys for one salt, derived once: `SHA256(salt ‖ "signer" ‖ secret)` for
/// SECRET_KEY first, then each fallback (the order Django tries them in).
#[derive(Clone)]
pub struct Signer {
    keys: Vec<HmacSha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} keys)", self.keys.len())
    }
}

impl Signer {
    pub fn new(salt: &str, secret: &Secret, fallbacks: &[Secret]) -> Self {
        let keys = std::iter::once(secret)
            .chain(fallbacks)
            .map(|k| {
                let mut h = Sha256::new();
                h.update(salt.as_bytes());
                h.update(b"signer");
                h.update(k.expose().as_bytes());
                HmacSha256::new_from_slice(&h.finalize()).expect("HMAC takes any key length")
            })
            .collect();
        Signer { keys }
    }

    /// `signing.loads(s, salt, max_age)`: verify, check the age when `max_age` is given
    /// (`now - ts > max_age` fails, at the precision of `now_secs`), inflate, parse.
    /// `Ok` holds whatever JSON value was signed (Django accepts non-objects here too).
    pub fn loads(&self, s: &str, max_age: Option<f64>, now_secs: f64) -> Result<Value, SigningError> {
        self.loads_with_timestamp(s, max_age, now_secs).map(|(v, _)| v)
    }

    /// [`Signer::loads`], also returning the signing timestamp (Unix seconds).
    pub fn loads_with_timestamp(
        &self,
        s: &str,
        max_age: Option<f64>,
        now_secs: f64,
    ) -> Result<(Value, f64), SigningError> {
        let value = self.unsign(s)?;
        let (payload, ts) = value.rsplit_once(':').ok_or(SigningError::Malformed("no timestamp"))?;
        let ts = b62_decode(ts).ok_or(SigningError::Malformed("timestamp is not base62"))?;
        if let Some(max) = max_age {
            if now_secs - ts > max {
                return Err(SigningError::Expired { max_age_secs: max });
            }
        }
        let bytes = decode_payload(payload)?;
        let v = pyjson::parse_latin1(&bytes).map_err(|_| SigningError::Malformed("payload is not JSON"))?;
        Ok((v, ts))
    }

    /// `Signer.unsign`: split at the last ':' and compare the signature string with the
    /// canonical one under each key, in constant time per key.
    fn unsign<'a>(&self, s: &'a str) -> Result<&'a str, SigningError> {
        let (value, sig) = s.rsplit_once(':').ok_or(SigningError::NoSeparator)?;
        for key in &self.keys {
            if constant_time_eq(sig.as_bytes(), &signature(key, value)) {
                return Ok(value);
            }
        }
        Err(SigningError::BadSignature)
    }

    /// `signing.dumps` for a JSON text already in Django's compact ASCII form. Used by
    /// tests and benchmarks to build values; the proxy itself never signs sessions.
    pub fn dumps(&self, json: &str, now_secs: i64, compress: bool) -> String {
        use base64::Engine;
        let mut data = json.as_bytes().to_vec();
        let mut flag = "";
        if compress {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
            std::io::Write::write_all(&mut z, &data).expect("writing to a Vec");
            let z = z.finish().expect("writing to a Vec");
            if z.len() + 1 < data.len() {
                data = z;
                flag = ".";
            }
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&data);
        let value = format!("{flag}{b64}:{}", b62_encode(now_secs));
        let sig = signature(&self.keys[0], &value);
        format!("{value}:{}", std::str::from_utf8(&sig).expect("base64 is ASCII"))
    }
}

/// `base64_hmac`: the HMAC-SHA256 of `value`, unpadded URL-safe base64 (43 characters).
fn signature(key: &HmacSha256, value: &str) -> [u8; 43] {
    use base64::Engine;
    let mut mac = key.clone();
    mac.update(value.as_bytes());
    let mut out = [0u8; 43];
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode_slice(mac.finalize().into_bytes(), &mut out)
        .expect("32 bytes encode to 43 characters");
    out
}

/// `secrets.compare_digest` on two byte strings: the length may leak, the content not.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `b62_decode`: `"0"` is zero, a leading `-` negates, any other character than
/// `0-9A-Za-z` fails, the empty string fails. Python's ints are unbounded; a value too
/// large for an f64 fails, as Python's `time.time() - ts` would.
fn b62_decode(s: &str) -> Option<f64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) if !s.is_empty() => (true, rest),
        _ => (false, s),
    };
    if s.is_empty() {
        return None;
    }
    let mut acc: f64 = 0.0;
    for c in digits.chars() {
        let d = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            'a'..='z' => c as u32 - 'a' as u32 + 36,
            _ => return None,
        };
        acc = acc * 62.0 + d as f64;
    }
    if !acc.is_finite() {
        return None;
    }
    Some(if neg { -acc } else { acc })
}

fn b62_encode(mut n: i64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    if n == 0 {
        return "0".into();
    }
    let neg = n < 0;
    let mut out = Vec::new();
    while n != 0 {
        out.push(ALPHABET[(n % 62).unsigned_abs() as usize]);
        n /= 62;
    }
    if neg {
        out.push(b'-');
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII")
}

/// `unsign_object` after the HMAC: strip the `.` flag, base64-decode leniently (Python's
/// `urlsafe_b64decode`), inflate when flagged (a zlib stream; trailing bytes ignored, as
/// `zlib.decompress` ignores them).
fn decode_payload(payload: &str) -> Result<Vec<u8>, SigningError> {
    let (compressed, b64) = match payload.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, payload),
    };
    let raw = py_b64decode(b64.as_bytes()).ok_or(SigningError::Malformed("bad base64"))?;
    if !compressed {
        return Ok(raw);
    }
    inflate(&raw)
}

thread_local! {
    /// One zlib state per thread, reset per use: a fresh one allocates its window, which
    /// was most of the cost of an uncached session lookup (zlib-rs's reset keeps it).
    static INFLATER: std::cell::RefCell<flate2::Decompress> = std::cell::RefCell::new(flate2::Decompress::new(true));
}

/// Inflates a zlib stream (trailing bytes ignored, as `zlib.decompress` ignores them), at
/// most `MAX_INFLATED_BYTES` of output.
fn inflate(raw: &[u8]) -> Result<Vec<u8>, SigningError> {
    const BAD: SigningError = SigningError::Malformed("bad zlib stream");
    INFLATER.with(|cell| {
        let mut z = cell.borrow_mut();
        z.reset(true);
        let mut out = Vec::with_capacity(raw.len().saturating_mul(4).clamp(64, MAX_INFLATED_BYTES + 1));
        loop {
            let before = (z.total_in(), z.total_out());
            let input = raw.get(usize::try_from(before.0).map_err(|_| BAD)?..).ok_or(BAD)?;
            let status = z.decompress_vec(input, &mut out, flate2::FlushDecompress::None).map_err(|_| BAD)?;
            if status == flate2::Status::StreamEnd {
                return Ok(out);
            }
            if out.len() > MAX_INFLATED_BYTES {
                return Err(SigningError::Malformed("inflated payload too large"));
            }
            if out.len() < out.capacity() {
                // Room was left yet the stream did not end: it must have moved, or it is
                // truncated or corrupt.
                if (z.total_in(), z.total_out()) == before {
                    return Err(BAD);
                }
                continue;
            }
            out.reserve(out.capacity().min(MAX_INFLATED_BYTES + 1 - out.len()).max(64));
        }
    })
}

/// CPython's non-strict `binascii.a2b_base64` after `b64_decode` re-pads and
/// `urlsafe_b64decode` maps `-_` to `+/`: characters outside the alphabet are skipped, a
/// complete pad sequence ends the input, a dangling quad is an error.
fn py_b64decode(input: &[u8]) -> Option<Vec<u8>> {
    // b64_decode appends "=" * (-len % 4) before decoding.
    let pad = (4 - input.len() % 4) % 4;
    let mut out = Vec::with_capacity(input.len() * 3 / 4 + 3);
    let (mut quad_pos, mut left, mut pads) = (0u8, 0u32, 0usize);
    for &c in input.iter().chain(std::iter::repeat_n(&b'=', pad)) {
        if c == b'=' {
            if quad_pos >= 2 {
                pads += 1;
                if quad_pos as usize + pads >= 4 {
                    return Some(out);
                }
            }
            continue;
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        } as u32;
        pads = 0;
        match quad_pos {
            0 => {
                quad_pos = 1;
                left = v;
            }
            1 => {
                quad_pos = 2;
                out.push(((left << 2) | (v >> 4)) as u8);
                left = v & 0x0f;
            }
            2 => {
                quad_pos = 3;
                out.push(((left << 4) | (v >> 2)) as u8);
                left = v & 0x03;
            }
            _ => {
                quad_pos = 0;
                out.push(((left << 6) | v) as u8);
                left = 0;
            }
        }
    }
    if quad_pos != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
