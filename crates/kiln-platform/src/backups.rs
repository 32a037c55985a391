//! PostgreSQL data tools: backups (captured, verified, kept by a retention count per plan,
//! each one a job with a visible state and its error when it fails), restores, daily
//! schedules, a final backup before a database is destroyed (kept 7 days), `pg:info`,
//! `pg:reset` and credential rotation.

use crate::{Platform, PlatformError, Result};
use kiln_model::Timestamp;
use kiln_model::addon::Service;
use kiln_model::log::LogSink;
use kiln_store::{Account, Addon, App, BackupSchedule, Transfer, TransferKind, TransferStatus};
use std::path::PathBuf;

/// How long a final backup is kept after its database is destroyed.
const FINAL_BACKUP_DAYS: i64 = 7;

impl Platform {
    fn backups_dir(&self) -> PathBuf {
        self.settings
            .data_dir
            .join("addons")
            .join("postgres")
            .join("backups")
    }

    /// The app's PostgreSQL add-on named by `which` (an attachment name such as `DATABASE`
    /// or `HEROKU_POSTGRESQL_AMBER`, with or without `_URL`, or an add-on name); by default
    /// the one attached as `DATABASE`, else the only one.
    pub fn database_for(&self, user: &Account, app: &App, which: Option<&str>) -> Result<Addon> {
        let pg = Service::find("heroku-postgresql")
            .map(|s| s.name)
            .unwrap_or_default();
        let atts: Vec<_> = self
            .app_attachments(user, app)?
            .into_iter()
            .filter(|a| a.addon_service == pg)
            .collect();
        let found = match which {
            Some(w) => {
                let w = w.strip_suffix("_URL").unwrap_or(w);
                atts.iter()
                    .find(|a| a.name == w || a.addon_name == w || a.addon_id == w)
            }
            None => atts
                .iter()
                .find(|a| a.name == "DATABASE")
                .or(if atts.len() == 1 { atts.first() } else { None }),
        };
        match found {
            Some(a) => self.addon_for(user, &a.addon_id),
            None => Err(PlatformError::NotFound {
                resource: "add-on",
                message: match which {
                    Some(w) => format!("{} has no heroku-postgresql database {w}.", app.name),
                    None if atts.is_empty() => {
                        format!("{} has no heroku-postgresql databases.", app.name)
                    }
                    None => format!(
                        "{} has several databases: name one (such as {}).",
                        app.name, atts[0].name
                    ),
                },
            }),
        }
    }

    fn require_postgres(addon: &Addon) -> Result<()> {
        if addon.service == "heroku-postgresql" {
            Ok(())
        } else {
            Err(kiln_model::Invalid::new(
                "addon",
                format!("{} is not a PostgreSQL database", addon.name),
            )
            .into())
        }
    }

    /// Starts a backup of `addon` as a job; returns it at once (the CLI polls it).
    pub fn capture_backup(&self, addon: &Addon, kind: TransferKind) -> Result<Transfer> {
        Self::require_postgres(addon)?;
        let t = self.new_transfer(addon, kind, None)?;
        let Some(me) = self.myself() else {
            return Ok(t);
        };
        let (addon, job) = (addon.clone(), t.clone());
        tokio::spawn(async move { me.run_backup(&addon, &job).await });
        Ok(t)
    }

