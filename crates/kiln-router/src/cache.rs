//! The HTTP cache: the Varnish layer of Heroku's old stack, inside the router. It keeps
//! responses the app marks cacheable (RFC 9111, as a *shared* cache) in a bounded amount of
//! memory and answers repeated requests without touching a dyno.
//!
//! # What is stored
//!
//! A response is stored when all of these hold:
//!
//! - the request is a `GET` without a body, without `Range`, without `Upgrade`, and
//!   without `Cache-Control: no-store`;
//! - the status is one RFC 9110 calls cacheable by default: 200, 203, 204, 300, 301, 308,
//!   404, 405, 410, 414 or 501 (206 is not, since ranges are not stored);
//! - it has an explicit freshness lifetime above zero: `s-maxage`, else `max-age`, else
//!   `Expires` minus `Date` (no heuristic freshness: `public` alone is not enough), and
//!   is still fresh once its `Age` is counted;
//! - `Cache-Control` has none of `no-store`, `private` (with or without field names) or
//!   `no-cache` (with or without field names: there is no revalidation, so anything that
//!   would need it is not kept);
//! - there is no `Set-Cookie` (never, whatever `Cache-Control` says: serving one visitor's
//!   cookie to another is the classic cache leak; Varnish's built-in rules agree);
//! - `Vary` does not contain `*` and names only valid header fields;
//! - if the request carried `Authorization`, the response says `public`, `s-maxage` or
//!   `must-revalidate` (RFC 9111 §3.5); such a response may then answer any request for the
//!   URL, with or without credentials. A stored response that did not come with that
//!   permission is never used for a request that has `Authorization`, and requests with
//!   `Authorization` are never coalesced;
//! - the body is at most [`CacheConfig::max_object_bytes`] and the cache is enabled
//!   ([`CacheConfig::max_bytes`] above zero).
//!
//! Request `Cache-Control` (`no-cache`, `max-age=0`) does not force a refetch, as in
//! Varnish and most CDNs: otherwise any client could bypass the cache and load the app at
//! will. `Cookie` on the request does not bypass the cache either: an app that marks a
//! response shareable is trusted, and one that varies it by cookie says `Vary: Cookie`.
//!
//! # Keys, variants, freshness
//!
//! Objects are keyed by app, `Host` (case-insensitive) and request target; `HEAD` is
//! answered from a stored `GET`. Under one key, each `Vary` variant is its own object,
//! matched on the request's values of the named headers (whitespace trimmed; for
//! `Accept-Encoding` only the set of codings accepted counts). A hit carries `Age` (the
//! origin's `Age` or `Date` lag, plus the time stored) and `X-Cache: HIT`; responses from a
//! dyno to `GET`/`HEAD` carry `X-Cache: MISS`. An object is used only while fresh; stale
//! ones are dropped when met. `If-None-Match` / `If-Modified-Since` on a hit get a 304.
//!
//! # Coalescing
//!
//! The first miss for a key fetches from a dyno; identical misses arriving meanwhile wait
//! for it (at most `first_byte_timeout`) and are then answered from the stored object. If
//! the response turns out not to be storable, the waiters go to the dyno on their own, and
//! a short-lived "hit-for-miss" marker stops further requests for that key from queueing
//! behind each other (they are still stored if a later response is cacheable).
//!
//! # Memory and purging
//!
//! Bodies are copied out of the connection buffers into exact-size allocations, and every
//! object is charged for its body, its gzip copy, its headers and its bookkeeping. When the
//! total passes [`CacheConfig::max_bytes`] the least recently used objects go. When a new
//! release of an app goes live ([`DynoRoutes::release_changed`]) or the app is removed,
//! its objects are dropped, and fetches started before that are not stored.
//!
//! # Logs
//!
//! A hit writes the usual router line with `dyno=cache connect=0ms`, `service=` the time
//! spent in the router (including any wait for a coalesced fetch), and `bytes=` the body
//! sent. Heroku's router has no cache, so there is no Heroku value to copy; `dyno=cache`
//! keeps the line parseable by the same tools.
//!
//! [`DynoRoutes::release_changed`]: kiln_model::route::DynoRoutes::release_changed

use crate::access_log::{Outcome, RequestLog};
use crate::body::RouterBody;
use crate::client::ReqBody;
use crate::compress;
use crate::config::{CacheConfig, CompressionConfig, RouterConfig};
use crate::forward::{Forwarded, RequestFields};
use crate::table::{AppEntry, AppStore, RouteTable};
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode};
use hyper::body::{Body, Frame, SizeHint};
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

use crate::forward::X_CACHE;

/// How long a key whose response was not storable is exempt from coalescing.
const HIT_FOR_MISS: Duration = Duration::from_secs(30);
/// Variants kept under one key; `Vary: User-Agent` could otherwise fill the cache with
/// copies of one page.
const MAX_VARIANTS: usize = 16;
/// How many times a request may wait for another's fetch before going to the dyno itself.
const MAX_WAITS: usize = 3;
/// Bookkeeping charged per object on top of its bytes.
const OBJECT_OVERHEAD: usize = 256;

/// What the cache holds right now, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheUsage {
    /// Stored responses (variants count separately).
    pub objects: usize,
    /// Bytes charged against [`CacheConfig::max_bytes`].
    pub bytes: usize,
}

