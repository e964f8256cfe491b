//! One outbox row in both directions: a [`Message`] becomes the item `switchyard_outbox_publish`
//! inserts, and a delivered row (from a notification or read from the table) becomes the
//! hub call that applies it. The shapes are docs/outbox.md's (payload version 1).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::broker::{Event, Message, Position, Publication, Revocation, Target};
use crate::hub::Hub;

/// The payload version this build reads.
pub const PAYLOAD_VERSION: u32 = 1;

/// What a row is for (`kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Channel,
    Users,
    Connections,
    Broadcast,
    RevokeUser,
    RevokeSession,
}

impl Kind {
    /// The `kind` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Channel => "channel",
            Self::Users => "users",
            Self::Connections => "connections",
            Self::Broadcast => "broadcast",
            Self::RevokeUser => "revoke_user",
            Self::RevokeSession => "revoke_session",
        }
    }

    /// The kind a `kind` column holds.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_value(Value::String(text.to_string())).ok()
    }
}

/// One delivered row.
#[derive(Clone, Debug, Deserialize)]
pub struct Record {
    /// Its place in the delivery order.
    pub pos: i64,
    /// Its commit time by the database's clock, in seconds since the Unix epoch.
    #[serde(default)]
    pub at: Option<f64>,
    pub kind: Kind,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    pub event: String,
    #[serde(default)]
    pub data: Value,
    /// The channel offset (channel rows).
    #[serde(default)]
    pub offset: Option<i64>,
    /// The channel epoch (channel rows).
    #[serde(default)]
    pub epoch: Option<String>,
}

/// A notification's payload.
#[derive(Debug)]
pub enum Notice {
    /// The whole row.
    Full(Box<Record>),
    /// Only its position: the row is read from the table.
    Reference(i64),
}

#[derive(Deserialize)]
struct Head {
    v: u32,
    pos: i64,
    #[serde(default)]
    kind: Option<Value>,
}

/// Reads a `switchyard_outbox` payload; Err says what is wrong with it. A payload of a newer
/// version is read as a reference (its row is in the table, in columns this build knows).
pub fn parse_notice(payload: &str) -> Result<Notice, String> {
    let head: Head = serde_json::from_str(payload).map_err(|e| format!("not an outbox payload: {e}"))?;
    if head.v > PAYLOAD_VERSION || head.kind.is_none() {
        return Ok(Notice::Reference(head.pos));
    }
    // A row the checks let in but this reader cannot take (data nested past serde_json's
    // limit, say) is read from the table, where it is skipped in its turn.
    Ok(serde_json::from_str(payload).map_or(Notice::Reference(head.pos), |record| Notice::Full(Box::new(record))))
}

/// The JSON item `switchyard_outbox_publish` inserts for `message`.
pub fn item(message: &Message) -> Value {
    match message {
        Message::Publish(Publication { target, event, data }) => {
            let (kind, channel, ids) = match target {
                Target::Channel(channel) => (Kind::Channel, Some(channel.as_str()), None),
                Target::Users(ids) => (Kind::Users, None, Some(ids)),
                Target::Connections(ids) => (Kind::Connections, None, Some(ids)),
                Target::Broadcast => (Kind::Broadcast, None, None),
            };
            json!({"kind": kind.as_str(), "channel": channel, "ids": ids, "event": event, "data": data})
        }
        Message::Revoke(revocation) => {
            let (kind, id) = match revocation {
                Revocation::User(id) => (Kind::RevokeUser, id),
                Revocation::Session(key) => (Kind::RevokeSession, key),
            };
            json!({"kind": kind.as_str(), "ids": [id], "event": "message", "data": null})
        }
    }
}

impl Record {
    /// Applies the row on this node; Err says why it cannot be (a row no check caught).
    pub fn apply(self, hub: &Hub) -> Result<(), String> {
        let ids = || self.ids.clone().filter(|ids| !ids.is_empty()).ok_or("no ids");
        match self.kind {
            Kind::Channel => {
                let (Some(channel), Some(offset), Some(epoch)) = (self.channel, self.offset, self.epoch) else {
                    return Err("a channel row without channel, offset or epoch".into());
                };
                let offset = u64::try_from(offset).ok().filter(|o| *o > 0).ok_or("offset below 1")?;
                if !crate::config::is_channel_name(&channel) {
                    return Err(format!("`{channel}` is not a channel name"));
                }
                let position = Position { offset, epoch: Arc::from(epoch) };
                let event =
                    Event { channel: Arc::from(channel), position, event: self.event, data: Arc::new(self.data) };
                hub.apply_event(&event);
            }
            Kind::Users => {
                hub.apply_push(&Target::Users(ids()?), &self.event, &self.data);
            }
            Kind::Connections => {
                hub.apply_push(&Target::Connections(ids()?), &self.event, &self.data);
            }
            Kind::Broadcast => {
                hub.apply_push(&Target::Broadcast, &self.event, &self.data);
            }
            Kind::RevokeUser => {
                for id in ids()? {
                    hub.apply_revocation(&Revocation::User(id));
                }
            }
            Kind::RevokeSession => {
                for key in ids()? {
                    hub.apply_revocation(&Revocation::Session(key));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_payloads_carry_the_row_and_references_only_its_position() {
        let full = r#"{"v" : 1, "pos" : 7, "at" : 1764630000.5, "kind" : "channel", "channel" : "news", "ids" : null, "event" : "e", "data" : {"b":1,"a":2}, "offset" : 3, "epoch" : "abc"}"#;
        let Notice::Full(record) = parse_notice(full).unwrap() else { panic!("a full payload") };
        assert_eq!((record.pos, record.kind, record.offset), (7, Kind::Channel, Some(3)));
        assert_eq!(record.data.to_string(), r#"{"b":1,"a":2}"#, "key order is kept");
        assert!(matches!(parse_notice(r#"{"v": 1, "pos": 8}"#), Ok(Notice::Reference(8))));
    }

    #[test]
    fn a_newer_payload_is_read_from_the_table_and_garbage_is_an_error() {
        let newer = r#"{"v": 2, "pos": 9, "kind": "hologram", "data": 1}"#;
        assert!(matches!(parse_notice(newer), Ok(Notice::Reference(9))));
        assert!(parse_notice("hello").is_err());
        let unknown = r#"{"v": 1, "pos": 1, "kind": "hologram", "event": "e"}"#;
        assert!(matches!(parse_notice(unknown), Ok(Notice::Reference(1))), "read from the table, skipped there");
    }

    #[test]
    fn items_name_their_kind_and_targets() {
        let revoke = item(&Message::Revoke(Revocation::Session("k".into())));
        assert_eq!(revoke, json!({"kind": "revoke_session", "ids": ["k"], "event": "message", "data": null}));
        let push = Publication { target: Target::Users(vec!["1".into()]), event: "e".into(), data: json!(2) };
        assert_eq!(
            item(&Message::Publish(push)),
            json!({"kind": "users", "channel": null, "ids": ["1"], "event": "e", "data": 2})
        );
        assert_eq!(Kind::parse("revoke_user"), Some(Kind::RevokeUser));
    }
}
