//! WebSockets end to end with real Django: sessions written by Django resolve to the same
//! user in Switchyard, command views under gunicorn see `request.user` through the forwarded
//! cookie and verify the signature, state round-trips, hooks are logged exactly once with
//! a per-user `seq`, a logout closes the socket with 4401, and a session store outage is
//! handled as `on_store_error` says at the upgrade and never closes an open socket.

mod support;

use futures_util::SinkExt;
use serde_json::json;
use support::browser::Browser;
use support::ws::*;
use support::*;

struct Site {
    django: django::DjangoSite,
    sy: switchyard::server::Running,
    browser: Browser,
}

impl Site {
    async fn start() -> Self {
        Self::with("", "").await
    }

    /// The demo behind Switchyard with routes for every case; `websocket` goes into
    /// `[websocket]`, `django` into `[django]` (both empty: the defaults users get).
    async fn with(websocket: &str, django_options: &str) -> Self {
        let django = django::start();
        let http = &django.http;
        let config = format!(
            r#"{base}
{sections}
[websocket]
{websocket}
[[routes]]
path = "/ws/"
on_connect = "{http}/ws/hooks/connect/"
on_disconnect = "{http}/ws/hooks/disconnect/"
[[routes]]
path = "/ws/private/"
auth = "authenticated"
[[routes]]
path = "/ws/nohooks/"
[[routes]]
path = "/ws/staff/"
auth = "staff"
[commands."demo.*"]
backend = "http"
url = "{http}/ws/commands/{{command}}/"
[commands."chat.*"]
backend = "http"
url = "{http}/ws/commands/{{command}}/"
auth = "authenticated"
"#,
            base = minimal_config(&django.url, ""),
            sections = django.switchyard_sections().replace("[backends]", &format!("{django_options}\n[backends]")),
        );
        let sy = start_switchyard(&config).await;
        let browser = Browser { addr: sy.plain_addrs[0] };
        Self { django, sy, browser }
    }

    /// Opens a socket as a browser on this origin with `cookie` (may be empty).
    async fn socket(&self, path: &str, cookie: &str) -> Client {
        let origin = format!("http://{}", self.browser.host());
        let mut headers = vec![("origin", origin.as_str())];
        if !cookie.is_empty() {
            headers.push(("cookie", cookie));
        }
        connect_with(self.sy.plain_addrs[0], path, &headers).await.expect("upgrade accepted")
    }

    async fn logged_in(&self) -> String {
        self.browser.login("demo", "demo-password").await
    }

    /// Stops Switchyard (every socket closed, every disconnect hook reported) and gives
    /// back the Django site, whose hook log can then be read in full.
    async fn stop(self) -> django::DjangoSite {
        assert_eq!(self.sy.shutdown(PATIENCE).await, switchyard::server::Shutdown::Clean);
        self.django
    }
}

/// Django's record of connection `id`'s hook calls: `(kind, seq)` oldest first.
async fn hook_calls(django: &django::DjangoSite, id: &str) -> Vec<(String, u64)> {
    let calls = django.hook_log(id).await;
    calls.iter().map(|c| (c["kind"].as_str().unwrap().to_owned(), c["seq"].as_u64().unwrap())).collect()
}

fn connection_id(welcome: &serde_json::Value) -> String {
    welcome["connection"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn welcome_names_the_user_django_logged_in() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    let mut socket = site.socket("/ws/", &cookie).await;
    let user = &welcome(&mut socket).await["user"];
    assert_eq!(user["username"], "demo");
    assert!(user["id"].is_string(), "ids are strings: {user}");
    assert_eq!(user["is_staff"], false);
    assert_eq!(user["is_superuser"], false);
}

#[tokio::test]
async fn command_view_sees_request_user_and_the_signed_payload_user() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    let mut socket = site.socket("/ws/", &cookie).await;
    welcome(&mut socket).await;
    let reply = command(&mut socket, json!({"id": 1, "demo.whoami": null})).await;
    let result = &reply["demo.whoami"]["result"];
    assert_eq!(result["request_user"], "demo", "{reply}");
    assert_eq!(result["payload_user"]["username"], "demo", "{reply}");
}

#[tokio::test]
async fn state_round_trips_through_the_django_view() {
    let site = Site::start().await;
    let mut socket = site.socket("/ws/", "").await;
    welcome(&mut socket).await;
    for n in 1..=3 {
        let reply = command(&mut socket, json!({"id": n, "demo.count": null})).await;
        assert_eq!(reply["demo.count"]["result"]["count"], n, "{reply}");
    }
}

