//! What the doors read: the platform's answers to the API's and the git receiver's
//! questions, so that neither reaches past it into the store, the dyno manager or the log
//! store. Each takes the acting user: this is where access is decided (today, an app is its
//! owner's; see [`Platform::app_for`]).

use crate::{LogSearch, Platform, PlatformError, Result};
use kiln_model::LogLine;
use kiln_model::log::LogFilter;
use kiln_model::records::{Account, App, Build, Release, ReleaseRange, Slug};
use std::sync::Arc;

/// An app as listings and `apps:info` show it: with the slug its current release runs.
#[derive(Debug, Clone)]
pub struct AppView {
    pub app: App,
    pub slug: Option<Slug>,
}

/// An open log session: the lines it starts with, and the live tail when it follows.
pub struct LogSessionStream {
    pub history: Vec<Arc<LogLine>>,
    pub tail: Option<kiln_logplex::Tail>,
    /// Resolves when the session's opener loses the right to read these logs (key revoked,
    /// password changed, access removed): the stream ends then.
    pub ended: futures_util::future::BoxFuture<'static, ()>,
}

impl Platform {
    /// The user's apps, by name, in a fixed number of queries.
    pub fn apps(&self, user: &Account) -> Result<Vec<AppView>> {
        Ok(self
            .store
            .apps_of(&user.id)?
            .into_iter()
            .map(|(app, slug)| AppView { app, slug })
            .collect())
    }

