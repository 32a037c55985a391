//! The commands. Each takes the parsed arguments and a [`Ctx`] (environment and streams),
//! makes its API calls and prints in the Heroku CLI's format.

mod access;
mod addons;
mod apps;
mod buildpacks;
mod certs;
mod certs_auto;
mod config;
mod domains;
mod drains;
mod git_cmds;
mod labs;
mod login;
mod logs;
mod maintenance;
mod metrics;
mod pg;
mod ps;
mod releases;
pub mod run;
mod schedules;

use crate::api::Api;
use crate::cli::{AppFlags, Cmd};
use crate::context::{Env, Io};
use crate::{git, settings};
use anyhow::{Result, bail};
use kiln_model::Timestamp;

pub const NO_APP: &str =
    "No app specified. Use -a APP, set KILN_APP, or run inside a git repo with a `kiln` remote.";

/// What a running command may use.
pub struct Ctx<'a> {
    pub env: &'a Env,
    pub io: Io<'a>,
    /// "Now", for "(~ 5s ago)".
    pub now: Timestamp,
}

impl<'a> Ctx<'a> {
    pub fn new(env: &'a Env, io: Io<'a>) -> Ctx<'a> {
        Ctx {
            env,
            io,
            now: Timestamp::now(),
        }
    }

    /// Writes to stdout and flushes, so output appears as it happens (log tails, progress).
    pub fn out(&mut self, text: &str) -> Result<()> {
        self.io.stdout.write_all(text.as_bytes())?;
        self.io.stdout.flush()?;
        Ok(())
    }

    pub fn warn(&mut self, text: &str) {
        // A warning that cannot be written is not worth failing the command for.
        let _ = writeln!(self.io.stderr, "Warning: {text}");
        let _ = self.io.stderr.flush();
    }

    /// The API client for the configured URL and key.
    pub fn api(&self) -> Result<Api> {
        let url = settings::api_url(self.env, None)?;
        let Some(key) = settings::api_key(self.env, &url)? else {
            bail!(
                "Not logged in to {}. Run `kiln login`, or set KILN_API_KEY.",
                url.base
            );
        };
        Ok(Api::new(url, key))
    }

    /// Starts a Heroku-style progress line (`Setting FOO and restarting ⬢ app... `); finish it
    /// with [`Ctx::done`] or [`Ctx::failed`].
    pub fn action(&mut self, label: &str) -> Result<()> {
        self.out(&format!("{label}... "))
    }

    pub fn done(&mut self, suffix: &str) -> Result<()> {
        if suffix.is_empty() {
            self.out("done\n")
        } else {
            self.out(&format!("done, {suffix}\n"))
        }
    }

    /// Ends a progress line whose work failed; the error itself is printed on stderr.
    pub fn failed<T>(&mut self, err: anyhow::Error) -> Result<T> {
        let _ = self.out("!\n");
        Err(err)
    }

    /// One progress line around one piece of work: `label... done`, or `label... !` and the
    /// error.
    pub async fn step<T>(
        &mut self,
        label: &str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.action(label)?;
        match work.await {
            Ok(v) => {
                self.done("")?;
                Ok(v)
            }
            Err(e) => self.failed(e),
        }
    }
}

/// The app to act on: the command's own argument, `-a`, `KILN_APP`, or the app that the
/// git remote (`kiln`, or `-r`) of the current directory points at.
pub fn resolve_app(env: &Env, flags: &AppFlags, positional: Option<&str>) -> Result<String> {
    if let Some(app) = positional
        .or(flags.app.as_deref())
        .filter(|a| !a.is_empty())
    {
        return Ok(app.to_string());
    }
    if let Some(app) = env.var("KILN_APP") {
        return Ok(app.to_string());
    }
    let remote = flags.remote.as_deref().unwrap_or(git::REMOTE);
    match git::remote_url(env.cwd(), remote) {
        Some(url) => match git::app_from_git_url(&url) {
            Some(app) => Ok(app),
            None => bail!(
                "The git remote {remote} ({url}) does not look like a Kiln app's URL (…/APP.git).\n{NO_APP}"
            ),
        },
        None if flags.remote.is_some() => {
            bail!("There is no git remote named {remote} here.\n{NO_APP}")
        }
        None => bail!(NO_APP),
    }
}

/// `⬢ name`, the Heroku CLI's way of naming an app in progress lines.
pub fn app_label(app: &str) -> String {
    format!("⬢ {app}")
}

