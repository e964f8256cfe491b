//! `[[static]]` through real sockets: a collectstatic-like folder served without Django —
//! validators and conditional requests, ranges, precompressed siblings, cache lifetimes
//! for hashed and plain names, HEAD and other methods, what is refused (traversal in its
//! spellings, dot-files, directories, symlinks that lead out), where it sits among the
//! routes, and a reload that changes it. Every test also shows Django was never asked.

mod support;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use support::*;
use switchyard::server::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A stylesheet long enough for ranges to mean something.
const CSS: &str = "body { color: #123456; }\n/* 0123456789 abcdefghij 0123456789 abcdefghij */\n";
/// What the `.br` sibling holds: the test only needs to see that it was the one sent.
const BROTLI: &[u8] = b"brotli-encoded bytes";
const HASHED: &str = "css/app.1a2b3c4d5e6f.css";

/// A site: the collected folder (and a secret beside it), a counting Django, Switchyard.
struct Site {
    root: tempfile::TempDir,
    sy: Running,
    django: Arc<AtomicUsize>,
    _up: Upstream,
}

impl Site {
    async fn start(extra: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        collect(root.path());
        let (up, django) = counting_upstream(None).await;
        let config = config_in(root.path(), &static_config(&up.url, extra));
        let sy = switchyard::server::start(config).await.expect("switchyard starts");
        Self { root, sy, django, _up: up }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
        self.request(Method::GET, path, headers).await
    }

