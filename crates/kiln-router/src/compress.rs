//! gzip for responses the app left uncompressed: the job of the nginx in front of Heroku's
//! old stack, done by the router.
//!
//! A response is compressed when the client accepts gzip (`Accept-Encoding` lists `gzip`,
//! `x-gzip` or `*` with a non-zero `q`), it has no `Content-Encoding` (other than
//! `identity`) and no `Content-Range`, `Cache-Control` does not say `no-transform`, its
//! status can carry a body (not 1xx, 204, 206 or 304), its `Content-Type` is text (except
//! `text/event-stream`, whose events must not wait in a compressor), JSON, JavaScript,
//! XML, SVG, WebAssembly or a font format that is not already compressed, and its
//! `Content-Length`, when known, is at least [`CompressionConfig::min_bytes`]. Every
//! response of a compressible kind gets `Vary: Accept-Encoding`, compressed or not, so
//! caches downstream keep the two apart. A strong `ETag` becomes weak on the compressed
//! copy, as nginx does, since the bytes differ.
//!
//! Streaming: each chunk from the dyno goes through the compressor as it arrives, and the
//! compressor is flushed whenever the dyno has nothing more ready, so a slowly produced
//! page reaches the client piece by piece and nothing is buffered whole. Streamed
//! responses use a fast level ([`CompressionConfig::level`], 1 like nginx's default);
//! cached objects are compressed once, at [`STORED_LEVEL`], and the copy served to every
//! client that accepts gzip.
//!
//! Brotli is not offered: the only Rust encoder is a large new dependency and, at the
//! qualities that beat gzip, several times slower per byte — a poor trade on the request
//! path of a router. The router log line's `bytes=` counts the body before compression.

use crate::body::RouterBody;
use crate::client::ReqBody;
use crate::config::CompressionConfig;
use crate::forward::Present;
use bytes::{Bytes, BytesMut};
use flate2::Compression;
use flate2::write::GzEncoder;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::{Body, Frame, SizeHint};
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Level for objects compressed once and served many times.
pub(crate) const STORED_LEVEL: u32 = 6;
/// Output is handed on once this much has piled up, even if the dyno has more ready.
const OUT_CHUNK: usize = 32 * 1024;

/// Bits of [`accepted_codings`].
const GZIP: u8 = 1;
const BR: u8 = 2;
const DEFLATE: u8 = 4;
const ZSTD: u8 = 8;
const OTHER: u8 = 16;

/// The content codings a request accepts (`q` above zero), as a set of bits; `*` accepts
/// them all. Used to match `Vary: Accept-Encoding` without caring about order, spacing or
/// weights.
pub(crate) fn accepted_codings(headers: &HeaderMap) -> u8 {
    let (mut accepted, mut refused) = (0, 0);
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let mut params = item.split(|&b| b == b';');
            let coding = params.next().unwrap_or(b"").trim_ascii();
            if coding.is_empty() {
                continue;
            }
            let zero = params.any(is_q_zero);
            let is = |n: &str| coding.eq_ignore_ascii_case(n.as_bytes());
            let bits = if is("gzip") || is("x-gzip") {
                GZIP
            } else if is("br") {
                BR
            } else if is("deflate") {
                DEFLATE
            } else if is("zstd") {
                ZSTD
            } else if is("*") {
                GZIP | BR | DEFLATE | ZSTD | OTHER
            } else {
                OTHER
            };
            // A coding refused by name stays refused whatever `*` says.
            if zero {
                if !is("*") {
                    refused |= bits;
                }
            } else {
                accepted |= bits;
            }
        }
    }
    accepted & !refused
}

/// `q=0`, `q=0.`, `q=0.000`: the coding is refused.
fn is_q_zero(param: &[u8]) -> bool {
    let p = param.trim_ascii();
    let Some(v) = p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q=")) else {
        return false;
    };
    let v = v.trim_ascii();
    v.first() == Some(&b'0') && v[1..].iter().all(|&b| b == b'.' || b == b'0')
}

/// Whether the client takes gzip. A `gzip;q=0` wins over `*`. (A request without
/// `Accept-Encoding` is settled before this, on the request's `forward::Present`.)
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    accepted_codings(headers) & GZIP != 0
}

/// Whether the router should compress this response for a client that accepts gzip.
/// `length` is the dyno's `Content-Length` when its framing already settled it (the answer
/// to a HEAD has an empty body, so it passes `None`); otherwise the field is read.
pub(crate) fn compressible(
    status: StatusCode,
    headers: &HeaderMap,
    min_bytes: u64,
    length: Option<u64>,
) -> bool {
    if status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        )
    {
        return false;
    }
    // The size first: most small responses are settled on one lookup. Without a length
    // (the router's own pages, streamed bodies) the size does not decide.
    if let Some(len) = length.or_else(|| {
        headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
    }) {
        if len < min_bytes {
            return false;
        }
    }
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"))
        || headers.contains_key(header::CONTENT_RANGE)
    {
        return false;
    }
    if headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .any(|v| crate::forward::list_has(v.as_bytes(), b"no-transform"))
    {
        return false;
    }
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| compressible_type(ct.as_bytes()))
}

