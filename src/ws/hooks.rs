//! `on_connect` and `on_disconnect`: Django views told when a socket opens and closes, in the
//! command body format with `command` set to `$connect` / `$disconnect` and a per-user `seq`.

use serde_json::Value;

use crate::commands::backend::{Backend, BackendError};
use crate::commands::Caller;
use crate::hub::Hub;

/// Close codes a hook may ask for: 1000, or the application range 3000–4999.
fn valid_close_code(code: u64) -> Option<u16> {
    (code == 1000 || (3000..=4999).contains(&code)).then_some(code as u16)
}

/// What `on_connect` decided.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Open the socket (the state, if any, is already set).
    Accept,
    /// Close it at once with this code and reason.
    Refuse(u16, String),
}

/// Calls a hook and returns its reply.
async fn call(backend: &Backend, url: &str, command: &str, caller: &Caller, hub: &Hub) -> Result<Value, BackendError> {
    let seq_key = caller.user.as_ref().map_or(&*caller.id, |u| u.id.as_str());
    let mut body = caller.call_body(command, Value::Null);
    body["seq"] = hub.next_seq(seq_key).into();
    backend.call(url, &body, &caller.call_headers(backend.forward_cookie), backend.default_timeout).await
}

/// Runs `on_connect`; a `state` in the reply becomes the connection's, a `close` refuses it.
pub async fn connect(backend: &Backend, url: &str, caller: &Caller, hub: &Hub) -> Result<Verdict, BackendError> {
    let mut reply = call(backend, url, "$connect", caller, hub).await?;
    if let Some(close) = reply.get("close") {
        let code = close.get("code").and_then(Value::as_u64).and_then(valid_close_code).unwrap_or(4403);
        let reason = close.get("reason").and_then(Value::as_str).unwrap_or("refused").to_string();
        return Ok(Verdict::Refuse(code, reason));
    }
    if let Some(state) = reply.get_mut("state").map(Value::take).filter(Value::is_object) {
        *caller.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }
    Ok(Verdict::Accept)
}

/// Runs `on_disconnect`; failures are logged, never retried (the socket is gone).
pub async fn disconnect(backend: &Backend, url: &str, caller: &Caller, hub: &Hub) {
    if let Err(e) = call(backend, url, "$disconnect", caller, hub).await {
        tracing::warn!(connection = %caller.id, error = %e, "on_disconnect hook failed");
    }
    if caller.user.is_none() {
        // An anonymous connection's counter is keyed by its id, which never comes back.
        hub.forget_seq(&caller.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_may_close_with_1000_or_an_application_code_3000_to_4999() {
        for code in [1000, 3000, 4403, 4999] {
            assert_eq!(valid_close_code(code), Some(code as u16), "{code}");
        }
        for code in [0, 999, 1001, 1006, 1011, 2999, 5000, 70000] {
            assert_eq!(valid_close_code(code), None, "{code}");
        }
    }
}
