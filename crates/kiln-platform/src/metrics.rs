//! An app's metrics (`kiln metrics`, `/apps/{app}/metrics/...`): what the router and the dyno
//! manager counted, step by step, kept by `kiln-metrics`. Here: who may read them (whoever
//! may view the app) and which window.

use crate::{Platform, PlatformError, Result};
use kiln_metrics::Metrics;
pub use kiln_metrics::{Point, Resolution};
use kiln_store::App;
use std::sync::Arc;

impl Platform {
    /// Keeps the apps' metrics in `metrics` (set once, when the server starts).
    pub fn set_metrics(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// The app's points in `[since, until)` (Unix seconds) at `resolution`, oldest first.
    /// Blocking: the series are read from disk.
    pub fn app_metrics(
        &self,
        app: &App,
        resolution: Resolution,
        since: i64,
        until: i64,
    ) -> Result<Vec<Point>> {
        let m = self.metrics.get().ok_or_else(|| {
            PlatformError::Unavailable("this server keeps no metrics".to_string())
        })?;
        Ok(m.query(&app.id, resolution, since, until))
    }

    /// How far back, in seconds, the fine series reaches (a day of minutes by default).
    pub fn metrics_fine_span(&self) -> i64 {
        self.metrics.get().map_or(86_400, |m| {
            let c = m.config();
            c.step.as_secs().max(1) as i64 * c.fine_points as i64
        })
    }
}
