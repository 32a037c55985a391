//! Who may do what to an app: the rules of Kiln's one authorization module, as pure
//! functions (the platform's `authz` asks them with facts it read from the store).
//!
//! Heroku's model, which the `heroku` CLI expects:
//! - a **personal app** has an owner and collaborators. A collaborator may do everything the
//!   owner can except delete, rename or transfer the app and change paid plans
//!   (devcenter "collaborating"); Kiln also lets an owner narrow a collaborator to some of
//!   the app permissions below (`access:add --permissions`), which Heroku keeps for teams.
//! - a **team app** belongs to a team. Team admins hold every permission on every team app;
//!   members and viewers see every team app, and hold on each what they were granted
//!   (`access:add --permissions` / `access:update`). A viewer is never granted more than
//!   `view`. A user outside the team may be a collaborator with permissions too.
//! - the **permissions** (devcenter "app permissions"): `view` (see the app, its activity,
//!   dynos, add-ons and logs), `deploy` (push code, read and change config vars, one-off
//!   dynos, rollback, free add-ons, data), `operate` (restart, scale, maintenance) and
//!   `manage` (collaborators, rename, delete, transfer, paid plans).
//!
//! A user with no relation to an app is told it does not exist (404, the same answer as for
//! an app that does not exist), so app names do not leak; one who may see it but not do the
//! thing asked is told so (403).

use crate::Invalid;
use std::fmt;

/// One of Heroku's four app permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    View,
    Deploy,
    Operate,
    Manage,
}

impl Permission {
    pub const ALL: [Permission; 4] = [
        Permission::View,
        Permission::Deploy,
        Permission::Operate,
        Permission::Manage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Permission::View => "view",
            Permission::Deploy => "deploy",
            Permission::Operate => "operate",
            Permission::Manage => "manage",
        }
    }

    /// As `GET /teams/permissions` describes them.
    pub fn description(self) -> &'static str {
        match self {
            Permission::View => "Can view the app, its activity, resources and logs.",
            Permission::Deploy => {
                "Can deploy, read and change config vars, run one-off dynos, roll back and use the app's data."
            }
            Permission::Operate => {
                "Can restart and scale dynos and turn maintenance mode on and off."
            }
            Permission::Manage => {
                "Can manage collaborators, rename, delete and transfer the app, and change paid add-on plans."
            }
        }
    }

    pub fn parse(s: &str) -> Result<Permission, Invalid> {
        Permission::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| {
                Invalid::new(
                    "permissions",
                    format!(
                        "Unknown permission {}: use view, deploy, operate or manage",
                        crate::records::shown(s)
                    ),
                )
            })
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of app permissions, stored as a small bit set. `view` is always in a non-empty set:
/// every other permission implies seeing the app (the CLI adds it too).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    pub const NONE: Permissions = Permissions(0);
    pub const ALL: Permissions = Permissions(0b1111);
    pub const VIEW: Permissions = Permissions(1);

    pub fn of(list: impl IntoIterator<Item = Permission>) -> Permissions {
        let mut bits = list.into_iter().fold(0u8, |b, p| b | p.bit());
        if bits != 0 {
            bits |= Permission::View.bit();
        }
        Permissions(bits)
    }

    /// Parses names as the API receives them (`["deploy", "view"]`); an empty list is `view`.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Permissions, Invalid> {
        let mut list = Vec::new();
        for (i, n) in names.into_iter().enumerate() {
            if i >= 16 {
                return Err(Invalid::new("permissions", "Too many permissions"));
            }
            list.push(Permission::parse(n)?);
        }
        list.push(Permission::View);
        Ok(Permissions::of(list))
    }

    pub fn from_bits(bits: i64) -> Permissions {
        Permissions(u8::try_from(bits & 0b1111).unwrap_or(0))
    }

    pub fn bits(self) -> i64 {
        i64::from(self.0)
    }

    pub fn has(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |p| self.has(*p))
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(Permission::name))
            .finish()
    }
}

/// A member's role in a team (schema `team-member.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TeamRole {
    Admin,
    Member,
    Viewer,
}

