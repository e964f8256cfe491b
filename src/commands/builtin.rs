//! Built-in commands, answered by Switchyard without a backend: `ping`, `echo`, `whoami`,
//! and the channel commands `subscribe`, `unsubscribe`, `publish`, `presence`, `history`
//! (DESIGN.md, "Wire protocol"). Channel commands check the channel's rule for the caller.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{Caller, Commands, Effects};
use crate::broker::{Message, Position, Receipt};
use crate::hub::{Action, Filter, Rule, SubscribeError};
use crate::protocol::{CommandError, ErrorCode};

/// Most events one `history` call returns.
const MAX_HISTORY_LIMIT: usize = 1000;
/// Events a `history` call returns when it sets no `limit`.
const DEFAULT_HISTORY_LIMIT: usize = 100;

/// A built-in command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// `"pong"`.
    Ping,
    /// The argument, back.
    Echo,
    /// The socket's user, or null.
    Whoami,
    /// Join one channel or several, optionally recovering from `since`, with a `filter`.
    Subscribe,
    /// Leave one channel or several.
    Unsubscribe,
    /// Publish to a channel whose rule lets this user.
    Publish,
    /// Who is subscribed to a presence channel.
    Presence,
    /// The events a channel keeps.
    History,
}

impl Builtin {
    /// The built-in with this name.
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "ping" => Self::Ping,
            "echo" => Self::Echo,
            "whoami" => Self::Whoami,
            "subscribe" => Self::Subscribe,
            "unsubscribe" => Self::Unsubscribe,
            "publish" => Self::Publish,
            "presence" => Self::Presence,
            "history" => Self::History,
            _ => return None,
        })
    }

    /// Runs the command.
    pub async fn run(
        self,
        args: Value,
        caller: &Caller,
        commands: &Commands,
        effects: &mut Effects,
    ) -> Result<Value, CommandError> {
        match self {
            Self::Ping => Ok(Value::from("pong")),
            Self::Echo => Ok(args),
            Self::Whoami => Ok(serde_json::to_value(caller.user.as_deref()).unwrap_or(Value::Null)),
            Self::Subscribe => subscribe(args, caller, commands, effects).await,
            Self::Unsubscribe => unsubscribe(&args, caller, commands),
            Self::Publish => publish(args, caller, commands).await,
            Self::Presence => presence(&args, caller, commands).await,
            Self::History => history(&args, caller, commands).await,
        }
    }
}

fn bad_args(message: impl Into<String>) -> CommandError {
    CommandError::new(ErrorCode::BadArgs, message)
}

/// One channel a subscribe asks for.
#[derive(Debug)]
pub struct Wanted {
    /// The channel.
    pub channel: String,
    /// The last position the client saw.
    pub since: Option<Position>,
    /// The compiled filter.
    pub filter: Option<Filter>,
}

/// Reads `"news"`, `{"channel", "since"?, "filter"?}`, or a list of those (`many` is true
/// for a list). A bad item fails the whole command (`bad_args`).
pub fn parse_subscribe(args: &Value, max: usize) -> Result<(Vec<Wanted>, bool), CommandError> {
    match args {
        Value::Array(items) if items.is_empty() => Err(bad_args("subscribe to at least one channel")),
        Value::Array(items) if items.len() > max => Err(bad_args(format!("at most {max} channels at once"))),
        Value::Array(items) => Ok((items.iter().map(parse_wanted).collect::<Result<_, _>>()?, true)),
        one => Ok((vec![parse_wanted(one)?], false)),
    }
}