fn compressible_type(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or(b"")
        .trim_ascii()
        .to_ascii_lowercase();
    let Ok(essence) = std::str::from_utf8(&essence) else {
        return false;
    };
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    match kind {
        "text" => sub != "event-stream",
        "application" => {
            matches!(
                sub,
                "json"
                    | "javascript"
                    | "x-javascript"
                    | "ecmascript"
                    | "xml"
                    | "wasm"
                    | "x-font-ttf"
                    | "vnd.ms-fontobject"
                    | "graphql-response+json"
            ) || sub.ends_with("+json")
                || sub.ends_with("+xml")
        }
        "image" => matches!(sub, "svg+xml" | "x-icon" | "vnd.microsoft.icon" | "bmp"),
        "font" => matches!(sub, "ttf" | "otf" | "collection"),
        _ => false,
    }
}

/// Adds `Accept-Encoding` to `Vary` unless it is there already (or `Vary: *`).
pub(crate) fn add_vary_accept_encoding(headers: &mut HeaderMap) {
    let present = headers.get_all(header::VARY).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|t| {
            t.trim_ascii() == b"*" || t.trim_ascii().eq_ignore_ascii_case(b"accept-encoding")
        })
    });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// Rewrites headers for a gzip-encoded body: the coding, no length (the new one is
/// unknown until the end, or set by the caller), and a weak `ETag`.
pub(crate) fn mark_encoded(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    headers.remove(header::CONTENT_LENGTH);
    if let Some(etag) = headers.get(header::ETAG) {
        if etag.as_bytes().starts_with(b"\"") {
            let mut weak = BytesMut::with_capacity(etag.len() + 2);
            weak.extend_from_slice(b"W/");
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(v) = HeaderValue::from_maybe_shared(weak.freeze()) {
                headers.insert(header::ETAG, v);
            }
        }
    }
}

/// gzip of a whole body at `level`; `None` only if the compressor fails.
pub(crate) fn gzip_all(body: &[u8], level: u32) -> Option<Bytes> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(body.len() / 3 + 64),
        Compression::new(level),
    );
    enc.write_all(body).ok()?;
    enc.finish().ok().map(Bytes::from)
}

/// The compression step: what it needs of the request, taken before the request goes on,
/// and [`Gzip::encode`] for the response that comes back (gzipped on its way out when the
/// rules above say so; responses already encoded, such as the cache's gzip copies, pass).
pub(crate) struct Gzip<'a> {
    config: &'a CompressionConfig,
    accepts_gzip: bool,
    is_head: bool,
}

impl<'a> Gzip<'a> {
    /// `present` is what the request's pass over its names found: most clients that send no
    /// `Accept-Encoding` are settled without a lookup.
    pub(crate) fn for_request(
        config: &'a CompressionConfig,
        req: &Request<ReqBody>,
        present: Present,
    ) -> Self {
        let maybe = present.has(Present::ACCEPT_ENCODING);
        Gzip {
            config,
            accepts_gzip: config.enabled && maybe && accepts_gzip(req.headers()),
            is_head: req.method() == Method::HEAD,
        }
    }

    /// Whether the client takes gzip (the cache's gzip copies go to such clients).
    pub(crate) fn accepts(&self) -> bool {
        self.accepts_gzip
    }

    /// Applies the rules above to the response on its way out, in place: the response is
    /// large, and moving it in and out would copy all of it for every request.
    pub(crate) fn encode(self, response: &mut Response<RouterBody>) {
        // A cache hit's head is final: the cache chose between its plain and gzip copies.
        if response.body().is_stored() {
            return;
        }
        encode(response, self.accepts_gzip, self.is_head, self.config)
    }
}

fn encode(
    response: &mut Response<RouterBody>,
    accepts_gzip: bool,
    is_head: bool,
    config: &CompressionConfig,
) {
    let length = if is_head {
        None
    } else {
        response.body().declared_length()
    };
    if !config.enabled
        || !compressible(
            response.status(),
            response.headers(),
            config.min_bytes,
            length,
        )
    {
        return;
    }
    add_vary_accept_encoding(response.headers_mut());
    if !accepts_gzip {
        return;
    }
    // Rewriting `ETag` needs every field in the map.
    crate::body::materialize(response);
    mark_encoded(response.headers_mut());
    if is_head {
        // The same headers a GET would get; there is no body to compress.
        return;
    }
    let inner = response.body_mut().take();
    let gzip = GzipBody {
        inner,
        encoder: Some(GzEncoder::new(
            Vec::new(),
            Compression::new(config.level.clamp(1, 9)),
        )),
        unflushed: false,
    };
    *response.body_mut() = RouterBody::layered(Box::pin(gzip));
}

