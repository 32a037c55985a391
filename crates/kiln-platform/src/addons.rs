//! Add-on use cases: create, attach, detach, change plan, destroy, and the queries behind
//! `addons`, `addons:info` and the attachment resources.
//!
//! The order of each story keeps failures whole: everything the request could get wrong is
//! checked before a provider makes anything; once a provider has made something, a failure to
//! record it undoes it (providers are idempotent, so the undo is safe to repeat). Each change
//! that reaches an app's config appends one release per app, worded as Heroku words it, and
//! takes it live as a config change does (the dynos restart with the new vars). Rolling back
//! a release never rolls back an add-on's data or attachments.

use crate::{Platform, PlatformError, Result};
use kiln_addons::{AddonError, ProvisionRequest};
use kiln_model::Invalid;
use kiln_model::addon::{
    PlanRef, Service, default_attachment_name, generate_addon_name, validate_addon_name,
    validate_attachment_name, validate_options,
};
use kiln_store::{Account, Addon, AddonAttachment, App, NewAddon, Release};
use std::collections::BTreeMap;

impl From<AddonError> for PlatformError {
    fn from(e: AddonError) -> Self {
        match e {
            AddonError::Invalid(i) => PlatformError::Invalid(i),
            AddonError::NotSupported(m) => PlatformError::Invalid(Invalid::new("plan", m)),
            e @ AddonError::MissingProgram { .. } => PlatformError::Unavailable(e.to_string()),
            e => PlatformError::Internal(e.to_string()),
        }
    }
}

/// What `addons:create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateAddon {
    /// `heroku-postgresql:essential-0`, `redis`, a plan id.
    pub plan: String,
    /// `--name`.
    pub name: Option<String>,
    /// `--as`.
    pub attachment_name: Option<String>,
    /// Options after `--`.
    pub options: BTreeMap<String, String>,
}

impl Platform {
    fn not_found_addon() -> PlatformError {
        PlatformError::NotFound {
            resource: "add-on",
            message: "Couldn't find that add-on.".into(),
        }
    }

    /// An add-on the user may see: one of their apps owns it or has it attached.
    pub fn addon_for(&self, user: &Account, id_or_name: &str) -> Result<Addon> {
        let addon = self
            .store
            .addon(id_or_name)
            .map_err(|_| Self::not_found_addon())?;
        if self
            .app_for(user, &addon.app_id, kiln_model::access::Need::View)
            .is_ok()
        {
            return Ok(addon);
        }
        let attached_to_mine = self.store.addon_attachments(&addon.id)?.iter().any(|a| {
            self.app_for(user, &a.app_id, kiln_model::access::Need::View)
                .is_ok()
        });
        if attached_to_mine {
            Ok(addon)
        } else {
            Err(Self::not_found_addon())
        }
    }