    async fn request(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
        let mut request = Request::builder().method(method).uri(url(self.sy.plain_addrs[0], path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        client().request(request.body(bytes_body("")).unwrap()).await.unwrap()
    }

    /// The status line's code for raw request-target bytes, as a hostile client sends them.
    async fn raw_status(&self, target: &str) -> u16 {
        let mut stream = tokio::net::TcpStream::connect(self.sy.plain_addrs[0]).await.unwrap();
        let request = format!("GET {target} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(!answer.contains("top secret"), "{target} leaked the file outside: {answer}");
        answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{target}: {answer}"))
    }

    fn django_calls(&self) -> usize {
        self.django.load(Ordering::SeqCst)
    }
}

fn static_config(upstream: &str, extra: &str) -> String {
    format!("{}[[static]]\nprefix = \"/static/\"\ndir = \"collected\"\n{extra}", minimal_config(upstream, ""))
}

/// What `collectstatic` (with ManifestStaticFilesStorage and precompression) would leave,
/// plus the traps: a dot-file, a folder, symlinks in and out, a secret beside the folder.
fn collect(root: &Path) {
    let dir = root.join("collected");
    std::fs::create_dir_all(dir.join("css")).unwrap();
    std::fs::create_dir_all(dir.join("img/icons")).unwrap();
    std::fs::write(dir.join("css/app.css"), CSS).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(CSS.as_bytes()).unwrap();
    std::fs::write(dir.join("css/app.css.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(dir.join("css/app.css.br"), BROTLI).unwrap();
    std::fs::write(dir.join(HASHED), CSS).unwrap();
    std::fs::write(dir.join("robots.txt"), "User-agent: *\n").unwrap();
    std::fs::write(dir.join(".env"), "SECRET_KEY=top secret\n").unwrap();
    std::fs::write(root.join("secret.txt"), "top secret\n").unwrap();
    std::os::unix::fs::symlink(root.join("secret.txt"), dir.join("out.txt")).unwrap();
    std::os::unix::fs::symlink(dir.join("robots.txt"), dir.join("in.txt")).unwrap();
}

fn text(response: &Response<Incoming>, name: header::HeaderName) -> &str {
    response.headers().get(&name).map_or("", |v| v.to_str().unwrap_or(""))
}

#[tokio::test]
async fn a_file_is_served_with_its_validators_and_type_without_django() {
    let site = Site::start("").await;
    let response = site.get("/static/css/app.css", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(text(&response, header::ETAG).starts_with('"'), "a strong ETag: {:?}", response.headers());
    assert!(!text(&response, header::LAST_MODIFIED).is_empty());
    assert_eq!(text(&response, header::CONTENT_TYPE), "text/css");
    assert_eq!(text(&response, header::ACCEPT_RANGES), "bytes");
    assert_eq!(text(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(text(&response, header::CONTENT_LENGTH), CSS.len().to_string());
    assert_eq!(read_body(response).await, CSS);
    assert_eq!(site.django_calls(), 0);
}

#[tokio::test]
async fn if_none_match_with_the_current_etag_is_304_with_the_cache_headers() {
    let site = Site::start("").await;
    let first = site.get("/static/css/app.css", &[]).await;
    let etag = text(&first, header::ETAG).to_string();
    let response = site.get("/static/css/app.css", &[("if-none-match", &format!("\"other\", {etag}"))]).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(text(&response, header::ETAG), etag);
    assert_eq!(text(&response, header::CACHE_CONTROL), "public, max-age=60");
    assert_eq!(text(&response, header::VARY), "accept-encoding");
    assert!(read_body(response).await.is_empty());
}

#[tokio::test]
async fn if_none_match_with_another_etag_is_200() {
    let site = Site::start("").await;
    let response = site.get("/static/css/app.css", &[("if-none-match", "\"stale\"")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_body(response).await, CSS);
}

#[tokio::test]
async fn if_modified_since_the_last_modification_is_304() {
    let site = Site::start("").await;
    let first = site.get("/static/css/app.css", &[]).await;
    let modified = text(&first, header::LAST_MODIFIED).to_string();
    let response = site.get("/static/css/app.css", &[("if-modified-since", &modified)]).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn if_modified_since_an_older_date_is_200() {
    let site = Site::start("").await;
    let response = site.get("/static/css/app.css", &[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_range_is_206_with_its_content_range() {
    let site = Site::start("").await;
    let response = site.get("/static/css/app.css", &[("range", "bytes=5-9")]).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(text(&response, header::CONTENT_RANGE), format!("bytes 5-9/{}", CSS.len()));
    assert_eq!(read_body(response).await, CSS[5..=9]);
}

#[tokio::test]
async fn a_suffix_range_is_the_last_bytes() {
    let site = Site::start("").await;
    let response = site.get("/static/css/app.css", &[("range", "bytes=-4")]).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(read_body(response).await, CSS[CSS.len() - 4..]);
}

#[tokio::test]
async fn a_range_past_the_end_is_416_with_the_size() {
    let site = Site::start("").await;
    let response = site.get("/static/css/app.css", &[("range", "bytes=100000-")]).await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(text(&response, header::CONTENT_RANGE), format!("bytes */{}", CSS.len()));
}

#[tokio::test]
async fn a_range_with_if_range_gets_the_whole_file() {
    let site = Site::start("").await;
    let response = site.get("/static/css/app.css", &[("range", "bytes=0-3"), ("if-range", "\"stale\"")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_body(response).await, CSS);
}

#[tokio::test]
async fn several_ranges_get_the_whole_file() {
    let site = Site::start("").await;
    let response = site.get("/static/css/app.css", &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_body(response).await, CSS);
}

#[tokio::test]
async fn the_brotli_sibling_is_sent_when_the_browser_takes_br() {
    let site = Site::start("").await;
    let response = site.get("/static/css/app.css", &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(&response, header::CONTENT_ENCODING), "br");
    assert_eq!(text(&response, header::CONTENT_TYPE), "text/css", "the type of the original");
    assert_eq!(text(&response, header::VARY), "accept-encoding");
    assert_eq!(read_body(response).await, BROTLI);
}

#[tokio::test]
async fn the_gzip_sibling_is_sent_when_the_browser_takes_only_gzip() {
    use std::io::Read;
    let site = Site::start("").await;
    let response = site.get("/static/css/app.css", &[("accept-encoding", "gzip")]).await;
    assert_eq!(text(&response, header::CONTENT_ENCODING), "gzip");
    let body = read_body(response).await;
    let mut inflated = String::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut inflated).unwrap();
    assert_eq!(inflated, CSS);
}

#[tokio::test]
async fn a_refused_encoding_is_never_sent() {
    let site = Site::start("").await;
    let response = site.get("/static/css/app.css", &[("accept-encoding", "br;q=0, gzip;q=0")]).await;
    assert_eq!(text(&response, header::CONTENT_ENCODING), "");
    assert_eq!(text(&response, header::VARY), "accept-encoding", "the answer still depends on it");
    assert_eq!(read_body(response).await, CSS);
}

#[tokio::test]
async fn a_file_without_siblings_is_sent_as_it_is_to_a_browser_that_takes_br() {
    let site = Site::start("").await;
    let response = site.get("/static/robots.txt", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(text(&response, header::CONTENT_ENCODING), "");
    assert_eq!(read_body(response).await, "User-agent: *\n");
}

#[tokio::test]
async fn a_hashed_name_is_cached_for_a_year_as_immutable() {
    let site = Site::start("").await;
    let response = site.get(&format!("/static/{HASHED}"), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(&response, header::CACHE_CONTROL), "public, max-age=31536000, immutable");
}

#[tokio::test]
async fn a_plain_name_is_cached_for_max_age_and_revalidated() {
    let site = Site::start("max_age = \"10m\"\n").await;
    let response = site.get("/static/css/app.css", &[]).await;
    assert_eq!(text(&response, header::CACHE_CONTROL), "public, max-age=600");
}

#[tokio::test]
async fn a_zero_max_age_makes_plain_names_revalidate_every_time() {
    let site = Site::start("max_age = \"0s\"\n").await;
    let response = site.get("/static/css/app.css", &[]).await;
    assert_eq!(text(&response, header::CACHE_CONTROL), "no-cache");
}

#[tokio::test]
async fn head_tells_the_length_and_sends_no_body() {
    let site = Site::start("").await;
    let response = site.request(Method::HEAD, "/static/css/app.css", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(&response, header::CONTENT_LENGTH), CSS.len().to_string());
    assert!(!text(&response, header::ETAG).is_empty());
    assert!(read_body(response).await.is_empty());
}

#[tokio::test]
async fn other_methods_are_405_with_allow_and_never_reach_django() {
    let site = Site::start("").await;
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS, Method::PATCH] {
        let response = site.request(method.clone(), "/static/css/app.css", &[]).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(text(&response, header::ALLOW), "GET, HEAD", "{method}");
    }
    assert_eq!(site.django_calls(), 0);
}

#[tokio::test]
async fn a_missing_file_is_404_and_never_reaches_django() {
    let site = Site::start("").await;
    let response = site.get("/static/css/missing.css", &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(read_body(response).await, "no such static file\n");
    assert_eq!(site.django_calls(), 0);
}

#[tokio::test]
async fn paths_beside_the_prefix_still_go_to_django() {
    let site = Site::start("").await;
    for path in ["/static", "/staticfoo/app.css", "/STATIC/css/app.css", "/"] {
        let response = site.get(path, &[]).await;
        assert_eq!(read_body(response).await, "reached", "{path}");
    }
    assert_eq!(site.django_calls(), 4);
}

#[tokio::test]
async fn a_directory_is_404_with_no_listing() {
    let site = Site::start("").await;
    for path in ["/static/", "/static/img", "/static/img/", "/static/img/icons/"] {
        let response = site.get(path, &[]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(read_body(response).await, "no such static file\n", "{path}");
    }
}

#[tokio::test]
async fn traversal_attempts_are_refused_in_every_spelling() {
    let site = Site::start("").await;
    // Each reaches for `secret.txt` beside the folder, or a file the folder must not show.
    assert_eq!(site.raw_status("/static/../secret.txt").await, 404, "plain ..");
    assert_eq!(site.raw_status("/static/css/../../secret.txt").await, 404, ".. after a folder");
    assert_eq!(site.raw_status("/static/%2e%2e/secret.txt").await, 404, "encoded ..");
    assert_eq!(site.raw_status("/static/%2E%2e/secret.txt").await, 404, "encoded .., mixed case");
    assert_eq!(site.raw_status("/static/.%2e/secret.txt").await, 404, "half-encoded ..");
    assert_eq!(site.raw_status("/static/..%2fsecret.txt").await, 404, "encoded slash");
    assert_eq!(site.raw_status("/static/css%2F..%2F..%2Fsecret.txt").await, 404, "encoded slashes");
    assert_eq!(site.raw_status("/static/..%5csecret.txt").await, 404, "encoded backslash");
    assert_eq!(site.raw_status("/static/%252e%252e/secret.txt").await, 404, "double-encoded ..");
    assert_eq!(site.raw_status("/static/robots.txt%00.css").await, 404, "encoded NUL");
    assert_eq!(site.raw_status("/static//etc/passwd").await, 404, "absolute path after the prefix");
    assert_eq!(site.raw_status("/static/%2fetc/passwd").await, 404, "encoded absolute path");
    assert_eq!(site.raw_status("/static/./robots.txt").await, 404, "a . segment");
    assert_eq!(site.raw_status("/static/.env").await, 404, "a dot-file");
    assert_eq!(site.raw_status("/static/%2eenv").await, 404, "an encoded dot-file");
    assert_eq!(site.raw_status("/static/%ff%fe").await, 404, "not UTF-8");
    assert_eq!(site.raw_status("/static/out.txt").await, 404, "a symlink out of the folder");
    assert_eq!(site.django_calls(), 0);
}

#[tokio::test]
async fn a_raw_backslash_never_reaches_a_file() {
    let site = Site::start("").await;
    // hyper refuses the byte in a request target (400) before we see it; either way no file.
    let status = site.raw_status("/static/..\\secret.txt").await;
    assert!(status == 400 || status == 404, "{status}");
}

#[tokio::test]
async fn a_fifo_in_the_folder_is_404_and_never_opened() {
    let site = Site::start("").await;
    let fifo = std::ffi::CString::new(site.root.path().join("collected/pipe").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    // Opening a FIFO for reading blocks until a writer comes: a request that opened it
    // would never be answered, and the patience below would run out.
    let response = tokio::time::timeout(PATIENCE, site.get("/static/pipe", &[])).await.expect("answered");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_symlink_that_stays_inside_the_folder_is_followed() {
    let site = Site::start("").await;
    let response = site.get("/static/in.txt", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_body(response).await, "User-agent: *\n");
}

#[tokio::test]
async fn a_symlink_out_of_the_folder_is_served_with_follow_symlinks() {
    let site = Site::start("follow_symlinks = true\n").await;
    let response = site.get("/static/out.txt", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_body(response).await, "top secret\n");
}

#[tokio::test]
async fn a_folder_reached_through_a_symlink_is_served() {
    // A deploy's `current -> releases/N` layout: the folder is a symlink, its files inside.
    let root = tempfile::tempdir().unwrap();
    collect(root.path());
    std::os::unix::fs::symlink(root.path().join("collected"), root.path().join("current")).unwrap();
    let (up, _) = counting_upstream(None).await;
    let text = static_config(&up.url, "").replace("dir = \"collected\"", "dir = \"current\"");
    let sy = switchyard::server::start(config_in(root.path(), &text)).await.unwrap();
    let response = client().get(url(sy.plain_addrs[0], "/static/robots.txt").parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_websocket_route_under_the_prefix_is_matched_first() {
    let site = Site::start("[[routes]]\npath = \"/static/live/\"\n").await;
    let response = site.get("/static/live/", &[]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "the route's WebSocket-only answer");
    assert_eq!(read_body(response).await, "this path takes WebSocket connections only\n");
}

#[tokio::test]
async fn a_reload_puts_a_new_prefix_and_folder_in_force() {
    let site = Site::start("").await;
    std::fs::create_dir(site.root.path().join("assets")).unwrap();
    std::fs::write(site.root.path().join("assets/logo.svg"), "<svg/>").unwrap();
    let text = static_config(&format!("http://{}", "127.0.0.1:1"), "")
        .replace("/static/", "/assets/")
        .replace("dir = \"collected\"", "dir = \"assets\"")
        .replace("127.0.0.1:0", &site.sy.plain_addrs[0].to_string());
    let config = config_in(site.root.path(), &text);
    site.sy.reload((*config).clone()).await.unwrap();
    let response = site.get("/assets/logo.svg", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text_of(response).await, "<svg/>");
    let gone = site.get("/static/robots.txt", &[]).await;
    assert_eq!(gone.status(), StatusCode::BAD_GATEWAY, "no longer static: to the new (absent) upstream");
}

async fn text_of(response: Response<Incoming>) -> String {
    String::from_utf8(read_body(response).await.to_vec()).unwrap()
}

#[tokio::test]
async fn a_static_request_has_an_access_line() {
    let logs = support::logs::capture("switchyard::access=info");
    let site = Site::start("").await;
    let response = site.get("/static/css/app.css?v=2", &[]).await;
    assert_eq!(read_body(response).await, CSS);
    let line = wait_for("the access line", || {
        std::future::ready(logs.lines().into_iter().find(|l| l["target"] == "switchyard::access"))
    })
    .await;
    let fields = &line["fields"];
    assert_eq!(fields["path"], "/static/css/app.css", "{line}");
    assert_eq!(fields["status"], 200, "{line}");
    assert_eq!(fields["bytes"], CSS.len(), "{line}");
    assert_eq!(fields["upstream_ms"], "-", "Django was not asked: {line}");
}
