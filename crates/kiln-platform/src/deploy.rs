//! Deploying a git push: build it, append the release, converge the dynos, and tell the
//! pusher how it went — in Heroku's words.

use crate::{BuildStream, Platform, PlatformError};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use kiln_build::{BuildError, BuildRequest};
use kiln_git::{GitAuth, Push, PushHandler, PushOutput};
use kiln_model::release::ReleaseStatus;
use kiln_store::{BuildStatus, NewRelease, Slug};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a push was not deployed. The git receiver shows it to the pusher (as `remote: !`
/// lines, followed by its own "Push rejected"); what went wrong inside a build has also been
/// said in the build's output.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("Could not prepare the build: {0}")]
    Prepare(#[source] std::io::Error),
    #[error(
        "{0} (the server's --max-source-mb). Remove large files from the repository, history included, or keep them outside it."
    )]
    SourceTooLarge(#[source] kiln_git::ExportError),
    #[error("Could not read the pushed commit: {0}")]
    Source(#[source] kiln_git::ExportError),
    #[error(transparent)]
    AppFile(#[from] kiln_build::AppFileError),
    /// app.json does not parse; the message names the field.
    #[error("{0}")]
    AppJson(String),
    /// An add-on app.json asks for could not be made.
    #[error("Could not provision {plan} (asked for by app.json or a buildpack): {source}")]
    Addon {
        plan: String,
        #[source]
        source: PlatformError,
    },
    #[error("{0}")]
    Build(#[source] BuildError),
    #[error(
        "Release v{version} failed: {reason}. The previous release keeps running: see `kiln logs` and `kiln releases`."
    )]
    NotLive {
        version: u32,
        reason: crate::release::GoLiveError,
    },
}

impl From<kiln_store::StoreError> for DeployError {
    fn from(e: kiln_store::StoreError) -> Self {
        DeployError::Platform(e.into())
    }
}

/// The platform as the git receiver sees it.
pub struct GitBridge(pub Arc<Platform>);

impl PushHandler for GitBridge {
    fn deploy(
        &self,
        push: Push,
        output: PushOutput,
    ) -> BoxFuture<'static, Result<(), kiln_git::Rejection>> {
        let platform = self.0.clone();
        async move {
            platform
                .deploy_push(push, output)
                .await
                .map_err(|e| Box::new(e) as kiln_git::Rejection)
        }
        .boxed()
    }
}

impl GitAuth for GitBridge {
    fn authenticate(&self, api_key: &str) -> Option<(String, String)> {
        self.0
            .authenticate(api_key)
            .ok()
            .flatten()
            .map(|c| (c.account.id, c.account.email))
    }

    fn app(&self, name: &str, user_id: &str) -> Result<(String, String), kiln_git::GitRefusal> {
        use kiln_git::GitRefusal;
        // Repositories are named by app name only (not id).
        if kiln_model::AppName::parse(name).is_err() {
            return Err(GitRefusal::NoSuchApp);
        }
        let user = self
            .0
            .store
            .account(user_id)
            .map_err(|_| GitRefusal::NoSuchApp)?;
        match self
            .0
            .app_for(&user, name, kiln_model::access::Need::Deploy)
        {
            Ok(app) => Ok((app.id, app.name)),
            Err(crate::PlatformError::Forbidden(why)) => Err(GitRefusal::Forbidden(why)),
            Err(_) => Err(GitRefusal::NoSuchApp),
        }
    }
}

/// Sends build output to the pusher, the live stream and the stored build log at once.
struct Tee {
    push: PushOutput,
    stream: Arc<BuildStream>,
    /// The pusher was told the output is cut short.
    told: std::sync::atomic::AtomicBool,
}

impl kiln_build::BuildOutput for Tee {
    fn line(&self, line: &str) {
        // The pusher sees what the build stream keeps: lines queue for a slow pusher, and
        // that queue must be bounded as the stream is.
        if !self.stream.truncated() {
            let _ = self.push.send(line.to_string());
        }
        self.stream.push(line);
        if self.stream.truncated() {
            self.notice_once();
        }
    }
}

impl Tee {
    fn notice_once(&self) {
        if !self.told.swap(true, std::sync::atomic::Ordering::Relaxed) {
            let _ = self.push.send(format!(
                " !     The build printed more than {} MB; the rest of its output is not shown.",
                crate::streams::MAX_BUILD_OUTPUT / (1024 * 1024)
            ));
        }
    }
}

