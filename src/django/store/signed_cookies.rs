//! The `signed_cookies` engine: the cookie value *is* the signed session
//! (django-session-format.md §4), salted `django.contrib.sessions.backends.signed_cookies`
//! and valid while `now - ts <= SESSION_COOKIE_AGE` (sub-second precision; a future
//! timestamp is accepted). No session table; the user row still comes from the database.

use crate::django::pyjson::Value;
use crate::django::signing::{Signer, SigningError};

/// Load a signed-cookie session. `Ok` holds the decoded value and when the cookie stops
/// being valid (Unix seconds).
pub fn load(signer: &Signer, cookie: &str, max_age_secs: f64, now_secs: f64) -> Result<(Value, f64), SigningError> {
    let (value, ts) = signer.loads_with_timestamp(cookie, Some(max_age_secs), now_secs)?;
    Ok((value, ts + max_age_secs))
}
