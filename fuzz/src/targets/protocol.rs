//! The client frame parser (`protocol::parse`) on any text a browser can send.
//!
//! Properties: it never panics; a frame it accepts is exactly the JSON object the text
//! holds (commands in the order written, no duplicate, `id` a string or a number, 1 to
//! `MAX_COMMANDS_PER_FRAME` commands) and re-encodes to text that parses to the same
//! frame; a refusal carries the `id` whenever the object has a readable one and encodes
//! to a valid `bad_frame` reply; a valid JSON object is never called "not an object".

use serde_json::{json, Map, Value};
use switchyard::protocol::{self, ClientFrame, MAX_COMMANDS_PER_FRAME};

use crate::json::object_entries;

/// Checks the properties above on one input; panics when one does not hold.
pub fn check(data: &[u8]) {
    // WebSocket text frames are UTF-8; invalid UTF-8 closes the socket before parsing.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let entries = object_entries(text);
    match protocol::parse(text) {
        Ok(frame) => accepted(text, &frame, entries),
        Err(bad) => {
            let reply: Value = serde_json::from_str(&protocol::bad_frame(&bad)).expect("bad_frame is JSON");
            assert_eq!(reply["error"]["code"], "bad_frame");
            assert_eq!(reply["error"]["message"], bad.message.as_str());
            assert_eq!(reply.get("id"), bad.id.as_ref());
            if let Some(id) = &bad.id {
                assert!(id.is_string() || id.is_number(), "echoed id {id} is not a string or a number");
            }
            let Some(entries) = entries else { return };
            assert_ne!(bad.message, "a frame must be a JSON object", "{text:?} is an object");
            let ids: Vec<&Value> = entries.iter().filter(|(k, _)| k == "id").map(|(_, v)| v).collect();
            if let [id] = ids[..] {
                if id.is_string() || id.is_number() {
                    assert_eq!(bad.id.as_ref(), Some(id), "refusal of {text:?} lost its id");
                }
            }
        }
    }
}

fn accepted(text: &str, frame: &ClientFrame, entries: Option<Vec<(String, Value)>>) {
    let entries = entries.unwrap_or_else(|| panic!("accepted {text:?}, which is not a JSON object"));
    let id = entries.iter().find(|(k, _)| k == "id").map(|(_, v)| v);
    assert_eq!(frame.id.as_ref(), id);
    if let Some(id) = id {
        assert!(id.is_string() || id.is_number());
    }
    let commands: Vec<&(String, Value)> = entries.iter().filter(|(k, _)| k != "id").collect();
    assert_eq!(frame.commands.iter().collect::<Vec<_>>(), commands, "commands of {text:?}");
    assert!((1..=MAX_COMMANDS_PER_FRAME).contains(&frame.commands.len()));
    for (i, (name, _)) in frame.commands.iter().enumerate() {
        assert!(frame.commands[..i].iter().all(|(n, _)| n != name), "duplicate `{name}` accepted");
    }
    assert_eq!(entries.iter().filter(|(k, _)| k == "id").count(), usize::from(id.is_some()), "duplicate id");

    // Written back as a client would write it, it is the same frame.
    let mut object = Map::new();
    if let Some(id) = &frame.id {
        object.insert("id".into(), id.clone());
    }
    for (name, arg) in &frame.commands {
        object.insert(name.clone(), arg.clone());
    }
    let again = protocol::parse(&Value::Object(object).to_string()).expect("a re-encoded frame parses");
    assert_eq!(&again, frame);

    // The reply names every command, in order, after the id.
    let outcomes = frame.commands.iter().map(|(n, arg)| (n.clone(), Ok(arg.clone()))).collect();
    let reply = protocol::reply(frame.id.as_ref(), outcomes);
    let reply = object_entries(&reply).expect("a reply is a JSON object");
    let mut want: Vec<(String, Value)> = frame.id.iter().map(|id| ("id".to_string(), id.clone())).collect();
    want.extend(frame.commands.iter().map(|(n, arg)| (n.clone(), json!({ "result": arg }))));
    assert_eq!(reply, want);
}
