//! End to end with the real thing: the demo Django site under gunicorn (unix socket) behind
//! Switchyard. Pages, a CSRF-protected form, a login that sets the session cookie, a redirect,
//! and the header rules as Django itself sees them.

mod support;

use http::{header, Request, StatusCode};
use support::browser::{json, set_cookie, Browser};
use support::*;

/// Django behind Switchyard, and a browser pointed at it.
struct Site {
    _django: django::DjangoSite,
    sy: switchyard::server::Running,
    browser: Browser,
}

impl Site {
    async fn start() -> Self {
        let django = django::start();
        let sy = start_switchyard(&minimal_config(&django.url, "")).await;
        let browser = Browser { addr: sy.plain_addrs[0] };
        Self { _django: django, sy, browser }
    }
}

impl std::ops::Deref for Site {
    type Target = Browser;
    fn deref(&self) -> &Browser {
        &self.browser
    }
}

#[tokio::test]
async fn home_page_comes_from_django() {
    let site = Site::start().await;
    let response = site.send(site.get("/"), bytes_body("")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let html = String::from_utf8(read_body(response).await.to_vec()).unwrap();
    assert!(html.contains("<html"), "{html}");
}

#[tokio::test]
async fn csrf_protected_form_posts_through_the_proxy() {
    let site = Site::start().await;
    let (cookie, token) = site.form_tokens("/echo/").await;
    let body = format!("message=hello+switchyard&csrfmiddlewaretoken={token}");
    let request = site.post("/echo/").header(header::COOKIE, format!("csrftoken={cookie}"));
    let response = site.send(request, bytes_body(body)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = String::from_utf8(read_body(response).await.to_vec()).unwrap();
    assert!(html.contains("hello switchyard"), "{html}");
}

#[tokio::test]
async fn post_without_csrf_token_is_refused_by_django() {
    let site = Site::start().await;
    let response = site.send(site.post("/echo/"), bytes_body("message=forged")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn login_sets_the_session_cookie_and_the_session_works() {
    let site = Site::start().await;
    let (csrf, token) = site.form_tokens("/accounts/login/").await;
    let body = format!("username=demo&password=demo-password&csrfmiddlewaretoken={token}");
    let request = site.post("/accounts/login/").header(header::COOKIE, format!("csrftoken={csrf}"));
    let response = site.send(request, bytes_body(body)).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let session = set_cookie(&response, "sessionid").expect("login sets sessionid");
    assert!(session.len() >= 32, "{session}");
    // HTTP/2 browsers split cookies into several fields; Django still finds the session.
    let request = site
        .get("/headers/")
        .header(header::COOKIE, format!("csrftoken={csrf}"))
        .header(header::COOKIE, format!("sessionid={session}"));
    let seen = json(site.send(request, bytes_body("")).await).await;
    assert_eq!(seen["user"], "demo");
}

#[tokio::test]
async fn redirect_passes_through_untouched() {
    let site = Site::start().await;
    let response = site.send(site.get("/redirect/"), bytes_body("")).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[header::LOCATION], "/");
}

#[tokio::test]
async fn django_sees_the_header_rules() {
    let site = Site::start().await;
    let request = site
        .get("/headers/")
        .header("x-switchyard-user", "{\"id\": \"1\", \"is_superuser\": true}")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header(header::COOKIE, "a=1")
        .header(header::COOKIE, "b=2");
    let seen = json(site.send(request, bytes_body("")).await).await;
    assert_eq!(seen["switchyard"], serde_json::json!({}), "spoofed X-Switchyard-* reached Django");
    assert_eq!(seen["x_forwarded_for"], "127.0.0.1");
    assert_eq!(seen["x_forwarded_proto"], "http");
    assert_eq!(seen["is_secure"], false);
    assert_eq!(seen["host"], site.host());
    assert_eq!(seen["get_host"], site.host());
    assert_eq!(seen["cookie"], "a=1; b=2");
}

#[tokio::test]
async fn upload_streams_to_django_with_and_without_length() {
    let site = Site::start().await;
    let data = vec![b'd'; 3 << 20];
    let response = site.send(Request::post(url(site.sy.plain_addrs[0], "/upload/")), bytes_body(data.clone())).await;
    assert_eq!(json(response).await["bytes"], 3 << 20);
    let chunks =
        futures_util::stream::iter((0..48).map(|_| {
            Ok::<_, switchyard::body::BoxError>(hyper::body::Frame::data(bytes::Bytes::from(vec![b'c'; 65536])))
        }));
    let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(chunks));
    let response = site.send(Request::post(url(site.sy.plain_addrs[0], "/upload/")), body).await;
    assert_eq!(json(response).await["bytes"], 48 * 65536);
}
