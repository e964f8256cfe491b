use super::*;
use crate::downstream::Downstream;

fn downstream(trusted: bool, tls: bool) -> Downstream {
    Downstream::new("10.0.0.9:5555".parse().unwrap(), tls, trusted)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    map
}

/// The request headers as the upstream gets them from a peer that is (not) trusted.
fn prepared(pairs: &[(&str, &str)], trusted: bool, tls: bool) -> HeaderMap {
    let mut h = headers(pairs);
    let ds = downstream(trusted, tls);
    let forwarding = ds.forwarding(&h, HeaderValue::from_static("id"));
    prepare_request(&mut h, trusted, &forwarding);
    h
}

#[test]
fn hop_by_hop_and_connection_named_headers_are_removed() {
    let h = prepared(
        &[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "gzip"),
            ("upgrade", "h2c"),
            ("accept", "text/html"),
        ],
        false,
        false,
    );
    for gone in ["connection", "keep-alive", "x-secret-hop", "te", "upgrade"] {
        assert!(!h.contains_key(gone), "{gone} survived");
    }
    assert_eq!(h["accept"], "text/html");
}

#[test]
fn connection_naming_host_does_not_remove_host() {
    let h = prepared(&[("connection", "host, x-hop"), ("host", "shop.example")], false, false);
    assert_eq!(h["host"], "shop.example");
}

#[test]
fn client_switchyard_headers_are_stripped() {
    let h = prepared(&[("x-switchyard-user", "1"), ("X-Switchyard-Signature", "t=1,v1=00")], true, false);
    assert!(h.keys().all(|k| !k.as_str().starts_with("x-switchyard-")));
}

#[test]
fn header_names_with_underscores_are_dropped_even_from_a_trusted_proxy() {
    let h = prepared(&[("x_switchyard_user", "1"), ("x_forwarded_for", "6.6.6.6"), ("x-ok", "1")], true, false);
    assert!(h.keys().all(|k| !k.as_str().contains('_')), "{h:?}");
    assert_eq!(h["x-ok"], "1");
}

#[test]
fn several_cookie_headers_become_one() {
    let h = prepared(&[("cookie", "a=1; "), ("cookie", "sessionid=abc"), ("cookie", "c=3")], false, false);
    assert_eq!(h.get_all("cookie").iter().count(), 1);
    assert_eq!(h["cookie"], "a=1; sessionid=abc; c=3");
}

#[test]
fn untrusted_peer_forwarding_headers_are_replaced_or_dropped() {
    let h = prepared(
        &[
            ("host", "example.com"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.com"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-ssl", "on"),
            ("x-forwarded-scheme", "https"),
            ("x-client-ip", "6.6.6.6"),
        ],
        false,
        false,
    );
    assert_eq!(h["x-forwarded-for"], "10.0.0.9");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "example.com");
    for gone in ["forwarded", "x-real-ip", "x-forwarded-port", "x-forwarded-ssl", "x-forwarded-scheme", "x-client-ip"] {
        assert!(!h.contains_key(gone), "{gone} survived");
    }
}

#[test]
fn trusted_proxy_forwarding_headers_are_kept_and_appended() {
    let h = prepared(
        &[
            ("host", "example.com"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "www.example.com"),
            ("x-real-ip", "1.2.3.4"),
        ],
        true,
        false,
    );
    assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "www.example.com");
    assert_eq!(h["x-real-ip"], "1.2.3.4");
}

#[test]
fn response_hop_by_hop_headers_are_removed() {
    let mut h = headers(&[("connection", "close"), ("transfer-encoding", "chunked"), ("set-cookie", "a=1")]);
    prepare_response(&mut h);
    assert!(!h.contains_key("connection") && !h.contains_key("transfer-encoding"));
    assert_eq!(h["set-cookie"], "a=1");
}

#[test]
fn response_content_length_beside_chunked_is_dropped() {
    let mut h = headers(&[("transfer-encoding", "chunked"), ("content-length", "3")]);
    prepare_response(&mut h);
    assert!(!h.contains_key("content-length"));
}

#[test]
fn te_trailers_travels_but_other_te_values_do_not() {
    let h = prepared(&[("te", "trailers, deflate")], false, false);
    assert_eq!(h["te"], "trailers");
}
