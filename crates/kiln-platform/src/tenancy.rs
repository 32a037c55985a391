//! Sharing apps: collaborators with permissions, teams and their members, app transfers and
//! the audit log. Each use case asks the authorization module first (`authz`), and every
//! change that narrows someone's access wakes their open sessions so they end at once.

use crate::{Platform, PlatformError, Result};
use kiln_model::Timestamp;
use kiln_model::access::{Need, Permission, Permissions, Relation, TeamRole};
use kiln_model::records::{AppTransfer, AuditEntry, Collaborator, Team, TeamMember, TransferState};
use kiln_store::{Account, App, Slug, StoreError};

/// One line of `access`: a user and what they hold on an app.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    /// The collaborator row's id; the user's id for the owner and team admins.
    pub id: String,
    pub app_id: String,
    pub app_name: String,
    pub user_id: String,
    pub email: String,
    /// `owner`, `admin`, `member`, `viewer` or `collaborator`.
    pub role: &'static str,
    pub permissions: Permissions,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What `apps:transfer` did.
#[derive(Debug)]
pub enum TransferOutcome {
    /// The app moved at once (into a team the user belongs to).
    Moved(App),
    /// The recipient has to accept.
    Pending(AppTransfer),
}

fn no_such_team() -> PlatformError {
    PlatformError::NotFound {
        resource: "team",
        message: "Couldn't find that team.".into(),
    }
}

fn no_such_user() -> PlatformError {
    PlatformError::NotFound {
        resource: "user",
        message: "Couldn't find that user.".into(),
    }
}

impl Platform {
    fn account_named(&self, email_or_id: &str) -> Result<Account> {
        if email_or_id.is_empty() || email_or_id.len() > 254 {
            return Err(no_such_user());
        }
        self.store
            .find_account(email_or_id.trim())?
            .ok_or_else(no_such_user)
    }

    /// Records who did what to an app: an `app[api]` line, which `api_log` also keeps in the
    /// audit log.
    pub(crate) fn audit(&self, app_id: &str, user: &Account, action: &str) {
        self.api_log(app_id, format!("{action} by user {}", user.email));
    }

    /// The app's audit log, newest last.
    pub fn audit_log(&self, user: &Account, app: &str, limit: u32) -> Result<Vec<AuditEntry>> {
        let app = self.app_for(user, app, Need::View)?;
        Ok(self.store.audit_log(&app.id, limit.clamp(1, 10_000))?)
    }

    // ---- collaborators ----

    /// Everyone with access to the app: the owner (or the team's admins) first, then the
    /// collaborators.
    pub fn access_list(&self, user: &Account, app: &str) -> Result<Vec<AccessEntry>> {
        let app = self.app_for(user, app, Need::View)?;
        let mut out = Vec::new();
        let team_roles = match &app.team {
            Some(team) => {
                let members = self.store.team_members(&team.id)?;
                for m in members.iter().filter(|m| m.role == TeamRole::Admin) {
                    out.push(AccessEntry {
                        id: m.account_id.clone(),
                        app_id: app.id.clone(),
                        app_name: app.name.clone(),
                        user_id: m.account_id.clone(),
                        email: m.email.clone(),
                        role: "admin",
                        permissions: Permissions::ALL,
                        created_at: m.created_at,
                        updated_at: m.updated_at,
                    });
                }
                members
                    .into_iter()
                    .map(|m| (m.account_id, m.role))
                    .collect()
            }
            None => {
                let owner = self.store.account(&app.owner_id)?;
                out.push(AccessEntry {
                    id: owner.id.clone(),
                    app_id: app.id.clone(),
                    app_name: app.name.clone(),
                    user_id: owner.id,
                    email: owner.email,
                    role: "owner",
                    permissions: Permissions::ALL,
                    created_at: app.created_at,
                    updated_at: app.updated_at,
                });
                std::collections::HashMap::new()
            }
        };
        for c in self.store.collaborators(&app.id)? {
            let role = team_roles.get(&c.account_id).copied();
            if role == Some(TeamRole::Admin) {
                continue;
            }
            let relation = match &app.team {
                Some(_) => Relation::Team {
                    role,
                    granted: c.permissions,
                },
                None => Relation::Collaborator(c.permissions),
            };
            out.push(entry(&c, relation));
        }
        Ok(out)
    }

    /// Adds a collaborator (`access:add`). Without permissions, a personal app's
    /// collaborator holds everything but the owner's rights, as on Heroku; a team app's
    /// holds `view`.
    pub fn add_collaborator(
        &self,
        user: &Account,
        app: &str,
        email: &str,
        permissions: Option<Permissions>,
    ) -> Result<AccessEntry> {
        self.grant(user, app, email, permissions, false)
    }

    /// Changes what a collaborator holds (`access:update`).
    pub fn update_collaborator(
        &self,
        user: &Account,
        app: &str,
        email: &str,
        permissions: Permissions,
    ) -> Result<AccessEntry> {
        self.grant(user, app, email, Some(permissions), true)
    }

