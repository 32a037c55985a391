//! What may be stored, and how (RFC 9111 as a shared cache): `Cache-Control`, freshness,
//! `Vary`, the head a hit is answered with.

use super::*;

/// The parts of `Cache-Control` the cache acts on.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Directives {
    pub(super) no_store: bool,
    pub(super) no_cache: bool,
    pub(super) private: bool,
    pub(super) public: bool,
    pub(super) must_revalidate: bool,
    pub(super) max_age: Option<u64>,
    pub(super) s_maxage: Option<u64>,
}

/// Parses every `Cache-Control` field line. Quoted values may contain commas. A malformed
/// `max-age` counts as 0 (RFC 9111 §4.2.1: treat as stale), and a repeated one keeps the
/// smallest value.
pub(super) fn directives(headers: &HeaderMap) -> Directives {
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
pub(super) fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
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

pub(super) const CACHEABLE_STATUS: [u16; 11] =
    [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// What the cache decided about a response head it may store.
pub(crate) struct Head {
    pub(super) status: StatusCode,
    /// Copied out of the connection buffer, without framing or `Age`.
    pub(super) headers: HeaderMap,
    pub(super) vary: Vec<(HeaderName, VaryValue)>,
    pub(super) shared_with_auth: bool,
    pub(super) lifetime: u64,
    pub(super) initial_age: u64,
    pub(super) received: Instant,
    /// Whether a gzip copy is kept for clients that accept it.
    pub(super) encodable: bool,
}

/// Decides, from the response head, whether the response will be stored.
pub(super) fn storable(
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
    let encodable = gzip.enabled && compress::compressible(status, headers, gzip.min_bytes, None);
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
/// page (it does not) is decided on the names of the response's map, without parsing any
/// date, and on fields that map always holds (`passthrough::MapField`).
pub(super) fn has_freshness(headers: &HeaderMap) -> bool {
    // A dyno response's map holds a handful of fields (`passthrough`): one look at each
    // name costs less than hashing for two that are usually absent.
    let (mut cache_control, mut expires) = (false, false);
    for name in headers.keys() {
        cache_control |= name == header::CACHE_CONTROL;
        expires |= name == header::EXPIRES;
    }
    expires || (cache_control && directives(headers).has_freshness(headers))
}

impl Directives {
    /// `headers` (those these directives came from) give a freshness lifetime.
    pub(super) fn has_freshness(&self, headers: &HeaderMap) -> bool {
        self.s_maxage.is_some() || self.max_age.is_some() || headers.contains_key(header::EXPIRES)
    }
}

pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(super) fn http_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?.trim()).ok()
}

/// Copies headers into fresh allocations: values parsed by hyper are slices of the
/// connection's read buffer, and keeping one would pin the whole buffer in the cache.
/// Framing and `Age` are dropped; a hit sets its own.
pub(super) fn copy_headers(headers: &HeaderMap) -> HeaderMap {
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
pub(super) enum VaryValue {
    Absent,
    /// `Accept-Encoding`, reduced to the set of codings accepted.
    Codings(u8),
    Value(Bytes),
}

impl VaryValue {
    pub(super) fn of(req: RequestFields<'_>, name: &HeaderName) -> VaryValue {
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
    pub(super) fn matches(&self, req: RequestFields<'_>, name: &HeaderName) -> bool {
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
pub(super) fn vary(
    req: RequestFields<'_>,
    headers: &HeaderMap,
) -> Option<Vec<(HeaderName, VaryValue)>> {
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