    fn new_transfer(
        &self,
        addon: &Addon,
        kind: TransferKind,
        expires: Option<Timestamp>,
    ) -> Result<Transfer> {
        let dir = self.backups_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| PlatformError::Internal(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(format!("{}.dump", uuid::Uuid::new_v4()));
        Ok(self
            .store
            .create_transfer(addon, kind, &path.display().to_string(), expires)?)
    }

    /// Runs a backup job to its end, recording how it ended, then applies retention.
    async fn run_backup(&self, addon: &Addon, t: &Transfer) -> Result<Transfer> {
        self.store
            .set_transfer_status(&t.id, TransferStatus::Running, None, 0)?;
        let path = PathBuf::from(&t.path);
        let ended = match self.addons.postgres.dump(&addon.id, &path).await {
            Ok(bytes) => {
                self.store
                    .set_transfer_status(&t.id, TransferStatus::Succeeded, None, bytes)?
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                let t = self.store.set_transfer_status(
                    &t.id,
                    TransferStatus::Failed,
                    Some(&e.to_string()),
                    0,
                )?;
                self.logs.emit(
                    &addon.app_id,
                    kiln_model::LogLine::app(
                        "heroku-postgres",
                        format!(
                            "source=DATABASE addon={} Error: backup {} failed: {e}",
                            addon.name,
                            t.display_name()
                        ),
                    ),
                );
                t
            }
        };
        self.apply_retention(addon)?;
        Ok(ended)
    }

    /// Keeps the plan's number of the newest manual and of the newest scheduled backups.
    fn apply_retention(&self, addon: &Addon) -> Result<()> {
        let keep = Service::find(&addon.service)
            .and_then(|s| s.plan(&addon.plan))
            .map_or(2, |p| p.backups_kept.max(1)) as usize;
        let all = self.store.transfers(&addon.app_id)?;
        for kind in [TransferKind::Manual, TransferKind::Scheduled] {
            let done: Vec<&Transfer> = all
                .iter()
                .filter(|t| {
                    t.addon_id == addon.id
                        && t.kind == kind
                        && t.status == TransferStatus::Succeeded
                })
                .collect();
            for old in done.into_iter().skip(keep) {
                self.remove_transfer(old)?;
            }
        }
        Ok(())
    }

    fn remove_transfer(&self, t: &Transfer) -> Result<()> {
        let _ = std::fs::remove_file(&t.path);
        Ok(self.store.delete_transfer(&t.id)?)
    }

    pub fn backups(&self, user: &Account, app: &App) -> Result<Vec<Transfer>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Ok(self.store.transfers(&app.id)?)
    }

    /// A backup by its name (`b001`), or the newest that succeeded.
    pub fn backup(&self, user: &Account, app: &App, name: Option<&str>) -> Result<Transfer> {
        self.app_for(user, &app.id, kiln_model::access::Need::Deploy)?;
        let not_found = |n: &str| PlatformError::NotFound {
            resource: "backup",
            message: format!("Couldn't find backup {n}."),
        };
        match name {
            // `b001`, `1`, or the transfer's id (Heroku's CLI polls by id).
            Some(n) => match Transfer::parse_name(n) {
                Some(num) => self
                    .store
                    .transfer_by_num(&app.id, num)
                    .map_err(|_| not_found(n)),
                None => self
                    .store
                    .transfer(n)
                    .ok()
                    .filter(|t| t.app_id == app.id)
                    .ok_or_else(|| not_found(n)),
            },
            None => self
                .store
                .transfers(&app.id)?
                .into_iter()
                .find(|t| t.kind != TransferKind::Restore && t.status == TransferStatus::Succeeded)
                .ok_or_else(|| not_found("(no backups)")),
        }
    }

    pub fn delete_backup(&self, user: &Account, app: &App, name: &str) -> Result<Transfer> {
        let t = self.backup(user, app, Some(name))?;
        if matches!(t.status, TransferStatus::Pending | TransferStatus::Running) {
            return Err(PlatformError::Conflict(format!(
                "{} is still running",
                t.display_name()
            )));
        }
        self.remove_transfer(&t)?;
        Ok(t)
    }