    fn grant(
        &self,
        user: &Account,
        app: &str,
        email: &str,
        permissions: Option<Permissions>,
        update: bool,
    ) -> Result<AccessEntry> {
        let app = self.app_for(user, app, Need::Manage)?;
        let target = self.account_named(email)?;
        let role = match &app.team {
            Some(t) => self.store.team_member(&t.id, &target.id)?.map(|m| m.role),
            None => None,
        };
        if app.team.is_none() && target.id == app.owner_id {
            return Err(PlatformError::Conflict(
                "The owner already holds every permission on the app.".into(),
            ));
        }
        if role == Some(TeamRole::Admin) {
            return Err(PlatformError::Conflict(format!(
                "{} is an admin of the team and already holds every permission on the app.",
                target.email
            )));
        }
        let permissions = permissions.unwrap_or(if app.team.is_some() {
            Permissions::VIEW
        } else {
            Permissions::ALL
        });
        if role == Some(TeamRole::Viewer) && permissions != Permissions::VIEW {
            return Err(kiln_model::Invalid::new(
                "permissions",
                format!(
                    "{} is a viewer of the team and may only hold view",
                    target.email
                ),
            )
            .into());
        }
        let c = self
            .store
            .set_collaborator(&app.id, &target.id, permissions, update)?;
        let names: Vec<_> = permissions.iter().map(Permission::name).collect();
        self.audit(
            &app.id,
            user,
            &format!(
                "{} {} ({})",
                if update { "Update" } else { "Add" },
                target.email,
                names.join(", ")
            ),
        );
        // Narrowing a grant ends what the old one allowed.
        self.credentials_changed();
        let relation = match &app.team {
            Some(_) => Relation::Team {
                role,
                granted: c.permissions,
            },
            None => Relation::Collaborator(c.permissions),
        };
        Ok(entry(&c, relation))
    }

    /// Removes a collaborator (`access:remove`); anyone may remove themselves
    /// (`apps:leave`).
    pub fn remove_collaborator(
        &self,
        user: &Account,
        app: &str,
        email: &str,
    ) -> Result<AccessEntry> {
        let target = self.account_named(email).ok();
        // Leaving needs only to see the app; removing someone else needs `manage`, asked
        // before anything about that someone is told.
        let need = match &target {
            Some(t) if t.id == user.id => Need::View,
            _ => Need::Manage,
        };
        let app = self.app_for(user, app, need)?;
        let target = target.ok_or_else(|| PlatformError::NotFound {
            resource: "collaborator",
            message: "Couldn't find that collaborator.".into(),
        })?;
        let c = self.store.remove_collaborator(&app.id, &target.id)?;
        self.audit(&app.id, user, &format!("Remove {}", target.email));
        self.credentials_changed();
        Ok(entry(&c, Relation::Collaborator(c.permissions)))
    }

    // ---- teams ----

    /// Any user may make a team; they become its first admin.
    pub fn create_team(&self, user: &Account, name: &str) -> Result<(Team, TeamRole)> {
        Ok((self.store.create_team(name, &user.id)?, TeamRole::Admin))
    }

    pub fn teams(&self, user: &Account) -> Result<Vec<(Team, TeamRole)>> {
        Ok(self.store.teams_of(&user.id)?)
    }

    /// A team the user belongs to, with their role; `admin` asks for an admin. A team the
    /// user is not in is reported missing.
    pub fn team_for(&self, user: &Account, team: &str, admin: bool) -> Result<(Team, TeamRole)> {
        if team.is_empty() || team.len() > 64 {
            return Err(no_such_team());
        }
        let t = self.store.team(team).map_err(|e| match e {
            StoreError::NotFound { .. } => no_such_team(),
            other => other.into(),
        })?;
        let role = self
            .store
            .team_member(&t.id, &user.id)?
            .map(|m| m.role)
            .ok_or_else(no_such_team)?;
        if admin && role != TeamRole::Admin {
            return Err(PlatformError::Forbidden(format!(
                "Only an admin of the team {} may do this.",
                t.name
            )));
        }
        Ok((t, role))
    }

    pub fn team_members(&self, user: &Account, team: &str) -> Result<Vec<TeamMember>> {
        let (t, _) = self.team_for(user, team, false)?;
        Ok(self.store.team_members(&t.id)?)
    }

    /// Adds a member or changes a member's role (`members:add`, `members:set`): team admins
    /// only, so no one raises their own role.
    pub fn set_team_member(
        &self,
        user: &Account,
        team: &str,
        email: &str,
        role: TeamRole,
    ) -> Result<TeamMember> {
        let (t, _) = self.team_for(user, team, true)?;
        let target = self.account_named(email)?;
        let m = self.store.set_team_member(&t.id, &target.id, role)?;
        self.credentials_changed();
        Ok(m)
    }

