//! The client wire format on `json` routes: one JSON object per text frame, commands in the
//! order written, `id` echoed; replies, pushes and the welcome frame going the other way.
//! (DESIGN.md, "Wire protocol".)

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{is_command_name, MAX_COMMAND_NAME};

/// Top-level names a client may not use as commands: they mark server frames.
pub const RESERVED: [&str; 7] = ["id", "welcome", "push", "join", "leave", "lost", "error"];

/// Largest number of commands one frame may carry; each may cost a backend call.
pub const MAX_COMMANDS_PER_FRAME: usize = 16;

/// One parsed client frame.
#[derive(Debug, PartialEq)]
pub struct ClientFrame {
    /// The client's `id`, echoed in the reply (a string or a number).
    pub id: Option<Value>,
    /// Commands in the order written: name and argument.
    pub commands: Vec<(String, Value)>,
}

/// A frame-level failure: the reply is `{"id"?, "error": {"code": "bad_frame", ...}}`.
#[derive(Debug, PartialEq)]
pub struct BadFrame {
    /// The `id`, when one could be read.
    pub id: Option<Value>,
    /// What is wrong, for the client.
    pub message: String,
}

/// The error codes of the protocol, one per kind of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON, not an object, a duplicate key, no command.
    BadFrame,
    /// No built-in and no backend has this name.
    UnknownCommand,
    /// The argument has the wrong shape.
    BadArgs,
    /// The route, the command's rule or the backend (403) says no.
    Forbidden,
    /// Too many commands in flight on this socket.
    TooManyRequests,
    /// The backend could not be reached.
    BackendUnavailable,
    /// The backend took longer than its timeout.
    BackendTimeout,
    /// The backend answered with another non-2xx status or an unreadable reply.
    BackendError,
}

impl ErrorCode {
    /// Every code, in a fixed order (metrics index by it).
    pub const ALL: [ErrorCode; 8] = [
        Self::BadFrame,
        Self::UnknownCommand,
        Self::BadArgs,
        Self::Forbidden,
        Self::TooManyRequests,
        Self::BackendUnavailable,
        Self::BackendTimeout,
        Self::BackendError,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadFrame => "bad_frame",
            Self::UnknownCommand => "unknown_command",
            Self::BadArgs => "bad_args",
            Self::Forbidden => "forbidden",
            Self::TooManyRequests => "too_many_requests",
            Self::BackendUnavailable => "backend_unavailable",
            Self::BackendTimeout => "backend_timeout",
            Self::BackendError => "backend_error",
        }
    }
}

/// A failed command: its code, a message, and what the backend said, when it said something.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandError {
    /// The protocol code.
    pub code: ErrorCode,
    /// A short message for the client.
    pub message: String,
    /// The backend's own JSON `error`, passed on as `detail`.
    pub detail: Option<Value>,
}

impl CommandError {
    /// An error with no backend detail.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), detail: None }
    }

    /// The error as it appears on the wire: `{"code", "message", "detail"?}`.
    pub fn to_value(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), self.code.as_str().into());
        error.insert("message".into(), self.message.clone().into());
        if let Some(detail) = &self.detail {
            error.insert("detail".into(), detail.clone());
        }
        Value::Object(error)
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientFrame, BadFrame> {
    let (entries, overflow) = match serde_json::from_str::<Entries>(text) {
        Ok(entries) => (entries.entries, entries.overflow),
        Err(e) => return Err(BadFrame { id: None, message: not_an_object(&e) }),
    };
    let id = entries.iter().find(|(k, _)| k == "id").map(|(_, v)| v.clone());
    let bad = |message: String| BadFrame { id: id.clone().filter(valid_id), message };
    if let Some(id) = &id {
        if !valid_id(id) {
            return Err(bad("`id` must be a string or a number".into()));
        }
    }
    if overflow {
        return Err(bad(format!("too many commands in one frame, at most {MAX_COMMANDS_PER_FRAME}")));
    }
    for (i, (key, _)) in entries.iter().enumerate() {
        if entries[..i].iter().any(|(k, _)| k == key) {
            return Err(bad(format!("duplicate key `{key}`")));
        }
    }
    if let Some((name, _)) = entries.iter().find(|(k, _)| k != "id" && !is_command_name(k)) {
        return Err(bad(format!(
            "`{}` is not a command name: use letters, digits and _ . : - in non-empty .-separated parts, \
             at most {MAX_COMMAND_NAME} bytes",
            truncated(name, MAX_COMMAND_NAME)
        )));
    }
    let commands: Vec<(String, Value)> = entries.into_iter().filter(|(k, _)| k != "id").collect();
    if commands.is_empty() {
        return Err(bad("a frame needs at least one command, like {\"ping\": null}".into()));
    }
    if commands.len() > MAX_COMMANDS_PER_FRAME {
        return Err(bad(format!("too many commands in one frame, at most {MAX_COMMANDS_PER_FRAME}")));
    }
    Ok(ClientFrame { id, commands })
}

