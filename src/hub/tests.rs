use super::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[test]
fn caps_per_user_and_per_address_hold_and_release() {
    let hub = Hub::new(2, 3);
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

#[tokio::test]
async fn delivery_reaches_connection_user_route_and_everyone() {
    let hub = Hub::new(10, 10);
    let (o1, mut i1) = outbox(8, 1 << 20);
    let (o2, mut i2) = outbox(8, 1 << 20);
    let r1 = hub.register(hub.reserve(Some("7"), ip(1)).unwrap(), "c1".into(), "/a".into(), o1);
    let _r2 = hub.register(hub.reserve(None, ip(1)).unwrap(), "c2".into(), "/a".into(), o2);
    assert_eq!(hub.deliver(&Target::Connection("c2".into()), &Message::text("to c2")), 1);
    assert_eq!(hub.deliver(&Target::User("7".into()), &Message::text("to 7")), 1);
    assert_eq!(hub.deliver(&Target::Broadcast, &Message::text("all")), 2);
    assert_eq!(hub.deliver_to_route("/a", "c1", &Message::text("route")), 1);
    assert_eq!(i1.recv().await.unwrap(), Message::text("to 7"));
    assert_eq!(i1.recv().await.unwrap(), Message::text("all"));
    assert_eq!(i2.recv().await.unwrap(), Message::text("to c2"));
    assert_eq!(i2.recv().await.unwrap(), Message::text("all"));
    assert_eq!(i2.recv().await.unwrap(), Message::text("route"));
    drop(r1);
    assert_eq!(hub.deliver(&Target::User("7".into()), &Message::text("gone")), 0);
    assert_eq!(hub.len(), 1);
}

#[tokio::test]
async fn a_full_socket_is_evicted_and_counted() {
    let hub = Hub::new(10, 10);
    let (o, i) = outbox(1, 1 << 20);
    let _r = hub.register(hub.reserve(None, ip(1)).unwrap(), "c".into(), "/a".into(), o);
    hub.deliver(&Target::Broadcast, &Message::text("1"));
    hub.deliver(&Target::Broadcast, &Message::text("2"));
    assert_eq!(hub.slow_evictions(), 1);
    assert_eq!(i.eviction().wait().await.0, SLOW_READER_CLOSE);
}

#[test]
fn hook_sequence_numbers_count_per_key() {
    let hub = Hub::new(1, 1);
    assert_eq!(hub.next_seq("u1"), 1);
    assert_eq!(hub.next_seq("u1"), 2);
    assert_eq!(hub.next_seq("u2"), 1);
}

#[tokio::test]
async fn closing_a_user_evicts_only_that_users_sockets() {
    let hub = Hub::new(10, 10);
    let (mine, my_inbox) = outbox(8, 1 << 20);
    let (theirs, their_inbox) = outbox(8, 1 << 20);
    let _a = hub.register(hub.reserve(Some("7"), ip(1)).unwrap(), "a".into(), "/r".into(), mine);
    let _b = hub.register(hub.reserve(Some("8"), ip(1)).unwrap(), "b".into(), "/r".into(), theirs);
    assert_eq!(hub.close_user("7", 4401, "logged out"), 1);
    assert_eq!(my_inbox.eviction().wait().await, (4401, "logged out"));
    let untouched = tokio::time::timeout(std::time::Duration::from_millis(50), their_inbox.eviction().wait()).await;
    assert!(untouched.is_err(), "another user's socket was closed");
}
