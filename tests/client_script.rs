//! The browser client at `/_switchyard/client.js`, through a real listener: served by
//! Switchyard itself (never the upstream), cacheable, revalidated with a 304.

mod support;

use http::{header, Request, StatusCode};
use support::*;

const PATH: &str = "/_switchyard/client.js";

/// Switchyard in front of an upstream that answers every request with 502 "upstream", so
/// a response from the upstream can be told apart.
async fn switchyard() -> (Upstream, switchyard::server::Running) {
    let up = upstream(|_| async { reply(502, "upstream") }).await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    (up, sy)
}

fn get(sy: &switchyard::server::Running, headers: &[(&str, &str)]) -> Request<switchyard::body::Body> {
    let mut builder = Request::get(url(sy.plain_addrs[0], PATH));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(bytes_body("")).unwrap()
}

#[tokio::test]
async fn the_client_is_served_as_javascript_from_the_binary() {
    let (up, sy) = switchyard().await;
    let response = client().request(get(&sy, &[])).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(response.headers()[header::CACHE_CONTROL], "public, max-age=300");
    assert_eq!(response.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(response.headers().contains_key(header::ETAG));
    let body = read_body(response).await;
    let source = std::fs::read(repo_root().join("js/switchyard.js")).unwrap();
    assert_eq!(body, source, "the served bytes are js/switchyard.js as committed");
    assert_eq!(up.connections(), 0, "the upstream never saw the request");
}

#[tokio::test]
async fn a_current_etag_gets_304_without_a_body() {
    let (_up, sy) = switchyard().await;
    let first = client().request(get(&sy, &[])).await.unwrap();
    let etag = first.headers()[header::ETAG].to_str().unwrap().to_string();
    let again = client().request(get(&sy, &[("if-none-match", &etag)])).await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG], etag.as_str());
    assert!(read_body(again).await.is_empty());
    let stale = client().request(get(&sy, &[("if-none-match", "\"old\"")])).await.unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
}

#[tokio::test]
async fn gzip_is_sent_to_browsers_that_accept_it_under_its_own_etag() {
    let (_up, sy) = switchyard().await;
    let plain = client().request(get(&sy, &[])).await.unwrap();
    let gzip = client().request(get(&sy, &[("accept-encoding", "gzip, deflate, br")])).await.unwrap();
    assert_eq!(gzip.status(), StatusCode::OK);
    assert_eq!(gzip.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(gzip.headers()[header::VARY], "Accept-Encoding");
    assert_ne!(gzip.headers()[header::ETAG], plain.headers()[header::ETAG]);
    let compressed = read_body(gzip).await;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut text).unwrap();
    assert_eq!(text.as_bytes(), &read_body(plain).await[..]);
}

#[tokio::test]
async fn other_methods_get_405_naming_get_and_head() {
    let (up, sy) = switchyard().await;
    let post = Request::post(url(sy.plain_addrs[0], PATH)).body(bytes_body("x")).unwrap();
    let response = client().request(post).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
    let head = Request::head(url(sy.plain_addrs[0], PATH)).body(bytes_body("")).unwrap();
    let response = client().request(head).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key(header::CONTENT_LENGTH));
    assert_eq!(up.connections(), 0);
}

#[tokio::test]
async fn neighbouring_paths_still_reach_the_upstream() {
    let (_up, sy) = switchyard().await;
    for path in ["/_switchyard/client.js/", "/_switchyard/other.js", "/_switchyard/"] {
        let response = client().get(url(sy.plain_addrs[0], path).parse().unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{path}");
        assert_eq!(read_body(response).await, "upstream");
    }
}