impl TeamRole {
    pub fn name(self) -> &'static str {
        match self {
            TeamRole::Admin => "admin",
            TeamRole::Member => "member",
            TeamRole::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Result<TeamRole, Invalid> {
        match s.trim() {
            "admin" => Ok(TeamRole::Admin),
            "member" => Ok(TeamRole::Member),
            "viewer" => Ok(TeamRole::Viewer),
            other => Err(Invalid::new(
                "role",
                format!(
                    "Unknown team role {}: use admin, member or viewer",
                    crate::records::shown(other)
                ),
            )),
        }
    }

    /// The most a member with this role may be granted on an app of the team.
    pub fn grantable(self) -> Permissions {
        match self {
            TeamRole::Admin | TeamRole::Member => Permissions::ALL,
            TeamRole::Viewer => Permissions::VIEW,
        }
    }
}

/// What a use case needs. `Owner` is for what Heroku keeps from personal-app collaborators:
/// deleting, renaming and transferring the app and paid plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Need {
    View,
    Deploy,
    Operate,
    Manage,
    Owner,
}

impl Need {
    fn permission(self) -> Permission {
        match self {
            Need::View => Permission::View,
            Need::Deploy => Permission::Deploy,
            Need::Operate => Permission::Operate,
            Need::Manage | Need::Owner => Permission::Manage,
        }
    }
}

/// A user's relation to one app, as read from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The owner of a personal app.
    Owner,
    /// A collaborator on a personal app.
    Collaborator(Permissions),
    /// A member of the team that owns a team app, with what they were granted on this app
    /// (an outside collaborator on a team app has `role: None`).
    Team {
        role: Option<TeamRole>,
        granted: Permissions,
    },
    /// Nothing: the app does not exist as far as this user can tell.
    Stranger,
}

/// The one answer: go ahead, "you may not" (403), or "no such app" (404).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Forbidden,
    Hidden,
}

impl Relation {
    /// The permissions this relation holds on the app.
    pub fn permissions(self) -> Permissions {
        match self {
            Relation::Owner => Permissions::ALL,
            Relation::Collaborator(p) => p,
            Relation::Team {
                role: Some(TeamRole::Admin),
                ..
            } => Permissions::ALL,
            Relation::Team {
                role: Some(role),
                granted,
            } => Permissions::VIEW.union(Permissions(granted.0 & role.grantable().0)),
            Relation::Team {
                role: None,
                granted,
            } => granted,
            Relation::Stranger => Permissions::NONE,
        }
    }

    /// The name the CLI shows for this relation (`role` in a collaborator listing).
    pub fn role_name(self) -> &'static str {
        match self {
            Relation::Owner => "owner",
            Relation::Collaborator(_) => "collaborator",
            Relation::Team { role: Some(r), .. } => r.name(),
            Relation::Team { role: None, .. } => "collaborator",
            Relation::Stranger => "none",
        }
    }
}

/// Decides whether a user with this relation to an app may do what a use case needs.
pub fn decide(relation: Relation, need: Need) -> Decision {
    let held = relation.permissions();
    if held.is_empty() {
        return Decision::Hidden;
    }
    let allowed = match (relation, need) {
        // Only the owner deletes, renames or transfers a personal app.
        (Relation::Owner, _) => true,
        (Relation::Collaborator(_), Need::Owner) => false,
        _ => held.has(need.permission()),
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::Forbidden
    }
}

/// The shortest and longest password accepted. Long passphrases are welcome; the upper
/// bound only keeps argon2 from hashing megabytes someone posted.
pub const PASSWORD_MIN: usize = 10;
pub const PASSWORD_MAX: usize = 1024;

pub fn validate_password(password: &str) -> Result<(), Invalid> {
    let n = password.chars().count();
    if n < PASSWORD_MIN {
        return Err(Invalid::new(
            "password",
            format!("A password must be at least {PASSWORD_MIN} characters long"),
        ));
    }
    if password.len() > PASSWORD_MAX || password.contains('\0') {
        return Err(Invalid::new(
            "password",
            format!("A password must be at most {PASSWORD_MAX} bytes, without NUL"),
        ));
    }
    Ok(())
}

/// Team names follow app names' rules (they show up as `<team>@herokumanager.com`): 2 to 30
/// lowercase letters, digits and dashes, starting with a letter.
pub fn validate_team_name(name: &str) -> Result<(), Invalid> {
    // `apps` and `permissions` are paths under `/teams/`, not names.
    let ok = (2..=30).contains(&name.len())
        && !matches!(name, "apps" | "permissions")
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "name",
            format!(
                "Invalid team name {}: use 2 to 30 lowercase letters, digits and dashes, starting with a letter",
                crate::records::shown(name)
            ),
        ))
    }
}

