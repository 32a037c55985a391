//! Sleeping apps (`ps:autosleep`): whether an app's dynos sleep when no request has come for
//! its idle time, and after how long. Eco web dynos sleep, as on Heroku; any app may opt in or
//! out and set its own idle time. The dyno manager does the sleeping and the router the
//! waking; here: who may see and change the setting, and what it means for an app.

use crate::{Platform, Result};
use kiln_dyno::SleepPolicy;
use kiln_model::DynoSize;
use kiln_model::access::Need;
use kiln_model::records::{Account, App};
use kiln_model::sleep::SleepSetting;
use std::collections::BTreeMap;
use std::time::Duration;

/// An app's setting and what it amounts to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SleepView {
    pub setting: SleepSetting,
    /// Whether the app sleeps with its formation as it is.
    pub sleeps: bool,
    /// After how long without a request.
    pub after: Duration,
}

impl Platform {
    fn sleep_view(&self, app_id: &str, web_eco: bool) -> Result<SleepView> {
        let setting = self.store.app_sleep(app_id)?;
        Ok(SleepView {
            setting,
            sleeps: setting.sleeps(web_eco),
            after: setting.after.unwrap_or(self.settings.sleep_after),
        })
    }

    /// What the dyno manager is told about the app's sleeping.
    pub(crate) fn sleep_policy(
        &self,
        app_id: &str,
        formation: &BTreeMap<String, (u32, DynoSize)>,
    ) -> Result<Option<SleepPolicy>> {
        let eco = formation
            .get("web")
            .is_some_and(|(_, size)| *size == DynoSize::Eco);
        let v = self.sleep_view(app_id, eco)?;
        Ok(v.sleeps.then_some(SleepPolicy {
            after: v.after,
            workers_stay: v.setting.workers_stay,
        }))
    }

    fn web_is_eco(&self, app_id: &str) -> Result<bool> {
        Ok(self.store.formation(app_id)?.iter().any(|f| {
            f.process_type == "web" && DynoSize::parse(&f.size).is_ok_and(|s| s == DynoSize::Eco)
        }))
    }

    /// The app's sleep setting (anyone who may view the app).
    pub fn app_sleep(&self, user: &Account, app: &App) -> Result<SleepView> {
        self.app_for(user, &app.id, Need::View)?;
        self.sleep_view(&app.id, self.web_is_eco(&app.id)?)
    }

    /// Changes it (who may scale the app); the dyno manager applies it at once: an app that
    /// may no longer sleep wakes, one that now may sleeps after its idle time.
    pub async fn set_app_sleep(
        &self,
        user: &Account,
        app: &App,
        setting: SleepSetting,
    ) -> Result<SleepView> {
        self.app_for(user, &app.id, Need::Operate)?;
        setting.check()?;
        self.store.set_app_sleep(&app.id, &setting)?;
        let after = setting.after.map_or_else(
            || "the server's idle time".to_string(),
            |a| format!("{} s", a.as_secs()),
        );
        self.audit(
            &app.id,
            user,
            &format!("Set autosleep {} after {after}", setting.mode.as_str()),
        );
        drop(self.queue_converge(&app.id).await?);
        self.sleep_view(&app.id, self.web_is_eco(&app.id)?)
    }
}