/// `text` cut to at most `max` bytes on a character boundary (for texts that echo what a
/// client sent, and close reasons).
pub fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn valid_id(id: &Value) -> bool {
    matches!(id, Value::String(_) | Value::Number(_))
}

fn not_an_object(e: &serde_json::Error) -> String {
    if e.is_data() {
        "a frame must be a JSON object".into()
    } else {
        format!("not JSON: {e}")
    }
}

/// Encodes a reply: `id` first, then each command's outcome in order.
pub fn reply(id: Option<&Value>, outcomes: Vec<(String, Result<Value, CommandError>)>) -> String {
    let mut frame = Map::new();
    if let Some(id) = id {
        frame.insert("id".into(), id.clone());
    }
    for (name, outcome) in outcomes {
        let mut entry = Map::new();
        match outcome {
            Ok(result) => entry.insert("result".into(), result),
            Err(error) => entry.insert("error".into(), error.to_value()),
        };
        frame.insert(name, Value::Object(entry));
    }
    Value::Object(frame).to_string()
}

/// Encodes a frame-level error.
pub fn bad_frame(bad: &BadFrame) -> String {
    let mut frame = Map::new();
    if let Some(id) = &bad.id {
        frame.insert("id".into(), id.clone());
    }
    let error = CommandError::new(ErrorCode::BadFrame, bad.message.clone());
    frame.insert("error".into(), error.to_value());
    Value::Object(frame).to_string()
}

/// Encodes the first frame on a json route; `resume` is the token and its TTL in seconds;
/// `resumed` answers a `?resume=` reconnect.
pub fn welcome(
    connection: &str,
    user: Option<&crate::django::User>,
    resume: Option<(&str, u64)>,
    resumed: Option<Value>,
) -> String {
    let mut welcome = serde_json::json!({"connection": connection, "user": user});
    if let Some((token, ttl)) = resume {
        welcome["resume"] = token.into();
        welcome["resume_ttl"] = ttl.into();
    }
    if let Some(resumed) = resumed {
        welcome["resumed"] = resumed;
    }
    serde_json::json!({ "welcome": welcome }).to_string()
}

/// Encodes a channel push: `channel`, `event`, `data`, `offset`, `epoch`. Built once per
/// event and shared by every subscriber.
pub fn channel_push(channel: &str, event: &str, data: &Value, position: &crate::broker::Position) -> String {
    #[derive(serde::Serialize)]
    struct Push<'a> {
        channel: &'a str,
        event: &'a str,
        data: &'a Value,
        offset: u64,
        epoch: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Frame<'a> {
        push: Push<'a>,
    }
    let push = Push { channel, event, data, offset: position.offset, epoch: &position.epoch };
    serde_json::to_string(&Frame { push }).unwrap_or_default()
}

/// Encodes `{"lost": {"channel", "from", "to"}}`: events in that range were dropped
/// (`drop_oldest`).
pub fn lost(channel: &str, from: u64, to: u64) -> String {
    serde_json::json!({"lost": {"channel": channel, "from": from, "to": to}}).to_string()
}

/// Encodes `{"join"|"leave": {"channel", "user"}}`.
pub fn presence(kind: &str, channel: &str, user: &crate::django::User) -> String {
    let mut frame = Map::new();
    frame.insert(kind.into(), serde_json::json!({"channel": channel, "user": user}));
    Value::Object(frame).to_string()
}

/// Encodes a push addressed to a user, a connection or everyone (no offset: not recoverable).
pub fn push(event: &str, data: &Value) -> String {
    serde_json::json!({"push": {"event": event, "data": data}}).to_string()
}

