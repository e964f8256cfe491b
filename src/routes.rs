//! Per-URL WebSocket rules: which route a path falls under, whether its origin may open a
//! socket there, and whether its user may (RFC 6455 §10.2 origin considerations).

use std::sync::Arc;

use crate::config::{AuthRule, Config, Origin, RouteConfig, WebsocketMode};
use crate::django::User;

/// The routes in config order, plus the rule for unmatched paths when `accept_all` is on.
#[derive(Clone, Debug)]
pub struct Routes {
    routes: Vec<Arc<RouteConfig>>,
    fallback: Option<Arc<RouteConfig>>,
}

/// What the router does with a request, given its path and whether it asks to upgrade.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Terminate the WebSocket here under this route.
    Upgrade(Arc<RouteConfig>),
    /// Plain HTTP: forward to Django, buffered or streamed as the route says (`None`: no
    /// route has a say).
    Forward { buffering: Option<bool> },
    /// An upgrade where no route matches (404).
    NoRoute,
    /// An upgrade on a `websocket = "deny"` route (403).
    Denied,
    /// Plain HTTP on a `websocket = "require"` route (400).
    WebsocketOnly,
}

/// Why a user may not do something; decides 4401 vs 4403 and `forbidden`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Nobody is logged in and the rule needs someone.
    NotLoggedIn,
    /// Someone is logged in but lacks the flag the rule needs.
    NotAllowed,
}

impl Routes {
    /// Compiles the `[[routes]]` list once at start.
    pub fn new(config: &Config) -> Self {
        let routes = config.routes.iter().cloned().map(Arc::new).collect();
        let fallback = config.websocket.accept_all.then(|| Arc::new(RouteConfig::accept_all("*")));
        Self { routes, fallback }
    }

    /// The first route whose path matches.
    pub fn find(&self, path: &str) -> Option<&Arc<RouteConfig>> {
        self.routes.iter().find(|r| r.path.matches(path))
    }

    /// Decides what a request is.
    pub fn decide(&self, path: &str, upgrade: bool) -> Decision {
        match (self.find(path), upgrade) {
            (Some(route), true) if route.websocket == WebsocketMode::Deny => Decision::Denied,
            (Some(route), true) => Decision::Upgrade(route.clone()),
            (None, true) => self.fallback.clone().map_or(Decision::NoRoute, Decision::Upgrade),
            (Some(route), false) if route.websocket == WebsocketMode::Require => Decision::WebsocketOnly,
            (route, false) => Decision::Forward { buffering: route.and_then(|r| r.buffering) },
        }
    }
}

/// True when `origin` (the request's `Origin` header) may open a socket on `route`;
/// `own` is the request's own scheme://host, the default allow-list.
pub fn origin_allowed(route: &RouteConfig, origin: &str, own: &str) -> bool {
    let Some(origin) = Origin::parse(origin) else { return false };
    match &route.origins {
        Some(list) => list.contains(&origin),
        None => Origin::parse(own).is_some_and(|own| own == origin),
    }
}

/// Checks `rule` against the user (None: anonymous).
pub fn check(rule: AuthRule, user: Option<&User>) -> Result<(), Refusal> {
    let Some(user) = user else {
        return if rule == AuthRule::Anyone { Ok(()) } else { Err(Refusal::NotLoggedIn) };
    };
    let allowed = match rule {
        AuthRule::Anyone | AuthRule::Authenticated => true,
        AuthRule::Staff => user.is_staff || user.is_superuser,
        AuthRule::Superuser => user.is_superuser,
    };
    if allowed {
        Ok(())
    } else {
        Err(Refusal::NotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(staff: bool, superuser: bool) -> User {
        User { id: "1".into(), username: "u".into(), is_staff: staff, is_superuser: superuser }
    }

    #[test]
    fn auth_rules_tell_not_logged_in_from_not_allowed() {
        assert_eq!(check(AuthRule::Anyone, None), Ok(()));
        assert_eq!(check(AuthRule::Authenticated, None), Err(Refusal::NotLoggedIn));
        assert_eq!(check(AuthRule::Authenticated, Some(&user(false, false))), Ok(()));
        assert_eq!(check(AuthRule::Staff, Some(&user(false, false))), Err(Refusal::NotAllowed));
        assert_eq!(check(AuthRule::Staff, Some(&user(true, false))), Ok(()));
        assert_eq!(check(AuthRule::Superuser, Some(&user(true, false))), Err(Refusal::NotAllowed));
        assert_eq!(check(AuthRule::Superuser, Some(&user(false, true))), Ok(()));
    }

    #[test]
    fn default_origin_is_the_request_own() {
        let route = RouteConfig::accept_all("/ws/");
        assert!(origin_allowed(&route, "http://localhost:8080", "http://localhost:8080"));
        assert!(origin_allowed(&route, "https://LOCALHOST", "https://localhost:443"));
        assert!(!origin_allowed(&route, "http://evil.example", "http://localhost:8080"));
        assert!(!origin_allowed(&route, "https://localhost:8080", "http://localhost:8080"));
        assert!(!origin_allowed(&route, "null", "http://localhost:8080"));
    }

    #[test]
    fn listed_origins_replace_the_default() {
        let mut route = RouteConfig::accept_all("/ws/");
        route.origins = Some(vec![Origin::parse("https://app.example").unwrap()]);
        assert!(origin_allowed(&route, "https://app.example", "http://localhost"));
        assert!(!origin_allowed(&route, "http://localhost", "http://localhost"));
    }
}
