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
use crate::forward::{Forwarded, Present, RequestFields};
use crate::passthrough::{Added, MapField, Passthrough};
use crate::table::{AppEntry, AppStore, RouteTable};
use bytes::{Bytes, BytesMut};
use foldhash::fast::RandomState;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode};
use hyper::body::{Body, Frame, SizeHint};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

use crate::forward::X_CACHE;

mod fill;
mod policy;
mod store;

use fill::*;
use policy::*;
pub(crate) use store::HttpCache;
use store::*;

/// How long a key whose response was not storable is exempt from coalescing.
pub(super) const HIT_FOR_MISS: Duration = Duration::from_secs(30);
/// Variants kept under one key; `Vary: User-Agent` could otherwise fill the cache with
/// copies of one page.
pub(super) const MAX_VARIANTS: usize = 16;
/// How many times a request may wait for another's fetch before going to the dyno itself.
const MAX_WAITS: usize = 3;
/// Bookkeeping charged per object on top of its bytes.
pub(super) const OBJECT_OVERHEAD: usize = 256;

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
/// response if it may). Compression is the step in front (`compress::Gzip`); what is
/// stored keeps a gzip copy, which hits serve to clients that accept gzip.
///
/// `next` takes a request on to a dyno (the dispatch layer); it gives back the request's
/// headers when it can, which spares copying them before the fetch for `Vary`.
/// `accepts_gzip` is the compression step's reading of the request (`compress::Gzip`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer<N, F>(
    cache: &Arc<HttpCache>,
    config: &RouterConfig,
    log: Box<RequestLog>,
    req: Request<ReqBody>,
    fwd: &Forwarded<'_>,
    upgrade: bool,
    accepts_gzip: bool,
    next: N,
) -> impl Future<Output = Response<RouterBody>>
where
    N: FnOnce(Box<RequestLog>, Request<ReqBody>, bool) -> F,
    F: Future<Output = (Response<RouterBody>, Option<HeaderMap>)>,
{
    // An async block, not an `async fn`: an `async fn` copies each argument into a local
    // of its future when first polled, and keeps room for both (bench/README.md, session
    // 17); the block uses them where they were captured.
    async move {
        let gzip = &config.compression;
        let is_head = req.method() == Method::HEAD;
        let limits = config.cache;
        if limits.max_bytes == 0 || upgrade || !lookup_allowed(&req, fwd.present) {
            let (response, returned) = next(log, req, upgrade).await;
            if let Some(map) = returned {
                crate::maps::give(map);
            }
            return response;
        }

        let started = Instant::now();
        let authorized = fwd.present.has(Present::AUTHORIZATION)
            && req.headers().contains_key(header::AUTHORIZATION);
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
        let head = match &returned {
            // A response with no freshness at all (the usual dynamic page) is settled on the
            // fields the map always holds; only one that might be stored needs the rest.
            Some(rh) if is_get && has_freshness(response.headers()) => {
                crate::body::materialize(&mut response);
                storable(
                    RequestFields {
                        map: rh,
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
        if let Some(map) = returned {
            crate::maps::give(map);
        }
        match response.body_mut().passthrough_for(MapField::XCache) {
            Some(block) => block.add(Added::X_CACHE_MISS),
            None => {
                response
                    .headers_mut()
                    .insert(X_CACHE.clone(), HeaderValue::from_static("MISS"));
            }
        }
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
}

/// Whether the cache is consulted at all for this request. `present` (the request's pass
/// over its names) spares the lookups of fields the client did not send.
fn lookup_allowed(req: &Request<ReqBody>, present: Present) -> bool {
    let m = req.method();
    (m == Method::GET || m == Method::HEAD)
        && req.body().is_end_stream()
        && !(present.has(Present::RANGE) && req.headers().contains_key(header::RANGE))
        && !(present.has(Present::CACHE_CONTROL) && directives(req.headers()).no_store)
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
    let variant = match &object.gzip {
        Some(gz) if accepts_gzip => gz,
        _ => &object.plain,
    };
    let age = object.age(now);
    let not_modified = not_modified(req, &variant.headers);
    let status = if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        object.status
    };
    let send_body = !is_head && !not_modified && status != StatusCode::NO_CONTENT;
    log.emit(&Outcome {
        code: None,
        dyno: Some("cache"),
        connect: Some(Duration::ZERO),
        service: Some(started.elapsed()),
        status: Some(status.as_u16()),
        bytes: Some(if send_body {
            variant.body.len() as u64
        } else {
            0
        }),
    });
    if send_body {
        // The common hit: the stored head's written lines and this hit's `Age` go to the
        // writer as they are; the map stays empty (copying it cost a twentieth of a hit).
        let fields = Passthrough::stored(variant.lines.clone(), object.has_date, age);
        let body = RouterBody::stored(variant.body.clone(), Some(fields));
        let mut response = Response::new(body);
        *response.status_mut() = status;
        return response;
    }
    // `HEAD`, 304 and 204 answers change the head: from a copy of the stored map, where
    // only `Age` changes, in place, so the clone never has to grow.
    let mut headers = variant.headers.clone();
    headers.insert(header::AGE, age_value(age));
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
    let mut response = Response::new(RouterBody::stored(Bytes::new(), None));
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
            plain: Variant::new(Bytes::from(vec![0; size]), HeaderMap::new()),
            gzip: None,
            has_date: false,
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
