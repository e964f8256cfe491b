//! The browser client (`js/switchyard.js`), embedded in the binary at build time and served
//! at [`PATH`], so a page needs nothing but a `<script type="module">` from its own origin.
//!
//! Owns: the bytes (plain and gzip, each made once), their validators, and the conditional
//! GET (RFC 9110 §13.1.2 `If-None-Match`, weak comparison; §15.4.5 304). The router decides
//! that a request is for it; everything else about the request is left alone.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::body::{self, Body};

/// Where the client is served, on every listener, ahead of the upstream.
pub const PATH: &str = "/_switchyard/client.js";

/// The client's source, as committed.
const SOURCE: &str = include_str!("../js/switchyard.js");

/// Browsers may use their copy this long without asking; after that a revalidation costs
/// a 304. Short, because the URL carries no version: a new binary's client reaches pages
/// within five minutes.
const CACHE_CONTROL: &str = "public, max-age=300";

/// One encoding of the client, with its entity tag.
struct Encoded {
    bytes: Bytes,
    etag: HeaderValue,
}

/// The plain bytes, tagged by their SHA-256.
static PLAIN: LazyLock<Encoded> = LazyLock::new(|| {
    let etag = format!("\"{}\"", digest_prefix(SOURCE.as_bytes()));
    Encoded { bytes: Bytes::from_static(SOURCE.as_bytes()), etag: HeaderValue::from_str(&etag).expect("hex") }
});

/// The gzip encoding (a different representation, so a different tag: RFC 9110 §8.8.3).
static GZIP: LazyLock<Encoded> = LazyLock::new(|| {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let bytes = encoder.write_all(SOURCE.as_bytes()).and_then(|()| encoder.finish()).expect("gzip into memory");
    let etag = format!("\"{}-gz\"", digest_prefix(SOURCE.as_bytes()));
    Encoded { bytes: Bytes::from(bytes), etag: HeaderValue::from_str(&etag).expect("hex") }
});

fn digest_prefix(data: &[u8]) -> String {
    Sha256::digest(data).iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// True when `req` asks for the client (the router then answers with [`serve`]).
pub fn wants<B>(req: &Request<B>) -> bool {
    req.uri().path() == PATH
}

/// Answers a request for [`PATH`]: 200 with the script (gzip when accepted), 304 when the
/// browser's copy is current, 405 for methods other than GET and HEAD.
pub fn serve<B>(req: &Request<B>) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    if !head && req.method() != Method::GET {
        let mut response = body::text(StatusCode::METHOD_NOT_ALLOWED, "the client script answers GET and HEAD");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let encoded: &Encoded = if accepts_gzip(req.headers()) { &GZIP } else { &PLAIN };
    let not_modified = none_match(req.headers(), &encoded.etag);
    let (status, content) = match (not_modified, head) {
        (true, _) => (StatusCode::NOT_MODIFIED, Bytes::new()),
        (false, true) => (StatusCode::OK, Bytes::new()),
        (false, false) => (StatusCode::OK, encoded.bytes.clone()),
    };
    let mut response = Response::new(body::full(content));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::ETAG, encoded.etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if status == StatusCode::OK {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(encoded.bytes.len()));
        if std::ptr::eq(encoded, &*GZIP) {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    response
}

/// Whether `Accept-Encoding` lists gzip with a non-zero weight.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let zero = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0)));
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero
        },
    )
}

/// `If-None-Match` names `etag` (weak comparison, so `W/` prefixes match) or is `*`.
fn none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == ours
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get(PATH);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn gzip_is_chosen_only_when_accepted_with_weight() {
        let accepts = |value: &str| accepts_gzip(request(&[("accept-encoding", value)]).headers());
        assert!(accepts("gzip, deflate, br"));
        assert!(accepts("br;q=1.0, gzip;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("deflate, br"));
        assert!(!accepts_gzip(request(&[]).headers()));
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_star() {
        let etag = HeaderValue::from_static("\"abc\"");
        let matches = |value: &str| none_match(request(&[("if-none-match", value)]).headers(), &etag);
        assert!(matches("\"abc\""));
        assert!(matches("W/\"abc\""));
        assert!(matches("\"x\", \"abc\""));
        assert!(matches("*"));
        assert!(!matches("\"abcd\""));
        assert!(!matches("abc"));
    }

    #[test]
    fn the_gzip_encoding_inflates_to_the_source() {
        use std::io::Read;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&GZIP.bytes[..]).read_to_string(&mut text).unwrap();
        assert_eq!(text, SOURCE);
        assert_ne!(GZIP.etag, PLAIN.etag);
    }
}
