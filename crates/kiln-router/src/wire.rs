//! The bottom of the router's HTTP/1 writing and timing: helpers every layer may use and
//! that know nothing of the layers above (a head's field line, the `Date` header, deadlines,
//! the monotonic millisecond clock, the boxed error of a body).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a failed body reports; hyper's server and the layers above take any error.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Writes one `name: value` line of a head (also used for pass-through fields).
pub(crate) fn put_field(out: &mut impl BufMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// `from + after`, or a day past the end of any test or deploy when a configured duration
/// is too large to add (as `tokio::time::timeout` would saturate rather than panic).
pub(crate) fn deadline(from: tokio::time::Instant, after: Duration) -> tokio::time::Instant {
    from.checked_add(after)
        .unwrap_or_else(|| from + Duration::from_secs(100 * 365 * 86_400))
}

thread_local! {
    static DATE: RefCell<CachedDate> = RefCell::new(CachedDate { second: 0, value: Vec::new() });
}

/// The `Date` header, formatted once a second per thread.
/// Writes the `Date` field, as of now.
pub(crate) fn put_date(out: &mut impl BufMut) {
    DATE.with(|d| put_field(out, b"date", d.borrow_mut().now()));
}

struct CachedDate {
    second: u64,
    value: Vec<u8>,
}

impl CachedDate {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.value.is_empty() {
            self.second = second;
            self.value = httpdate::fmt_http_date(now).into_bytes();
        }
        &self.value
    }
}

/// Milliseconds since the first call, a monotonic clock that fits in an atomic.
pub(crate) fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    // +1 so that "until 0" never reads as quarantined.
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Milliseconds since the Unix epoch (0 if the clock is before it), for Heroku's
/// `X-Request-Start`.
pub(crate) fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The next `n` bytes of `buf`. Small pieces are copied, so the read buffer stays whole
/// and is reused for the connection's next response instead of reallocated.
pub(crate) fn take(buf: &mut BytesMut, n: usize) -> Bytes {
    if n <= 4096 {
        let data = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        data
    } else {
        buf.split_to(n).freeze()
    }
}