/// A body compressed as it streams.
struct GzipBody {
    inner: RouterBody,
    /// `None` once the gzip trailer has been written.
    encoder: Option<GzEncoder<Vec<u8>>>,
    /// Input written since the last flush.
    unflushed: bool,
}

impl GzipBody {
    fn take_output(&mut self) -> Option<Bytes> {
        let out = self.encoder.as_mut()?.get_mut();
        (!out.is_empty()).then(|| Bytes::from(std::mem::take(out)))
    }
}

impl Body for GzipBody {
    type Data = Bytes;
    type Error = crate::wire::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::wire::BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are dropped: they are hop-by-hop and rarely sent.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    // Writing to a Vec cannot fail short of running out of memory.
                    if encoder.write_all(&data).is_err() {
                        this.encoder = None;
                        return Poll::Ready(None);
                    }
                    this.unflushed = true;
                    if encoder.get_ref().len() >= OUT_CHUNK {
                        if let Some(out) = this.take_output() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.encoder = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    let Some(mut encoder) = this.encoder.take() else {
                        return Poll::Ready(None);
                    };
                    let out = encoder
                        .try_finish()
                        .ok()
                        .map(|()| std::mem::take(encoder.get_mut()))
                        .unwrap_or_default();
                    return Poll::Ready(
                        (!out.is_empty()).then(|| Ok(Frame::data(Bytes::from(out)))),
                    );
                }
                Poll::Pending => {
                    // The dyno has nothing more for now: send what there is.
                    if this.unflushed {
                        this.unflushed = false;
                        let _ = encoder.flush();
                    }
                    if let Some(out) = this.take_output() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn accept_encoding() {
        assert!(accepts_gzip(&map(&[(
            "accept-encoding",
            "gzip, deflate, br"
        )])));
        assert!(accepts_gzip(&map(&[(
            "accept-encoding",
            "br;q=1.0, GZIP;q=0.5"
        )])));
        assert!(accepts_gzip(&map(&[("accept-encoding", "*")])));
        assert!(!accepts_gzip(&map(&[("accept-encoding", "gzip;q=0, br")])));
        assert!(!accepts_gzip(&map(&[("accept-encoding", "gzip;q=0.000")])));
        assert!(!accepts_gzip(&map(&[("accept-encoding", "identity")])));
        assert!(!accepts_gzip(&map(&[("accept-encoding", "gzip;q=0, *")])));
        assert!(!accepts_gzip(&HeaderMap::new()));
        assert_eq!(
            accepted_codings(&map(&[("accept-encoding", "br, gzip")])),
            accepted_codings(&map(&[("accept-encoding", "gzip;q=0.8,br")]))
        );
    }

    #[test]
    fn what_is_compressible() {
        let ok = |h: &[(&str, &str)]| compressible(StatusCode::OK, &map(h), 1024, None);
        assert!(ok(&[("content-type", "text/html; charset=utf-8")]));
        assert!(ok(&[("content-type", "application/json")]));
        assert!(ok(&[("content-type", "application/vnd.api+json")]));
        assert!(ok(&[("content-type", "image/svg+xml")]));
        assert!(ok(&[
            ("content-type", "application/javascript"),
            ("content-length", "5000")
        ]));
        assert!(!ok(&[
            ("content-type", "text/html"),
            ("content-length", "100")
        ]));
        assert!(!ok(&[("content-type", "image/png")]));
        assert!(!ok(&[("content-type", "text/event-stream")]));
        assert!(!ok(&[
            ("content-type", "text/html"),
            ("content-encoding", "br")
        ]));
        assert!(ok(&[
            ("content-type", "text/html"),
            ("content-encoding", "identity")
        ]));
        assert!(!ok(&[
            ("content-type", "text/html"),
            ("cache-control", "public, no-transform")
        ]));
        assert!(!ok(&[]));
        assert!(!compressible(
            StatusCode::NO_CONTENT,
            &map(&[("content-type", "text/html")]),
            0,
            None
        ));
        let html = map(&[("content-type", "text/html"), ("content-length", "5000")]);
        assert!(
            !compressible(StatusCode::OK, &html, 1024, Some(100)),
            "the body's length, when known, decides"
        );
        assert!(compressible(StatusCode::OK, &html, 1024, None));
    }

    #[test]
    fn headers_for_encoded() {
        let mut h = map(&[
            ("etag", "\"abc\""),
            ("content-length", "10"),
            ("vary", "Cookie"),
        ]);
        add_vary_accept_encoding(&mut h);
        mark_encoded(&mut h);
        assert_eq!(h["etag"], "W/\"abc\"");
        assert!(!h.contains_key("content-length"));
        assert_eq!(
            h.get_all("vary").iter().collect::<Vec<_>>(),
            ["Cookie", "Accept-Encoding"]
        );
        add_vary_accept_encoding(&mut h);
        assert_eq!(h.get_all("vary").iter().count(), 2);
    }
}
