//! Command backends and hooks against an in-test Django stand-in that checks the signature
//! with its own HMAC, and the time it was signed at against the clock the test set
//! Switchyard's to (exactly, not within a window of wall-clock time): the call's body and
//! headers, replies applied
//! (result, state, push), every failure mapped to its error code, hooks with `seq`,
//! exactly-once disconnects (client close, TCP drop, shutdown), on_connect failures.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::SinkExt;
use hmac::{Hmac, Mac};
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::Sha256;
use support::ws::*;
use support::*;
use switchyard::clock::Clock;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "test-backend-secret";

/// One call as the backend saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    body: Value,
    cookie: Option<String>,
    host: Option<String>,
    /// The HMAC verified with the shared secret.
    signature_ok: bool,
    /// The signature's `t=`: when Switchyard says it signed the call.
    signed_at: Option<u64>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Where Switchyard's clock starts in every scene: a fixed instant, far from today's date.
const T0: u64 = 1_800_000_000;

/// Whether the HMAC over `t.body` verifies, and the `t` it claims.
fn signature(header: Option<&str>, body: &[u8]) -> (bool, Option<u64>) {
    let Some(header) = header else { return (false, None) };
    let Some((t, v1)) = header.strip_prefix("t=").and_then(|h| h.split_once(",v1=")) else { return (false, None) };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    (expected == v1, t.parse().ok())
}

/// A stand-in Django: records each call, answers by path; `t.held` waits at `gate`.
async fn backend(log: Log, gate: Gate) -> Upstream {
    upstream(move |req: Request<hyper::body::Incoming>| {
        let (log, gate) = (log.clone(), gate.clone());
        async move {
            let path = req.uri().path().to_string();
            let header = |name: &str| req.headers().get(name).map(|v| v.to_str().unwrap().to_string());
            let (cookie, host, sig) = (header("cookie"), header("host"), header("x-switchyard-signature"));
            let bytes = req.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            let (signature_ok, signed_at) = signature(sig.as_deref(), &bytes);
            log.lock().unwrap().push(Seen {
                path: path.clone(),
                body: body.clone(),
                cookie,
                host,
                signature_ok,
                signed_at,
            });
            if path == "/cmd/t.held/" {
                gate.pass().await;
            }
            answer(&path, &body).await
        }
    })
    .await
}

fn json_reply(status: u16, value: Value) -> Response<switchyard::body::Body> {
    let mut r = Response::new(bytes_body(value.to_string()));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r
}

async fn answer(path: &str, body: &Value) -> Response<switchyard::body::Body> {
    let args = &body["args"];
    match path {
        "/cmd/t.body/" => json_reply(200, json!({"result": body})),
        "/cmd/t.count/" => {
            let n = body["connection"]["state"]["count"].as_i64().unwrap_or(0) + 1;
            json_reply(200, json!({"result": n, "state": {"count": n}}))
        }
        "/cmd/t.push/" => json_reply(200, json!({"result": "pushed", "push": args})),
        "/cmd/t.fail/" => json_reply(
            args["status"].as_u64().unwrap() as u16,
            json!({"error": {"code": "nope", "message": "asked to fail"}}),
        ),
        "/cmd/t.held/" => json_reply(200, json!({"result": "released"})),
        "/cmd/t.bigstate/" => json_reply(200, json!({"result": 1, "state": {"blob": "x".repeat(100_000)}})),
        "/hooks/connect/" if body["connection"]["query"].as_str().unwrap().contains("refuse=1") => {
            json_reply(200, json!({"close": {"code": 4403, "reason": "refused by on_connect"}}))
        }
        "/hooks/connect/" if body["connection"]["query"].as_str().unwrap().contains("fail=1") => {
            json_reply(500, json!({"error": {"code": "oops", "message": "the hook view crashed"}}))
        }
        "/hooks/connect/" => json_reply(200, json!({"state": {"joined": true}})),
        "/hooks/disconnect/" => json_reply(200, json!({})),
        _ => json_reply(404, json!({"error": {"code": "unknown_command", "message": path}})),
    }
}