    /// Restores `backup` into `addon`, replacing its data; a job like a backup.
    pub fn restore_backup(
        &self,
        user: &Account,
        app: &App,
        backup: &Transfer,
        addon: &Addon,
    ) -> Result<Transfer> {
        self.app_for(user, &app.id, kiln_model::access::Need::Deploy)?;
        self.app_for(user, &addon.app_id, kiln_model::access::Need::Deploy)?;
        Self::require_postgres(addon)?;
        if backup.status != TransferStatus::Succeeded || backup.kind == TransferKind::Restore {
            return Err(kiln_model::Invalid::new(
                "backup",
                format!("{} is not a backup that succeeded", backup.display_name()),
            )
            .into());
        }
        let t = self
            .store
            .create_transfer(addon, TransferKind::Restore, &backup.path, None)?;
        let Some(me) = self.myself() else {
            return Ok(t);
        };
        let (addon, job) = (addon.clone(), t.clone());
        tokio::spawn(async move {
            let _ = me
                .store
                .set_transfer_status(&job.id, TransferStatus::Running, None, 0);
            let result = me
                .addons
                .postgres
                .restore(&addon.id, std::path::Path::new(&job.path))
                .await;
            let bytes = std::fs::metadata(&job.path).map(|m| m.len()).unwrap_or(0);
            let _ = match result {
                Ok(()) => {
                    me.store
                        .set_transfer_status(&job.id, TransferStatus::Succeeded, None, bytes)
                }
                Err(e) => me.store.set_transfer_status(
                    &job.id,
                    TransferStatus::Failed,
                    Some(&e.to_string()),
                    0,
                ),
            };
        });
        Ok(t)
    }

    pub fn transfer_for(&self, user: &Account, id: &str) -> Result<Transfer> {
        let t = self.store.transfer(id)?;
        self.app_for(user, &t.app_id, kiln_model::access::Need::Deploy)?;
        Ok(t)
    }

    pub async fn reset_database(&self, user: &Account, addon: &Addon) -> Result<()> {
        self.app_for(user, &addon.app_id, kiln_model::access::Need::Deploy)?;
        Self::require_postgres(addon)?;
        self.addons.postgres.reset(&addon.id).await?;
        self.api_log(
            &addon.app_id,
            format!("Reset {} by user {}", addon.name, user.email),
        );
        Ok(())
    }

    pub async fn database_sessions(
        &self,
        user: &Account,
        addon: &Addon,
    ) -> Result<Vec<kiln_addons::postgres::Session>> {
        self.addon_for(user, &addon.id)?;
        Self::require_postgres(addon)?;
        Ok(self.addons.postgres.activity(&addon.id).await?)
    }

    /// Cancels a session's query (or ends the session); `false` if there was no such session.
    pub async fn kill_session(
        &self,
        user: &Account,
        addon: &Addon,
        pid: u32,
        force: bool,
    ) -> Result<bool> {
        self.app_for(user, &addon.app_id, kiln_model::access::Need::Deploy)?;
        Self::require_postgres(addon)?;
        Ok(self.addons.postgres.kill(&addon.id, pid, force).await?)
    }

    pub async fn redis_info(
        &self,
        user: &Account,
        addon: &Addon,
    ) -> Result<kiln_addons::redis::RedisInfo> {
        self.addon_for(user, &addon.id)?;
        Self::require_service(addon, "heroku-redis")?;
        Ok(kiln_addons::redis::info(&self.addons.redis, &addon.id).await?)
    }

    pub async fn set_redis_policy(
        &self,
        user: &Account,
        addon: &Addon,
        policy: &str,
    ) -> Result<()> {
        self.app_for(user, &addon.app_id, kiln_model::access::Need::Deploy)?;
        Self::require_service(addon, "heroku-redis")?;
        kiln_addons::redis::set_policy(&self.addons.redis, &addon.id, policy).await?;
        self.api_log(
            &addon.app_id,
            format!(
                "Set {}'s maxmemory policy to {policy} by user {}",
                addon.name, user.email
            ),
        );
        Ok(())
    }

    fn require_service(addon: &Addon, service: &str) -> Result<()> {
        if addon.service == service {
            Ok(())
        } else {
            Err(kiln_model::Invalid::new(
                "addon",
                format!("{} is not a {service} add-on", addon.name),
            )
            .into())
        }
    }

    pub async fn database_info(
        &self,
        user: &Account,
        addon: &Addon,
    ) -> Result<kiln_addons::postgres::DatabaseInfo> {
        self.addon_for(user, &addon.id)?;
        Self::require_postgres(addon)?;
        Ok(self.addons.postgres.info(&addon.id).await?)
    }

