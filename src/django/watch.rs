//! Revocation seen on the wire: Switchyard forwards every response Django sends, so it sees
//! each one that deletes the session cookie (logout) or sets a different one (login's
//! `cycle_key`, `update_session_auth_hash` after a password change). The session key the
//! request came with is then dead in Django: its cache entries go and the sockets it
//! authenticated close with 4401, on every node (a revocation through the broker). This
//! works for any Django site, with or without the django-switchyard app.
//!
//! With `signed_cookies` the cookie *is* the session and changes whenever the session is
//! written, while the old value stays valid to Django: only a deletion counts there.

use http::{header, HeaderMap};

use super::{Engine, SessionBridge};
use crate::broker::{Message, Revocation};
use crate::hub::Hub;

/// Watches forwarded responses for the session cookie; built once, cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionWatch {
    bridge: SessionBridge,
    hub: Hub,
}

impl SessionWatch {
    /// A watch for `bridge`'s session cookie, revoking through `hub`'s broker.
    pub fn new(bridge: SessionBridge, hub: Hub) -> Self {
        Self { bridge, hub }
    }

    /// The session cookie's value in a request's headers, if it has one.
    pub fn session_of(&self, headers: &HeaderMap) -> Option<String> {
        let mut merged = Vec::new();
        for value in headers.get_all(header::COOKIE) {
            if !merged.is_empty() {
                merged.extend_from_slice(b"; ");
            }
            merged.extend_from_slice(value.as_bytes());
        }
        self.bridge.session_value(&merged)
    }

    /// Called with the request's session value and Django's response headers: revokes the
    /// session when the response deleted or replaced its cookie. Returns whether it did.
    pub async fn observe(&self, session: &str, response: &HeaderMap) -> bool {
        let replaced_counts = self.bridge.engine() != Engine::SignedCookies;
        if !kills(self.bridge.cookie_name(), session, response, replaced_counts) {
            return false;
        }
        let revoke = Message::Revoke(Revocation::Session(session.to_string()));
        if let Err(e) = self.hub.broker().send(vec![revoke]).await {
            tracing::warn!(error = %e, "a session Django ended could not be revoked");
        }
        true
    }
}

/// True when `response` deletes the cookie `name` or (when `replaced_counts`) gives it a
/// value other than `session`. Set-Cookie is parsed by the `cookie` crate; an unreadable
/// one is ignored.
pub fn kills(name: &str, session: &str, response: &HeaderMap, replaced_counts: bool) -> bool {
    let now = cookie::time::OffsetDateTime::now_utc();
    response.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).any(|text| {
        let Ok(set) = cookie::Cookie::parse(text) else { return false };
        if set.name() != name {
            return false;
        }
        let deleted = set.value().is_empty()
            || set.max_age().is_some_and(|age| age <= cookie::time::Duration::ZERO)
            || set.expires_datetime().is_some_and(|at| at <= now);
        deleted || (replaced_counts && set.value() != session)
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with(set_cookie: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in set_cookie {
            headers.append(header::SET_COOKIE, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn django_logout_deletes_the_cookie() {
        let logout = with(&[r#"sessionid=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; SameSite=Lax"#]);
        assert!(kills("sessionid", "abc", &logout, true));
        assert!(kills("sessionid", "abc", &logout, false));
    }

    #[test]
    fn a_new_key_kills_the_old_one_except_for_signed_cookies() {
        let cycled =
            with(&["sessionid=newkey123; expires=Thu, 01 Jan 2099 00:00:00 GMT; HttpOnly; Max-Age=1209600; Path=/"]);
        assert!(kills("sessionid", "oldkey", &cycled, true));
        assert!(!kills("sessionid", "oldkey", &cycled, false));
        assert!(!kills("sessionid", "newkey123", &cycled, true), "the same key again is a save, not a rotation");
    }

    #[test]
    fn other_cookies_and_garbage_change_nothing() {
        let other = with(&["csrftoken=x; Max-Age=0", "not a cookie", "sessionidx=; Max-Age=0"]);
        assert!(!kills("sessionid", "abc", &other, true));
    }
}