/// Switchyard whose `t.*` commands and hooks go to `backend_url`, reading the time from
/// `clock`; `extra` is appended.
async fn switchyard_for(
    backend_url: &str,
    extra: &str,
    dir: &std::path::Path,
    clock: Clock,
) -> switchyard::server::Running {
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    let config = format!(
        r#"{base}
[backends]
secret_file = "{dir}/secret"
[[routes]]
path = "/ws/"
on_connect = "{backend_url}/hooks/connect/"
on_disconnect = "{backend_url}/hooks/disconnect/"
[[routes]]
path = "/plain/"
[commands."t.*"]
backend = "http"
url = "{backend_url}/cmd/{{command}}/"
{extra}"#,
        base = minimal_config("http://127.0.0.1:9", ""),
        dir = dir.display(),
    );
    switchyard::server::start_with_clock(config_in(dir, &config), clock).await.expect("switchyard starts")
}

struct Scene {
    log: Log,
    gate: Gate,
    /// Switchyard's clock, at [`T0`] until the test moves it.
    clock: Clock,
    _backend: Upstream,
    sy: switchyard::server::Running,
    _dir: tempfile::TempDir,
}

async fn scene(extra: &str) -> Scene {
    let log = Log::default();
    let gate = Gate::default();
    let backend = backend(log.clone(), gate.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::at_unix_secs(T0 as f64);
    let sy = switchyard_for(&backend.url, extra, dir.path(), clock.clone()).await;
    Scene { log, gate, clock, _backend: backend, sy, _dir: dir }
}

impl Scene {
    async fn socket(&self, path: &str) -> (Client, String) {
        let mut client = connect(self.sy.plain_addrs[0], path).await;
        let id = welcome(&mut client).await["connection"].as_str().unwrap().to_string();
        (client, id)
    }

    fn calls(&self, path: &str) -> Vec<Seen> {
        calls(&self.log, path)
    }

    /// Stops Switchyard (shutdown reports the sockets still open) and returns the log.
    async fn stop(self) -> Log {
        assert_eq!(self.sy.shutdown(PATIENCE).await, switchyard::server::Shutdown::Clean);
        self.log
    }
}

fn calls(log: &Log, path: &str) -> Vec<Seen> {
    log.lock().unwrap().iter().filter(|s| s.path == path).cloned().collect()
}

#[tokio::test]
async fn backend_call_is_signed_and_carries_the_documented_body() {
    let s = scene("").await;
    let addr = s.sy.plain_addrs[0];
    let origin = format!("http://{addr}");
    let mut client =
        connect_with(addr, "/ws/?room=7", &[("origin", origin.as_str()), ("cookie", "a=1"), ("cookie", "b=2")])
            .await
            .unwrap();
    let conn = welcome(&mut client).await["connection"].clone();
    let reply = command(&mut client, json!({"id": 1, "t.body": {"x": [1]}})).await;
    let body = &reply["t.body"]["result"];
    assert_eq!(body["command"], "t.body");
    assert_eq!(body["args"], json!({"x": [1]}));
    assert_eq!(body["connection"]["id"], conn);
    assert_eq!(body["connection"]["path"], "/ws/");
    assert_eq!(body["connection"]["query"], "room=7");
    assert_eq!(body["connection"]["state"], json!({"joined": true}));
    assert_eq!(body["user"], Value::Null);
    let seen = s.calls("/cmd/t.body/").pop().unwrap();
    assert!(seen.signature_ok, "signature did not verify");
    assert_eq!(seen.signed_at, Some(T0), "signed at another time than Switchyard's clock said");
    assert_eq!(seen.cookie.as_deref(), Some("a=1; b=2"));
    assert_eq!(seen.host, Some(addr.to_string()));
}

/// Django refuses a signature more than 300 s from its own clock, so each call must carry
/// the time it is sent, not the time the socket opened or the last call was signed.
#[tokio::test]
async fn each_call_is_signed_at_the_time_it_is_made() {
    let s = scene("").await;
    let (mut client, _) = s.socket("/ws/").await;
    let at = |secs: u64| std::time::UNIX_EPOCH + Duration::from_secs(secs);
    s.clock.set(at(T0 + 1000));
    command(&mut client, json!({"id": 1, "t.body": {}})).await;
    s.clock.set(at(T0 + 1001));
    command(&mut client, json!({"id": 2, "t.body": {}})).await;
    s.clock.set(at(T0 + 2000));
    client.close(None).await.unwrap();
    closed(&mut client).await;
    let log = s.stop().await;
    let signed = |path: &str| calls(&log, path).iter().map(|c| (c.signature_ok, c.signed_at)).collect::<Vec<_>>();
    assert_eq!(signed("/hooks/connect/"), [(true, Some(T0))]);
    assert_eq!(signed("/cmd/t.body/"), [(true, Some(T0 + 1000)), (true, Some(T0 + 1001))]);
    assert_eq!(signed("/hooks/disconnect/"), [(true, Some(T0 + 2000))]);
}

#[tokio::test]
async fn cookie_is_not_forwarded_when_the_command_says_so() {
    let s = scene("forward_cookie = false").await;
    let addr = s.sy.plain_addrs[0];
    let origin = format!("http://{addr}");
    let mut client =
        connect_with(addr, "/ws/", &[("origin", origin.as_str()), ("cookie", "sessionid=k")]).await.unwrap();
    welcome(&mut client).await;
    command(&mut client, json!({"id": 1, "t.body": null})).await;
    assert_eq!(s.calls("/cmd/t.body/").pop().unwrap().cookie, None);
}

#[tokio::test]
async fn state_set_by_a_backend_travels_with_the_next_call() {
    let s = scene("").await;
    let (mut client, _) = s.socket("/plain/").await;
    for expected in 1..=3 {
        let reply = command(&mut client, json!({"id": expected, "t.count": null})).await;
        assert_eq!(reply["t.count"]["result"], expected);
    }
}

#[tokio::test]
async fn oversized_state_is_a_backend_error_and_the_old_state_stays() {
    let s = scene("").await;
    let (mut client, _) = s.socket("/plain/").await;
    command(&mut client, json!({"id": 1, "t.count": null})).await;
    let reply = command(&mut client, json!({"id": 2, "t.bigstate": null})).await;
    assert_eq!(reply["t.bigstate"]["error"]["code"], "backend_error");
    assert_eq!(command(&mut client, json!({"id": 3, "t.count": null})).await["t.count"]["result"], 2);
}

#[tokio::test]
async fn pushes_reach_a_connection_and_everyone_the_sender_included() {
    let s = scene("").await;
    let (mut a, _) = s.socket("/plain/").await;
    let (mut b, b_id) = s.socket("/plain/").await;
    let (mut c, _) = s.socket("/plain/").await;
    let pushes =
        json!([{"connection": b_id, "event": "direct", "data": 1}, {"broadcast": true, "event": "all", "data": 2}]);
    a.send(Message::text(json!({"id": 1, "t.push": pushes}).to_string())).await.unwrap();
    // Pushes are queued before the reply: the sender gets its broadcast copy, then the reply.
    assert_eq!(next_json(&mut a).await, json!({"push": {"event": "all", "data": 2}}));
    assert_eq!(next_json(&mut a).await["t.push"]["result"], "pushed");
    assert_eq!(next_json(&mut b).await, json!({"push": {"event": "direct", "data": 1}}));
    assert_eq!(next_json(&mut b).await, json!({"push": {"event": "all", "data": 2}}));
    // c is not b: the direct push did not reach it, only the broadcast.
    assert_eq!(next_json(&mut c).await, json!({"push": {"event": "all", "data": 2}}));
    assert_eq!(command(&mut c, json!({"id": 2, "ping": null})).await["ping"]["result"], "pong");
}

#[tokio::test]
async fn backend_403_is_forbidden_and_500_is_backend_error_with_detail() {
    let s = scene("").await;
    let (mut client, _) = s.socket("/plain/").await;
    let reply = command(&mut client, json!({"id": 1, "t.fail": {"status": 403}})).await;
    assert_eq!(reply["t.fail"]["error"]["code"], "forbidden");
    let reply = command(&mut client, json!({"id": 2, "t.fail": {"status": 500}, "ping": null})).await;
    assert_eq!(reply["t.fail"]["error"]["code"], "backend_error");
    assert_eq!(reply["t.fail"]["error"]["message"], "asked to fail");
    assert_eq!(reply["t.fail"]["error"]["detail"]["code"], "nope");
    assert_eq!(reply["ping"]["result"], "pong", "one failing command must not fail the others");
}

#[tokio::test]
async fn slow_backend_is_backend_timeout() {
    // The backend holds the call until the test ends: only the timeout can answer it.
    let s = scene("timeout = \"200ms\"").await;
    let (mut client, _) = s.socket("/plain/").await;
    let reply = command(&mut client, json!({"id": 1, "t.held": null})).await;
    assert_eq!(reply["t.held"]["error"]["code"], "backend_timeout");
}

#[tokio::test]
async fn unreachable_backend_is_backend_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let down = Refusing::new();
    let sy = switchyard_for(&down.url(), "", dir.path(), Clock::system()).await;
    let mut client = connect(sy.plain_addrs[0], "/plain/").await;
    welcome(&mut client).await;
    let reply = command(&mut client, json!({"id": 1, "t.body": null})).await;
    assert_eq!(reply["t.body"]["error"]["code"], "backend_unavailable");
}