/// A JSON object's entries in document order, duplicates kept (serde_json's map keeps one).
/// Past the command limit only `id` is kept (so the error can carry it) and `overflow` set.
struct Entries {
    entries: Vec<(String, Value)>,
    overflow: bool,
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                let mut overflow = false;
                while let Some(key) = map.next_key::<String>()? {
                    if entries.len() <= MAX_COMMANDS_PER_FRAME || key == "id" {
                        let value = map.next_value::<Value>()?;
                        entries.push((key, value));
                    } else {
                        overflow = true;
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                Ok(Entries { entries, overflow })
            }
        }
        d.deserialize_map(EntriesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn commands_keep_the_order_written() {
        let frame =
            parse(r#"{"id": 7, "subscribe": {"channel": "a"}, "chat.send": {"text": "hi"}, "ping": null}"#).unwrap();
        assert_eq!(frame.id, Some(json!(7)));
        let names: Vec<&str> = frame.commands.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["subscribe", "chat.send", "ping"]);
    }

    #[test]
    fn duplicate_key_is_bad_frame_with_the_id() {
        let bad = parse(r#"{"id": "x", "ping": 1, "ping": 2}"#).unwrap_err();
        assert_eq!(bad.id, Some(json!("x")));
        assert!(bad.message.contains("duplicate key `ping`"));
    }

    #[test]
    fn non_object_and_non_json_are_bad_frames() {
        assert_eq!(parse("[1,2]").unwrap_err().message, "a frame must be a JSON object");
        assert!(parse("{nope").unwrap_err().message.starts_with("not JSON"));
        assert!(parse(r#"{"id": 1}"#).unwrap_err().message.contains("at least one command"));
        assert!(parse(r#"{"id": [1], "ping": null}"#).unwrap_err().message.contains("string or a number"));
    }

    #[test]
    fn reply_lists_outcomes_in_order_after_the_id() {
        let text = reply(
            Some(&json!(7)),
            vec![
                ("b".into(), Ok(json!("pong"))),
                ("a".into(), Err(CommandError::new(ErrorCode::UnknownCommand, "no such command"))),
            ],
        );
        assert_eq!(
            text,
            r#"{"id":7,"b":{"result":"pong"},"a":{"error":{"code":"unknown_command","message":"no such command"}}}"#
        );
    }

    #[test]
    fn a_name_that_is_no_command_name_is_bad_frame_with_the_id() {
        for name in ["..", ".", "", "a/b", "chat..send", "x y"] {
            let bad = parse(&json!({"id": 5, name: {}}).to_string()).unwrap_err();
            assert_eq!(bad.id, Some(json!(5)), "{name:?}");
            assert!(bad.message.contains("is not a command name"), "{name:?}: {}", bad.message);
        }
        assert!(parse(r#"{"model:post.update": {}}"#).is_ok());
    }

    #[test]
    fn too_many_commands_are_refused_with_their_own_message_and_the_id() {
        let body: Vec<String> = (0..20).map(|i| format!("\"c{i}\": null")).collect();
        let bad = parse(&format!("{{{}, \"id\": 9}}", body.join(","))).unwrap_err();
        assert_eq!(bad.message, "too many commands in one frame, at most 16");
        assert_eq!(bad.id, Some(json!(9)));
        let seventeen: Vec<String> = (0..17).map(|i| format!("\"c{i}\": null")).collect();
        let bad = parse(&format!("{{\"id\": 1, {}}}", seventeen.join(","))).unwrap_err();
        assert_eq!(bad.message, "too many commands in one frame, at most 16");
    }

    /// Found by `fuzz/fuzz_targets/protocol.rs`: serde_json's default number reading was
    /// an ulp off, so the argument written back was not the number the client sent.
    #[test]
    fn arguments_keep_the_correctly_rounded_number_when_written_back() {
        let text = r#"{"id": 3, "ping": 1, "pong": 555555555555555555555555555555555555555552}"#;
        let frame = parse(text).unwrap();
        let arg = &frame.commands[1].1;
        assert_eq!(arg.as_f64(), Some("555555555555555555555555555555555555555552".parse::<f64>().unwrap()));
        let written = reply(None, vec![("n".into(), Ok(arg.clone()))]);
        let again: Value = serde_json::from_str(&written).unwrap();
        assert_eq!(&again["n"]["result"], arg);
    }
}
