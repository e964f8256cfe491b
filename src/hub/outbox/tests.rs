//! The queue's bounds and policies, driven by hand: futures are polled with tokio-test so
//! "still waiting" is observed, not guessed from a sleep.

use std::sync::Arc;

use tokio_test::task;
use tokio_test::{assert_pending, assert_ready};

use super::*;

fn bounds(messages: usize, bytes: usize) -> Bounds {
    Bounds { messages, bytes }
}

fn direct(text: &str) -> Push {
    Push { frame: Message::text(text), tag: None, policy: Policy::default() }
}

fn event(channel: &str, offset: u64, slow_reader: SlowReader) -> Push {
    let tag = Tag { channel: Arc::from(channel), offset, epoch: Arc::from("e") };
    let policy = Policy { slow_reader, ..Policy::default() };
    Push { frame: Message::text(format!("{channel}:{offset}")), tag: Some(tag), policy }
}

fn drain(inbox: &mut Inbox) -> Vec<String> {
    std::iter::from_fn(|| inbox.try_recv()).map(|m| m.into_text().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_full_queue_evicts_once_with_4008_and_refuses_after() {
    let (outbox, inbox) = outbox(bounds(2, 1 << 20));
    assert_eq!(outbox.offer(direct("a")), Offer::Queued);
    assert_eq!(outbox.offer(direct("b")), Offer::Queued);
    assert_eq!(outbox.offer(direct("c")), Offer::Evicted);
    assert_eq!(outbox.offer(direct("d")), Offer::Closed);
    assert_eq!(inbox.eviction().wait().await, CloseReason::SlowReader);
}

#[test]
fn the_byte_bound_applies_to_pushes() {
    let (outbox, mut inbox) = outbox(bounds(100, 10));
    assert_eq!(outbox.offer(direct("12345678")), Offer::Queued);
    assert_eq!(outbox.offer(direct("123")), Offer::Evicted);
    assert_eq!(drain(&mut inbox), ["12345678"]);
}

#[test]
fn drop_oldest_drops_that_channels_oldest_and_reports_the_range_first() {
    let (outbox, mut inbox) = outbox(bounds(3, 1 << 20));
    outbox.offer(event("a", 1, SlowReader::DropOldest));
    outbox.offer(direct("reply"));
    outbox.offer(event("a", 2, SlowReader::DropOldest));
    assert_eq!(outbox.offer(event("a", 3, SlowReader::DropOldest)), Offer::Dropped(1));
    assert_eq!(outbox.offer(event("a", 4, SlowReader::DropOldest)), Offer::Dropped(1));
    let lost = r#"{"lost":{"channel":"a","from":1,"to":2}}"#;
    assert_eq!(drain(&mut inbox), [lost, "reply", "a:3", "a:4"]);
}

#[test]
fn drop_oldest_with_nothing_of_its_own_queued_drops_the_new_event() {
    let (outbox, mut inbox) = outbox(bounds(1, 1 << 20));
    outbox.offer(direct("reply"));
    assert_eq!(outbox.offer(event("a", 7, SlowReader::DropOldest)), Offer::Dropped(1));
    assert_eq!(drain(&mut inbox), ["reply", r#"{"lost":{"channel":"a","from":7,"to":7}}"#]);
}

#[test]
fn latest_keeps_only_the_newest_event_of_the_channel() {
    let (outbox, mut inbox) = outbox(bounds(3, 1 << 20));
    outbox.offer(event("a", 1, SlowReader::Latest));
    outbox.offer(event("b", 1, SlowReader::Latest));
    outbox.offer(event("a", 2, SlowReader::Latest));
    assert_eq!(outbox.offer(event("a", 3, SlowReader::Latest)), Offer::Dropped(2));
    assert_eq!(drain(&mut inbox), ["b:1", "a:3"]);
}

#[test]
fn a_channel_bound_applies_below_the_socket_bound() {
    let (outbox, mut inbox) = outbox(bounds(100, 1 << 20));
    let capped = |offset| {
        let mut push = event("a", offset, SlowReader::Latest);
        push.policy.max_messages = Some(1);
        push
    };
    assert_eq!(outbox.offer(capped(1)), Offer::Queued);
    assert_eq!(outbox.offer(event("b", 1, SlowReader::Disconnect)), Offer::Queued);
    assert_eq!(outbox.offer(capped(2)), Offer::Dropped(1));
    assert_eq!(drain(&mut inbox), ["b:1", "a:2"]);
}

#[test]
fn a_reply_waits_for_room_then_goes_in_order() {
    let (outbox, mut inbox) = outbox(bounds(1, 100));
    outbox.offer(direct("first"));
    let mut reply = task::spawn(outbox.send(Message::text("second")));
    assert_pending!(reply.poll());
    assert_eq!(inbox.try_recv(), Some(Message::text("first")));
    assert!(reply.is_woken(), "taking a frame wakes the waiting reply");
    assert_eq!(assert_ready!(reply.poll()), Ok(()));
    assert_eq!(inbox.try_recv(), Some(Message::text("second")));
}

#[test]
fn a_waiting_reply_fails_when_the_socket_goes() {
    let (outbox, inbox) = outbox(bounds(1, 100));
    outbox.offer(direct("first"));
    let mut reply = task::spawn(outbox.send(Message::text("second")));
    assert_pending!(reply.poll());
    drop(inbox);
    assert!(reply.is_woken());
    assert_eq!(assert_ready!(reply.poll()), Err(Gone));
}

#[test]
fn recv_wakes_for_a_frame_queued_later() {
    let (outbox, mut inbox) = outbox(bounds(4, 100));
    let mut next = task::spawn(inbox.recv());
    assert_pending!(next.poll());
    outbox.offer(direct("late"));
    assert!(next.is_woken());
    assert_eq!(assert_ready!(next.poll()), Message::text("late"));
}

#[test]
fn until_room_waits_while_full_and_wakes_when_a_frame_is_taken() {
    let (outbox, mut inbox) = outbox(bounds(1, 100));
    outbox.offer(direct("a"));
    let mut room = task::spawn(outbox.until_room());
    assert_pending!(room.poll());
    inbox.try_recv();
    assert!(room.is_woken());
    assert_ready!(room.poll());
}