    /// One of the user's apps as `apps:info` shows it.
    pub fn app_view(&self, user: &Account, app: &App) -> Result<AppView> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        let slug = match self.store.current_release(&app.id)? {
            Some(Release {
                slug_id: Some(s), ..
            }) => Some(self.store.slug(&s)?),
            _ => None,
        };
        Ok(AppView {
            app: app.clone(),
            slug,
        })
    }

    /// The release that runs (the latest that succeeded).
    pub fn current_release(&self, user: &Account, app: &App) -> Result<Option<Release>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Ok(self.store.current_release(&app.id)?)
    }

    /// A slice of the release ledger.
    pub fn releases(&self, user: &Account, app: &App, range: ReleaseRange) -> Result<Vec<Release>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Ok(self.store.releases(&app.id, range)?)
    }

    /// A release by id or version.
    pub fn release(&self, user: &Account, app: &App, id_or_version: &str) -> Result<Release> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Ok(self.store.release(&app.id, id_or_version)?)
    }

    /// The app's builds, newest first.
    pub fn builds(&self, user: &Account, app: &App) -> Result<Vec<Build>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Ok(self.store.builds(&app.id)?)
    }

    /// The app's newest `limit` builds, newest first, without their output (the
    /// dashboard's list, refreshed while a page is open).
    pub fn recent_builds(&self, user: &Account, app: &App, limit: u32) -> Result<Vec<Build>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Ok(self.store.recent_builds(&app.id, limit)?)
    }

    pub fn build(&self, user: &Account, app: &App, build_id: &str) -> Result<Build> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Ok(self.store.build(&app.id, build_id)?)
    }

    /// A build by its id alone, and its app; another user's builds are missing.
    pub fn build_by_id(&self, user: &Account, build_id: &str) -> Result<(App, Build)> {
        let missing = || PlatformError::NotFound {
            resource: "build",
            message: "Couldn't find that build.".into(),
        };
        let build = self.store.build_by_id(build_id).map_err(|e| match e {
            kiln_store::StoreError::NotFound { .. } => missing(),
            e => e.into(),
        })?;
        let app = self
            .app_for(user, &build.app_id, kiln_model::access::Need::View)
            .map_err(|_| missing())?;
        Ok((app, build))
    }

    /// A finished build's whole output, by the build's id: a random UUID known only to the
    /// app's owner, which is the capability (as Heroku's output stream URLs).
    pub fn build_output(&self, build_id: &str) -> Result<String> {
        self.store
            .build_by_id(build_id)
            .map(|b| b.output)
            .map_err(|e| match e {
                kiln_store::StoreError::NotFound { .. } => PlatformError::NotFound {
                    resource: "build",
                    message: "Couldn't find that build.".into(),
                },
                e => e.into(),
            })
    }

    pub fn buildpacks(&self, user: &Account, app: &App) -> Result<Vec<String>> {
        self.app_for(user, &app.id, kiln_model::access::Need::View)?;
        Ok(self.store.buildpacks(&app.id)?)
    }

    /// The stack apps are built on and run on: the only one this Kiln has.
    pub fn stack(&self) -> &str {
        &self.settings.stack
    }

    /// The API's public base URL (for git and log URLs).
    pub fn api_url(&self) -> &str {
        self.settings.api_url.trim_end_matches('/')
    }

    /// Opens a log session for the app; returns its secret id.
    pub fn create_log_session(
        &self,
        caller: &crate::Caller,
        app: &App,
        filter: LogFilter,
        lines: usize,
        tail: bool,
        search: LogSearch,
    ) -> Result<String> {
        self.app_for(&caller.account, &app.id, kiln_model::access::Need::View)?;
        let opener: Arc<dyn std::any::Any + Send + Sync> = Arc::new(caller.clone());
        Ok(self
            .logs
            .create_session(&app.id, filter, lines, tail, search, Some(opener))?)
    }

    /// Kiln's search over an app's retained history, beyond Heroku's filters: `since` and
    /// `until` (RFC 3339) and `grep`, a regular expression the messages must match (linear
    /// time whatever the pattern: no backtracking).
    pub fn log_search(
        &self,
        since: Option<&str>,
        until: Option<&str>,
        grep: Option<&str>,
    ) -> Result<LogSearch> {
        let time =
            |field: &'static str, s: Option<&str>| -> Result<Option<kiln_model::Timestamp>> {
                match s {
                    None => Ok(None),
                    Some(t) => kiln_model::Timestamp::parse_rfc3339(t)
                        .map(Some)
                        .ok_or_else(|| {
                            PlatformError::Invalid(kiln_model::Invalid::new(
                                field,
                                format!("{field} must be a time such as 2026-12-05T10:00:00Z"),
                            ))
                        }),
                }
            };
        let since = time("since", since)?;
        let until = time("until", until)?;
        if let (Some(s), Some(u)) = (since, until) {
            if s > u {
                return Err(PlatformError::Invalid(kiln_model::Invalid::new(
                    "until",
                    "until is before since",
                )));
            }
        }
        let grep = match grep {
            None => None,
            Some(p) => {
                if p.len() > 1000 {
                    return Err(PlatformError::Invalid(kiln_model::Invalid::new(
                        "grep",
                        "grep is longer than 1000 characters",
                    )));
                }
                let re = regex_lite::RegexBuilder::new(p)
                    .size_limit(1 << 20)
                    .nest_limit(64)
                    .build()
                    .map_err(|e| {
                        PlatformError::Invalid(kiln_model::Invalid::new(
                            "grep",
                            format!("grep is not a regular expression: {e}"),
                        ))
                    })?;
                let f: Arc<dyn Fn(&str) -> bool + Send + Sync> = Arc::new(move |m| re.is_match(m));
                Some(f)
            }
        };
        Ok(LogSearch { since, until, grep })
    }

    /// The session behind a secret id (the id is the credential, as Heroku's `logplex_url`):
    /// its first lines and, when it follows, the tail, subscribed before the history is read
    /// so that no line falls between the two.
    pub fn open_log_session(&self, id: &str) -> Option<LogSessionStream> {
        let session = self.logs.session(id)?;
        // The opener must still be allowed to read the app's logs, now and for as long as
        // the stream lasts.
        let caller = session
            .opener
            .as_ref()?
            .clone()
            .downcast::<crate::Caller>()
            .ok()?;
        let still = self
            .authenticate(&caller.key_for_recheck())
            .ok()
            .flatten()
            .is_some_and(|c| {
                c.account.id == caller.account.id
                    && self
                        .app_for(&c.account, &session.app_id, kiln_model::access::Need::View)
                        .is_ok()
            });
        if !still {
            return None;
        }
        let me = self.myself()?;
        let app_id = session.app_id.clone();
        let ended = Box::pin(async move {
            me.access_ended(&caller, Some(&app_id), kiln_model::access::Need::View)
                .await
        });
        let tail = session
            .tail
            .then(|| self.logs.tail(&session.app_id, session.filter.clone()));
        let history = self.logs.search(
            &session.app_id,
            session.lines,
            &session.filter,
            &session.search,
        );
        Some(LogSessionStream {
            history,
            tail,
            ended,
        })
    }

    /// Writes a line to an app's log stream (a door reporting what it saw, such as a `kiln
    /// run` connection ending).
    pub fn log(&self, app_id: &str, line: LogLine) {
        kiln_model::log::LogSink::emit(self.logs.as_ref(), app_id, line);
    }
}
