//! How a new release goes live: its release phase runs first, then its dynos replace the old
//! ones (web dynos only once the new ones are up), and only then is it `succeeded`. If the
//! release command fails, or the new web dynos crash or never come up, the release is
//! `failed` with the reason, the app's config goes back to the running release's, and the
//! old dynos, which never stopped serving, stay.

use crate::Platform;
use kiln_dyno::{DeployOutcome, OneOffRequest, ReleaseDesired};
use kiln_model::LogLine;
use kiln_model::log::{LogFilter, LogSink};
use kiln_model::release::ReleaseStatus;
use kiln_store::Release;
use std::time::Duration;

/// Why a release did not go live; stored with the release (`kiln releases` shows it).
#[derive(Debug, thiserror::Error)]
pub enum GoLiveError {
    #[error(transparent)]
    Platform(#[from] crate::PlatformError),
    #[error("the release has no slug")]
    NoSlug,
    #[error("preparing the slug: {0}")]
    Slug(#[source] std::io::Error),
    #[error("release command timed out after an hour")]
    ReleaseTimeout,
    #[error("release command failed (exit status {0})")]
    ReleaseFailed(i32),
    /// The new dynos did not come up; the dyno manager's words.
    #[error("{0}")]
    Dynos(String),
}

impl From<kiln_store::StoreError> for GoLiveError {
    fn from(e: kiln_store::StoreError) -> Self {
        GoLiveError::Platform(e.into())
    }
}

impl From<kiln_dyno::DynoError> for GoLiveError {
    fn from(e: kiln_dyno::DynoError) -> Self {
        GoLiveError::Platform(e.into())
    }
}

/// Heroku's hard limit on a release command.
const RELEASE_PHASE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where progress goes besides the log stream (the pusher, for a git deploy).
pub(crate) type Progress = Option<tokio::sync::mpsc::UnboundedSender<String>>;

fn say(progress: &Progress, line: impl Into<String>) {
    if let Some(p) = progress {
        let _ = p.send(line.into());
    }
}

impl Platform {
    /// Takes a pending release live (see the module doc). Returns `Err(reason)` when it failed.
    pub(crate) async fn go_live(
        &self,
        app_id: &str,
        release: &Release,
        progress: &Progress,
    ) -> Result<(), GoLiveError> {
        let lock = self.release_lock(app_id);
        let _guard = lock.lock().await;
        let result = self.go_live_locked(app_id, release, progress).await;
        match &result {
            Ok(()) => {
                let _ = self
                    .store
                    .set_release_status(&release.id, ReleaseStatus::Succeeded, None);
                if let Ok(app) = self.store.app(app_id) {
                    self.publish_app(&app);
                }
            }
            Err(reason) => {
                let reason = reason.to_string();
                let _ = self.store.set_release_status(
                    &release.id,
                    ReleaseStatus::Failed,
                    Some(&reason),
                );
                self.api_log(
                    app_id,
                    format!("Release v{} failed: {reason}", release.version),
                );
                // The config a failed config change set does not stay.
                if let Ok(Some(current)) = self.store.current_release(app_id) {
                    if let Ok(app) = self.store.restore_config(app_id, &current.config) {
                        self.publish_app(&app);
                    }
                }
            }
        }
        self.deploying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_id);
        if result.is_err() {
            // Back to the release that runs: the new dynos go, the old ones stay.
            if let Err(e) = self.queue_converge(app_id).await {
                tracing::warn!(app = %app_id, error = %e, "could not converge back after a failed release");
            }
        }
        result
    }

    async fn go_live_locked(
        &self,
        app_id: &str,
        release: &Release,
        progress: &Progress,
    ) -> Result<(), GoLiveError> {
        if release.status != ReleaseStatus::Pending {
            return Ok(());
        }
        if let Some(slug_id) = &release.slug_id {
            let slug = self.store.slug(slug_id)?;
            if let Some(command) = slug.process_types.get("release") {
                self.release_phase(app_id, release, command, progress)
                    .await?;
            }
        }
        self.deploying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(app_id.to_string(), release.id.clone());
        let pending = self.queue_converge(app_id).await?;
        match pending.wait().await {
            DeployOutcome::Up | DeployOutcome::NothingToWaitFor => Ok(()),
            DeployOutcome::Failed(why) => Err(GoLiveError::Dynos(why)),
        }
    }

    /// Runs the release's `release` process as `release.N` with the release's slug and config;
    /// its output goes to the log stream and to `progress`.
    async fn release_phase(
        &self,
        app_id: &str,
        release: &Release,
        command: &str,
        progress: &Progress,
    ) -> Result<(), GoLiveError> {
        say(progress, "-----> Running release command...");
        // The dyno manager must know the app before it can start a dyno for it.
        self.queue_converge(app_id).await?;
        let app = self.store.app(app_id)?;
        let slug_id = release.slug_id.clone().ok_or(GoLiveError::NoSlug)?;
        let slug = self.store.slug(&slug_id)?;
        let tarball = kiln_build::slug::path_for(&self.builder.slugs_dir(), &slug.checksum);
        let (cache, checksum, uid) = (
            self.slugs.clone(),
            slug.checksum.clone(),
            self.dyno_uid(&app),
        );
        let dir = tokio::task::spawn_blocking(move || cache.ensure(&checksum, &tarball, uid))
            .await
            .map_err(|e| GoLiveError::Slug(std::io::Error::other(e)))?
            .map_err(GoLiveError::Slug)?;
        let desired = ReleaseDesired {
            release_id: release.id.clone(),
            version: release.version,
            slug_dir: dir,
            process_types: slug.process_types.clone(),
            config: release.config.clone(),
            healthcheck: None,
        };
        let user_email = self
            .store
            .account(&release.user_id)
            .map(|a| a.email)
            .unwrap_or_default();
        // Its output is the release's (`releases:output`): followed live at the release's
        // `output_stream_url`, kept in the store when it ends. The tail is opened before
        // the dyno starts (all `release.N` dynos: only one runs at a time, under the
        // release lock) so not even its first line is missed.
        let mut tail = self.logs.tail(
            app_id,
            LogFilter {
                source: Some("app".into()),
                dyno: Some("release".into()),
            },
        );
        let output = std::sync::Arc::new(crate::BuildStream::default());
        self.release_streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(release.id.clone(), output.clone());
        let _ = self.store.set_release_output(&release.id, "");
        let mut handle = self
            .dynos
            .run_one_off(OneOffRequest {
                app_id: app_id.to_string(),
                command: command.to_string(),
                env: Vec::new(),
                size: kiln_model::DynoSize::default(),
                attach: false,
                tty: false,
                user_email,
                process_type: "release".into(),
                release: Some(desired),
            })
            .await?;
        // Relay the release dyno's lines to the pusher and the output stream while it runs.
        let relay = {
            let (progress, output) = (progress.clone(), output.clone());
            tokio::spawn(async move {
                while let Some(ev) = tail.next().await {
                    if let kiln_logplex::TailEvent::Line(l) = ev {
                        output.push(&l.message);
                        if let Some(p) = &progress {
                            let _ = p.send(format!("       {}", l.message));
                        }
                    }
                }
            })
        };
        let finish_output = |code: Option<i32>| {
            match code {
                Some(0) => output.push("Release command succeeded"),
                Some(c) => output.push(&format!("Release command failed (exit status {c})")),
                None => output.push("Release command timed out after an hour"),
            }
            if let Err(e) = self.store.set_release_output(&release.id, &output.text()) {
                tracing::warn!(release = %release.id, error = %e, "could not keep the release output");
            }
            output.finish();
            self.release_streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&release.id);
        };
        let code = match tokio::time::timeout(RELEASE_PHASE_TIMEOUT, &mut handle.exit).await {
            Ok(Ok(code)) => code,
            Ok(Err(_)) => 255,
            Err(_) => {
                handle.signaller.kill();
                let _ = (&mut handle.exit).await;
                self.logs.emit(
                    app_id,
                    LogLine::heroku(
                        &handle.name,
                        "Error R12 (Exit timeout) -> The release command ran longer than an hour",
                    ),
                );
                relay.abort();
                finish_output(None);
                return Err(GoLiveError::ReleaseTimeout);
            }
        };
        // Let the last lines through before the verdict.
        tokio::time::sleep(Duration::from_millis(100)).await;
        relay.abort();
        finish_output(Some(code));
        if code == 0 {
            say(progress, "-----> Release command succeeded");
            Ok(())
        } else {
            say(
                progress,
                format!(" !     Release command failed (exit status {code})"),
            );
            Err(GoLiveError::ReleaseFailed(code))
        }
    }

    /// Takes a release live from a background task (API calls return at once, as Heroku's).
    pub(crate) fn go_live_in_background(&self, app_id: &str, release: &Release) {
        let Some(me) = self.myself() else { return };
        let (app_id, release) = (app_id.to_string(), release.clone());
        tokio::spawn(async move {
            let _ = me.go_live(&app_id, &release, &None).await;
        });
    }
}
