//! App features that can be switched (Heroku's labs). Which features exist, and how the API
//! describes them, is the API's catalog; what each one changes lives where it acts (the
//! dyno manager logs runtime metrics). Here: switching one on or off for an app.

use crate::{Platform, PlatformError, Result};
use kiln_store::{Account, App};

/// `log-runtime-metrics`: every dyno logs its load and memory about every 20 s, as
/// `heroku[web.1]` lines (Heroku's labs feature of the same name). Read when a dyno starts.
pub const RUNTIME_METRICS: &str = "log-runtime-metrics";

/// The features an app may switch.
pub const SWITCHABLE: &[&str] = &[RUNTIME_METRICS];

impl Platform {
    /// The switchable features that are on for the app.
    pub fn app_features(&self, app: &App) -> Result<Vec<String>> {
        Ok(self.store.app_features(&app.id)?)
    }

    /// Switches a feature on or off. Like Heroku's labs, it takes effect as the app's dynos
    /// start again (`kiln ps:restart`): the dyno manager is told now, and restarts nothing.
    /// An unknown feature is refused.
    pub async fn set_app_feature(
        &self,
        app: &App,
        name: &str,
        on: bool,
        user: &Account,
    ) -> Result<()> {
        let name =
            SWITCHABLE
                .iter()
                .find(|f| **f == name)
                .ok_or_else(|| PlatformError::NotFound {
                    resource: "feature",
                    message: "Couldn't find that feature.".to_string(),
                })?;
        if self.store.set_app_feature(&app.id, name, on)? {
            let verb = if on { "Enable" } else { "Disable" };
            self.audit(&app.id, user, &format!("{verb} feature {name}"));
            // The same release and formation: nothing restarts, but the dynos that start
            // from now on (a restart, a scale, a crash) start with the feature as it is.
            drop(self.queue_converge(&app.id).await?);
        }
        Ok(())
    }
}