impl RouteTable {
    /// What the HTTP cache holds right now.
    pub fn cache_usage(&self) -> CacheUsage {
        let cache = self.store(HttpCache::new);
        let s = cache.lock();
        let objects = s
            .slots
            .iter()
            .filter(|slot| matches!(slot.entry, Some(Entry::Object(_))))
            .count();
        CacheUsage {
            objects,
            bytes: s.used,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The request path
// ---------------------------------------------------------------------------------------

/// Serves a routed request: from the cache when it can, else through `next` (storing the
/// response if it may). Compression is the step in front ([`compress::layer`]); what is
/// stored keeps a gzip copy, which hits serve to clients that accept gzip.
///
/// `next` takes a request on to a dyno (the dispatch layer); it gives back the request's
/// headers when it can, which spares copying them before the fetch for `Vary`.
pub(crate) async fn layer<N, F>(
    cache: &Arc<HttpCache>,
    config: &RouterConfig,
    log: RequestLog,
    req: Request<ReqBody>,
    fwd: &Forwarded<'_>,
    upgrade: bool,
    next: N,
) -> Response<RouterBody>
where
    N: FnOnce(RequestLog, Request<ReqBody>, bool) -> F,
    F: Future<Output = (Response<RouterBody>, Option<HeaderMap>)>,
{
    let gzip = &config.compression;
    let accepts_gzip = gzip.enabled && compress::accepts_gzip(req.headers());
    let is_head = req.method() == Method::HEAD;
    let limits = config.cache;
    if limits.max_bytes == 0 || upgrade || !lookup_allowed(&req) {
        return next(log, req, upgrade).await.0;
    }

    let started = Instant::now();
    let authorized = req.headers().contains_key(header::AUTHORIZATION);
    let is_get = req.method() == Method::GET;
    let mut waits = 0;
    let filler = loop {
        let key = KeyRef {
            app_id: &log.app.app_id,
            host: log.host.as_bytes(),
            target: target(&log.path),
        };
        // HEAD misses pass: their responses have no body to store.
        let coalesce = is_get && !authorized && waits < MAX_WAITS;
        // One clock read serves the common case; a request that waited reads it again.
        let now = if waits == 0 { started } else { Instant::now() };
        let fields = RequestFields {
            map: req.headers(),
            forwarded: Some(fwd),
        };
        match cache.lookup(&key, fields, authorized, coalesce, now) {
            Lookup::Hit(object) => {
                return hit(
                    &object,
                    &log,
                    req.headers(),
                    is_head,
                    accepts_gzip,
                    started,
                    now,
                );
            }
            Lookup::Wait(mut rx) => {
                waits += 1;
                if tokio::time::timeout(config.first_byte_timeout, rx.changed())
                    .await
                    .is_err()
                {
                    // The fetch is taking too long: stop queueing behind it.
                    waits = MAX_WAITS;
                }
            }
            Lookup::Miss(filler) => break filler,
        }
    };

    // Vary is only known from the response, so the request's headers are needed until
    // then: the dyno client gives them back with the response.
    let key = OwnedKeyParts {
        app: Arc::clone(&log.app),
        host: log.host.clone(),
        target: log.path.clone(),
    };
    let (mut response, returned) = next(log, req, false).await;
    let request_headers = returned.filter(|_| is_get);
    let head = match request_headers {
        // A response with no freshness at all (the usual dynamic page) is settled on the
        // fields the map always holds; only one that might be stored needs the rest.
        Some(rh) if has_freshness(response.headers()) => {
            crate::body::materialize(&mut response);
            storable(
                RequestFields {
                    map: &rh,
                    forwarded: Some(fwd),
                },
                authorized,
                response.status(),
                response.headers(),
                &limits,
                gzip,
            )
        }
        _ => None,
    };
    response
        .headers_mut()
        .insert(X_CACHE.clone(), HeaderValue::from_static("MISS"));
    if let Some(head) = head {
        let (parts, body) = response.into_parts();
        let fill = Fill {
            filler,
            head,
            key,
            parts: Vec::new(),
            len: 0,
            limits,
        };
        response = Response::from_parts(
            parts,
            RouterBody::layered(Box::pin(FillBody {
                inner: body,
                fill: Some(fill),
            })),
        );
    } else {
        // Not storable: waiters (if this request led a fetch) are released to go to a
        // dyno themselves, and the key is marked hit-for-miss.
        drop(filler);
    }
    response
}

/// Whether the cache is consulted at all for this request.
fn lookup_allowed(req: &Request<ReqBody>) -> bool {
    let m = req.method();
    (m == Method::GET || m == Method::HEAD)
        && req.body().is_end_stream()
        && !req.headers().contains_key(header::RANGE)
        && !directives(req.headers()).no_store
}

fn target(path: &Option<PathAndQuery>) -> &str {
    path.as_ref().map_or("/", PathAndQuery::as_str)
}

/// Answers from a stored object, and writes the router log line for it.
fn hit(
    object: &Object,
    log: &RequestLog,
    req: &HeaderMap,
    is_head: bool,
    accepts_gzip: bool,
    started: Instant,
    now: Instant,
) -> Response<RouterBody> {
    // The stored maps are complete hit heads; only `Age` changes, in place, so the clone
    // never has to grow.
    let (mut headers, body) = match (&object.gzip, &object.gzip_headers, accepts_gzip) {
        (Some(gz), Some(h), true) => (h.clone(), gz.clone()),
        _ => (object.headers.clone(), object.body.clone()),
    };
    headers.insert(header::AGE, age_value(object.age(now)));
    let not_modified = not_modified(req, &headers);
    let status = if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        object.status
    };
    if not_modified {
        for h in [
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::CONTENT_LANGUAGE,
            header::CONTENT_LENGTH,
        ] {
            headers.remove(h);
        }
    }
    let send_body = !is_head && !not_modified && status != StatusCode::NO_CONTENT;
    log.emit(&Outcome {
        code: None,
        dyno: Some("cache"),
        connect: Some(Duration::ZERO),
        service: Some(started.elapsed()),
        status: Some(status.as_u16()),
        bytes: Some(if send_body { body.len() as u64 } else { 0 }),
    });
    let body = if send_body {
        RouterBody::full(body)
    } else {
        RouterBody::empty()
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// `Age` values: the first hour's are made once, as static strings, so a hit does not
/// allocate one.
fn age_value(secs: u64) -> HeaderValue {
    static SMALL: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    let small = SMALL.get_or_init(|| {
        let text: &'static str = Box::leak(
            (0..3600)
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
                .into_boxed_str(),
        );
        text.split(' ').map(HeaderValue::from_static).collect()
    });
    usize::try_from(secs)
        .ok()
        .and_then(|i| small.get(i))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(secs))
}

/// RFC 9110 §13.1.2 and §13.1.3: `If-None-Match` (weak comparison) decides when present,
/// else `If-Modified-Since` against `Last-Modified`.
fn not_modified(req: &HeaderMap, stored: &HeaderMap) -> bool {
    let inm: Vec<&HeaderValue> = req.get_all(header::IF_NONE_MATCH).iter().collect();
    if !inm.is_empty() {
        let Some(etag) = stored.get(header::ETAG) else {
            return false;
        };
        let opaque = |t: &[u8]| -> Vec<u8> {
            t.trim_ascii()
                .strip_prefix(b"W/")
                .unwrap_or(t.trim_ascii())
                .to_vec()
        };
        let ours = opaque(etag.as_bytes());
        return inm
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|t| t.trim_ascii() == b"*" || opaque(t) == ours);
    }
    let (Some(ims), Some(lm)) = (
        req.get(header::IF_MODIFIED_SINCE),
        stored.get(header::LAST_MODIFIED),
    ) else {
        return false;
    };
    match (http_date(ims), http_date(lm)) {
        (Some(ims), Some(lm)) => lm <= ims,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Storability
// ---------------------------------------------------------------------------------------

/// The parts of `Cache-Control` the cache acts on.
#[derive(Debug, Default, PartialEq, Eq)]
struct Directives {
    no_store: bool,
    no_cache: bool,
    private: bool,
    public: bool,
    must_revalidate: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
}

/// Parses every `Cache-Control` field line. Quoted values may contain commas. A malformed
/// `max-age` counts as 0 (RFC 9111 §4.2.1: treat as stale), and a repeated one keeps the
/// smallest value.
fn directives(headers: &HeaderMap) -> Directives {
    let mut d = Directives::default();
    for value in headers.get_all(header::CACHE_CONTROL) {
        for item in split_list(value.as_bytes()) {
            let (name, arg) = match item.iter().position(|&b| b == b'=') {
                Some(i) => (item[..i].trim_ascii(), Some(item[i + 1..].trim_ascii())),
                None => (item, None),
            };
            let seconds = || -> u64 {
                let a = arg.unwrap_or(b"");
                let a = a
                    .strip_prefix(b"\"")
                    .and_then(|a| a.strip_suffix(b"\""))
                    .unwrap_or(a);
                if a.is_empty() || !a.iter().all(u8::is_ascii_digit) {
                    return 0;
                }
                // Values beyond 2^31 are to be taken as 2^31 (RFC 9111 §1.2.2).
                std::str::from_utf8(a)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(u64::MAX)
                    .min(1 << 31)
            };
            let keep_min = |old: Option<u64>, new: u64| Some(old.map_or(new, |o| o.min(new)));
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            if is("no-store") {
                d.no_store = true;
            } else if is("no-cache") {
                d.no_cache = true;
            } else if is("private") {
                d.private = true;
            } else if is("public") {
                d.public = true;
            } else if is("must-revalidate") || is("proxy-revalidate") {
                d.must_revalidate = true;
            } else if is("max-age") {
                d.max_age = keep_min(d.max_age, seconds());
            } else if is("s-maxage") {
                d.s_maxage = keep_min(d.s_maxage, seconds());
            }
        }
    }
    d
}

/// The comma-separated members of a list header, trimmed, with commas inside quoted
/// strings left alone; empty members skipped.
fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = value;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let (mut quoted, mut escaped, mut end) = (false, false, rest.len());
            for (i, &b) in rest.iter().enumerate() {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' if quoted => escaped = true,
                    b'"' => quoted = !quoted,
                    b',' if !quoted => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let item = rest[..end].trim_ascii();
            rest = rest.get(end + 1..).unwrap_or(b"");
            if !item.is_empty() {
                return Some(item);
            }
        }
    })
}