#[tokio::test]
async fn commands_past_the_in_flight_bound_are_too_many_requests() {
    let s = scene("[websocket]\nmax_in_flight = 1").await;
    let (mut client, _) = s.socket("/plain/").await;
    client.send(Message::text(json!({"id": 1, "t.held": null}).to_string())).await.unwrap();
    s.gate.until_waiting(1).await;
    let reply = command(&mut client, json!({"id": 2, "ping": null})).await;
    assert_eq!(reply["ping"]["error"]["code"], "too_many_requests");
    s.gate.open();
    assert_eq!(next_json(&mut client).await["t.held"]["result"], "released");
    // The slot is free again once the held command answered.
    assert_eq!(command(&mut client, json!({"id": 3, "ping": null})).await["ping"]["result"], "pong");
}

#[tokio::test]
async fn on_connect_can_refuse_with_its_code_and_reason() {
    let s = scene("").await;
    let mut client = connect(s.sy.plain_addrs[0], "/ws/?refuse=1").await;
    assert_eq!(closed(&mut client).await, (4403, "refused by on_connect".to_string()));
}

#[tokio::test]
async fn on_connect_failing_closes_with_1011() {
    let s = scene("").await;
    let mut client = connect(s.sy.plain_addrs[0], "/ws/?fail=1").await;
    assert_eq!(closed(&mut client).await, (1011, "on_connect failed".to_string()));
    // A socket the hook never admitted is not reported as disconnected.
    let log = s.stop().await;
    assert!(calls(&log, "/hooks/disconnect/").is_empty());
}

