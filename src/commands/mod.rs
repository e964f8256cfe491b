//! Command dispatch on `json` routes: built-ins first, then `[commands."PATTERN"]` backends,
//! each checked against the route's `commands` list and the command's `auth` rule. The
//! reserved names (`id`, `welcome`, `push`, …) are never commands, even under `"*"`.
//! A backend reply may replace the connection state, push (to channels through the broker,
//! or to users, connections, everyone) and subscribe or unsubscribe the caller.

mod authorize;
pub mod backend;
pub mod builtin;
pub mod signature;
pub mod view;

use std::sync::{Arc, Mutex};

use http::HeaderValue;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

pub use self::authorize::Authorizer;
use self::backend::{Backend, CallHeaders};
use self::builtin::Builtin;
use crate::clock::Clock;
use crate::config::{is_command_name, CommandConfig, CommandPattern, Config, RouteConfig};
use crate::django::User;
use crate::hub::{CommandKind, ConnId, Hub};
use crate::protocol::{CommandError, ErrorCode, RESERVED};
use crate::routes;

/// What a command name keeps when it replaces `{command}` in a backend URL: RFC 3986's
/// unreserved characters; the rest (`:` among a name's characters) is percent-encoded.
const URL_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Everything a command needs to know about the socket that sent it.
#[derive(Debug)]
pub struct Caller {
    /// The connection id.
    pub id: ConnId,
    /// The route the socket opened on.
    pub route: Arc<RouteConfig>,
    /// Request path and query of the upgrade.
    pub path: String,
    /// The query string (without `?`), or "".
    pub query: String,
    /// The user, or None for anonymous.
    pub user: Option<Arc<User>>,
    /// The upgrade's `Host`, passed to backends.
    pub host: Option<HeaderValue>,
    /// The upgrade's `Cookie` (merged), passed to backends unless `forward_cookie = false`.
    pub cookie: Option<HeaderValue>,
    /// The downstream address chain, as the proxy would send `X-Forwarded-For`.
    pub forwarded_for: Option<HeaderValue>,
    /// The scheme the browser used.
    pub scheme: &'static str,
    /// The upgrade request's `X-Request-Id`, sent with every call this socket makes.
    pub request_id: HeaderValue,
    /// Per-connection state, a JSON object set by backends.
    pub state: Mutex<Value>,
}

impl Caller {
    /// The body every backend call and hook carries.
    pub fn call_body(&self, command: &str, args: Value) -> Value {
        let state = self.state.lock().map(|s| s.clone()).unwrap_or_else(|e| e.into_inner().clone());
        json!({
            "command": command,
            "args": args,
            "connection": {"id": &*self.id, "path": self.path, "query": self.query, "state": state},
            "user": self.user.as_deref(),
        })
    }

    /// The headers a call carries; the cookie only when `forward_cookie`.
    pub fn call_headers(&self, forward_cookie: bool) -> CallHeaders<'_> {
        CallHeaders {
            host: self.host.as_ref(),
            cookie: self.cookie.as_ref().filter(|_| forward_cookie),
            forwarded_for: self.forwarded_for.as_ref(),
            forwarded_proto: Some(self.scheme),
            request_id: Some(&self.request_id),
        }
    }
}

/// What a frame's commands leave to do once its reply is queued.
#[derive(Debug, Default)]
pub struct Effects {
    /// Channels joined by this frame: their held frames go after the reply.
    pub release: Vec<Arc<str>>,
}

/// The dispatcher, built once; cheap to clone.
#[derive(Clone, Debug)]
pub struct Commands {
    table: Arc<Vec<(CommandPattern, CommandConfig)>>,
    backend: Option<Backend>,
    hub: Hub,
    authorizer: Authorizer,
    max_state: usize,
    max_subscriptions: usize,
}

impl Commands {
    /// Builds the dispatcher; patterns are tried most specific first (exact, then the
    /// longest prefix), so their order in the file does not matter.
    pub fn new(config: &Config, hub: Hub, clock: Clock) -> Self {
        let mut table: Vec<(CommandPattern, CommandConfig)> =
            config.commands.iter().map(|(p, c)| (p.clone(), c.clone())).collect();
        table.sort_by_key(|(p, _)| (p.0.ends_with('*'), std::cmp::Reverse(p.0.len())));
        let backend = Backend::new(&config.backends, clock);
        Self {
            table: Arc::new(table),
            authorizer: Authorizer::new(backend.clone()),
            backend,
            hub,
            max_state: config.websocket.max_state_size,
            max_subscriptions: config.websocket.max_subscriptions,
        }
    }

