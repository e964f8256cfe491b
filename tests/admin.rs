//! The admin listener through real sockets: the bearer key, publishing to channels and
//! targets, a channel's position without subscribers, presence, healthz and metrics.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use http::{Request, StatusCode};
use serde_json::{json, Value};
use support::ws::*;
use support::*;

const KEY: &str = "test-admin-key";

struct Node {
    sy: switchyard::server::Running,
}

impl Node {
    async fn start() -> Self {
        let config = format!(
            r#"{base}
[admin]
listen = "127.0.0.1:0"
key_env = "ADMIN_KEY"
[[routes]]
path = "/ws/"
[[channels]]
pattern = "news"
subscribe = "anyone"
history = {{ size = 10 }}
[[channels]]
pattern = "room"
subscribe = "anyone"
presence = true
"#,
            base = minimal_config("http://127.0.0.1:9", "")
        );
        let env: HashMap<String, String> = [("ADMIN_KEY".to_string(), KEY.to_string())].into();
        let config = switchyard::config::parse(&config, "test.toml", Path::new("."), &env).expect("valid config");
        let sy = switchyard::server::start(Arc::new(config)).await.expect("switchyard starts");
        Self { sy }
    }

    async fn call(&self, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let addr = self.sy.admin_addr.expect("admin listener bound");
        let mut request = Request::builder().method(method).uri(url(addr, path));
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let body = body.map_or_else(|| bytes_body(""), |b| bytes_body(b.to_string()));
        let response = client().request(request.body(body).unwrap()).await.expect("admin answers");
        let status = response.status();
        let bytes = read_body(response).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(KEY), body).await
    }

    async fn socket(&self) -> Client {
        let mut client = connect(self.sy.plain_addrs[0], "/ws/").await;
        welcome(&mut client).await;
        client
    }
}

#[tokio::test]
async fn the_api_refuses_a_missing_or_wrong_key() {
    let node = Node::start().await;
    let item = json!({"channel": "news", "data": 1});
    assert_eq!(node.call("POST", "/api/publish", None, Some(item.clone())).await.0, 401);
    assert_eq!(node.call("POST", "/api/publish", Some("wrong"), Some(item.clone())).await.0, 401);
    assert_eq!(node.call("GET", "/api/channels", Some("test-admin-ke"), None).await.0, 401);
    assert_eq!(node.api("POST", "/api/publish", Some(item)).await.0, 200);
}

#[tokio::test]
async fn a_published_event_reaches_subscribers_and_the_reply_gives_its_offset() {
    let node = Node::start().await;
    let mut client = node.socket().await;
    command(&mut client, json!({"id": 1, "subscribe": "news"})).await;
    let items = json!([{"channel": "news", "event": "a", "data": {"n": 1}}, {"broadcast": true, "event": "hello"}]);
    let (status, reply) = node.api("POST", "/api/publish", Some(items)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["results"][0]["offset"], 1);
    assert_eq!(reply["results"][1], json!({"sent": true}));
    let push = next_json(&mut client).await["push"].clone();
    assert_eq!(
        (push["channel"].clone(), push["offset"].clone(), push["epoch"].clone()),
        (json!("news"), json!(1), reply["results"][0]["epoch"].clone())
    );
    assert_eq!(next_json(&mut client).await, json!({"push": {"event": "hello", "data": null}}));
}

#[tokio::test]
async fn a_bad_item_refuses_the_whole_batch() {
    let node = Node::start().await;
    let items = json!([{"channel": "news", "data": 1}, {"channel": "nowhere", "data": 2}]);
    let (status, reply) = node.api("POST", "/api/publish", Some(items)).await;
    assert_eq!(status, 400);
    assert!(reply["error"]["message"].as_str().unwrap().starts_with("item 1:"), "{reply}");
    let (_, channels) = node.api("GET", "/api/channels?channel=news", None).await;
    assert_eq!(channels["channels"][0]["offset"], 0, "the good item was published anyway");
    for bad in [json!({"users": "7"}), json!({"channel": "news", "user": "1"}), json!("x")] {
        assert_eq!(node.api("POST", "/api/publish", Some(bad.clone())).await.0, 400, "{bad}");
    }
}

#[tokio::test]
async fn one_channel_answers_its_position_without_subscribers() {
    let node = Node::start().await;
    let (status, first) = node.api("GET", "/api/channels?channel=news", None).await;
    assert_eq!(status, 200);
    let entry = &first["channels"][0];
    assert_eq!(
        (entry["channel"].clone(), entry["offset"].clone(), entry["subscribers"].clone()),
        (json!("news"), json!(0), json!(0))
    );
    node.api("POST", "/api/publish", Some(json!({"channel": "news", "data": 1}))).await;
    let (_, after) = node.api("GET", "/api/channels?channel=news", None).await;
    assert_eq!(after["channels"][0]["offset"], 1);
    assert_eq!(after["channels"][0]["epoch"], entry["epoch"], "the epoch stayed");
    assert_eq!(node.api("GET", "/api/channels?channel=nowhere", None).await.0, 404);
    let (_, all) = node.api("GET", "/api/channels", None).await;
    assert_eq!(all["channels"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn presence_counts_subscribers_and_is_refused_where_it_is_off() {
    let node = Node::start().await;
    let mut client = node.socket().await;
    command(&mut client, json!({"id": 1, "subscribe": "room"})).await;
    let (status, presence) = node.api("GET", "/api/presence?channel=room", None).await;
    assert_eq!(status, 200);
    assert_eq!((presence["count"].clone(), presence["users"].clone()), (json!(1), json!([])));
    assert_eq!(node.api("GET", "/api/presence?channel=news", None).await.0, 400);
}

#[tokio::test]
async fn healthz_needs_no_key_and_names_the_broker() {
    let node = Node::start().await;
    let (status, health) = node.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(health["broker"]["kind"], "local");
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_deliveries() {
    let node = Node::start().await;
    let mut client = node.socket().await;
    command(&mut client, json!({"id": 1, "subscribe": "news"})).await;
    node.api("POST", "/api/publish", Some(json!({"channel": "news", "data": 1}))).await;
    next_json(&mut client).await;
    let addr = node.sy.admin_addr.unwrap();
    let response = client_get(addr, "/metrics").await;
    assert!(response.0.starts_with("text/plain; version=0.0.4"), "{}", response.0);
    let text = response.1;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("prometheus text");
    let value = |name: &str, label: Option<(&str, &str)>| {
        scrape.samples.iter().find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v))).map(
            |s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            },
        )
    };
    assert_eq!(value("switchyard_sockets", Some(("route", "/ws/"))), Some(1.0), "{text}");
    assert_eq!(value("switchyard_events_total", None), Some(1.0), "{text}");
    assert_eq!(value("switchyard_deliveries_total", None), Some(1.0), "{text}");
    assert_eq!(value("switchyard_commands_total", Some(("outcome", "ok"))), Some(1.0), "{text}");
    assert!(value("switchyard_slow_reader_closes_total", Some(("policy", "latest"))).is_some(), "{text}");
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (_, number) = line.rsplit_once(' ').expect("name and value");
        assert!(number.parse::<f64>().is_ok(), "not a sample line: {line}");
    }
}

async fn client_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let response = client().get(url(addr, path).parse().unwrap()).await.unwrap();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    (content_type, String::from_utf8(read_body(response).await.to_vec()).unwrap())
}
