//! The one authorization module: every use case that touches an app asks [`Platform::app_for`]
//! with what it needs, and this answers from the user's relation to the app (owner,
//! collaborator, team role) through `kiln_model::access::decide`.
//!
//! An app the user may not see is reported exactly as an app that does not exist: the same
//! error, the same message, and the same work (one query either way, see
//! `Store::access_facts`), so neither the answer nor its timing tells a stranger which names
//! are taken.

use crate::{Platform, PlatformError, Result};
use kiln_model::access::{Decision, Need, Relation, decide};
use kiln_model::records::AccessFacts;
use kiln_store::{Account, App, StoreError};

pub(crate) fn relation_of(facts: &AccessFacts) -> Relation {
    match facts.team {
        Some(role) => Relation::Team {
            role,
            granted: facts.granted.unwrap_or_default(),
        },
        None if facts.owner => Relation::Owner,
        None => match facts.granted {
            Some(p) => Relation::Collaborator(p),
            None => Relation::Stranger,
        },
    }
}

pub(crate) fn no_such_app() -> PlatformError {
    PlatformError::NotFound {
        resource: "app",
        message: "Couldn't find that app.".into(),
    }
}

fn refused(app: &str, need: Need) -> PlatformError {
    let what = match need {
        Need::View => "view",
        Need::Deploy => "deploy",
        Need::Operate => "operate",
        Need::Manage => "manage",
        Need::Owner => {
            return PlatformError::Forbidden(format!(
                "Only the owner of {app} (or, for a team app, a team admin or a user with the manage permission) may do this."
            ));
        }
    };
    PlatformError::Forbidden(format!(
        "You need the {what} permission on {app} to do this."
    ))
}

impl Platform {
    /// The user's relation to an app (`Stranger` when it does not exist).
    pub fn relation(&self, user: &Account, app: &str) -> Result<Relation> {
        Ok(relation_of(&self.store.access_facts(app, &user.id)?))
    }

    /// Looks an app up and checks the user may do what `need` says to it: 404 as if absent
    /// when they have nothing to do with it, 403 when they may see it but not do this.
    pub fn app_for(&self, user: &Account, id_or_name: &str, need: Need) -> Result<App> {
        self.app_and_relation(user, id_or_name, need)
            .map(|(a, _)| a)
    }

    /// As [`Platform::app_for`], with the relation that allowed it.
    pub fn app_and_relation(
        &self,
        user: &Account,
        id_or_name: &str,
        need: Need,
    ) -> Result<(App, Relation)> {
        let relation = self.relation(user, id_or_name)?;
        match decide(relation, need) {
            Decision::Hidden => Err(no_such_app()),
            Decision::Forbidden => {
                // The user may see the app, so its name is no secret to them.
                let name = self
                    .store
                    .app(id_or_name)
                    .map(|a| a.name)
                    .unwrap_or_else(|_| id_or_name.to_string());
                Err(refused(&name, need))
            }
            Decision::Allow => {
                let app = self.store.app(id_or_name).map_err(|e| match e {
                    StoreError::NotFound { .. } => no_such_app(),
                    other => other.into(),
                })?;
                Ok((app, relation))
            }
        }
    }
}
