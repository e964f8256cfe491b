//! Static files: `[[static]]` folders (Django's `collectstatic` output) served without
//! Django, so no nginx is needed in front of it.
//!
//! Owns: which request a folder takes (the router asks, after the WebSocket routes and
//! before the upstream), what a static path may look like, the cache lifetime a file gets,
//! and the confinement of what is read to the folder. The file serving itself (RFC 9110
//! §8.8 validators: a strong `ETag` from size and mtime, `Last-Modified`; §13 conditional
//! requests in §13.2.2's order: `If-Match`/`If-Unmodified-Since` → 412,
//! `If-None-Match`/`If-Modified-Since` → 304; §14 single ranges → 206, unsatisfiable → 416
//! with `Content-Range: bytes */size`; `.br`/`.gz` siblings chosen by `Accept-Encoding`
//! weights, with `Vary: Accept-Encoding`; content types; HEAD) is tower-http's `ServeDir`.
//! It was chosen over hyper-staticfile 0.10, which builds an ETag but never evaluates
//! `If-None-Match` (and applies `If-Modified-Since` even beside one), ignores
//! `Accept-Encoding` weights (`gzip;q=0` still gets gzip), sends no `Vary` and no
//! `Content-Range` on a 416.
//!
//! Decisions made here:
//! - Only GET and HEAD; anything else is 405 with `Allow: GET, HEAD`.
//! - A missing file is 404 here, never Django's to answer (with `DEBUG = False` Django
//!   serves no static files either, and its `static.serve` view would 404 as well).
//! - A path is refused (404, logged at debug) when it is the folder itself, has an empty,
//!   `.`, `..` or dot-file segment (collectstatic ignores `.*` by default), an encoded
//!   slash (`%2f`), a backslash, NUL or another control character (raw or encoded), or is
//!   not UTF-8 once decoded. Directories are 404: there is no listing and no index.
//! - Symlinks are followed while they stay inside the folder; one that leads out is 404
//!   unless the entry says `follow_symlinks = true` (what `collectstatic --link` needs).
//!   Only regular files are served: a FIFO or device is 404, never opened.
//! - `Cache-Control`: names with ManifestStaticFilesStorage's content hash
//!   (`name.<12 hex>.ext`) get `public, max-age=31536000, immutable`; others
//!   `public, max-age=<max_age>`, or `no-cache` for a `max_age` of 0.
//! - `If-Range` is not evaluated by `ServeDir`, so a request with one gets the whole file
//!   (ignoring `Range` is always allowed, RFC 9110 §14.2); a multi-range request too.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use percent_encoding::percent_decode_str;
use tower_http::services::fs::{self, ServeDir, ServeFileSystemResponseBody, TokioBackend, TokioFile};
use tower_service::Service;

use crate::body::{self, Body, BoxError};
use crate::config::StaticConfig;

/// For a name that changes whenever its content does: a year, the longest RFC 9111 lets a
/// cache hold anything, and `immutable` so a reload does not even revalidate.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Length of the hash ManifestStaticFilesStorage puts in a name (`md5(content)[:12]`).
const HASH_LEN: usize = 12;

/// Every `[[static]]` folder, in config order; built once per config, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Statics {
    dirs: Arc<[StaticDir]>,
}

/// One folder and how its files are served.
#[derive(Debug)]
pub struct StaticDir {
    prefix: String,
    dir: PathBuf,
    serve: ServeDir<fs::DefaultServeDirFallback, Confined>,
    /// `Cache-Control` for names without a content hash.
    unhashed: HeaderValue,
}

impl Statics {
    /// The folders of `config`, in order.
    pub fn new(config: &[StaticConfig]) -> Self {
        Self { dirs: config.iter().map(StaticDir::new).collect() }
    }

    /// The folder whose prefix `path` starts with (the first in config order), if any.
    pub fn find(&self, path: &str) -> Option<&StaticDir> {
        self.dirs.iter().find(|dir| path.starts_with(&dir.prefix))
    }
}

impl StaticDir {
    fn new(config: &StaticConfig) -> Self {
        let backend = Confined { root: Arc::from(config.dir.as_path()), confine: !config.follow_symlinks };
        let serve = ServeDir::with_backend(&config.dir, backend)
            .append_index_html_on_directories(false)
            .redirect_to_trailing_slash(false)
            .ignore_multi_range_requests(true)
            .precompressed_br()
            .precompressed_gzip();
        let unhashed = match config.max_age.as_secs() {
            0 => HeaderValue::from_static("no-cache"),
            secs => HeaderValue::from_str(&format!("public, max-age={secs}")).expect("digits"),
        };
        Self { prefix: config.prefix.clone(), dir: config.dir.clone(), serve, unhashed }
    }

    /// Answers a request whose path starts with this folder's prefix (see the module doc
    /// for what is refused and which headers are added).
    pub async fn serve<B>(&self, req: Request<B>) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut response = body::text(StatusCode::METHOD_NOT_ALLOWED, "static files answer GET and HEAD");
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let path = req.uri().path();
        let rest = &path[self.prefix.len().min(path.len())..];
        let Some(uri) = acceptable(rest).then(|| Uri::try_from(format!("/{rest}")).ok()).flatten() else {
            tracing::debug!(path, "static path refused");
            return not_found();
        };
        let cache_control = if is_hashed(rest) { HeaderValue::from_static(IMMUTABLE) } else { self.unhashed.clone() };
        let (mut parts, _) = req.into_parts();
        parts.uri = uri.clone();
        if parts.headers.contains_key(header::IF_RANGE) {
            parts.headers.remove(header::RANGE);
        }
        let Ok(response) = self.serve.clone().call(Request::from_parts(parts, ())).await;
        let (mut head, file) = response.into_parts();
        match head.status {
            StatusCode::NOT_FOUND => return not_found(),
            StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::warn!(dir = %self.dir.display(), file = %uri.path(), "a static file could not be read");
                return body::text(StatusCode::INTERNAL_SERVER_ERROR, "the static file could not be read");
            }
            StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED => {
                // A 304 says what the 200 would have (RFC 9110 §15.4.5).
                head.headers.insert(header::CACHE_CONTROL, cache_control);
                head.headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
                if head.status != StatusCode::NOT_MODIFIED {
                    head.headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
                }
            }
            _ => {}
        }
        Response::from_parts(head, FileBody(Mutex::new(file)).boxed())
    }
}