    /// Restores the subscriptions parked under resume `token` for `caller` (see
    /// `hub::resume`); the answer goes into the welcome as `resumed`.
    pub async fn resume(&self, token: &str, caller: &Caller, effects: &mut Effects) -> Value {
        builtin::resume(self, caller, token, effects).await
    }

    /// The signing client, for hooks.
    pub fn backend(&self) -> Option<&Backend> {
        self.backend.as_ref()
    }

    /// Runs one command for `caller` and returns its result or error; what must happen
    /// after the frame's reply is queued goes into `effects`. Every outcome is counted.
    pub async fn run(
        &self,
        name: &str,
        args: Value,
        caller: &Caller,
        effects: &mut Effects,
    ) -> Result<Value, CommandError> {
        let kind = if Builtin::named(name).is_some() { CommandKind::Builtin } else { CommandKind::Http };
        let outcome = self.dispatch(name, args, caller, effects).await;
        self.hub.stats().command(kind, outcome.as_ref().map(|_| ()).map_err(|e| e.code));
        outcome
    }

    async fn dispatch(
        &self,
        name: &str,
        args: Value,
        caller: &Caller,
        effects: &mut Effects,
    ) -> Result<Value, CommandError> {
        let builtin = Builtin::named(name);
        let configured = self.table.iter().find(|(p, _)| p.matches(name)).map(|(_, c)| c);
        let reserved = RESERVED.contains(&name);
        if reserved || !is_command_name(name) || (builtin.is_none() && configured.is_none()) {
            return Err(CommandError::new(ErrorCode::UnknownCommand, format!("no command named `{name}`")));
        }
        if !caller.route.commands.iter().any(|p| p.matches(name)) {
            return Err(CommandError::new(ErrorCode::Forbidden, format!("`{name}` may not run on this route")));
        }
        if let Some(builtin) = builtin {
            return builtin.run(args, caller, self, effects).await;
        }
        let config = configured.expect("checked above");
        if routes::check(config.auth, caller.user.as_deref()).is_err() {
            return Err(CommandError::new(ErrorCode::Forbidden, format!("`{name}` needs a user with more rights")));
        }
        self.call_backend(name, args, config, caller, effects).await
    }

    async fn call_backend(
        &self,
        name: &str,
        args: Value,
        config: &CommandConfig,
        caller: &Caller,
        effects: &mut Effects,
    ) -> Result<Value, CommandError> {
        let Some(backend) = &self.backend else {
            return Err(CommandError::new(ErrorCode::BackendUnavailable, "no backend is configured"));
        };
        let url = config.url.0.replace("{command}", &utf8_percent_encode(name, URL_ESCAPED).to_string());
        let body = caller.call_body(name, args);
        let reply = backend.call(&url, &body, &caller.call_headers(config.forward_cookie), config.timeout).await;
        let mut reply = reply.map_err(|e| {
            tracing::debug!(command = name, error = %e, "backend call failed");
            e.to_command_error()
        })?;
        self.apply_state(&mut reply, caller)?;
        let list = |key: &str| reply.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        builtin::backend_pushes(self, list("push")).await;
        builtin::backend_unsubscribes(self, caller, list("unsubscribe"));
        builtin::backend_subscribes(self, caller, list("subscribe"), effects).await;
        Ok(reply.get_mut("result").map(Value::take).unwrap_or(Value::Null))
    }

    /// A reply's `state` replaces the connection's, when it is an object within the bound.
    fn apply_state(&self, reply: &mut Value, caller: &Caller) -> Result<(), CommandError> {
        let Some(state) = reply.get_mut("state").map(Value::take) else { return Ok(()) };
        if !state.is_object() || state.to_string().len() > self.max_state {
            return Err(CommandError::new(
                ErrorCode::BackendError,
                "the backend set a state that is not an object or too large",
            ));
        }
        *caller.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        Ok(())
    }
}