    /// New credentials for a PostgreSQL, Redis or memcached add-on: every app it is attached
    /// to gets the new vars in a release.
    pub async fn rotate_credentials(
        &self,
        user: &Account,
        addon: &Addon,
    ) -> Result<Vec<kiln_store::Release>> {
        self.app_for(user, &addon.app_id, kiln_model::access::Need::Deploy)?;
        let made = match addon.service.as_str() {
            "heroku-postgresql" => self.addons.postgres.rotate_password(&addon.id).await?,
            "heroku-redis" => self.addons.redis.rotate_password(&addon.id).await?,
            _ => self.addons.memcached.rotate_password(&addon.id).await?,
        };
        let (_, releases) = self
            .store
            .rotate_addon_config(&addon.id, &made.config, &user.id)?;
        for r in &releases {
            self.released(&r.app_id, r, user);
        }
        Ok(releases)
    }

    pub fn set_backup_schedule(
        &self,
        user: &Account,
        addon: &Addon,
        name: &str,
        hour: u8,
    ) -> Result<BackupSchedule> {
        self.app_for(user, &addon.app_id, kiln_model::access::Need::Deploy)?;
        Self::require_postgres(addon)?;
        Ok(self.store.set_backup_schedule(addon, name, hour)?)
    }

    pub fn backup_schedules(&self, user: &Account, app: &App) -> Result<Vec<BackupSchedule>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Ok(self.store.backup_schedules(Some(&app.id))?)
    }

    pub fn remove_backup_schedule(&self, user: &Account, addon: &Addon) -> Result<()> {
        self.app_for(user, &addon.app_id, kiln_model::access::Need::Deploy)?;
        Ok(self.store.delete_backup_schedule(&addon.id)?)
    }

    /// A final backup, taken (and waited for) before a database is destroyed.
    pub(crate) async fn final_backup(&self, addon: &Addon) -> Result<()> {
        if addon.service != "heroku-postgresql" {
            return Ok(());
        }
        let expires = Timestamp::from_unix_seconds(
            Timestamp::now().unix_seconds() + FINAL_BACKUP_DAYS * 86400,
        );
        let t = self.new_transfer(addon, TransferKind::Final, Some(expires))?;
        let ended = self.run_backup(addon, &t).await?;
        match ended.status {
            TransferStatus::Succeeded => Ok(()),
            _ => Err(PlatformError::Conflict(format!(
                "The final backup of {} failed ({}), so it was not destroyed: {}",
                addon.name,
                ended.display_name(),
                ended.error.unwrap_or_default()
            ))),
        }
    }

    /// Once a minute: the day's scheduled backups whose hour has come, and final backups past
    /// their week.
    pub(crate) async fn backup_tick(&self) {
        let now = Timestamp::now();
        let hour = ((now.unix_seconds() / 3600) % 24) as u8;
        let day = now.unix_seconds() / 86400;
        if let Ok(schedules) = self.store.backup_schedules(None) {
            for s in schedules.into_iter().filter(|s| s.hour <= hour) {
                let Ok(addon) = self.store.addon(&s.addon_id) else {
                    continue;
                };
                let taken_today = self.store.transfers(&s.app_id).is_ok_and(|ts| {
                    ts.iter().any(|t| {
                        t.addon_id == addon.id
                            && t.kind == TransferKind::Scheduled
                            && t.created_at.unix_seconds() / 86400 == day
                    })
                });
                if !taken_today {
                    if let Err(e) = self.capture_backup(&addon, TransferKind::Scheduled) {
                        tracing::warn!(addon = %addon.name, error = %e, "could not start a scheduled backup");
                    }
                }
            }
        }
        if let Ok(all) = self.store.all_transfers() {
            for t in all
                .iter()
                .filter(|t| t.expires_at.is_some_and(|e| e.0 <= now.0))
            {
                let _ = self.remove_transfer(t);
            }
        }
    }
}