fn not_found() -> Response<Body> {
    body::text(StatusCode::NOT_FOUND, "no such static file")
}

/// Whether `rest` (the raw path after the prefix, still percent-encoded) may name a file:
/// see the module doc for what is refused.
fn acceptable(rest: &str) -> bool {
    if rest.is_empty() || has_encoded_slash(rest) {
        return false;
    }
    let Ok(decoded) = percent_decode_str(rest).decode_utf8() else { return false };
    let bad_char = |c: char| c == '\\' || c.is_control();
    !decoded.contains(bad_char) && !decoded.split('/').any(|segment| segment.is_empty() || segment.starts_with('.'))
}

/// `%2f` in any case: a separator smuggled past the split into segments.
fn has_encoded_slash(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f'))
}

/// True for a name ManifestStaticFilesStorage hashed: `root.<12 hex>` plus the original
/// extension, if any (`app.1a2b3c4d5e6f.css`, `LICENSE.1a2b3c4d5e6f`).
fn is_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = match name.rsplit_once('.') {
        Some((stem, ext)) if !ext.is_empty() && !is_hash(ext) => stem,
        _ => name,
    };
    stem.rsplit_once('.').is_some_and(|(root, hash)| !root.is_empty() && is_hash(hash))
}

fn is_hash(s: &str) -> bool {
    s.len() == HASH_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

// === impl Confined ===

/// `ServeDir`'s file access, confined to the folder: a path whose real location (every
/// symlink resolved) is outside it reads as not found, unless `confine` is off.
#[derive(Clone, Debug)]
struct Confined {
    root: Arc<Path>,
    confine: bool,
}

impl Confined {
    /// `path`, resolved, when it is a regular file or a folder (a FIFO or a device would
    /// hold a blocking thread, or read forever) and, under confinement, inside the folder.
    /// The folder is resolved on each call too: a deploy may point a `current` symlink at
    /// a new release under a running server.
    async fn resolve(&self, path: PathBuf) -> io::Result<PathBuf> {
        let (root, confine) = (self.root.clone(), self.confine);
        let resolved = tokio::task::spawn_blocking(move || {
            let real = if confine { std::fs::canonicalize(&path)? } else { path.clone() };
            if confine && !real.starts_with(std::fs::canonicalize(&root)?) {
                tracing::debug!(path = %path.display(), "static file leads out of its folder: refused");
                return Ok(None);
            }
            let kind = std::fs::metadata(&real)?.file_type();
            Ok::<_, io::Error>((kind.is_file() || kind.is_dir()).then_some(real))
        });
        resolved.await.map_err(io::Error::other)??.ok_or_else(|| io::ErrorKind::NotFound.into())
    }
}

impl fs::Backend for Confined {
    type File = TokioFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = BoxFuture<'static, io::Result<TokioFile>>;
    type MetadataFuture = BoxFuture<'static, io::Result<std::fs::Metadata>>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let this = self.clone();
        Box::pin(async move { TokioBackend.open(this.resolve(path).await?).await })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let this = self.clone();
        Box::pin(async move { TokioBackend.metadata(this.resolve(path).await?).await })
    }
}

// === impl FileBody ===

/// `ServeDir`'s body made `Sync` (our [`Body`] is): the mutex is never contended, since
/// only the connection task polls it, and `poll_frame` reaches the body without locking.
struct FileBody(Mutex<ServeFileSystemResponseBody>);

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let inner = self.get_mut().0.get_mut().unwrap_or_else(PoisonError::into_inner);
        Pin::new(inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_are_hashed_and_others_are_not() {
        assert!(is_hashed("css/app.1a2b3c4d5e6f.css"));
        assert!(is_hashed("LICENSE.1a2b3c4d5e6f"));
        assert!(is_hashed("archive.tar.1a2b3c4d5e6f.gz"));
        assert!(!is_hashed("css/app.css"));
        assert!(!is_hashed("app.1A2B3C4D5E6F.css"), "Django writes lowercase hex");
        assert!(!is_hashed("app.1a2b3c4d5e6.css"), "11 digits");
        assert!(!is_hashed("app.1a2b3c4d5e6f0.css"), "13 digits");
        assert!(!is_hashed(".1a2b3c4d5e6f"));
        assert!(!is_hashed("1a2b3c4d5e6f.css"));
    }

    #[test]
    fn only_plain_relative_names_are_acceptable() {
        assert!(acceptable("css/app.css"));
        assert!(acceptable("img/a%20b.png"));
        assert!(acceptable("%252e%252e/x"), "decoded once it is the literal name %2e%2e");
        for bad in [
            "",
            "css/",
            "a//b",
            "../x",
            "a/../x",
            "./x",
            "%2e%2e/x",
            "%2E%2e/x",
            ".env",
            "a/.git/config",
            "a%2fb",
            "a%2Fb",
            "..%5cx",
            "a\\b",
            "a%00b",
            "a%0ab",
            "%ff",
        ] {
            assert!(!acceptable(bad), "{bad:?} must be refused");
        }
    }
}