impl Platform {
    pub(crate) async fn deploy_push(
        self: &Arc<Self>,
        push: Push,
        output: PushOutput,
    ) -> Result<(), DeployError> {
        let ctx = &push.context;
        let app = self.store.app(&ctx.app_id)?;
        let user = self.store.account(&ctx.user_id)?;
        let lock = self.build_lock(&app.id);
        let _guard = match lock.try_lock() {
            Ok(g) => g,
            Err(_) => {
                let _ = output
                    .send("-----> Waiting for the build in progress to finish...".to_string());
                lock.lock().await
            }
        };

        let mut buildpacks = self.store.buildpacks(&app.id)?;
        if buildpacks.is_empty() {
            if let Some(url) = app.config.get("BUILDPACK_URL") {
                buildpacks.push(url.clone());
            }
        }
        let build = self
            .store
            .create_build(&app.id, &user.id, Some(&push.new), &buildpacks)?;
        let stream = Arc::new(BuildStream::default());
        self.build_streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(build.id.clone(), stream.clone());
        self.api_log(&app.id, format!("Build started by user {}", user.email));
        let tee = Tee {
            push: output.clone(),
            stream: stream.clone(),
            told: Default::default(),
        };

        let result = self
            .build_and_release(&app, &user, &push, &build.id, &buildpacks, &tee)
            .await;
        stream.finish();
        let text = stream.text();
        let _ = match &result {
            Ok((slug_id, release_id, _)) => self.store.finish_build(
                &build.id,
                BuildStatus::Succeeded,
                &text,
                Some(slug_id),
                Some(release_id),
            ),
            Err(_) => self
                .store
                .finish_build(&build.id, BuildStatus::Failed, &text, None, None),
        };
        // Keep the live stream only while the build runs; afterwards the store has the output.
        self.build_streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&build.id);

        let (_, release_id, version) = match result {
            Ok(r) => r,
            Err(e) => {
                self.api_log(&app.id, "Build failed");
                return Err(e);
            }
        };
        self.api_log(&app.id, "Build succeeded");
        self.api_log(
            &app.id,
            format!(
                "Deploy {} by user {}",
                &push.new[..push.new.len().min(8)],
                user.email
            ),
        );
        self.api_log(
            &app.id,
            format!("Release v{version} created by user {}", user.email),
        );