/// The owner email Heroku gives a team app, which the `heroku` CLI reads to tell team apps
/// from personal ones (`lib/team-utils.ts`).
pub fn team_owner_email(team: &str) -> String {
    format!("{team}@herokumanager.com")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(list: &[Permission]) -> Permissions {
        Permissions::of(list.iter().copied())
    }

    #[test]
    fn strangers_never_learn_the_app_exists() {
        for need in [
            Need::View,
            Need::Deploy,
            Need::Operate,
            Need::Manage,
            Need::Owner,
        ] {
            assert_eq!(decide(Relation::Stranger, need), Decision::Hidden);
            // An empty grant is no relation at all.
            assert_eq!(
                decide(Relation::Collaborator(Permissions::NONE), need),
                Decision::Hidden
            );
        }
    }

    #[test]
    fn personal_collaborators_do_all_but_owner_things() {
        let c = Relation::Collaborator(Permissions::ALL);
        for need in [Need::View, Need::Deploy, Need::Operate, Need::Manage] {
            assert_eq!(decide(c, need), Decision::Allow, "{need:?}");
        }
        assert_eq!(decide(c, Need::Owner), Decision::Forbidden);
        assert_eq!(decide(Relation::Owner, Need::Owner), Decision::Allow);
    }

    #[test]
    fn narrowed_collaborators_get_only_what_they_hold() {
        let c = Relation::Collaborator(perms(&[Permission::Deploy]));
        assert_eq!(decide(c, Need::View), Decision::Allow);
        assert_eq!(decide(c, Need::Deploy), Decision::Allow);
        assert_eq!(decide(c, Need::Operate), Decision::Forbidden);
        assert_eq!(decide(c, Need::Manage), Decision::Forbidden);
    }

    #[test]
    fn team_roles() {
        let admin = Relation::Team {
            role: Some(TeamRole::Admin),
            granted: Permissions::NONE,
        };
        assert_eq!(decide(admin, Need::Owner), Decision::Allow);
        let member = Relation::Team {
            role: Some(TeamRole::Member),
            granted: Permissions::NONE,
        };
        assert_eq!(decide(member, Need::View), Decision::Allow);
        assert_eq!(decide(member, Need::Deploy), Decision::Forbidden);
        let manager = Relation::Team {
            role: Some(TeamRole::Member),
            granted: perms(&[Permission::Manage]),
        };
        assert_eq!(decide(manager, Need::Owner), Decision::Allow);
        // A viewer's grant is capped at view, whatever a row says.
        let viewer = Relation::Team {
            role: Some(TeamRole::Viewer),
            granted: Permissions::ALL,
        };
        assert_eq!(decide(viewer, Need::View), Decision::Allow);
        for need in [Need::Deploy, Need::Operate, Need::Manage, Need::Owner] {
            assert_eq!(decide(viewer, need), Decision::Forbidden);
        }
        let outsider = Relation::Team {
            role: None,
            granted: Permissions::NONE,
        };
        assert_eq!(decide(outsider, Need::View), Decision::Hidden);
    }

    #[test]
    fn permission_names_round_trip_and_view_is_implied() {
        let p = Permissions::parse(["operate", "deploy"]).unwrap();
        let names: Vec<_> = p.iter().map(Permission::name).collect();
        assert_eq!(names, ["view", "deploy", "operate"]);
        assert_eq!(Permissions::from_bits(p.bits()), p);
        assert!(Permissions::parse(["root"]).is_err());
        assert!(Permissions::parse(["view\0"]).is_err());
        assert!(TeamRole::parse("owner").is_err());
        assert_eq!(Permissions::from_bits(-1), Permissions::ALL);
    }

    #[test]
    fn team_names_and_passwords() {
        assert!(validate_team_name("acme-eng").is_ok());
        for bad in [
            "",
            "a",
            "apps",
            "permissions",
            "Acme",
            "9lives",
            "a b",
            "acme@x",
            &"a".repeat(31),
            "é-team",
        ] {
            assert!(validate_team_name(bad).is_err(), "{bad}");
        }
        assert!(validate_password("correct horse").is_ok());
        assert!(validate_password("short").is_err());
        assert!(validate_password(&"x".repeat(2000)).is_err());
        assert!(validate_password("0123456789\0").is_err());
    }
}