pub async fn dispatch(ctx: &mut Ctx<'_>, cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Login {
            api_url,
            email,
            key,
        } => login::login(ctx, api_url.as_deref(), email.as_deref(), key).await,
        Cmd::Logout => access::logout(ctx).await,
        Cmd::AuthToken => access::token(ctx),
        Cmd::Whoami => access::whoami(ctx).await,
        Cmd::Passwd => access::passwd(ctx).await,
        Cmd::Signup {
            api,
            email,
            invitation,
            name,
        } => access::signup(ctx, api.as_deref(), &email, invitation.as_deref(), &name).await,
        Cmd::Users { json } => access::users(ctx, json).await,
        Cmd::UsersCreate { email, name, admin } => {
            access::create_user(ctx, &email, &name, admin).await
        }
        Cmd::UsersInvite { email } => access::invite(ctx, &email).await,
        Cmd::Authorizations { json } => access::authorizations(ctx, json).await,
        Cmd::AuthorizationsCreate {
            description,
            expires_in,
            short,
        } => access::create_authorization(ctx, &description, expires_in, short).await,
        Cmd::AuthorizationsRevoke { id } => access::revoke_authorization(ctx, &id).await,
        Cmd::AuthorizationsRotate { id } => access::rotate_authorization(ctx, &id).await,
        Cmd::Access { app, json } => access::list(ctx, &app, json).await,
        Cmd::AccessAdd {
            email,
            app,
            permissions,
        } => access::add(ctx, &app, &email, &permissions, false).await,
        Cmd::AccessUpdate {
            email,
            app,
            permissions,
        } => access::add(ctx, &app, &email, &permissions, true).await,
        Cmd::AccessRemove { email, app } => access::remove(ctx, &app, &email).await,
        Cmd::Teams { json } => access::teams(ctx, json).await,
        Cmd::TeamsCreate { name } => access::create_team(ctx, &name).await,
        Cmd::Members { team, json } => access::members(ctx, &team, json).await,
        Cmd::MembersAdd { email, team, role } => {
            access::add_member(ctx, &team, &email, &role).await
        }
        Cmd::MembersRemove { email, team } => access::remove_member(ctx, &team, &email).await,
        Cmd::AppsTransfer { recipient, app } => access::transfer(ctx, &app, &recipient).await,
        Cmd::Transfers => access::transfers(ctx).await,
        Cmd::TransfersAccept { id } => access::settle(ctx, &id, "accepted").await,
        Cmd::TransfersDecline { id } => access::settle(ctx, &id, "declined").await,
        Cmd::Audit { app, num } => access::audit(ctx, &app, num).await,
        Cmd::Apps { json } => apps::list(ctx, json).await,
        Cmd::AppsCreate {
            name,
            team,
            no_remote,
        } => apps::create(ctx, name.as_deref(), team.as_deref(), no_remote).await,
        Cmd::AppsInfo { app, name, json } => apps::info(ctx, &app, name.as_deref(), json).await,
        Cmd::AppsDestroy { name, app, confirm } => {
            apps::destroy(ctx, &app, name.as_deref(), confirm.as_deref()).await
        }
        Cmd::Config { app, json, shell } => config::show(ctx, &app, json, shell).await,
        Cmd::ConfigGet { app, key } => config::get(ctx, &app, &key).await,
        Cmd::ConfigSet { app, vars } => config::set(ctx, &app, &vars).await,
        Cmd::ConfigUnset { app, keys } => config::unset(ctx, &app, &keys).await,
        Cmd::Ps { app, types, json } => ps::list(ctx, &app, &types, json).await,
        Cmd::PsScale { app, changes } => ps::scale(ctx, &app, &changes).await,
        Cmd::PsType { app, changes } => ps::resize(ctx, &app, &changes).await,
        Cmd::PsRestart {
            app,
            target,
            process_type,
            dyno_name,
        } => {
            ps::restart(
                ctx,
                &app,
                target.as_deref(),
                process_type.as_deref(),
                dyno_name.as_deref(),
            )
            .await
        }
        Cmd::PsStop { app, target } => ps::stop(ctx, &app, &target).await,
        Cmd::Releases { app, num, json } => releases::list(ctx, &app, num, json).await,
        Cmd::ReleasesInfo { app, release, json } => {
            releases::info(ctx, &app, release.as_deref(), json).await
        }
        Cmd::ReleasesRollback { app, release } => {
            releases::rollback(ctx, &app, release.as_deref()).await
        }
        Cmd::Logs {
            app,
            num,
            tail,
            dyno,
            source,
            since,
            until,
            grep,
        } => {
            let now = ctx.now;
            logs::logs(
                ctx,
                &app,
                logs::LogOptions {
                    lines: num,
                    tail,
                    dyno,
                    source,
                    since: since.map(|s| logs::when(&s, now)).transpose()?,
                    until: until.map(|s| logs::when(&s, now)).transpose()?,
                    grep,
                },
            )
            .await
        }
        Cmd::Buildpacks { app, json } => buildpacks::list(ctx, &app, json).await,
        Cmd::BuildpacksSet { app, url, index } => buildpacks::set(ctx, &app, &url, index).await,
        Cmd::BuildpacksAdd { app, url, index } => buildpacks::add(ctx, &app, &url, index).await,
        Cmd::BuildpacksRemove { app, url, index } => {
            buildpacks::remove(ctx, &app, url.as_deref(), index).await
        }
        Cmd::BuildpacksClear { app } => buildpacks::clear(ctx, &app).await,
        Cmd::Drains {
            app,
            json,
            extended,
        } => drains::list(ctx, &app, json, extended).await,
        Cmd::DrainsAdd { app, url } => drains::add(ctx, &app, &url).await,
        Cmd::DrainsRemove { app, url } => drains::remove(ctx, &app, &url).await,
        Cmd::DrainsInfo { app, url, json } => drains::info(ctx, &app, &url, json).await,
        Cmd::Labs { app, json } => labs::list(ctx, &app, json).await,
        Cmd::Metrics {
            app,
            since,
            until,
            dynos,
            coarse,
            json,
        } => {
            metrics::metrics(
                ctx,
                &app,
                metrics::MetricsOptions {
                    since,
                    until,
                    dynos,
                    coarse,
                    json,
                },
            )
            .await
        }
        Cmd::LabsEnable { app, feature } => labs::switch(ctx, &app, &feature, true).await,
        Cmd::LabsDisable { app, feature } => labs::switch(ctx, &app, &feature, false).await,
        Cmd::BuildpacksSearch {
            term,
            name,
            namespace,
            description,
        } => {
            buildpacks::search(
                ctx,
                term.as_deref(),
                name.as_deref(),
                namespace.as_deref(),
                description.as_deref(),
            )
            .await
        }
        Cmd::Domains { app, json } => domains::list(ctx, &app, json).await,
        Cmd::DomainsAdd { app, hostname } => domains::add(ctx, &app, &hostname).await,
        Cmd::DomainsRemove { app, hostname } => domains::remove(ctx, &app, &hostname).await,
        Cmd::Addons { app, json } => addons::list(ctx, &app, json).await,
        Cmd::AddonsCreate {
            app,
            plan,
            name,
            as_,
            wait: _,
            options,
        } => addons::create(ctx, &app, &plan, name.as_deref(), as_.as_deref(), &options).await,
        Cmd::AddonsInfo { app, addon, json } => addons::info(ctx, &app, &addon, json).await,
        Cmd::AddonsAttach { app, addon, as_ } => {
            addons::attach(ctx, &app, &addon, as_.as_deref()).await
        }
        Cmd::AddonsDetach { app, attachment } => addons::detach(ctx, &app, &attachment).await,
        Cmd::AddonsUpgrade { app, addon, plan } => addons::upgrade(ctx, &app, &addon, &plan).await,
        Cmd::AddonsDestroy {
            app,
            addon,
            confirm,
            force,
        } => addons::destroy(ctx, &app, &addon, confirm.as_deref(), force).await,
        Cmd::AddonsServices { json } => addons::services(ctx, json).await,
        Cmd::AddonsPlans { service, json } => addons::plans(ctx, &service, json).await,
        Cmd::PgInfo { app, database } => pg::info(ctx, &app, database.as_deref()).await,
        Cmd::PgPsql {
            app,
            database,
            command,
        } => {
            pg::client(
                ctx,
                &app,
                database.as_deref(),
                "heroku-postgresql",
                command.as_deref(),
            )
            .await
        }
        Cmd::PgReset {
            app,
            database,
            confirm,
        } => pg::reset(ctx, &app, database.as_deref(), confirm.as_deref()).await,
        Cmd::PgCredentialsRotate {
            app,
            database,
            confirm,
        } => {
            pg::rotate(
                ctx,
                &app,
                database.as_deref(),
                "heroku-postgresql",
                confirm.as_deref(),
            )
            .await
        }
        Cmd::PgBackups { app, json } => pg::backups(ctx, &app, json).await,
        Cmd::PgBackupsCapture { app, database } => {
            pg::capture(ctx, &app, database.as_deref()).await
        }
        Cmd::PgBackupsRestore {
            app,
            backup,
            database,
            confirm,
        } => {
            pg::restore(
                ctx,
                &app,
                backup.as_deref(),
                database.as_deref(),
                confirm.as_deref(),
            )
            .await
        }
        Cmd::PgBackupsDownload {
            app,
            backup,
            output,
        } => pg::download(ctx, &app, backup.as_deref(), output.as_deref()).await,
        Cmd::PgBackupsInfo { app, backup } => pg::backup_info(ctx, &app, backup.as_deref()).await,
        Cmd::PgBackupsDelete {
            app,
            backup,
            confirm,
        } => pg::delete(ctx, &app, &backup, confirm.as_deref()).await,
        Cmd::PgBackupsUrl { app, backup } => pg::url(ctx, &app, backup.as_deref()).await,
        Cmd::PgBackupsSchedule { app, database, at } => {
            pg::schedule(ctx, &app, database.as_deref(), &at).await
        }
        Cmd::PgBackupsUnschedule { app, database } => {
            pg::unschedule(ctx, &app, database.as_deref()).await
        }
        Cmd::PgBackupsSchedules { app } => pg::schedules(ctx, &app).await,
        Cmd::PgPs { app, database } => pg::ps(ctx, &app, database.as_deref()).await,
        Cmd::PgKill {
            app,
            pid,
            database,
            force,
        } => pg::kill(ctx, &app, pid, force, database.as_deref()).await,
        Cmd::RedisInfo { app, redis } => pg::redis_info(ctx, &app, redis.as_deref()).await,
        Cmd::RedisMaxmemory { app, redis, policy } => {
            pg::redis_maxmemory(ctx, &app, redis.as_deref(), &policy).await
        }
        Cmd::RedisCli { app, redis } => {
            pg::client(ctx, &app, redis.as_deref(), "heroku-redis", None).await
        }
        Cmd::RedisCredentials {
            app,
            redis,
            reset,
            confirm,
        } => {
            if !reset {
                anyhow::bail!("Use redis:credentials --reset to give the Redis a new password");
            }
            pg::rotate(
                ctx,
                &app,
                redis.as_deref(),
                "heroku-redis",
                confirm.as_deref(),
            )
            .await
        }
        Cmd::Schedules { app, json } => schedules::list(ctx, &app, json).await,
        Cmd::SchedulesAdd {
            schedule,
            allow_overlap,
            app,
            command,
        } => schedules::add(ctx, &app, &schedule, &command, allow_overlap).await,
        Cmd::SchedulesRemove { id, app } => schedules::remove(ctx, &app, &id).await,
        Cmd::SchedulesRun { id, app } => schedules::run(ctx, &app, &id).await,
        Cmd::PsAutosleep {
            mode,
            after,
            workers_stay,
            workers_sleep,
            app,
        } => {
            let workers = (workers_stay || workers_sleep).then_some(workers_stay);
            maintenance::autosleep(ctx, &app, mode.as_deref(), after.as_deref(), workers).await
        }
        Cmd::Maintenance { app } => maintenance::show(ctx, &app).await,
        Cmd::MaintenanceOn { app } => maintenance::set(ctx, &app, true).await,
        Cmd::MaintenanceOff { app } => maintenance::set(ctx, &app, false).await,
        Cmd::Certs { app, json } => certs::list(ctx, &app, json).await,
        Cmd::CertsInfo { app, name, json } => certs::info(ctx, &app, name.as_deref(), json).await,
        Cmd::CertsAdd { app, cert, key } => certs::add(ctx, &app, &cert, &key).await,
        Cmd::CertsUpdate {
            app,
            cert,
            key,
            name,
        } => certs::update(ctx, &app, &cert, &key, name.as_deref()).await,
        Cmd::CertsRemove { app, name, confirm } => {
            certs::remove(ctx, &app, name.as_deref(), confirm.as_deref()).await
        }
        Cmd::CertsAuto { app, wait } => certs_auto::status(ctx, &app, wait).await,
        Cmd::CertsAutoEnable { app } => certs_auto::enable(ctx, &app).await,
        Cmd::CertsAutoDisable { app, confirm } => {
            certs_auto::disable(ctx, &app, confirm.as_deref()).await
        }
        Cmd::CertsAutoRefresh { app } => certs_auto::refresh(ctx, &app).await,
        Cmd::GitRemote { app } => git_cmds::remote(ctx, &app).await,
        Cmd::GitCredentials { operation } => git_cmds::credentials(ctx, &operation),
        Cmd::Run {
            app,
            no_tty,
            env,
            size,
            command,
        } => run::attached(ctx, &app, &command, no_tty, &env, size.as_deref()).await,
        Cmd::RunDetached {
            app,
            env,
            size,
            command,
        } => run::detached(ctx, &app, &command, &env, size.as_deref()).await,
    }
}
