use serde_json::json;
use tokio_test::{assert_pending, assert_ready, task};

use super::*;
use crate::config::{ChannelConfig, ChannelPattern, Permission};

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn settings(messages: usize) -> HubSettings {
    HubSettings {
        max_per_user: 10,
        max_per_ip: 10,
        bounds: Bounds { messages, bytes: 1 << 20 },
        max_subscriptions: 4,
        resume_ttl: Duration::from_secs(60),
    }
}

fn rule(pattern: &str, history: usize) -> ChannelConfig {
    ChannelConfig {
        pattern: ChannelPattern::parse(pattern).unwrap(),
        subscribe: Permission::Anyone,
        authorize: None,
        authorize_ttl: Duration::from_secs(1),
        publish: Permission::Nobody,
        history_size: history,
        history_ttl: Duration::from_secs(600),
        presence: true,
        slow_reader: SlowReader::Disconnect,
        outbox_messages: None,
        outbox_bytes: None,
    }
}

fn hub_with(rules: &[ChannelConfig], messages: usize) -> Hub {
    Hub::local(settings(messages), Rules::new(rules))
}

fn user(id: &str) -> Arc<User> {
    Arc::new(User { id: id.into(), username: format!("u{id}"), is_staff: false, is_superuser: false })
}

/// Registers a socket; gives its registration and inbox.
fn open(hub: &Hub, id: &str, user: Option<Arc<User>>) -> (Registration, Inbox) {
    let (outbox, inbox) = outbox(hub.bounds());
    let slot = hub.reserve(user.as_ref().map(|u| u.id.as_str()), ip(1)).unwrap();
    let socket = Socket { id: id.into(), route: "/ws/".into(), outbox, user, session: Some(format!("s-{id}").into()) };
    (hub.register(slot, socket), inbox)
}

fn texts(inbox: &mut Inbox) -> Vec<serde_json::Value> {
    std::iter::from_fn(|| inbox.try_recv()).map(|m| serde_json::from_str(m.to_text().unwrap()).unwrap()).collect()
}

fn publish(hub: &Hub, channel: &str, n: i64) -> Position {
    hub.append(channel, "e", Arc::new(json!({"n": n}))).unwrap()
}

async fn subscribed(hub: &Hub, id: &str, channel: &str, since: Option<Position>) -> Subscribed {
    let conn: ConnId = id.into();
    let joined = hub.subscribe(&conn, channel, since, None).await.unwrap();
    hub.release(&conn, channel).await;
    joined
}

#[test]
fn caps_per_user_and_per_address_hold_and_release() {
    let hub = Hub::local(HubSettings { max_per_user: 2, max_per_ip: 3, ..settings(8) }, Rules::default());
    let a = hub.reserve(Some("1"), ip(1)).unwrap();
    let _b = hub.reserve(Some("1"), ip(2)).unwrap();
    assert_eq!(hub.reserve(Some("1"), ip(3)).unwrap_err(), CapExceeded::User);
    drop(a);
    let _c = hub.reserve(Some("1"), ip(3)).unwrap();
    let _d = hub.reserve(None, ip(9)).unwrap();
    let _e = hub.reserve(None, ip(9)).unwrap();
    let _f = hub.reserve(None, ip(9)).unwrap();
    assert_eq!(hub.reserve(None, ip(9)).unwrap_err(), CapExceeded::Address);
}

#[test]
fn pushes_reach_connections_users_and_everyone() {
    let hub = hub_with(&[], 8);
    let (r1, mut i1) = open(&hub, "c1", Some(user("7")));
    let (_r2, mut i2) = open(&hub, "c2", None);
    assert_eq!(hub.apply_push(&Target::Connections(vec!["c2".into()]), "x", &json!(1)), 1);
    assert_eq!(hub.apply_push(&Target::Users(vec!["7".into()]), "y", &json!(2)), 1);
    assert_eq!(hub.apply_push(&Target::Broadcast, "z", &json!(3)), 2);
    assert_eq!(
        texts(&mut i1),
        [json!({"push": {"event": "y", "data": 2}}), json!({"push": {"event": "z", "data": 3}})]
    );
    assert_eq!(texts(&mut i2).len(), 2);
    drop(r1);
    assert_eq!(hub.apply_push(&Target::Users(vec!["7".into()]), "gone", &json!(null)), 0);
    assert_eq!(hub.len(), 1);
}