    /// Removes a member (`members:remove`): an admin, or the member themselves.
    pub fn remove_team_member(
        &self,
        user: &Account,
        team: &str,
        email: &str,
    ) -> Result<TeamMember> {
        // Leaving needs membership; removing another needs an admin, asked first.
        let target = self.account_named(email).ok();
        let leaving = target.as_ref().is_some_and(|t| t.id == user.id);
        let (t, _) = self.team_for(user, team, !leaving)?;
        let target = target.ok_or_else(no_such_user)?;
        let m = self.store.remove_team_member(&t.id, &target.id)?;
        self.credentials_changed();
        Ok(m)
    }

    pub fn team_apps(&self, user: &Account, team: &str) -> Result<Vec<(App, Option<Slug>)>> {
        let (t, _) = self.team_for(user, team, false)?;
        Ok(self.store.team_apps(&t.id)?)
    }

    /// The team a new app goes to: the user must be an admin or member (viewers do not
    /// create apps).
    pub(crate) fn team_for_new_app(&self, user: &Account, team: &str) -> Result<Team> {
        let (t, role) = self.team_for(user, team, false)?;
        if role == TeamRole::Viewer {
            return Err(PlatformError::Forbidden(format!(
                "Viewers of the team {} may not create apps in it.",
                t.name
            )));
        }
        Ok(t)
    }

    // ---- transfers ----

    /// `apps:transfer`: into a team the user belongs to (at once), or to another user
    /// (pending until they accept).
    pub fn transfer_app(
        &self,
        user: &Account,
        app: &str,
        recipient: &str,
    ) -> Result<TransferOutcome> {
        let app = self.app_for(user, app, Need::Owner)?;
        if !recipient.contains('@') {
            let team = self.team_for_new_app(user, recipient)?;
            if app.team.as_ref().is_some_and(|t| t.id == team.id) {
                return Err(PlatformError::Conflict(format!(
                    "{} already belongs to {}.",
                    app.name, team.name
                )));
            }
            let moved = self.store.move_app(&app.id, &user.id, Some(&team.id))?;
            // Whoever moved it keeps what they had, even as a plain member.
            if self.store.team_member(&team.id, &user.id)?.map(|m| m.role) != Some(TeamRole::Admin)
            {
                let _ = self
                    .store
                    .set_collaborator(&app.id, &user.id, Permissions::ALL, false);
            }
            self.audit(&app.id, user, &format!("Transfer to team {}", team.name));
            self.credentials_changed();
            return Ok(TransferOutcome::Moved(moved));
        }
        let to = self.account_named(recipient)?;
        if app.team.is_none() && to.id == app.owner_id {
            return Err(PlatformError::Conflict(format!(
                "{} already owns {}.",
                to.email, app.name
            )));
        }
        let t = self.store.create_app_transfer(&app.id, &user.id, &to.id)?;
        self.audit(
            &app.id,
            user,
            &format!("Transfer to {} requested", to.email),
        );
        Ok(TransferOutcome::Pending(t))
    }

    /// The transfers the user made or was offered.
    pub fn transfers(&self, user: &Account) -> Result<Vec<AppTransfer>> {
        Ok(self.store.app_transfers_of(&user.id)?)
    }

    /// A transfer the user made or was offered; anyone else's is reported missing.
    pub fn transfer(&self, user: &Account, id: &str) -> Result<AppTransfer> {
        let missing = || PlatformError::NotFound {
            resource: "app-transfer",
            message: "Couldn't find that app transfer.".into(),
        };
        if id.is_empty() || id.len() > 64 {
            return Err(missing());
        }
        let t = self.store.app_transfer(id).map_err(|_| missing())?;
        if t.owner_id != user.id && t.recipient_id != user.id {
            return Err(missing());
        }
        Ok(t)
    }

    /// The recipient accepts or declines; the one who asked may withdraw (decline).
    pub fn settle_transfer(
        &self,
        user: &Account,
        id: &str,
        state: TransferState,
    ) -> Result<AppTransfer> {
        let t = self.transfer(user, id)?;
        let allowed = match state {
            TransferState::Accepted => t.recipient_id == user.id,
            TransferState::Declined => true,
            TransferState::Pending => false,
        };
        if !allowed {
            return Err(PlatformError::Forbidden(
                "Only the recipient may accept an app transfer.".into(),
            ));
        }
        let settled = self.store.settle_app_transfer(&t.id, state)?;
        self.audit(
            &t.app_id,
            user,
            &format!("Transfer to {} {}", t.recipient_email, state.as_str()),
        );
        self.credentials_changed();
        Ok(settled)
    }
}

fn entry(c: &Collaborator, relation: Relation) -> AccessEntry {
    AccessEntry {
        id: c.id.clone(),
        app_id: c.app_id.clone(),
        app_name: c.app_name.clone(),
        user_id: c.account_id.clone(),
        email: c.email.clone(),
        role: relation.role_name(),
        permissions: relation.permissions(),
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}