fn parse_wanted(item: &Value) -> Result<Wanted, CommandError> {
    let fields = match item {
        Value::String(_) => return Ok(Wanted { channel: channel_name(Some(item))?, since: None, filter: None }),
        Value::Object(fields) => fields,
        _ => {
            return Err(bad_args(
                "write a channel name or {\"channel\": \"news\", \"since\": {...}, \"filter\": {...}}",
            ))
        }
    };
    if let Some(key) = fields.keys().find(|k| !matches!(k.as_str(), "channel" | "since" | "filter")) {
        return Err(bad_args(format!("unknown key `{key}` (channel, since, filter)")));
    }
    let since = fields.get("since").filter(|s| !s.is_null()).map(parse_position).transpose()?;
    let filter = fields
        .get("filter")
        .filter(|f| !f.is_null())
        .map(|f| Filter::compile(f).map_err(|e| bad_args(e.to_string())))
        .transpose()?;
    Ok(Wanted { channel: channel_name(fields.get("channel"))?, since, filter })
}

fn channel_name(value: Option<&Value>) -> Result<String, CommandError> {
    match value.and_then(Value::as_str) {
        Some(name) if crate::config::is_channel_name(name) => Ok(name.to_string()),
        Some(_) => Err(bad_args("a channel name is 1 to 255 printable characters without spaces")),
        None => Err(bad_args("`channel` is required: {\"channel\": \"news\"}")),
    }
}

/// Reads `{"offset": N, "epoch": "..."}`.
pub fn parse_position(value: &Value) -> Result<Position, CommandError> {
    let offset = value.get("offset").and_then(Value::as_u64);
    let epoch = value.get("epoch").and_then(Value::as_str).filter(|e| !e.is_empty() && e.len() <= 64);
    match (offset, epoch) {
        (Some(offset), Some(epoch)) => Ok(Position { offset, epoch: Arc::from(epoch) }),
        _ => Err(bad_args("`since` is {\"offset\": N, \"epoch\": \"...\"} as the last push gave them")),
    }
}

/// The rule for `channel` if it lets the caller do `action`; `forbidden` otherwise.
async fn permitted(
    commands: &Commands,
    caller: &Caller,
    channel: &str,
    action: Action,
) -> Result<Arc<Rule>, CommandError> {
    let Some(rule) = commands.hub.rules().for_user(channel, caller.user.as_deref()) else {
        return Err(CommandError::new(ErrorCode::Forbidden, format!("no channel rule allows `{channel}`")));
    };
    let allowed = match rule.verdict(action, caller.user.as_deref()) {
        crate::hub::Verdict::Allow => true,
        crate::hub::Verdict::Deny => false,
        crate::hub::Verdict::AskBackend => commands.authorizer.ask(&rule, channel, action, caller).await?,
    };
    if allowed {
        Ok(rule)
    } else {
        let verb = action.as_str();
        Err(CommandError::new(ErrorCode::Forbidden, format!("you may not {verb} to `{channel}`")))
    }
}

async fn subscribe(
    args: Value,
    caller: &Caller,
    commands: &Commands,
    effects: &mut Effects,
) -> Result<Value, CommandError> {
    let (wanted, many) = parse_subscribe(&args, commands.max_subscriptions)?;
    let mut results = Vec::with_capacity(wanted.len());
    for want in wanted {
        let outcome = match permitted(commands, caller, &want.channel, Action::Subscribe).await {
            Ok(_) => join(commands, caller, want, effects).await,
            Err(e) => Err(e),
        };
        results.push(outcome);
    }
    if !many {
        return results.pop().expect("one channel");
    }
    let list = results.into_iter().map(|r| r.unwrap_or_else(|e| json!({"error": e.to_value()})));
    Ok(Value::Array(list.collect()))
}

/// Joins the channel (permission already checked) and marks it for release after the reply.
pub async fn join(
    commands: &Commands,
    caller: &Caller,
    want: Wanted,
    effects: &mut Effects,
) -> Result<Value, CommandError> {
    let asked_since = want.since.is_some();
    let joined = commands.hub.subscribe(&caller.id, &want.channel, want.since, want.filter).await;
    let subscribed = joined.map_err(|e| match e {
        SubscribeError::TooMany(_) => CommandError::new(ErrorCode::TooManyRequests, e.to_string()),
        SubscribeError::NoRule(_) => CommandError::new(ErrorCode::Forbidden, e.to_string()),
        SubscribeError::Broker => CommandError::new(ErrorCode::BackendUnavailable, "the broker is unavailable"),
        SubscribeError::Gone => CommandError::new(ErrorCode::BadFrame, "the socket is closing"),
    })?;
    effects.release.push(Arc::from(want.channel.as_str()));
    let mut result = Map::new();
    result.insert("channel".into(), want.channel.into());
    result.insert("offset".into(), subscribed.position.offset.into());
    result.insert("epoch".into(), (*subscribed.position.epoch).into());
    if asked_since {
        result.insert("recovered".into(), subscribed.recovered.unwrap_or(false).into());
    }
    Ok(Value::Object(result))
}

