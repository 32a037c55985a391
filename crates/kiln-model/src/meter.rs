//! Where the router and the dyno manager report what they measure, for the metrics an app's
//! owner sees (`kiln metrics`, the dashboard). Implemented by `kiln-metrics`; the router and
//! the dyno manager depend only on these traits, as they depend on [`crate::log::LogSink`] for
//! logs. Recording runs on the request path, so an implementation must not block or allocate.

use std::sync::Arc;
use std::time::Duration;

/// One app's request meter, kept by the router per app (found once, not per request).
pub trait RequestMeter: Send + Sync {
    /// A request ended: its status, how long the dyno took (connect and service; `None` when
    /// no dyno was involved), and the router's H-code, if any (`12` for H12).
    fn request(&self, status: u16, latency: Option<Duration>, h_code: Option<u8>);
}

/// A dyno's sample, taken every few seconds by the dyno manager.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DynoSample {
    pub rss_bytes: u64,
    pub swap_bytes: u64,
    pub quota_bytes: u64,
    /// Threads running or ready to run (one sample of the dyno's load).
    pub load: f64,
}

/// What the dyno manager reports about an app's dynos.
pub trait DynoMeter: Send + Sync {
    fn sample(&self, dyno: &str, sample: DynoSample);
    /// The dyno manager restarted a crashed dyno.
    fn restart(&self, dyno: &str);
    /// A runtime error, such as R14 (`14`).
    fn r_code(&self, code: u8);
}

/// The meters of every app.
pub trait Meters: Send + Sync {
    fn requests(&self, app_id: &str) -> Arc<dyn RequestMeter>;
    fn dynos(&self, app_id: &str) -> Arc<dyn DynoMeter>;
}
