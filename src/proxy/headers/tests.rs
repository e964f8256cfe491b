use super::*;

fn downstream(trusted: bool, tls: bool) -> Downstream {
    Downstream { peer: "10.0.0.9:5555".parse().unwrap(), tls, trusted }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    map
}

#[test]
fn hop_by_hop_and_connection_named_headers_are_removed() {
    let mut h = headers(&[
        ("connection", "keep-alive, x-secret-hop"),
        ("keep-alive", "timeout=5"),
        ("x-secret-hop", "1"),
        ("te", "gzip"),
        ("upgrade", "h2c"),
        ("accept", "text/html"),
    ]);
    prepare_request(&mut h, &downstream(false, false), None);
    for gone in ["connection", "keep-alive", "x-secret-hop", "te", "upgrade"] {
        assert!(!h.contains_key(gone), "{gone} survived");
    }
    assert_eq!(h["accept"], "text/html");
}

#[test]
fn client_switchyard_headers_are_stripped() {
    let mut h = headers(&[("x-switchyard-user", "1"), ("X-Switchyard-Signature", "t=1,v1=00")]);
    prepare_request(&mut h, &downstream(true, false), None);
    assert!(h.keys().all(|k| !k.as_str().starts_with("x-switchyard-")));
}

#[test]
fn several_cookie_headers_become_one() {
    let mut h = headers(&[("cookie", "a=1; "), ("cookie", "sessionid=abc"), ("cookie", "c=3")]);
    prepare_request(&mut h, &downstream(false, false), None);
    assert_eq!(h.get_all("cookie").iter().count(), 1);
    assert_eq!(h["cookie"], "a=1; sessionid=abc; c=3");
}

#[test]
fn untrusted_peer_forwarding_headers_are_replaced() {
    let mut h = headers(&[
        ("host", "example.com"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.com"),
        ("forwarded", "for=6.6.6.6"),
    ]);
    prepare_request(&mut h, &downstream(false, false), None);
    assert_eq!(h["x-forwarded-for"], "10.0.0.9");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "example.com");
    assert!(!h.contains_key("forwarded"));
}

#[test]
fn trusted_proxy_forwarding_headers_are_kept_and_appended() {
    let mut h = headers(&[
        ("host", "example.com"),
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "www.example.com"),
    ]);
    let ds = downstream(true, false);
    assert_eq!(effective_scheme(&h, &ds), "https");
    prepare_request(&mut h, &ds, None);
    assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "www.example.com");
}

#[test]
fn untrusted_scheme_claim_is_ignored() {
    let h = headers(&[("x-forwarded-proto", "https")]);
    assert_eq!(effective_scheme(&h, &downstream(false, false)), "http");
    assert_eq!(effective_scheme(&h, &downstream(false, true)), "https");
}

#[test]
fn http2_authority_becomes_host() {
    let mut h = headers(&[]);
    prepare_request(&mut h, &downstream(false, true), Some("localhost:8443"));
    assert_eq!(h["host"], "localhost:8443");
    assert_eq!(h["x-forwarded-host"], "localhost:8443");
    assert_eq!(h["x-forwarded-proto"], "https");
}

#[test]
fn response_hop_by_hop_headers_are_removed() {
    let mut h = headers(&[("connection", "close"), ("transfer-encoding", "chunked"), ("set-cookie", "a=1")]);
    prepare_response(&mut h);
    assert!(!h.contains_key("connection") && !h.contains_key("transfer-encoding"));
    assert_eq!(h["set-cookie"], "a=1");
}

#[test]
fn te_trailers_travels_but_other_te_values_do_not() {
    let mut h = headers(&[("te", "trailers, deflate")]);
    prepare_request(&mut h, &downstream(false, false), None);
    assert_eq!(h["te"], "trailers");
}
