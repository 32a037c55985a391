//! Log drains (`drains:add`, `drains`, `drains:remove`): each app's stream copied to syslog
//! and HTTPS endpoints. The store keeps the drains (their URLs sealed); `kiln-drains` runs
//! one task per drain, started here when the server starts and whenever one is added, and
//! stopped when it is removed or its app goes.
//!
//! Where a drain may send is checked twice: when it is added (its name resolved now, so a
//! user hears at once that `http://169.254.169.254/` or Kiln's own API is refused) and on
//! every connection, by the [`kiln_drains::Guard`] the server gives, because a name can
//! resolve elsewhere later.

use crate::{Platform, PlatformError, Result};
use kiln_drains::{Drain, DrainContext};
use kiln_model::drain::{DrainTarget, LogDrain};
use kiln_store::{Account, App, StoreError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The running drains of this server, by drain id.
pub(crate) struct Drains {
    ctx: DrainContext,
    running: Mutex<HashMap<String, (String, Drain)>>,
}

impl Platform {
    /// Starts every stored drain, with what drains share (trusted roots, where they may
    /// connect). Called once, when the server starts.
    pub fn start_drains(&self, ctx: DrainContext) {
        let drains = Drains {
            ctx,
            running: Mutex::new(HashMap::new()),
        };
        if self.drain_set.set(drains).is_err() {
            return;
        }
        match self.store.all_drains() {
            Ok(all) => {
                for d in all {
                    self.run_drain(&d);
                }
            }
            Err(e) => tracing::error!(error = %e, "could not read the log drains; none runs"),
        }
    }

    fn run_drain(&self, d: &LogDrain) {
        let Some(set) = self.drain_set.get() else {
            return;
        };
        let target = match DrainTarget::parse(&d.url) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(drain = %d.token, error = %e, "a stored drain's URL does not parse; it does not run");
                return;
            }
        };
        let Some(stream) = kiln_model::LogSink::app_sink(&*self.logs, &d.app_id) else {
            return;
        };
        let drain = Drain::start(d, target, &set.ctx, stream);
        self.logs.attach(&d.app_id, &d.id, drain.tap());
        set.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d.id.clone(), (d.app_id.clone(), drain));
    }

    fn stop_drain(&self, app_id: &str, drain_id: &str) {
        self.logs.detach(app_id, drain_id);
        if let Some(set) = self.drain_set.get() {
            set.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(drain_id);
        }
    }

    /// Stops every drain of an app that is going away.
    pub(crate) fn stop_app_drains(&self, app_id: &str) {
        if let Some(set) = self.drain_set.get() {
            set.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, (app, _)| app != app_id);
        }
    }

    /// The app's drains, oldest first.
    pub fn drains(&self, app: &App) -> Result<Vec<LogDrain>> {
        Ok(self.store.drains(&app.id)?)
    }

    /// One of the app's drains, by id, token or URL.
    pub fn drain(&self, app: &App, identity: &str) -> Result<LogDrain> {
        self.store.drain(&app.id, identity).map_err(|e| match e {
            StoreError::NotFound { .. } => PlatformError::NotFound {
                resource: "log-drain",
                message: "Couldn't find that log drain.".to_string(),
            },
            other => other.into(),
        })
    }

    /// Adds a drain and starts it. Refused: a URL that is not a drain's, a name that resolves
    /// to an address drains may not reach, more than the app may have, one it has.
    pub async fn add_drain(&self, app: &App, url: &str, user: &Account) -> Result<LogDrain> {
        let url = url.trim();
        let target = DrainTarget::parse(url)?;
        self.check_destination(&target).await?;
        let d = self.store.add_drain(&app.id, url, None)?;
        self.run_drain(&d);
        self.api_log(
            &app.id,
            format!("Add drain {} by user {}", target.redacted(), user.email),
        );
        Ok(d)
    }

    /// Removes a drain (by id, token or URL) and stops it. Add-on drains go with their add-on.
    pub fn remove_drain(&self, app: &App, identity: &str, user: &Account) -> Result<LogDrain> {
        let d = self.drain(app, identity)?;
        if d.addon_id.is_some() {
            return Err(PlatformError::Conflict(
                "This drain belongs to an add-on: remove the add-on to remove it.".to_string(),
            ));
        }
        let removed = self.store.remove_drain(&app.id, &d.id)?;
        self.stop_drain(&app.id, &removed.id);
        let shown = DrainTarget::parse(&removed.url)
            .map(|t| t.redacted())
            .unwrap_or_else(|_| removed.token.clone());
        self.api_log(
            &app.id,
            format!("Remove drain {shown} by user {}", user.email),
        );
        Ok(removed)
    }

    /// Resolves the drain's host now and refuses it if any address is one drains may not
    /// reach. A name that does not resolve yet is accepted: the check is made again on every
    /// connection.
    async fn check_destination(&self, target: &DrainTarget) -> Result<()> {
        let Some(set) = self.drain_set.get() else {
            return Ok(());
        };
        let lookup = tokio::net::lookup_host((target.host(), target.port()));
        let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(5), lookup).await else {
            return Ok(());
        };
        for addr in addrs {
            if let Err(why) = (set.ctx.guard)(addr) {
                return Err(PlatformError::Invalid(kiln_model::Invalid::new(
                    "url",
                    format!(
                        "Invalid drain URL: {} resolves to {addr}, where drains may not send ({why}).",
                        target.host()
                    ),
                )));
            }
        }
        Ok(())
    }
}