#[tokio::test]
async fn django_errors_become_command_errors() {
    let site = Site::start().await;
    let mut socket = site.socket("/ws/", "").await;
    welcome(&mut socket).await;
    let reply = command(&mut socket, json!({"id": 1, "demo.fail": {"status": 500}, "chat.send": {"text": "hi"}})).await;
    assert_eq!(reply["demo.fail"]["error"]["code"], "backend_error", "{reply}");
    assert_eq!(reply["chat.send"]["error"]["code"], "forbidden", "anonymous chat must be refused: {reply}");
}

#[tokio::test]
async fn chat_message_from_a_logged_in_user_reaches_every_socket() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    let mut sender = site.socket("/ws/", &cookie).await;
    let mut listener = site.socket("/ws/", "").await;
    welcome(&mut sender).await;
    welcome(&mut listener).await;
    sender
        .send(tokio_tungstenite::tungstenite::Message::text(
            json!({"id": 1, "chat.send": {"text": "hello"}}).to_string(),
        ))
        .await
        .unwrap();
    // The sender's own copy comes first: pushes are queued before the command's reply.
    let own = next_json(&mut sender).await;
    let reply = next_json(&mut sender).await;
    assert_eq!(reply["chat.send"]["result"]["ok"], true, "{reply}");
    for push in [own, next_json(&mut listener).await] {
        assert_eq!(push["push"]["event"], "chat.message", "{push}");
        assert_eq!(push["push"]["data"]["text"], "hello");
        assert_eq!(push["push"]["data"]["user"], "demo");
    }
}

#[tokio::test]
async fn anonymous_socket_on_an_authenticated_route_is_closed_with_4401() {
    let site = Site::start().await;
    let mut socket = site.socket("/ws/private/", "").await;
    assert_eq!(closed(&mut socket).await.0, 4401);
}

#[tokio::test]
async fn user_without_staff_on_a_staff_route_is_closed_with_4403() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    let mut socket = site.socket("/ws/staff/", &cookie).await;
    assert_eq!(closed(&mut socket).await, (4403, "not allowed".to_string()));
}

#[tokio::test]
async fn logged_in_user_may_use_the_authenticated_route() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    let mut socket = site.socket("/ws/private/", &cookie).await;
    assert_eq!(welcome(&mut socket).await["user"]["username"], "demo");
}

/// Without revocation pushed by Django, a logout reaches an open socket at the first
/// revalidation after the cached answer for its session has expired: within `revalidate`
/// + `cache_ttl` (defaults 60 s + 30 s), here shortened, which is what the test is about.
#[tokio::test]
async fn a_logout_switchyard_did_not_see_closes_the_socket_at_the_first_revalidation_after_cache_ttl() {
    let site = Site::with("revalidate = \"200ms\"", "cache_ttl = \"1s\"").await;
    let cookie = site.logged_in().await;
    let mut socket = site.socket("/ws/private/", &cookie).await;
    welcome(&mut socket).await;
    // Straight to Django: the response that deletes the cookie never passes Switchyard.
    let direct = Browser { addr: site.django.http.trim_start_matches("http://").parse().unwrap() };
    direct.logout(&cookie).await;
    assert_eq!(closed(&mut socket).await, (4401, "session ended".to_string()));
}

#[tokio::test]
async fn hooks_are_logged_by_django_exactly_once() {
    let site = Site::start().await;
    let mut socket = site.socket("/ws/", "").await;
    let id = connection_id(&welcome(&mut socket).await);
    let reply = command(&mut socket, json!({"id": 1, "demo.whoami": null, "demo.count": null})).await;
    assert!(reply["demo.count"]["result"]["count"].is_number(), "{reply}");
    socket.close(None).await.unwrap();
    closed(&mut socket).await;
    eventually("Django logs the disconnect", || async {
        hook_calls(&site.django, &id).await.iter().any(|(kind, _)| kind == "disconnect")
    })
    .await;
    // Shutdown reports every socket still open: a second report for this one would show now.
    let django = site.stop().await;
    let kinds: Vec<String> = hook_calls(&django, &id).await.into_iter().map(|(kind, _)| kind).collect();
    assert_eq!(kinds, ["connect", "disconnect"]);
}

#[tokio::test]
async fn hook_seq_counts_one_users_hooks_across_two_tabs() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    let mut tab1 = site.socket("/ws/", &cookie).await;
    let one = connection_id(&welcome(&mut tab1).await);
    let mut tab2 = site.socket("/ws/", &cookie).await;
    let two = connection_id(&welcome(&mut tab2).await);
    for (tab, id) in [(&mut tab1, &one), (&mut tab2, &two)] {
        tab.close(None).await.unwrap();
        closed(tab).await;
        eventually("Django logs the disconnect", || async { hook_calls(&site.django, id).await.len() == 2 }).await;
    }
    let (first, second) = (hook_calls(&site.django, &one).await, hook_calls(&site.django, &two).await);
    let seqs = [first[0].1, second[0].1, first[1].1, second[1].1];
    assert_eq!(seqs, [1, 2, 3, 4], "connect 1, connect 2, disconnect 1, disconnect 2: {first:?} {second:?}");
}