    pub fn app_addons(&self, user: &Account, app: &App) -> Result<Vec<Addon>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        // Owned ones, then those of other apps attached here (Heroku lists both).
        let mut addons = self.store.app_addons(&app.id)?;
        for att in self.store.app_attachments(&app.id)? {
            if !addons.iter().any(|a| a.id == att.addon_id) {
                addons.push(self.store.addon(&att.addon_id)?);
            }
        }
        Ok(addons)
    }

    pub fn account_addons(&self, user: &Account) -> Result<Vec<Addon>> {
        Ok(self.store.account_addons(&user.id)?)
    }

    pub fn app_attachments(&self, user: &Account, app: &App) -> Result<Vec<AddonAttachment>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Ok(self.store.app_attachments(&app.id)?)
    }

    pub fn addon_attachments(&self, user: &Account, addon: &Addon) -> Result<Vec<AddonAttachment>> {
        self.addon_for(user, &addon.id)?;
        Ok(self
            .store
            .addon_attachments(&addon.id)?
            .into_iter()
            .filter(|a| {
                self.app_for(user, &a.app_id, kiln_model::access::Need::View)
                    .is_ok()
                    || a.addon_app_id == addon.app_id
            })
            .collect())
    }

    pub fn account_attachments(&self, user: &Account) -> Result<Vec<AddonAttachment>> {
        Ok(self.store.account_attachments(&user.id)?)
    }

    /// An attachment by id, or by name within `app`.
    pub fn attachment_for(
        &self,
        user: &Account,
        app: Option<&App>,
        id_or_name: &str,
    ) -> Result<AddonAttachment> {
        let not_found = || PlatformError::NotFound {
            resource: "add-on attachment",
            message: "Couldn't find that add-on attachment.".into(),
        };
        let att = match app {
            Some(app) => self
                .app_attachments(user, app)?
                .into_iter()
                .find(|a| a.id == id_or_name || a.name == id_or_name)
                .ok_or_else(not_found)?,
            None => self.store.attachment(id_or_name).map_err(|_| not_found())?,
        };
        if self
            .app_for(user, &att.app_id, kiln_model::access::Need::View)
            .is_err()
            && self
                .app_for(user, &att.addon_app_id, kiln_model::access::Need::View)
                .is_err()
        {
            return Err(not_found());
        }
        Ok(att)
    }

    fn provider(&self, service: &str) -> Result<&std::sync::Arc<dyn kiln_addons::Provider>> {
        self.addons.provider(service).ok_or_else(|| {
            PlatformError::Unavailable(format!("No provider for {service} on this server"))
        })
    }

    /// Heroku keeps paid plans (adding, changing, removing them) from personal apps'
    /// collaborators and from team members without `manage`.
    fn may_pay(&self, user: &Account, app_id: &str, price_cents: u32) -> Result<()> {
        if price_cents > 0 {
            self.app_for(user, app_id, kiln_model::access::Need::Owner)?;
        }
        Ok(())
    }

    /// `addons:create`: provisions, attaches to the app, appends the release.
    pub async fn create_addon(
        &self,
        user: &Account,
        app: &App,
        req: CreateAddon,
    ) -> Result<(Addon, AddonAttachment, Release)> {
        let app = self.app_for(user, &app.id, kiln_model::access::Need::Deploy)?;
        let plan = PlanRef::parse(&req.plan)?;
        self.may_pay(user, &app.id, plan.plan.price_cents)?;
        validate_options(plan.service, &req.options)?;
        let taken: Vec<String> = self
            .store
            .app_attachments(&app.id)?
            .into_iter()
            .map(|a| a.name)
            .collect();
        let attachment = match &req.attachment_name {
            Some(n) => {
                validate_attachment_name(n)?;
                if taken.contains(n) {
                    return Err(PlatformError::Conflict(format!(
                        "The name {n} is already used by another add-on of this app: choose another with --as"
                    )));
                }
                n.clone()
            }
            None => default_attachment_name(plan.service, &taken),
        };
        self.check_vars_free(&app, &attachment, plan.service)?;
        let name = match &req.name {
            Some(n) => {
                validate_addon_name(n)?;
                if self.store.addon(n).is_ok() {
                    return Err(PlatformError::Conflict(format!(
                        "The name {n} is already taken by another add-on"
                    )));
                }
                n.clone()
            }
            None => self.free_addon_name(plan.service),
        };
        let id = uuid::Uuid::new_v4().to_string();
        let provider = self.provider(plan.service.name)?;
        let made = provider
            .provision(&ProvisionRequest {
                addon_id: id.clone(),
                addon_name: name.clone(),
                app_id: app.id.clone(),
                plan: plan.plan,
                options: req.options.clone(),
            })
            .await?;
        let new = NewAddon {
            id: id.clone(),
            name,
            app_id: app.id.clone(),
            service: plan.service.name.to_string(),
            plan: plan.plan.name.to_string(),
            config: made.config,
            provision_message: made.message,
        };
        let (addon, att, release) = match self.store.create_addon(&new, &attachment, &user.id) {
            Ok(r) => r,
            Err(e) => {
                // Recorded nothing: made nothing.
                if let Err(undo) = provider.deprovision(&id).await {
                    tracing::warn!(addon = %new.name, error = %undo, "could not undo a provision");
                }
                return Err(e.into());
            }
        };
        self.released(&app.id, &release, user);
        Ok((addon, att, release))
    }

    /// Refuses before anything is made when the app already has one of the vars an
    /// attachment named `attachment` would set.
    fn check_vars_free(&self, app: &App, attachment: &str, service: &Service) -> Result<()> {
        for key in service.config_keys {
            let var = format!("{attachment}_{key}");
            if app.config.contains_key(&var) {
                return Err(PlatformError::Conflict(format!(
                    "The app already has a config var {var}: unset it, or choose another attachment name (--as)"
                )));
            }
        }
        Ok(())
    }

    fn free_addon_name(&self, service: &Service) -> String {
        loop {
            let n = generate_addon_name(service);
            if self.store.addon(&n).is_err() {
                return n;
            }
        }
    }

    /// Logs a release in Heroku's words and takes it live.
    pub(crate) fn released(&self, app_id: &str, release: &Release, user: &Account) {
        self.api_log(
            app_id,
            format!("{} by user {}", release.description, user.email),
        );
        self.api_log(
            app_id,
            format!(
                "Release v{} created by user {}",
                release.version, user.email
            ),
        );
        self.go_live_in_background(app_id, release);
    }

    /// `addons:attach`.
    pub async fn attach_addon(
        &self,
        user: &Account,
        addon: &str,
        app: &App,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<(AddonAttachment, Release)> {
        let app = self.app_for(user, &app.id, kiln_model::access::Need::Deploy)?;
        let addon = self.addon_for(user, addon)?;
        // Attaching another's add-on needs the right to its owning app too.
        self.app_for(user, &addon.app_id, kiln_model::access::Need::Deploy)?;
        let service = Service::find(&addon.service).ok_or_else(Self::not_found_addon)?;
        let taken: Vec<String> = self
            .store
            .app_attachments(&app.id)?
            .into_iter()
            .map(|a| a.name)
            .collect();
        let name = match name {
            Some(n) => n.to_string(),
            None => default_attachment_name(service, &taken),
        };
        validate_attachment_name(&name)?;
        let (att, release) = self
            .store
            .attach_addon(&addon.id, &app.id, &name, namespace, &user.id)?;
        self.released(&app.id, &release, user);
        Ok((att, release))
    }

    /// `addons:detach`. The owning app's last attachment cannot go (destroy the add-on).
    pub async fn detach_addon(
        &self,
        user: &Account,
        attachment: &AddonAttachment,
    ) -> Result<(AddonAttachment, Release)> {
        self.app_for(user, &attachment.app_id, kiln_model::access::Need::Deploy)?;
        if attachment.app_id == attachment.addon_app_id {
            let own = self
                .store
                .addon_attachments(&attachment.addon_id)?
                .into_iter()
                .filter(|a| a.app_id == attachment.addon_app_id)
                .count();
            if own <= 1 {
                return Err(PlatformError::Conflict(format!(
                    "{} is the only attachment of {} to the app that owns it: destroy the add-on instead (addons:destroy {})",
                    attachment.name, attachment.addon_name, attachment.addon_name
                )));
            }
        }
        let (att, release) = self.store.detach_addon(&attachment.id, &user.id)?;
        self.released(&att.app_id, &release, user);
        Ok((att, release))
    }

    /// `addons:upgrade` / `addons:downgrade`.
    pub async fn change_addon_plan(
        &self,
        user: &Account,
        addon: &Addon,
        plan: &str,
    ) -> Result<(Addon, Vec<Release>)> {
        self.app_for(user, &addon.app_id, kiln_model::access::Need::Deploy)?;
        let service = Service::find(&addon.service).ok_or_else(Self::not_found_addon)?;
        // "essential-1" alone means this service's plan.
        let spec = if plan.contains(':') {
            plan.to_string()
        } else {
            format!("{}:{plan}", service.name)
        };
        let target = PlanRef::parse(&spec)?;
        self.may_pay(user, &addon.app_id, target.plan.price_cents)?;
        if target.service.name != service.name {
            return Err(Invalid::new(
                "plan",
                format!(
                    "{} is a {} add-on; it cannot move to a plan of {}",
                    addon.name, service.name, target.service.name
                ),
            )
            .into());
        }
        let made = self
            .provider(service.name)?
            .change_plan(&addon.id, target.plan)
            .await?;
        let (addon, releases) = self.store.change_addon_plan(
            &addon.id,
            target.plan.name,
            &made.config,
            &made.message,
            &user.id,
        )?;
        for r in &releases {
            self.released(&r.app_id, r, user);
        }
        Ok((addon, releases))
    }

    /// `addons:destroy`: refused while other apps have it attached, unless `force`.
    pub async fn destroy_addon(
        &self,
        user: &Account,
        addon: &Addon,
        force: bool,
    ) -> Result<(Addon, Vec<Release>)> {
        self.app_for(user, &addon.app_id, kiln_model::access::Need::Deploy)?;
        let price = Service::find(&addon.service)
            .and_then(|s| s.plan(&addon.plan))
            .map_or(0, |p| p.price_cents);
        self.may_pay(user, &addon.app_id, price)?;
        let others: Vec<String> = self
            .store
            .addon_attachments(&addon.id)?
            .into_iter()
            .filter(|a| a.app_id != addon.app_id)
            .map(|a| a.app_name)
            .collect();
        if !others.is_empty() && !force {
            return Err(PlatformError::Conflict(format!(
                "{} is attached to other apps ({}): detach it from them first, or destroy it with --force",
                addon.name,
                others.join(", ")
            )));
        }
        self.final_backup(addon).await?;
        self.provider(&addon.service)?
            .deprovision(&addon.id)
            .await?;
        let (gone, releases) = self.store.destroy_addon(&addon.id, &user.id)?;
        for r in &releases {
            self.released(&r.app_id, r, user);
        }
        // As on Heroku, the scheduler's jobs go with it.
        if gone.service == crate::scheduler::SERVICE {
            self.scheduler_removed(&gone.app_id);
        }
        Ok((gone, releases))
    }

    /// Deprovisions every add-on an app owns (before the app goes).
    pub(crate) async fn destroy_app_addons(&self, user: &Account, app: &App) -> Result<()> {
        for addon in self.store.app_addons(&app.id)? {
            self.final_backup(&addon).await?;
            self.provider(&addon.service)?
                .deprovision(&addon.id)
                .await?;
            let (_, releases) = self.store.destroy_addon(&addon.id, &user.id)?;
            for r in releases.iter().filter(|r| r.app_id != app.id) {
                self.released(&r.app_id, r, user);
            }
        }
        Ok(())
    }
}
