//! `view` routes (django-websocket's `@accept_websocket` views, through
//! django-switchyard): each text message the browser sends is posted, signed, to the
//! route's Django view, in the command body with `command` = `"$message"` and the text as
//! `args`. The view answers `{"messages": [...], "state": {...}}`: each message goes back
//! to the socket as a text message, in order (a string as it is, anything else as JSON),
//! and `state` replaces the connection's, as a command reply's does. Bad answers and
//! failed calls are Django's fault: logged, the socket stays open.

use serde_json::Value;

use super::backend::BackendError;
use super::{Caller, Commands};

/// The `command` of a view call.
pub const MESSAGE_COMMAND: &str = "$message";

/// The URL `template` names for `caller`: `{path}` is the socket's path, and the socket's
/// query string goes along, so the view sees `request.GET` as the browser wrote it.
pub fn view_url(template: &str, caller: &Caller) -> String {
    let mut url = template.replace("{path}", &caller.path);
    if !caller.query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&caller.query);
    }
    url
}

/// Why a message got no answer from its view.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The call failed (unreachable, timeout, non-2xx, not a JSON object).
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The answer's `messages` is not a list, or its `state` is not an object in bounds.
    #[error("the view's answer is unusable: {0}")]
    BadAnswer(&'static str),
}

impl Commands {
    /// Posts `text` to the route's view for `caller`; the messages to send back, in order.
    /// Called once per text message on a `view` route, one at a time per socket.
    pub async fn view_message(&self, template: &str, text: &str, caller: &Caller) -> Result<Vec<String>, ViewError> {
        let Some(backend) = &self.backend else {
            // Config validation requires [backends] secret for view routes.
            return Err(ViewError::BadAnswer("no backend is configured"));
        };
        let url = view_url(template, caller);
        let body = caller.call_body(MESSAGE_COMMAND, Value::String(text.to_string()));
        let headers = caller.call_headers(backend.forward_cookie);
        let mut reply = backend.call(&url, &body, &headers, backend.default_timeout).await?;
        if self.apply_state(&mut reply, caller).is_err() {
            return Err(ViewError::BadAnswer("`state` is not an object within max_state_size"));
        }
        match reply.get_mut("messages").map(Value::take) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(messages)) => Ok(messages.into_iter().map(as_text).collect()),
            Some(_) => Err(ViewError::BadAnswer("`messages` is not a list")),
        }
    }
}

/// One answered message as the text sent to the browser.
fn as_text(message: Value) -> String {
    match message {
        Value::String(text) => text,
        other => other.to_string(),
    }
}