fn unsubscribe(args: &Value, caller: &Caller, commands: &Commands) -> Result<Value, CommandError> {
    let one = |v: &Value| -> Result<bool, CommandError> {
        let name = match v {
            Value::Object(fields) => channel_name(fields.get("channel"))?,
            other => channel_name(Some(other))?,
        };
        Ok(commands.hub.unsubscribe(&caller.id, &name))
    };
    match args {
        Value::Array(items) if items.len() <= commands.max_subscriptions => {
            Ok(Value::Array(items.iter().map(|v| one(v).map(Value::from)).collect::<Result<_, _>>()?))
        }
        Value::Array(_) => Err(bad_args("too many channels")),
        single => Ok(one(single)?.into()),
    }
}

async fn publish(item: Value, caller: &Caller, commands: &Commands) -> Result<Value, CommandError> {
    if let Some(fields) = item.as_object() {
        if let Some(key) = fields.keys().find(|k| !matches!(k.as_str(), "channel" | "event" | "data")) {
            return Err(bad_args(format!("unknown key `{key}` (channel, event, data)")));
        }
    }
    let channel = channel_name(item.get("channel"))?;
    permitted(commands, caller, &channel, Action::Publish).await?;
    let publication = crate::broker::parse_publication(&item).map_err(bad_args)?;
    let receipts = commands.hub.broker().send(vec![Message::Publish(publication)]).await;
    match receipts.map(|mut r| r.pop()) {
        Ok(Some(Receipt::Channel(position))) => Ok(json!({"offset": position.offset, "epoch": &*position.epoch})),
        Ok(_) => Err(CommandError::new(ErrorCode::BackendError, "the broker did not number the event")),
        Err(e) => {
            tracing::warn!(channel, error = %e, "publish from a socket failed");
            Err(CommandError::new(ErrorCode::BackendUnavailable, "the broker is unavailable"))
        }
    }
}

fn single_channel(args: &Value) -> Result<String, CommandError> {
    match args {
        Value::Object(fields) => channel_name(fields.get("channel")),
        other => channel_name(Some(other)),
    }
}

async fn presence(args: &Value, caller: &Caller, commands: &Commands) -> Result<Value, CommandError> {
    let channel = single_channel(args)?;
    let rule = permitted(commands, caller, &channel, Action::Subscribe).await?;
    let room_rule = commands.hub.rules().for_channel(&channel);
    if !rule.presence || !room_rule.is_some_and(|r| r.presence) {
        return Err(bad_args(format!("presence is off for `{channel}`")));
    }
    let (users, count) = commands.hub.existing_room(&channel).map(|room| room.presence()).unwrap_or_default();
    let users: Vec<&crate::django::User> = users.iter().map(|u| &**u).collect();
    Ok(json!({"channel": channel, "count": count, "users": users}))
}

