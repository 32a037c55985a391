//! Whether an app can take a request: maintenance (H80), blank (H81), scaled down (H14)
//! and crashed (H10) apps are refused with their H-code; a booting or sleeping app holds the
//! request until a dyno is up, or refuses it with H20 once `boot_hold` has passed.

use crate::hcode::HCode;
use crate::table::{AppEntry, AppSlot, RouteTable};
use kiln_model::route::WebStatus;
use std::sync::Arc;
use std::time::Duration;

/// Classifies the app now, or after holding the request while it boots. Only the wait is
/// boxed: an async fn's future is as large as everything it might await, and every request
/// pays for moving it.
pub(crate) async fn decide(
    table: &RouteTable,
    slot: &AppSlot,
    hold: Duration,
) -> (Arc<AppEntry>, Decision) {
    let current = slot.current();
    match classify(&current) {
        Some(decision) => (current, decision),
        None => Box::pin(wait(table, slot, hold)).await,
    }
}

pub(crate) enum Decision {
    Route,
    Refuse(HCode),
    /// The app was destroyed while the request was held.
    Gone,
}

/// Whether the app can take the request now, must refuse it, or (`None`) is booting.
fn classify(app: &AppEntry) -> Option<Decision> {
    if app.removed {
        return Some(Decision::Gone);
    }
    if app.maintenance {
        return Some(Decision::Refuse(HCode::H80));
    }
    if !app.backends.is_empty() {
        return Some(Decision::Route);
    }
    match app.status {
        WebStatus::Blank => Some(Decision::Refuse(HCode::H81)),
        WebStatus::NoWebDynos => Some(Decision::Refuse(HCode::H14)),
        WebStatus::Crashed => Some(Decision::Refuse(HCode::H10)),
        // `Up` without backends is a transient report from the dyno manager: a dyno is
        // about to be published, so it waits like a boot. A sleeping app is woken and waited
        // for the same way.
        WebStatus::Starting | WebStatus::Up | WebStatus::Asleep => None,
    }
}

/// Classifies the app, holding the request while it boots: Heroku queues requests for up
/// to 75 s for a dyno to come up rather than failing the first visitor after a deploy.
async fn wait(table: &RouteTable, slot: &AppSlot, hold: Duration) -> (Arc<AppEntry>, Decision) {
    let app = slot.current();
    if let Some(d) = classify(&app) {
        return (app, d);
    }
    if app.status == WebStatus::Asleep {
        table.wake(&app.app_id);
    }
    let deadline = tokio::time::Instant::now() + hold;
    let mut rx = slot.subscribe();
    loop {
        let app = Arc::clone(&rx.borrow_and_update());
        if let Some(d) = classify(&app) {
            return (app, d);
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            // The slot (hence the sender) outlives this wait; an error means the app is
            // being torn down, and the held request gets the same answer as a timeout.
            Ok(Err(_)) | Err(_) => return (app, Decision::Refuse(HCode::H20)),
        }
    }
}