const CACHEABLE_STATUS: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// What the cache decided about a response head it may store.
pub(crate) struct Head {
    status: StatusCode,
    /// Copied out of the connection buffer, without framing or `Age`.
    headers: HeaderMap,
    vary: Vec<(HeaderName, VaryValue)>,
    shared_with_auth: bool,
    lifetime: u64,
    initial_age: u64,
    received: Instant,
    /// Whether a gzip copy is kept for clients that accept it.
    encodable: bool,
}

/// Decides, from the response head, whether the response will be stored.
fn storable(
    req: RequestFields<'_>,
    authorized: bool,
    status: StatusCode,
    headers: &HeaderMap,
    limits: &CacheConfig,
    gzip: &CompressionConfig,
) -> Option<Head> {
    let cc = directives(headers);
    if !cc.has_freshness(headers) {
        return None;
    }
    if !CACHEABLE_STATUS.contains(&status.as_u16())
        || headers.contains_key(header::SET_COOKIE)
        || headers.contains_key(header::CONTENT_RANGE)
    {
        return None;
    }
    if cc.no_store || cc.private || cc.no_cache {
        return None;
    }
    if authorized && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate) {
        return None;
    }
    if content_length(headers).is_some_and(|n| n > limits.max_object_bytes as u64) {
        return None;
    }
    let now = SystemTime::now();
    let date = headers.get(header::DATE).and_then(http_date);
    let lifetime = match (cc.s_maxage, cc.max_age) {
        (Some(s), _) => s,
        (None, Some(m)) => m,
        (None, None) => {
            // An invalid Expires means "already expired" (RFC 9111 §5.3).
            let expires = http_date(headers.get(header::EXPIRES)?)?;
            expires
                .duration_since(date.unwrap_or(now))
                .map_or(0, |d| d.as_secs())
        }
    };
    let age_value = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let apparent_age = date
        .and_then(|d| now.duration_since(d).ok())
        .map_or(0, |d| d.as_secs());
    let initial_age = age_value.max(apparent_age);
    if lifetime == 0 || initial_age >= lifetime {
        return None;
    }
    let vary = vary(req, headers)?;
    let encodable = gzip.enabled && compress::compressible(status, headers, gzip.min_bytes);
    let mut stored = copy_headers(headers);
    if encodable {
        compress::add_vary_accept_encoding(&mut stored);
    }
    Some(Head {
        status,
        headers: stored,
        vary,
        shared_with_auth: cc.public || cc.s_maxage.is_some() || cc.must_revalidate,
        lifetime,
        initial_age,
        received: Instant::now(),
        encodable,
    })
}

