//! The body type every response is built from, and plain-text replies for errors.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};

/// Any error a body may fail with while streaming.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed body: an upstream's, or one of ours.
pub type Body = BoxBody<Bytes, BoxError>;

/// A whole body from bytes we already have.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// No body at all; boxing it allocates nothing.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A short `text/plain` reply, used for every error Switchyard itself answers.
pub fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut line = String::with_capacity(message.len() + 1);
    line.push_str(message);
    line.push('\n');
    let mut response = Response::new(full(line));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