#[tokio::test]
async fn hooks_carry_seq_and_disconnect_is_reported_exactly_once() {
    let s = scene("").await;
    let (mut client, id) = s.socket("/ws/").await;
    client.close(None).await.unwrap();
    closed(&mut client).await;
    eventually("the disconnect hook is called", || !s.calls("/hooks/disconnect/").is_empty()).await;
    let connects = s.calls("/hooks/connect/");
    // Shutdown reports every socket still open: a second report for this one would show.
    let disconnects = calls(&s.stop().await, "/hooks/disconnect/");
    assert_eq!(disconnects.len(), 1);
    assert_eq!(connects[0].body["command"], "$connect");
    assert_eq!(disconnects[0].body["command"], "$disconnect");
    assert_eq!(disconnects[0].body["connection"]["id"], id);
    assert_eq!((connects[0].body["seq"].as_u64(), disconnects[0].body["seq"].as_u64()), (Some(1), Some(2)));
    assert!(disconnects[0].signature_ok);
    assert_eq!(disconnects[0].signed_at, Some(T0));
}

#[tokio::test]
async fn shutdown_reports_every_disconnect() {
    let s = scene("").await;
    let (mut a, a_id) = s.socket("/ws/").await;
    let (mut b, b_id) = s.socket("/ws/").await;
    let stopping = tokio::spawn(s.stop());
    assert_eq!(closed(&mut a).await.0, 1001);
    assert_eq!(closed(&mut b).await.0, 1001);
    let log = stopping.await.unwrap();
    let ids: Vec<Value> =
        calls(&log, "/hooks/disconnect/").iter().map(|c| c.body["connection"]["id"].clone()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&json!(a_id)) && ids.contains(&json!(b_id)));
}

#[tokio::test]
async fn a_tcp_drop_without_a_close_frame_is_reported_once() {
    let s = scene("").await;
    let (client, id) = s.socket("/ws/").await;
    // RST, no close frame: the browser's machine vanished.
    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = client.get_ref() {
        #[allow(deprecated)]
        tcp.set_linger(Some(Duration::ZERO)).unwrap();
    }
    drop(client);
    eventually("the disconnect hook is called", || !s.calls("/hooks/disconnect/").is_empty()).await;
    let disconnects = calls(&s.stop().await, "/hooks/disconnect/");
    assert_eq!(disconnects.len(), 1);
    assert_eq!(disconnects[0].body["connection"]["id"], id);
}