        // The next build may start while this release goes live.
        drop(_guard);
        let _ = output.send("-----> Launching...".to_string());
        let release = self.store.release(&app.id, &release_id)?;
        self.go_live(&app.id, &release, &Some(output.clone()))
            .await
            .map_err(|reason| DeployError::NotLive { version, reason })?;
        let _ = output.send(format!("       Released v{version}"));
        let _ = output.send(format!(
            "       {} deployed to Kiln",
            self.web_url(&app.name)
        ));
        let _ = output.send(String::new());
        let _ = output.send("Verifying deploy... done.".to_string());
        Ok(())
    }

    /// Exports, builds, stores the slug and appends the release. Returns (slug id, release id,
    /// version).
    async fn build_and_release(
        &self,
        app: &kiln_store::App,
        user: &kiln_store::Account,
        push: &Push,
        build_id: &str,
        buildpacks: &[String],
        out: &Tee,
    ) -> Result<(String, String, u32), DeployError> {
        use kiln_build::BuildOutput;
        let source_dir = self.builder.scratch_dir(build_id).join("app");
        std::fs::create_dir_all(&source_dir).map_err(DeployError::Prepare)?;
        let scratch = source_dir.parent().unwrap_or(&source_dir).to_path_buf();
        match kiln_git::export_tree(
            &push.repo,
            &push.new,
            &push.git_env,
            &source_dir,
            self.settings.max_source_bytes,
        )
        .await
        {
            Ok(size) => out.line(&format!("-----> Source: {}", kiln_build::human_size(size))),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(match e {
                    kiln_git::ExportError::TooLarge { .. }
                    | kiln_git::ExportError::TooManyFiles { .. } => DeployError::SourceTooLarge(e),
                    e => DeployError::Source(e),
                });
            }
        }
        let app_json = match kiln_build::read_app_file(&source_dir, "app.json") {
            Ok(Some(text)) => match kiln_model::appjson::parse(&text) {
                Ok(a) => Some(a),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&scratch);
                    return Err(DeployError::AppJson(e.message));
                }
            },
            Ok(None) => None,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(e.into());
            }
        };
        let req = BuildRequest {
            build_id: build_id.to_string(),
            app_id: app.id.clone(),
            uid: self.dyno_uid(app),
            source_dir,
            source_version: Some(push.new.clone()),
            config: app.config.clone(),
            buildpacks: buildpacks.to_vec(),
            app_json,
        };
        let built = self
            .builder
            .build(req, out)
            .await
            .map_err(DeployError::Build)?;
        let slug = Slug {
            id: uuid::Uuid::new_v4().to_string(),
            app_id: app.id.clone(),
            checksum: built.checksum.clone(),
            size: built.size,
            process_types: built.process_types.clone(),
            commit: Some(push.new.clone()),
            commit_description: None,
            stack: self.settings.stack.clone(),
            buildpack_provided_description: Some(built.buildpack_description.clone()),
            created_at: kiln_model::Timestamp::now(),
        };
        self.store.insert_slug(&slug)?;
        let from_app_json = built
            .app_json
            .as_ref()
            .map(|a| a.formation.clone())
            .unwrap_or_default();
        let initial: BTreeMap<String, u32> = built
            .process_types
            .keys()
            .filter(|t| t.as_str() != "release")
            .map(|t| {
                (
                    t.clone(),
                    kiln_model::formation::initial_quantity(t, from_app_json.get(t).copied()),
                )
            })
            .collect();
        self.store.ensure_formation(&app.id, &initial)?;
        // app.json's add-ons, then those the buildpacks ask for whose service app.json does
        // not already provide.
        let mut specs: Vec<kiln_model::appjson::AddonSpec> = built
            .app_json
            .as_ref()
            .map(|a| a.addons.clone())
            .unwrap_or_default();
        let service_of = |plan: &str| {
            kiln_model::addon::PlanRef::parse(plan)
                .map(|p| p.service.name)
                .unwrap_or_default()
        };
        for plan in &built.release_addons {
            if !specs
                .iter()
                .any(|s| service_of(&s.plan) == service_of(plan))
            {
                specs.push(kiln_model::appjson::AddonSpec {
                    plan: plan.clone(),
                    as_: None,
                    options: Default::default(),
                });
            }
        }
        self.provision_app_json_addons(app, user, &specs, out)
            .await?;
        // The config is re-read so a config change made during the build is not lost.
        let config = self
            .store
            .app(&app.id)
            .map(|a| a.config)
            .unwrap_or_else(|_| app.config.clone());
        let release = self.store.append_release(
            &app.id,
            NewRelease {
                description: format!("Deploy {}", &push.new[..push.new.len().min(8)]),
                status: ReleaseStatus::Pending,
                slug_id: Some(slug.id.clone()),
                config,
                user_id: user.id.clone(),
            },
        )?;
        out.line(&format!(
            "-----> {} app built ({})",
            built.buildpack_description,
            kiln_build::human_size(built.size)
        ));
        Ok((slug.id, release.id, release.version))
    }

    /// On an app's first deploy, the add-ons its app.json and its buildpacks ask for (as
    /// Heroku provisions them); later deploys leave add-ons to the add-on commands.
    async fn provision_app_json_addons(
        &self,
        app: &kiln_store::App,
        user: &kiln_store::Account,
        specs: &[kiln_model::appjson::AddonSpec],
        out: &Tee,
    ) -> Result<(), DeployError> {
        use kiln_build::BuildOutput;
        if specs.is_empty() {
            return Ok(());
        }
        let deployed_before = self
            .store
            .releases(
                &app.id,
                kiln_store::ReleaseRange {
                    first: None,
                    last: None,
                    max: u32::MAX,
                    descending: false,
                },
            )?
            .iter()
            .any(|r| r.slug_id.is_some());
        if deployed_before {
            return Ok(());
        }
        for spec in specs {
            out.line(&format!("-----> Provisioning {}", spec.plan));
            let req = crate::CreateAddon {
                plan: spec.plan.clone(),
                name: None,
                attachment_name: spec.as_.clone(),
                options: spec.options.clone(),
            };
            match self.create_addon(user, app, req).await {
                Ok((addon, att, _)) => {
                    out.line(&format!("       {} attached as {}", addon.name, att.name))
                }
                Err(source) => {
                    return Err(DeployError::Addon {
                        plan: spec.plan.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}