async fn history(args: &Value, caller: &Caller, commands: &Commands) -> Result<Value, CommandError> {
    let channel = single_channel(args)?;
    permitted(commands, caller, &channel, Action::Subscribe).await?;
    let since = args.get("since").filter(|s| !s.is_null()).map(parse_position).transpose()?;
    let limit = match args.get("limit") {
        None | Some(Value::Null) => DEFAULT_HISTORY_LIMIT,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_HISTORY_LIMIT as u64).contains(n))
            .ok_or_else(|| bad_args(format!("`limit` is a number from 1 to {MAX_HISTORY_LIMIT}")))?
            as usize,
    };
    let room = commands.hub.room(&channel).await.map_err(|e| CommandError::new(ErrorCode::Forbidden, e.to_string()))?;
    let position = room.position();
    let same_run = since.as_ref().is_none_or(|s| s.epoch == position.epoch && s.offset <= position.offset);
    let after = since.as_ref().filter(|_| same_run).map(|s| s.offset);
    let (events, position) = room.history(after, limit);
    let mut result =
        json!({"channel": channel, "offset": position.offset, "epoch": &*position.epoch, "events": events});
    if since.is_some() {
        result["recovered"] = same_run.into();
    }
    Ok(result)
}

/// A `?resume=` reconnect: each parked channel is rejoined from where it stopped, if the
/// caller may still subscribe to it. `{"ok": true, "channels": [per channel: the subscribe
/// result, or {"channel", "error"}]}`, or `{"ok": false, "recovered": false, "reason"}` for
/// an unknown, used, expired or another user's token. A token parked on another node is
/// unknown here (tokens are per node): this node cannot know which channels it held, so it
/// restores none and says, in the recovery invariant's own words, that nothing was
/// recovered; the client resubscribes each channel with `since` and gets each one's
/// `recovered` from that.
pub async fn resume(commands: &Commands, caller: &Caller, token: &str, effects: &mut Effects) -> Value {
    let user = caller.user.as_ref().map(|u| u.id.as_str());
    let session = match commands.hub.tokens().take(token, user) {
        Ok(session) => session,
        Err(e) => return json!({"ok": false, "recovered": false, "reason": e.to_string()}),
    };
    let mut channels = Vec::with_capacity(session.channels.len());
    for parked in &session.channels {
        let want = Wanted {
            channel: parked.channel.to_string(),
            since: Some(parked.position.clone()),
            filter: parked.filter.clone(),
        };
        let outcome = match permitted(commands, caller, &want.channel, Action::Subscribe).await {
            Ok(_) => join(commands, caller, want, effects).await,
            Err(e) => Err(e),
        };
        channels.push(outcome.unwrap_or_else(|e| json!({"channel": &*parked.channel, "error": e.to_value()})));
    }
    json!({"ok": true, "channels": channels})
}

/// Pushes from a backend's reply: channel items through the broker (numbered there), the
/// others to their targets on every node. Django is trusted: no rule is checked but the
/// channel must have one.
pub async fn backend_pushes(commands: &Commands, items: &[Value]) {
    let batch: Vec<Message> = items
        .iter()
        .filter_map(|item| match crate::broker::parse_publication(item) {
            Ok(publication) => Some(Message::Publish(publication)),
            Err(reason) => {
                tracing::debug!(%reason, "backend push entry ignored");
                None
            }
        })
        .collect();
    if batch.is_empty() {
        return;
    }
    if let Err(e) = commands.hub.broker().send(batch).await {
        tracing::warn!(error = %e, "backend pushes not delivered");
    }
}

/// A backend's `subscribe` list: the caller joins each channel that has a rule, without
/// a permission check (Django decided). Failures are logged, not reported.
pub async fn backend_subscribes(commands: &Commands, caller: &Caller, items: &[Value], effects: &mut Effects) {
    for item in items {
        match parse_wanted(item) {
            Ok(want) => {
                let channel = want.channel.clone();
                if let Err(e) = join(commands, caller, want, effects).await {
                    tracing::debug!(channel, error = %e.message, "backend subscribe failed");
                }
            }
            Err(e) => tracing::debug!(error = %e.message, "backend subscribe entry ignored"),
        }
    }
}

/// A backend's `unsubscribe` list.
pub fn backend_unsubscribes(commands: &Commands, caller: &Caller, items: &[Value]) {
    for item in items {
        if let Ok(channel) = single_channel(item) {
            commands.hub.unsubscribe(&caller.id, &channel);
        }
    }
}