/// Whether a response says how long it stays fresh at all. The common case of a dynamic
/// page (it does not) is decided on two lookups, without parsing any date, and on fields
/// the engine's response map always holds (`passthrough::map_name`).
fn has_freshness(headers: &HeaderMap) -> bool {
    directives(headers).has_freshness(headers)
}

impl Directives {
    /// `headers` (those these directives came from) give a freshness lifetime.
    fn has_freshness(&self, headers: &HeaderMap) -> bool {
        self.s_maxage.is_some() || self.max_age.is_some() || headers.contains_key(header::EXPIRES)
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn http_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?.trim()).ok()
}

/// Copies headers into fresh allocations: values parsed by hyper are slices of the
/// connection's read buffer, and keeping one would pin the whole buffer in the cache.
/// Framing and `Age` are dropped; a hit sets its own.
fn copy_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::AGE
            || name == X_CACHE
        {
            continue;
        }
        let (Ok(name), Ok(mut copy)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) else {
            continue;
        };
        copy.set_sensitive(value.is_sensitive());
        out.append(name, copy);
    }
    out
}

/// A request header's value as a variant is keyed on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum VaryValue {
    Absent,
    /// `Accept-Encoding`, reduced to the set of codings accepted.
    Codings(u8),
    Value(Bytes),
}

impl VaryValue {
    fn of(req: RequestFields<'_>, name: &HeaderName) -> VaryValue {
        if name == header::ACCEPT_ENCODING {
            return VaryValue::Codings(compress::accepted_codings(req.map));
        }
        let mut values = req.values(name);
        let Some(first) = values.next() else {
            return VaryValue::Absent;
        };
        let mut joined = BytesMut::from(first.trim_ascii());
        for more in values {
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(more.trim_ascii());
        }
        VaryValue::Value(joined.freeze())
    }

    /// Whether the request presents this value; allocates only for repeated headers.
    fn matches(&self, req: RequestFields<'_>, name: &HeaderName) -> bool {
        match self {
            VaryValue::Codings(mask) => *mask == compress::accepted_codings(req.map),
            VaryValue::Absent => req.values(name).next().is_none(),
            VaryValue::Value(stored) => {
                let mut values = req.values(name);
                match (values.next(), values.next()) {
                    (None, _) => false,
                    (Some(one), None) => one.trim_ascii() == stored.as_ref(),
                    _ => VaryValue::of(req, name) == *self,
                }
            }
        }
    }
}

/// The request values the response varies on; `None` when it cannot be stored
/// (`Vary: *` or an invalid field name).
fn vary(req: RequestFields<'_>, headers: &HeaderMap) -> Option<Vec<(HeaderName, VaryValue)>> {
    let mut out: Vec<(HeaderName, VaryValue)> = Vec::new();
    for value in headers.get_all(header::VARY) {
        for item in split_list(value.as_bytes()) {
            if item == b"*" {
                return None;
            }
            let name = HeaderName::from_bytes(item).ok()?;
            if !out.iter().any(|(n, _)| *n == name) {
                let v = VaryValue::of(req, &name);
                out.push((name, v));
            }
        }
    }
    // Sorted, so two orders of the same Vary name the same variant.
    out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    Some(out)
}

// ---------------------------------------------------------------------------------------
// Filling: capturing a body while it streams to the client
// ---------------------------------------------------------------------------------------

struct OwnedKeyParts {
    app: Arc<AppEntry>,
    host: HeaderValue,
    target: Option<PathAndQuery>,
}

struct Fill {
    filler: Filler,
    head: Head,
    key: OwnedKeyParts,
    parts: Vec<Bytes>,
    len: usize,
    limits: CacheConfig,
}

impl Fill {
    /// The body is complete: build the object and store it.
    fn complete(self) {
        let Fill {
            filler,
            head,
            key,
            parts,
            len,
            limits,
        } = self;
        // One exact-size copy, so nothing of hyper's read buffers stays pinned.
        let mut buf = BytesMut::with_capacity(len);
        for p in &parts {
            buf.extend_from_slice(p);
        }
        let body = buf.freeze();
        let gzip = if head.encodable {
            compress::gzip_all(&body, compress::STORED_LEVEL).filter(|gz| gz.len() < body.len())
        } else {
            None
        };
        let key = Key {
            app_id: key.app.app_id.as_str().into(),
            host: key.host.as_bytes().to_ascii_lowercase().into_boxed_slice(),
            target: target(&key.target).into(),
        };
        // The heads hits are served with: everything but `Age` is known now.
        let mut headers = head.headers;
        headers.insert(X_CACHE.clone(), HeaderValue::from_static("HIT"));
        headers.insert(header::AGE, age_value(0));
        let gzip_headers = gzip.as_ref().map(|gz| {
            let mut h = headers.clone();
            compress::mark_encoded(&mut h);
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(gz.len()));
            h
        });
        if head.status != StatusCode::NO_CONTENT {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let map_size = |h: &HeaderMap| -> usize {
            h.iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum()
        };
        let headers_size = map_size(&headers) + gzip_headers.as_ref().map_or(0, map_size);
        let vary_size: usize = head
            .vary
            .iter()
            .map(|(n, v)| {
                n.as_str().len()
                    + 32
                    + if let VaryValue::Value(b) = v {
                        b.len()
                    } else {
                        0
                    }
            })
            .sum();
        let size = OBJECT_OVERHEAD
            + body.len()
            + gzip.as_ref().map_or(0, Bytes::len)
            + headers_size
            + vary_size
            + key.size();
        let object = Object {
            key,
            status: head.status,
            headers,
            gzip_headers,
            body,
            gzip,
            vary: head.vary,
            shared_with_auth: head.shared_with_auth,
            lifetime: head.lifetime,
            initial_age: head.initial_age,
            stored_at: head.received,
            size,
        };
        filler.store(object, &limits);
    }
}

