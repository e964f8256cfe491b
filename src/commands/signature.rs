//! The `X-Switchyard-Signature` header on every call to Django:
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. Django refuses it after 300 s.

use hmac::{Hmac, Mac};
use http::HeaderValue;
use sha2::Sha256;

use crate::config::Secret;

/// The header's name.
pub const HEADER: &str = "x-switchyard-signature";

/// Signs `body` at `unix` seconds.
pub fn sign(secret: &Secret, unix: u64, body: &[u8]) -> HeaderValue {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut value = format!("t={unix},v1=");
    for byte in digest {
        value.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        value.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    HeaderValue::from_str(&value).expect("ASCII digits and letters")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_hmac() {
        // Python: hmac.new(b"secret", b"1700000000.{}", hashlib.sha256).hexdigest()
        let value = sign(&Secret::new("secret"), 1_700_000_000, b"{}");
        assert_eq!(value, "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163");
    }
}
