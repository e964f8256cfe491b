//! `signing::Signer::loads` on any text where a session blob or a signed cookie goes, with
//! both salts the bridge uses (db and signed_cookies) and the fixtures' keys.
//!
//! Properties: it never panics; it never gets past the signature check with a value that
//! is not `value ":" canonical-signature` under SECRET_KEY or a fallback (checked with an
//! HMAC computed here): `Ok`, `Expired` and `Malformed` only for signed input, and
//! `BadSignature` never for it; `NoSeparator` exactly when there is no ':'. What loads
//! has a timestamp that is the base62 number before the signature, and an age check that
//! holds.

use switchyard::django::signing::SigningError;

use crate::django::{b62_decode, is_signed, signers, COOKIE_AGE_SECS};

/// A fixed "now" a little after the fixtures were made (2026), so their cookies are young.
const NOW: f64 = 1_780_000_000.0;

/// Checks the properties above on one input; panics when one does not hold.
pub fn check(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for (salt, signer) in signers() {
        let signed = is_signed(salt, s);
        for max_age in [None, Some(COOKIE_AGE_SECS)] {
            let got = signer.loads_with_timestamp(s, max_age, NOW);
            match &got {
                Ok(_) | Err(SigningError::Expired { .. } | SigningError::Malformed(_)) => {
                    assert!(signed, "{s:?} got past the signature check under {salt}: {got:?}");
                }
                Err(SigningError::BadSignature) => assert!(!signed && s.contains(':'), "{s:?} under {salt}"),
                Err(SigningError::NoSeparator) => assert!(!s.contains(':')),
            }
            if let Ok((_, ts)) = got {
                let (value, _) = s.rsplit_once(':').expect("signed");
                let (_, ts_text) = value.rsplit_once(':').expect("a timestamp");
                if let Some(exact) = b62_decode(ts_text).filter(|n| n.unsigned_abs() < 1 << 53) {
                    assert_eq!(ts, exact as f64, "timestamp {ts_text:?}");
                }
                if let Some(max) = max_age {
                    assert!(NOW - ts <= max, "{s:?} is older than {max} s");
                }
            }
        }
    }
}