/// A dyno's response body on its way to the client, copied aside for the cache. Frames
/// pass through as they arrive; a body that outgrows the object limit, breaks off or is
/// abandoned by the client is simply not stored.
struct FillBody {
    inner: RouterBody,
    fill: Option<Fill>,
}

impl FillBody {
    fn complete(&mut self) {
        if let Some(fill) = self.fill.take() {
            fill.complete();
        }
    }
}

impl Body for FillBody {
    type Data = Bytes;
    type Error = crate::wire::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::wire::BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(fill)) = (frame.data_ref(), this.fill.as_mut()) {
                    fill.len += data.len();
                    if fill.len > fill.limits.max_object_bytes {
                        this.fill = None;
                    } else {
                        fill.parts.push(data.clone());
                    }
                }
                // hyper may not poll again once the body says it has ended.
                if this.inner.is_end_stream() {
                    this.complete();
                }
            }
            Poll::Ready(None) => this.complete(),
            Poll::Ready(Some(Err(_))) => this.fill = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for FillBody {
    fn drop(&mut self) {
        // Empty bodies (204, `Content-Length: 0`) are dropped without being polled.
        if self.fill.is_some() && self.inner.is_end_stream() {
            self.complete();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------

/// A stored response.
pub(crate) struct Object {
    key: Key,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    gzip: Option<Bytes>,
    /// The heads of a hit on `body` and on `gzip`: `Content-Length`, `X-Cache` and an `Age`
    /// to overwrite are already in, so a hit clones one map and changes one value.
    gzip_headers: Option<HeaderMap>,
    vary: Vec<(HeaderName, VaryValue)>,
    shared_with_auth: bool,
    lifetime: u64,
    initial_age: u64,
    stored_at: Instant,
    size: usize,
}

impl Object {
    /// `current_age` of RFC 9111 §4.2.3, in whole seconds.
    fn age(&self, now: Instant) -> u64 {
        self.initial_age + now.saturating_duration_since(self.stored_at).as_secs()
    }

    fn is_fresh(&self, now: Instant) -> bool {
        self.age(now) < self.lifetime
    }

    fn vary_matches(&self, req: RequestFields<'_>) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| value.matches(req, name))
    }
}

/// The primary cache key.
struct Key {
    app_id: Box<str>,
    /// Lowercase.
    host: Box<[u8]>,
    target: Box<str>,
}

impl Key {
    fn size(&self) -> usize {
        self.app_id.len() + self.host.len() + self.target.len()
    }
}

/// A key as a request presents it, borrowed.
struct KeyRef<'a> {
    app_id: &'a str,
    host: &'a [u8],
    target: &'a str,
}

impl KeyRef<'_> {
    fn matches(&self, key: &Key) -> bool {
        *key.app_id == *self.app_id
            && key.host.eq_ignore_ascii_case(self.host)
            && *key.target == *self.target
    }

    fn to_key(&self) -> Key {
        Key {
            app_id: self.app_id.into(),
            host: self.host.to_ascii_lowercase().into_boxed_slice(),
            target: self.target.into(),
        }
    }
}

enum Entry {
    Object(Arc<Object>),
    /// Hit-for-miss: requests for the key go straight to a dyno without coalescing.
    Pass {
        key: Key,
        until: Instant,
    },
}

impl Entry {
    fn key(&self) -> &Key {
        match self {
            Entry::Object(o) => &o.key,
            Entry::Pass { key, .. } => key,
        }
    }

    fn size(&self) -> usize {
        match self {
            Entry::Object(o) => o.size,
            Entry::Pass { key, .. } => OBJECT_OVERHEAD + key.size(),
        }
    }
}

const NIL: u32 = u32::MAX;

/// One place in the LRU list.
struct Slot {
    prev: u32,
    next: u32,
    hash: u64,
    entry: Option<Entry>,
}

/// A fetch others may wait for.
struct Pending {
    key: Key,
    id: u64,
    /// Dropped when the fetch ends one way or another, which wakes the waiters.
    tx: watch::Sender<()>,
}

/// Keys are hashed once with a seeded SipHash; the maps then use that value as is.
#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Prehashed = BuildHasherDefault<PrehashedHasher>;

/// The objects, in a slab threaded by an LRU list (most recent at `head`).
struct Store {
    index: HashMap<u64, Vec<u32>, Prehashed>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    used: usize,
    pending: HashMap<u64, Vec<Pending>, Prehashed>,
    next_fill: u64,
    /// Bumped by every purge; a fetch that started under an older epoch is not stored.
    epoch: u64,
}

/// The router's HTTP cache: one per route table, shared by every listener.
pub(crate) struct HttpCache {
    seed: RandomState,
    store: Mutex<Store>,
}

pub(crate) enum Lookup {
    Hit(Arc<Object>),
    /// Another request is fetching this key; wait for the change, then look again.
    Wait(watch::Receiver<()>),
    Miss(Filler),
}

/// The right to store a fetched response (and, for the request leading a coalesced fetch,
/// the duty to wake the waiters: dropping it does, and marks the key hit-for-miss).
pub(crate) struct Filler {
    cache: Arc<HttpCache>,
    epoch: u64,
    leading: Option<(u64, u64)>,
}

impl HttpCache {
    pub(crate) fn new() -> Arc<HttpCache> {
        Arc::new(HttpCache {
            seed: RandomState::new(),
            store: Mutex::new(Store {
                index: HashMap::default(),
                slots: Vec::new(),
                free: Vec::new(),
                head: NIL,
                tail: NIL,
                used: 0,
                pending: HashMap::default(),
                next_fill: 0,
                epoch: 0,
            }),
        })
    }

    // A panic while the lock was held leaves a consistent-enough store (every mutation
    // completes its list surgery before anything can panic); serving beats refusing.
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The host and target decide the bucket; the app does not need hashing, since a host
    /// names one app (a key's app is still compared on every match, so objects left from
    /// before a domain moved are never served for the new owner).
    fn hash(&self, key: &KeyRef<'_>) -> u64 {
        let mut h = self.seed.build_hasher();
        if key.host.iter().any(u8::is_ascii_uppercase) {
            h.write(&key.host.to_ascii_lowercase());
        } else {
            h.write(key.host);
        }
        h.write_u8(0xff);
        h.write(key.target.as_bytes());
        h.finish()
    }

    fn lookup(
        self: &Arc<Self>,
        key: &KeyRef<'_>,
        req: RequestFields<'_>,
        authorized: bool,
        coalesce: bool,
        now: Instant,
    ) -> Lookup {
        let hash = self.hash(key);
        let mut s = self.lock();
        let (mut hit, mut pass, mut stale) = (None, false, Vec::new());
        if let Some(ids) = s.index.get(&hash) {
            for &i in ids {
                match &s.slots[i as usize].entry {
                    Some(Entry::Object(o)) if key.matches(&o.key) => {
                        if !o.is_fresh(now) {
                            stale.push(i);
                        } else if hit.is_none()
                            && (!authorized || o.shared_with_auth)
                            && o.vary_matches(req)
                        {
                            hit = Some(i);
                        }
                    }
                    Some(Entry::Pass { key: k, until }) if key.matches(k) => {
                        if *until > now {
                            pass = true;
                        } else {
                            stale.push(i);
                        }
                    }
                    _ => {}
                }
            }
        }
        for i in stale {
            s.remove(i);
        }
        if let Some(i) = hit {
            s.touch(i);
            if let Some(Entry::Object(o)) = &s.slots[i as usize].entry {
                return Lookup::Hit(Arc::clone(o));
            }
        }
        let epoch = s.epoch;
        if !coalesce || pass {
            return Lookup::Miss(Filler {
                cache: Arc::clone(self),
                epoch,
                leading: None,
            });
        }
        if let Some(p) = s
            .pending
            .get(&hash)
            .and_then(|ps| ps.iter().find(|p| key.matches(&p.key)))
        {
            return Lookup::Wait(p.tx.subscribe());
        }
        let id = s.next_fill;
        s.next_fill += 1;
        let (tx, _) = watch::channel(());
        s.pending.entry(hash).or_default().push(Pending {
            key: key.to_key(),
            id,
            tx,
        });
        Lookup::Miss(Filler {
            cache: Arc::clone(self),
            epoch,
            leading: Some((hash, id)),
        })
    }
}

/// The table tells the cache when an app's release changes or the app goes: every object of
/// the app is dropped, and fetches already under way become unstorable.
impl AppStore for HttpCache {
    fn forget_app(&self, app_id: &str) {
        let mut s = self.lock();
        s.epoch += 1;
        for i in 0..s.slots.len() {
            if s.slots[i]
                .entry
                .as_ref()
                .is_some_and(|e| *e.key().app_id == *app_id)
            {
                s.remove(i as u32);
            }
        }
    }
}

impl Filler {
    fn store(mut self, object: Object, limits: &CacheConfig) {
        let cache = Arc::clone(&self.cache);
        let mut s = cache.lock();
        if let Some((hash, id)) = self.leading.take() {
            s.end_fill(hash, id);
        }
        if s.epoch == self.epoch {
            s.insert_object(
                cache.hash(&KeyRef {
                    app_id: &object.key.app_id,
                    host: &object.key.host,
                    target: &object.key.target,
                }),
                object,
                limits,
            );
        }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        let Some((hash, id)) = self.leading.take() else {
            return;
        };
        let mut s = self.cache.lock();
        if let Some(key) = s.end_fill(hash, id) {
            s.insert_pass(hash, key, Instant::now() + HIT_FOR_MISS);
        }
    }
}

impl Store {
    /// Ends a fetch (waking its waiters) and returns its key.
    fn end_fill(&mut self, hash: u64, id: u64) -> Option<Key> {
        let list = self.pending.get_mut(&hash)?;
        let at = list.iter().position(|p| p.id == id)?;
        let pending = list.swap_remove(at);
        if list.is_empty() {
            self.pending.remove(&hash);
        }
        Some(pending.key)
    }

    fn insert_object(&mut self, hash: u64, object: Object, limits: &CacheConfig) {
        // What the new object replaces: the same variant, and the key's hit-for-miss.
        let same = |e: &Entry| match e {
            Entry::Object(o) => {
                o.key.app_id == object.key.app_id
                    && o.key.host == object.key.host
                    && o.key.target == object.key.target
                    && o.vary == object.vary
            }
            Entry::Pass { key, .. } => {
                key.app_id == object.key.app_id
                    && key.host == object.key.host
                    && key.target == object.key.target
            }
        };
        let ids: Vec<u32> = self
            .index
            .get(&hash)
            .map(|ids| {
                ids.iter()
                    .copied()
                    .filter(|&i| self.slots[i as usize].entry.as_ref().is_some_and(same))
                    .collect()
            })
            .unwrap_or_default();
        for i in ids {
            self.remove(i);
        }
        // The body was held to `max_object_bytes` while it streamed; the whole object
        // (gzip copy and headers included) must still fit the cache.
        if object.size > limits.max_bytes {
            return;
        }
        if let Some(ids) = self.index.get(&hash) {
            if ids.len() >= MAX_VARIANTS {
                let oldest = ids[0];
                self.remove(oldest);
            }
        }
        self.add(hash, Entry::Object(Arc::new(object)));
        self.evict(limits.max_bytes);
    }

    fn insert_pass(&mut self, hash: u64, key: Key, until: Instant) {
        let existing = self.index.get(&hash).and_then(|ids| {
            ids.iter().copied().find(|&i| matches!(&self.slots[i as usize].entry, Some(Entry::Pass { key: k, .. }) if k.app_id == key.app_id && k.host == key.host && k.target == key.target))
        });
        if let Some(i) = existing {
            self.remove(i);
        }
        self.add(hash, Entry::Pass { key, until });
    }

    fn evict(&mut self, budget: usize) {
        while self.used > budget && self.tail != NIL {
            self.remove(self.tail);
        }
    }

    fn add(&mut self, hash: u64, entry: Entry) -> u32 {
        self.used += entry.size();
        let slot = Slot {
            prev: NIL,
            next: NIL,
            hash,
            entry: Some(entry),
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.link_front(i);
        self.index.entry(hash).or_default().push(i);
        i
    }

    fn remove(&mut self, i: u32) {
        let Some(entry) = self.slots[i as usize].entry.take() else {
            return;
        };
        self.used -= entry.size();
        self.unlink(i);
        let hash = self.slots[i as usize].hash;
        if let Some(ids) = self.index.get_mut(&hash) {
            ids.retain(|&x| x != i);
            if ids.is_empty() {
                self.index.remove(&hash);
            }
        }
        self.free.push(i);
    }

    fn touch(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.link_front(i);
        }
    }

    fn link_front(&mut self, i: u32) {
        let old = self.head;
        {
            let s = &mut self.slots[i as usize];
            s.prev = NIL;
            s.next = old;
        }
        if old != NIL {
            self.slots[old as usize].prev = i;
        } else {
            self.tail = i;
        }
        self.head = i;
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        if prev != NIL {
            self.slots[prev as usize].next = next;
        } else if self.head == i {
            self.head = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        } else if self.tail == i {
            self.tail = prev;
        }
        let s = &mut self.slots[i as usize];
        s.prev = NIL;
        s.next = NIL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn head(resp: &[(&str, &str)], req: &[(&str, &str)], authorized: bool) -> Option<Head> {
        storable(
            RequestFields {
                map: &map(req),
                forwarded: None,
            },
            authorized,
            StatusCode::OK,
            &map(resp),
            &CacheConfig::default(),
            &CompressionConfig::default(),
        )
    }

    #[test]
    fn parses_cache_control() {
        let d = directives(&map(&[
            ("cache-control", "Public, max-age=60, s-maxage=\"120\""),
            ("cache-control", "no-cache=\"set-cookie, x\", max-age=30"),
        ]));
        assert!(d.public && d.no_cache && !d.private);
        assert_eq!((d.max_age, d.s_maxage), (Some(30), Some(120)));
        assert_eq!(
            directives(&map(&[("cache-control", "max-age=abc")])).max_age,
            Some(0)
        );
        assert_eq!(
            directives(&map(&[(
                "cache-control",
                "max-age=99999999999999999999999"
            )]))
            .max_age,
            Some(1 << 31)
        );
    }

    #[test]
    fn storability_rules() {
        assert!(head(&[("cache-control", "max-age=60")], &[], false).is_some());
        assert_eq!(
            head(&[("cache-control", "max-age=60, s-maxage=5")], &[], false)
                .unwrap()
                .lifetime,
            5
        );
        assert!(
            head(&[("cache-control", "public")], &[], false).is_none(),
            "no explicit lifetime"
        );
        assert!(head(&[("cache-control", "max-age=0")], &[], false).is_none());
        assert!(head(&[("cache-control", "private, max-age=60")], &[], false).is_none());
        assert!(head(&[("cache-control", "no-store, max-age=60")], &[], false).is_none());
        assert!(head(&[("cache-control", "no-cache, max-age=60")], &[], false).is_none());
        assert!(
            head(
                &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
                &[],
                false
            )
            .is_none()
        );
        assert!(
            head(
                &[
                    ("cache-control", "public, max-age=60"),
                    ("set-cookie", "a=b")
                ],
                &[],
                false
            )
            .is_none()
        );
        assert!(
            head(
                &[("cache-control", "max-age=60"), ("vary", "*")],
                &[],
                false
            )
            .is_none()
        );
        assert!(
            head(&[("cache-control", "max-age=60")], &[], true).is_none(),
            "Authorization needs explicit permission"
        );
        assert!(head(&[("cache-control", "public, max-age=60")], &[], true).is_some());
        assert!(head(&[("cache-control", "s-maxage=60")], &[], true).is_some());
        assert!(
            head(
                &[("cache-control", "max-age=60"), ("age", "61")],
                &[],
                false
            )
            .is_none(),
            "already stale"
        );
        let expires = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
        let h = head(&[("expires", &expires)], &[], false).unwrap();
        assert!((98..=100).contains(&h.lifetime), "{}", h.lifetime);
        assert!(head(&[("expires", "0")], &[], false).is_none());
        assert!(
            head(
                &[
                    ("cache-control", "max-age=60"),
                    ("content-length", "999999999")
                ],
                &[],
                false
            )
            .is_none()
        );
    }

    #[test]
    fn vary_values() {
        let h = head(
            &[
                ("cache-control", "max-age=60"),
                ("vary", "X-B, accept-encoding, x-a"),
            ],
            &[("x-a", " 1 "), ("accept-encoding", "gzip, br")],
            false,
        )
        .unwrap();
        let names: Vec<_> = h.vary.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["accept-encoding", "x-a", "x-b"]);
        let obj_vary = h.vary;
        let matches = |req: &[(&str, &str)]| {
            obj_vary.iter().all(|(n, v)| {
                v.matches(
                    RequestFields {
                        map: &map(req),
                        forwarded: None,
                    },
                    n,
                )
            })
        };
        assert!(matches(&[("x-a", "1"), ("accept-encoding", "br,gzip")]));
        assert!(!matches(&[("x-a", "2"), ("accept-encoding", "gzip, br")]));
        assert!(!matches(&[("x-a", "1"), ("accept-encoding", "gzip")]));
        assert!(!matches(&[
            ("x-a", "1"),
            ("accept-encoding", "gzip, br"),
            ("x-b", "")
        ]));
    }

    #[test]
    fn conditional_hits() {
        let stored = map(&[
            ("etag", "\"v1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(not_modified(
            &map(&[("if-none-match", "\"x\", W/\"v1\"")]),
            &stored
        ));
        assert!(!not_modified(&map(&[("if-none-match", "\"v2\"")]), &stored));
        assert!(not_modified(
            &map(&[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            &stored
        ));
        assert!(!not_modified(
            &map(&[("if-modified-since", "Sat, 05 Nov 1994 08:49:37 GMT")]),
            &stored
        ));
    }

    fn object(app: &str, target: &str, size: usize) -> Object {
        Object {
            key: Key {
                app_id: app.into(),
                host: b"h".to_vec().into_boxed_slice(),
                target: target.into(),
            },
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![0; size]),
            gzip: None,
            gzip_headers: None,
            vary: Vec::new(),
            shared_with_auth: false,
            lifetime: 60,
            initial_age: 0,
            stored_at: Instant::now(),
            size,
        }
    }

    fn insert(cache: &Arc<HttpCache>, app: &str, target: &str, size: usize, limits: &CacheConfig) {
        let key = KeyRef {
            app_id: app,
            host: b"h",
            target,
        };
        let Lookup::Miss(filler) = cache.lookup(
            &key,
            RequestFields {
                map: &HeaderMap::new(),
                forwarded: None,
            },
            false,
            true,
            Instant::now(),
        ) else {
            panic!("expected a miss")
        };
        filler.store(object(app, target, size), limits);
    }

    fn is_hit(cache: &Arc<HttpCache>, app: &str, target: &str) -> bool {
        matches!(
            cache.lookup(
                &KeyRef {
                    app_id: app,
                    host: b"H",
                    target
                },
                RequestFields {
                    map: &HeaderMap::new(),
                    forwarded: None
                },
                false,
                false,
                Instant::now()
            ),
            Lookup::Hit(_)
        )
    }

    #[test]
    fn lru_eviction_and_purge() {
        let cache = HttpCache::new();
        let limits = CacheConfig {
            max_bytes: 3000,
            max_object_bytes: 2000,
        };
        insert(&cache, "a", "/1", 1000, &limits);
        insert(&cache, "a", "/2", 1000, &limits);
        insert(&cache, "b", "/3", 1000, &limits);
        assert!(is_hit(&cache, "a", "/1"), "touches /1");
        insert(&cache, "b", "/4", 1000, &limits);
        assert!(!is_hit(&cache, "a", "/2"), "least recently used goes first");
        assert!(
            is_hit(&cache, "a", "/1") && is_hit(&cache, "b", "/3") && is_hit(&cache, "b", "/4")
        );
        assert!(cache.lock().used <= 3000);
        cache.forget_app("b");
        assert!(
            !is_hit(&cache, "b", "/3") && !is_hit(&cache, "b", "/4") && is_hit(&cache, "a", "/1")
        );
        assert_eq!(cache.lock().used, 1000);
    }

    #[test]
    fn coalesces_and_marks_hit_for_miss() {
        let cache = HttpCache::new();
        let key = KeyRef {
            app_id: "a",
            host: b"h",
            target: "/",
        };
        let Lookup::Miss(leader) = cache.lookup(
            &key,
            RequestFields {
                map: &HeaderMap::new(),
                forwarded: None,
            },
            false,
            true,
            Instant::now(),
        ) else {
            panic!()
        };
        let Lookup::Wait(rx) = cache.lookup(
            &key,
            RequestFields {
                map: &HeaderMap::new(),
                forwarded: None,
            },
            false,
            true,
            Instant::now(),
        ) else {
            panic!("second miss waits")
        };
        drop(leader);
        assert!(
            rx.has_changed().is_err(),
            "waiters are woken when the leader gives up"
        );
        let Lookup::Miss(f) = cache.lookup(
            &key,
            RequestFields {
                map: &HeaderMap::new(),
                forwarded: None,
            },
            false,
            true,
            Instant::now(),
        ) else {
            panic!()
        };
        assert!(f.leading.is_none(), "hit-for-miss: no coalescing");
    }

    #[test]
    fn purge_during_fetch_is_not_stored() {
        let cache = HttpCache::new();
        let key = KeyRef {
            app_id: "a",
            host: b"h",
            target: "/",
        };
        let Lookup::Miss(leader) = cache.lookup(
            &key,
            RequestFields {
                map: &HeaderMap::new(),
                forwarded: None,
            },
            false,
            true,
            Instant::now(),
        ) else {
            panic!()
        };
        cache.forget_app("a");
        leader.store(object("a", "/", 10), &CacheConfig::default());
        assert!(!is_hit(&cache, "a", "/"));
    }
}
