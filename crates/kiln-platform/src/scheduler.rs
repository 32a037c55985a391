//! Scheduled jobs, Heroku Scheduler's job: `kiln addons:create scheduler`, then
//! `kiln schedules:add "every 10 minutes" -- CMD`. Each run is a detached one-off dyno
//! `scheduler.N` of the app's current release, its output in the app's logs, started as the
//! user who added the job.
//!
//! The scheduler looks for due jobs every second. A job whose previous run is still going is
//! not started again (the run is skipped, and says so in the logs) unless it allows overlap.
//! After the server was down, a job whose runs were missed runs once, then keeps to its
//! schedule: the next run is computed from now, never caught up slot by slot. Which runs are
//! going is kept in memory: one-off dynos do not outlive the server, so after a restart none
//! is.

use crate::{Platform, PlatformError, Result};
use kiln_model::access::Need;
use kiln_model::records::{Account, App, ScheduledJob};
use kiln_model::schedule::Schedule;
use std::collections::HashSet;
use std::sync::Mutex;

/// The add-on service that lets an app have scheduled jobs.
pub const SERVICE: &str = "scheduler";
/// The longest command a job may run.
const MAX_COMMAND: usize = 4096;

/// Jobs with a run in progress.
#[derive(Default)]
pub(crate) struct Running(Mutex<HashSet<String>>);

impl Running {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now() -> i64 {
    kiln_model::Timestamp::now().unix_seconds()
}

impl Platform {
    fn has_scheduler(&self, app: &App) -> Result<bool> {
        Ok(self
            .store
            .app_addons(&app.id)?
            .iter()
            .any(|a| a.service == SERVICE))
    }

    /// The app's jobs (anyone who may view the app).
    pub fn schedules(&self, user: &Account, app: &App) -> Result<Vec<ScheduledJob>> {
        self.app_for(user, &app.id, Need::View)?;
        Ok(self.store.schedules(&app.id)?)
    }

    /// Whether a job's run is going now.
    pub fn schedule_running(&self, id: &str) -> bool {
        self.running.lock().contains(id)
    }

    /// Adds a job (who may deploy: a job runs code as they would with `run`).
    pub fn add_schedule(
        &self,
        user: &Account,
        app: &App,
        expression: &str,
        command: &str,
        allow_overlap: bool,
    ) -> Result<ScheduledJob> {
        self.app_for(user, &app.id, Need::Deploy)?;
        let schedule = Schedule::parse(expression)?;
        let command = command.trim();
        if command.is_empty() {
            return Err(kiln_model::Invalid::new("command", "The command is empty").into());
        }
        if command.len() > MAX_COMMAND || command.contains('\0') {
            return Err(kiln_model::Invalid::new(
                "command",
                format!("The command is longer than {MAX_COMMAND} bytes or contains a NUL byte"),
            )
            .into());
        }
        if !self.has_scheduler(app)? {
            return Err(PlatformError::Conflict(format!(
                "{} has no scheduler: add it first with `kiln addons:create scheduler -a {}`",
                app.name, app.name
            )));
        }
        if self
            .store
            .current_release(&app.id)?
            .is_none_or(|r| r.slug_id.is_none())
        {
            return Err(PlatformError::Conflict(format!(
                "{} has no release to run jobs from yet: push it first",
                app.name
            )));
        }
        let next = schedule.next_after(now()).ok_or_else(|| {
            kiln_model::Invalid::new(
                "schedule",
                "This schedule never runs (a date that does not exist)",
            )
        })?;
        let job = self.store.add_schedule(
            &app.id,
            &user.id,
            expression.trim(),
            command,
            allow_overlap,
            next,
        )?;
        self.audit(
            &app.id,
            user,
            &format!("Add scheduled job `{command}` ({})", job.expression),
        );
        Ok(job)
    }

    pub fn remove_schedule(&self, user: &Account, app: &App, id: &str) -> Result<ScheduledJob> {
        self.app_for(user, &app.id, Need::Deploy)?;
        let job = self.store.remove_schedule(&app.id, id)?;
        self.audit(
            &app.id,
            user,
            &format!("Remove scheduled job `{}`", job.command),
        );
        Ok(job)
    }

    /// Runs a job now, whatever its schedule (`schedules:run`); its schedule is unchanged.
    pub async fn run_schedule_now(&self, user: &Account, app: &App, id: &str) -> Result<String> {
        self.app_for(user, &app.id, Need::Deploy)?;
        let job = self.store.schedule(&app.id, id)?;
        self.start_job(&job, &user.email).await
    }

    /// Forgets an app's jobs (its scheduler add-on was destroyed).
    pub(crate) fn scheduler_removed(&self, app_id: &str) {
        if let Err(e) = self.store.remove_schedules(app_id) {
            tracing::warn!(app = %app_id, error = %e, "could not remove the app's scheduled jobs");
        }
    }

    async fn start_job(&self, job: &ScheduledJob, by: &str) -> Result<String> {
        self.queue_converge(&job.app_id).await?;
        let handle = self
            .dynos
            .run_one_off(kiln_dyno::OneOffRequest {
                app_id: job.app_id.clone(),
                command: job.command.clone(),
                env: Vec::new(),
                size: kiln_model::DynoSize::default(),
                attach: false,
                tty: false,
                user_email: by.to_string(),
                process_type: "scheduler".to_string(),
                release: None,
            })
            .await?;
        self.api_log(
            &job.app_id,
            format!(
                "Starting process with command `{}` by scheduler for user {by}",
                job.command
            ),
        );
        let name = handle.name.clone();
        self.running.lock().insert(job.id.clone());
        let (id, exit) = (job.id.clone(), handle.exit);
        let me = self.me.clone();
        tokio::spawn(async move {
            let _ = exit.await;
            if let Some(p) = me.upgrade() {
                p.running.lock().remove(&id);
            }
        });
        Ok(name)
    }

    /// One look for due jobs (every second).
    pub(crate) async fn scheduler_tick(&self) {
        let now = now();
        let due = match self.store.due_schedules(now) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the scheduled jobs");
                return;
            }
        };
        for job in due {
            // From now: a job whose runs were missed runs once, not once per missed slot.
            let next = Schedule::parse(&job.expression)
                .ok()
                .and_then(|s| s.next_after(now))
                .unwrap_or(i64::MAX);
            let ran = if !job.allow_overlap && self.schedule_running(&job.id) {
                self.api_log(
                    &job.app_id,
                    format!(
                        "Skipping scheduled job `{}`: its previous run is still going",
                        job.command
                    ),
                );
                None
            } else {
                match self.start_job(&job, &job.user_email).await {
                    Ok(_) => Some(now),
                    Err(e) => {
                        self.api_log(
                            &job.app_id,
                            format!("Scheduled job `{}` could not start: {e}", job.command),
                        );
                        None
                    }
                }
            };
            if let Err(e) = self.store.schedule_advanced(&job.id, ran, next) {
                tracing::warn!(job = %job.id, error = %e, "could not record a scheduled run");
            }
        }
    }
}