#[tokio::test]
async fn on_connect_refusal_from_django_closes_with_its_code() {
    let site = Site::start().await;
    let mut socket = site.socket("/ws/?refuse=1", "").await;
    assert_eq!(closed(&mut socket).await, (4403, "refused by on_connect".to_string()));
}

#[tokio::test]
async fn unreachable_session_store_refuses_the_upgrade_with_503() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    std::fs::remove_file(&site.django.db).unwrap();
    let origin = format!("http://{}", site.browser.host());
    let status =
        refused_status(site.sy.plain_addrs[0], "/ws/", &[("origin", origin.as_str()), ("cookie", cookie.as_str())])
            .await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn sockets_past_the_user_cap_get_429() {
    let site = Site::with("max_per_user = 1", "").await;
    let cookie = site.logged_in().await;
    let mut first = site.socket("/ws/", &cookie).await;
    welcome(&mut first).await;
    let origin = format!("http://{}", site.browser.host());
    let headers = [("origin", origin.as_str()), ("cookie", cookie.as_str())];
    assert_eq!(refused_status(site.sy.plain_addrs[0], "/ws/", &headers).await, 429);
    // Anonymous sockets from the same address are not that user's.
    let mut anonymous = site.socket("/ws/", "").await;
    welcome(&mut anonymous).await;
}

#[tokio::test]
async fn push_to_a_user_reaches_every_socket_of_that_user_only() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    let mut tab1 = site.socket("/ws/", &cookie).await;
    let mut tab2 = site.socket("/ws/", &cookie).await;
    let mut stranger = site.socket("/ws/", "").await;
    let user_id = welcome(&mut tab1).await["user"]["id"].clone();
    welcome(&mut tab2).await;
    welcome(&mut stranger).await;
    let pushes = json!([{"user": user_id, "event": "note", "data": "for demo"}]);
    let frame = json!({"id": 1, "demo.push": {"push": pushes}});
    stranger.send(tokio_tungstenite::tungstenite::Message::text(frame.to_string())).await.unwrap();
    // Pushes are queued before the reply, so a push to the stranger would come first.
    let reply = next_json(&mut stranger).await;
    assert_eq!(reply["id"], 1, "the stranger got something else first: {reply}");
    assert_eq!(reply["demo.push"]["result"]["ok"], true, "{reply}");
    for tab in [&mut tab1, &mut tab2] {
        assert_eq!(next_json(tab).await, json!({"push": {"event": "note", "data": "for demo"}}));
    }
}

#[tokio::test]
async fn under_on_store_error_anonymous_an_outage_makes_the_upgrade_anonymous() {
    let site = Site::with("", "on_store_error = \"anonymous\"").await;
    let cookie = site.logged_in().await;
    std::fs::remove_file(&site.django.db).unwrap();
    // A route without hooks: Django's own hook views need the database too.
    let mut socket = site.socket("/ws/nohooks/", &cookie).await;
    assert_eq!(welcome(&mut socket).await["user"], serde_json::Value::Null);
    let mut private = site.socket("/ws/private/", &cookie).await;
    assert_eq!(closed(&mut private).await.0, 4401);
}

/// A revalidation that cannot reach the store must not log anybody out, even when the
/// policy for upgrades is `anonymous`. `revalidate` and `cache_ttl` are short so that
/// revalidations reach the store during the test.
#[tokio::test]
async fn a_store_outage_during_revalidation_keeps_the_socket_open_even_under_on_store_error_anonymous() {
    let logs = support::logs::capture("switchyard=debug");
    let site = Site::with("revalidate = \"100ms\"", "cache_ttl = \"100ms\"\non_store_error = \"anonymous\"").await;
    let cookie = site.logged_in().await;
    let mut socket = site.socket("/ws/private/", &cookie).await;
    assert_eq!(welcome(&mut socket).await["user"]["username"], "demo");
    // Unreadable as a database, for the connection Switchyard already holds open too.
    let len = std::fs::metadata(&site.django.db).unwrap().len() as usize;
    std::fs::write(&site.django.db, vec![0x5au8; len]).unwrap();
    tokio::select! {
        () = logs.until(3, "revalidation skipped") => {}
        frame = next_message(&mut socket) => panic!("the socket got {frame:?} during the outage"),
    }
    let reply = command(&mut socket, json!({"id": 1, "ping": null})).await;
    assert_eq!(reply["ping"]["result"], "pong", "the socket was closed: {reply}");
}