#[tokio::test]
async fn channel_events_carry_rising_offsets_and_one_epoch() {
    let hub = hub_with(&[rule("news", 0)], 8);
    let (_r, mut inbox) = open(&hub, "c", None);
    let joined = subscribed(&hub, "c", "news", None).await;
    assert_eq!(joined.position.offset, 0);
    publish(&hub, "news", 1);
    publish(&hub, "news", 2);
    let pushes = texts(&mut inbox);
    assert_eq!(pushes[0]["push"]["offset"], 1);
    assert_eq!(pushes[1]["push"]["offset"], 2);
    assert_eq!(pushes[1]["push"]["epoch"], &*joined.position.epoch);
    assert_eq!(pushes[1]["push"]["channel"], "news");
}

#[tokio::test]
async fn resubscribing_from_an_offset_replays_what_was_missed_once() {
    let hub = hub_with(&[rule("news", 10)], 16);
    let seen = publish(&hub, "news", 1);
    publish(&hub, "news", 2);
    publish(&hub, "news", 3);
    let (_r, mut inbox) = open(&hub, "c", None);
    let joined = subscribed(&hub, "c", "news", Some(seen)).await;
    assert_eq!(joined.recovered, Some(true));
    publish(&hub, "news", 4);
    let offsets: Vec<u64> = texts(&mut inbox).iter().map(|p| p["push"]["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, [2, 3, 4]);
}

#[tokio::test]
async fn a_gap_history_does_not_cover_is_not_recovered() {
    let hub = hub_with(&[rule("news", 2)], 16);
    let seen = publish(&hub, "news", 1);
    for n in 2..=5 {
        publish(&hub, "news", n);
    }
    let (_r, _inbox) = open(&hub, "c", None);
    assert_eq!(subscribed(&hub, "c", "news", Some(seen.clone())).await.recovered, Some(false));
    let other_run = Position { offset: 5, epoch: Arc::from("another") };
    assert_eq!(subscribed(&hub, "c", "news", Some(other_run)).await.recovered, Some(false));
}

#[tokio::test]
async fn a_held_subscriber_gets_nothing_before_its_release() {
    let hub = hub_with(&[rule("news", 0)], 8);
    let (_r, mut inbox) = open(&hub, "c", None);
    let conn: ConnId = "c".into();
    hub.subscribe(&conn, "news", None, None).await.unwrap();
    publish(&hub, "news", 1);
    assert!(texts(&mut inbox).is_empty(), "a push came before the subscribe reply");
    hub.release(&conn, "news").await;
    assert_eq!(texts(&mut inbox)[0]["push"]["offset"], 1);
}

#[tokio::test]
async fn a_replay_larger_than_the_queue_is_released_as_room_allows() {
    let hub = hub_with(&[rule("news", 10)], 2);
    let seen = publish(&hub, "news", 0);
    for n in 1..=5 {
        publish(&hub, "news", n);
    }
    let (_r, mut inbox) = open(&hub, "c", None);
    let conn: ConnId = "c".into();
    hub.subscribe(&conn, "news", Some(seen), None).await.unwrap();
    let mut release = task::spawn(hub.release(&conn, "news"));
    let mut offsets = Vec::new();
    while release.poll().is_pending() {
        offsets.extend(texts(&mut inbox).iter().map(|p| p["push"]["offset"].as_u64().unwrap()));
    }
    offsets.extend(texts(&mut inbox).iter().map(|p| p["push"]["offset"].as_u64().unwrap()));
    assert_eq!(offsets, [2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn filters_apply_to_live_events_and_replays() {
    let hub = hub_with(&[rule("news", 10)], 8);
    let seen = publish(&hub, "news", 0);
    publish(&hub, "news", 5);
    publish(&hub, "news", 1);
    let (_r, mut inbox) = open(&hub, "c", None);
    let conn: ConnId = "c".into();
    let filter = Filter::compile(&json!({"n": {"gte": 5}})).unwrap();
    hub.subscribe(&conn, "news", Some(seen), Some(filter)).await.unwrap();
    hub.release(&conn, "news").await;
    publish(&hub, "news", 9);
    publish(&hub, "news", 2);
    let ns: Vec<i64> = texts(&mut inbox).iter().map(|p| p["push"]["data"]["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, [5, 9]);
}

#[tokio::test]
async fn a_slow_subscriber_is_evicted_and_counted_once() {
    let hub = hub_with(&[rule("news", 0)], 1);
    let (_r, inbox) = open(&hub, "c", None);
    subscribed(&hub, "c", "news", None).await;
    for n in 0..5 {
        publish(&hub, "news", n);
    }
    assert_eq!(hub.slow_evictions(), 1, "one socket evicted, not one count per refused event");
    assert_eq!(inbox.eviction().wait().await, CloseReason::SlowReader);
}

#[tokio::test]
async fn presence_counts_a_user_once_across_tabs() {
    let hub = hub_with(&[rule("room", 0)], 8);
    let (_watcher, mut watching) = open(&hub, "w", None);
    subscribed(&hub, "w", "room", None).await;
    let (tab1, _i1) = open(&hub, "t1", Some(user("5")));
    let (_tab2, _i2) = open(&hub, "t2", Some(user("5")));
    subscribed(&hub, "t1", "room", None).await;
    subscribed(&hub, "t2", "room", None).await;
    let frames = texts(&mut watching);
    assert_eq!(
        frames,
        [
            json!({"join": {"channel": "room", "user": {"id": "5", "username": "u5", "is_staff": false, "is_superuser": false}}})
        ]
    );
    drop(tab1);
    assert!(texts(&mut watching).is_empty(), "closing one of two tabs sent a leave");
    let (users, count) = hub.existing_room("room").unwrap().presence();
    assert_eq!((users.len(), count), (1, 2));
}

#[tokio::test]
async fn revoking_a_session_closes_only_its_sockets() {
    let hub = hub_with(&[], 8);
    let (_a, mine) = open(&hub, "a", Some(user("7")));
    let (_b, theirs) = open(&hub, "b", Some(user("7")));
    assert_eq!(hub.apply_revocation(&Revocation::Session("s-a".into())), 1);
    assert_eq!(mine.eviction().wait().await, CloseReason::Revoked);
    let mut other = task::spawn(async { theirs.eviction().wait().await });
    assert_pending!(other.poll());
    assert_eq!(hub.apply_revocation(&Revocation::User("7".into())), 1);
    assert!(other.is_woken());
    assert_eq!(assert_ready!(other.poll()), CloseReason::Revoked);
}

#[tokio::test]
async fn subscriptions_per_socket_are_bounded() {
    let hub = hub_with(&[rule("c:*", 0)], 8);
    let (_r, _inbox) = open(&hub, "s", None);
    let conn: ConnId = "s".into();
    for i in 0..4 {
        hub.subscribe(&conn, &format!("c:{i}"), None, None).await.unwrap();
    }
    assert_eq!(hub.subscribe(&conn, "c:9", None, None).await, Err(SubscribeError::TooMany(4)));
    assert_eq!(hub.subscribe(&conn, "other", None, None).await, Err(SubscribeError::NoRule("other".into())));
}

#[test]
fn hook_sequence_numbers_count_per_key_and_can_be_forgotten() {
    let hub = hub_with(&[], 1);
    assert_eq!(hub.next_seq("u1"), 1);
    assert_eq!(hub.next_seq("u1"), 2);
    assert_eq!(hub.next_seq("u2"), 1);
    hub.forget_seq("u1");
    assert_eq!(hub.next_seq("u1"), 1);
}

#[tokio::test]
async fn closing_a_socket_leaves_its_channels() {
    let hub = hub_with(&[rule("news", 0)], 8);
    let (r, _inbox) = open(&hub, "c", None);
    subscribed(&hub, "c", "news", None).await;
    assert_eq!(hub.existing_room("news").unwrap().subscribers(), 1);
    drop(r);
    assert_eq!(hub.existing_room("news").unwrap().subscribers(), 0);
}

#[tokio::test]
async fn a_reload_closes_with_1012_only_the_subscribers_of_a_channel_no_rule_covers() {
    let hub = hub_with(&[rule("news", 0), rule("old:*", 0)], 8);
    let (_a, kept) = open(&hub, "a", None);
    let (_b, dropped) = open(&hub, "b", None);
    subscribed(&hub, "a", "news", None).await;
    subscribed(&hub, "b", "old:1", None).await;
    let routes = HashSet::from(["/ws/".to_owned()]);
    assert_eq!(hub.reload(settings(8), Rules::new(&[rule("news", 0)]), &routes), 1);
    assert_eq!(dropped.eviction().wait().await, CloseReason::Reloaded);
    let mut other = task::spawn(async { kept.eviction().wait().await });
    assert_pending!(other.poll());
    let err = hub.subscribe(&"a".into(), "old:2", None, None).await.unwrap_err();
    assert!(matches!(err, SubscribeError::NoRule(_)), "{err:?}");
}

#[test]
fn a_reload_puts_new_caps_in_force_for_new_sockets() {
    let hub = Hub::local(HubSettings { max_per_ip: 1, ..settings(8) }, Rules::default());
    let _held = hub.reserve(None, ip(1)).unwrap();
    assert_eq!(hub.reserve(None, ip(1)).unwrap_err(), CapExceeded::Address);
    let routes = HashSet::from(["/ws/".to_owned()]);
    hub.reload(HubSettings { max_per_ip: 2, ..settings(8) }, Rules::default(), &routes);
    assert!(hub.reserve(None, ip(1)).is_ok());
}
