//! Who else may use an app: teams and their members, collaborators with permissions, app
//! transfers, and the audit log of who did what. The rules (who may be granted what) are
//! `kiln_model::access`'s; this is their SQL.

use super::common::{DbContext, all_rows, new_id, one_row, require_account, resolve_app, ts};
use crate::{
    AccessFacts, AppTransfer, Collaborator, Result, StoreError, Team, TeamMember, TransferState,
};
use kiln_model::Timestamp;
use kiln_model::access::{Permissions, TeamRole, validate_team_name};
use kiln_model::records::AuditEntry;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Schema step 9: teams, collaborators, transfers and the audit log.
pub(super) const MIGRATION: &str = r#"
    CREATE TABLE teams (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE team_members (
        team_id    TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        role       TEXT NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (team_id, account_id)
    ) STRICT;
    CREATE INDEX team_members_account ON team_members(account_id);

    ALTER TABLE apps ADD COLUMN team_id TEXT REFERENCES teams(id);
    CREATE INDEX apps_team ON apps(team_id);

    CREATE TABLE collaborators (
        id          TEXT PRIMARY KEY,
        app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        permissions INTEGER NOT NULL CHECK (permissions BETWEEN 1 AND 15),
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        UNIQUE (app_id, account_id)
    ) STRICT;
    CREATE INDEX collaborators_account ON collaborators(account_id);

    CREATE TABLE app_transfers (
        id           TEXT PRIMARY KEY,
        app_id       TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        owner_id     TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        recipient_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        state        TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'declined')),
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX app_transfers_recipient ON app_transfers(recipient_id);

    CREATE TABLE audit (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        app_id     TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        account_id TEXT,
        email      TEXT NOT NULL,
        action     TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX audit_app ON audit(app_id, seq);
"#;

/// The ids of the apps an account may see (bound to `?1`): personal apps it owns, apps it
/// collaborates on, and every app of the teams it belongs to.
pub(super) const VISIBLE_APPS: &str = "SELECT id FROM apps WHERE owner_id = ?1 AND team_id IS NULL
     UNION SELECT app_id FROM collaborators WHERE account_id = ?1
     UNION SELECT a.id FROM apps a JOIN team_members m ON m.team_id = a.team_id WHERE m.account_id = ?1";

fn role_of(row: &Row<'_>, idx: usize) -> rusqlite::Result<TeamRole> {
    let s: String = row.get(idx)?;
    TeamRole::parse(&s).map_err(|e| super::common::bad_column(idx, e.message))
}

/// What the authorization module needs to know about one user and one app, in one query.
/// A missing app gives empty facts: the same answer, and the same work, as an app the user
/// has nothing to do with.
pub(super) fn access_facts(conn: &Connection, app: &str, account_id: &str) -> Result<AccessFacts> {
    let row = conn
        .query_row(
            "SELECT a.owner_id = ?2 AND a.team_id IS NULL,
                    a.team_id IS NOT NULL,
                    (SELECT role FROM team_members m WHERE m.team_id = a.team_id AND m.account_id = ?2),
                    (SELECT permissions FROM collaborators c WHERE c.app_id = a.id AND c.account_id = ?2)
             FROM apps a WHERE a.id = ?1 OR a.name = ?1",
            params![app, account_id],
            |r| {
                let owner: bool = r.get(0)?;
                let team_app: bool = r.get(1)?;
                let role = match r.get::<_, Option<String>>(2)? {
                    Some(s) => Some(TeamRole::parse(&s).map_err(|e| super::common::bad_column(2, e.message))?),
                    None => None,
                };
                let granted = r.get::<_, Option<i64>>(3)?.map(Permissions::from_bits);
                Ok(AccessFacts {
                    owner,
                    team: team_app.then_some(role),
                    granted,
                })
            },
        )
        .optional()
        .ctx("reading access to an app")?;
    Ok(row.unwrap_or_default())
}

// --- teams ---

const SELECT_TEAM: &str = "SELECT id, name, created_at, updated_at FROM teams";

fn team_from_row(row: &Row<'_>) -> rusqlite::Result<Team> {
    Ok(Team {
        id: row.get(0)?,
        name: row.get(1)?,
        created_at: ts(row, 2)?,
        updated_at: ts(row, 3)?,
    })
}

/// Makes a team with its creator as its first admin. Team names share the space of app
/// owners' emails (`<team>@herokumanager.com`), so they are unique.
pub(super) fn create_team(conn: &Connection, name: &str, creator_id: &str) -> Result<Team> {
    validate_team_name(name)?;
    require_account(conn, creator_id)?;
    if find_team(conn, name)?.is_some() {
        return Err(StoreError::Conflict(format!(
            "Name {name} is already taken"
        )));
    }
    let id = new_id();
    let now = Timestamp::now().0;
    conn.execute(
        "INSERT INTO teams (id, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
        params![id, name, now],
    )
    .ctx("inserting a team")?;
    conn.execute(
        "INSERT INTO team_members (team_id, account_id, role, created_at, updated_at) VALUES (?1, ?2, 'admin', ?3, ?3)",
        params![id, creator_id, now],
    )
    .ctx("adding a team's first admin")?;
    team(conn, &id)
}

pub(super) fn team(conn: &Connection, id_or_name: &str) -> Result<Team> {
    one_row(
        conn,
        &format!("{SELECT_TEAM} WHERE id = ?1 OR name = ?1"),
        [id_or_name],
        team_from_row,
        "team",
    )
}

fn find_team(conn: &Connection, id_or_name: &str) -> Result<Option<Team>> {
    conn.query_row(
        &format!("{SELECT_TEAM} WHERE id = ?1 OR name = ?1"),
        [id_or_name],
        team_from_row,
    )
    .optional()
    .ctx("looking up a team")
}

/// The teams an account belongs to, with its role in each.
pub(super) fn teams_of(conn: &Connection, account_id: &str) -> Result<Vec<(Team, TeamRole)>> {
    all_rows(
        conn,
        "SELECT t.id, t.name, t.created_at, t.updated_at, m.role FROM teams t JOIN team_members m ON m.team_id = t.id
         WHERE m.account_id = ?1 ORDER BY t.name",
        [account_id],
        |r| Ok((team_from_row(r)?, role_of(r, 4)?)),
        "listing teams",
    )
}

const SELECT_MEMBER: &str =
    "SELECT m.team_id, m.account_id, u.email, m.role, m.created_at, m.updated_at
     FROM team_members m JOIN accounts u ON u.id = m.account_id";

fn member_from_row(row: &Row<'_>) -> rusqlite::Result<TeamMember> {
    Ok(TeamMember {
        team_id: row.get(0)?,
        account_id: row.get(1)?,
        email: row.get(2)?,
        role: role_of(row, 3)?,
        created_at: ts(row, 4)?,
        updated_at: ts(row, 5)?,
    })
}

pub(super) fn members(conn: &Connection, team_id: &str) -> Result<Vec<TeamMember>> {
    all_rows(
        conn,
        &format!("{SELECT_MEMBER} WHERE m.team_id = ?1 ORDER BY u.email"),
        [team_id],
        member_from_row,
        "listing team members",
    )
}

pub(super) fn member(
    conn: &Connection,
    team_id: &str,
    account_id: &str,
) -> Result<Option<TeamMember>> {
    conn.query_row(
        &format!("{SELECT_MEMBER} WHERE m.team_id = ?1 AND m.account_id = ?2"),
        [team_id, account_id],
        member_from_row,
    )
    .optional()
    .ctx("reading a team member")
}

fn admins(conn: &Connection, team_id: &str) -> Result<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM team_members WHERE team_id = ?1 AND role = 'admin'",
        [team_id],
        |r| r.get(0),
    )
    .ctx("counting a team's admins")
}

/// Adds a member or changes their role. A team always keeps an admin.
pub(super) fn set_member(
    conn: &Connection,
    team_id: &str,
    account_id: &str,
    role: TeamRole,
) -> Result<TeamMember> {
    require_account(conn, account_id)?;
    team(conn, team_id)?;
    let now = Timestamp::now().0;
    let before = member(conn, team_id, account_id)?;
    conn.execute(
        "INSERT INTO team_members (team_id, account_id, role, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (team_id, account_id) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at",
        params![team_id, account_id, role.name(), now],
    )
    .ctx("setting a team member")?;
    if before.is_some_and(|m| m.role == TeamRole::Admin) && admins(conn, team_id)? == 0 {
        return Err(StoreError::Conflict(
            "A team must keep at least one admin".into(),
        ));
    }
    // A viewer holds `view` at most: grants beyond it on the team's apps go.
    if role == TeamRole::Viewer {
        conn.execute(
            "UPDATE collaborators SET permissions = 1, updated_at = ?3
             WHERE account_id = ?2 AND app_id IN (SELECT id FROM apps WHERE team_id = ?1)",
            params![team_id, account_id, now],
        )
        .ctx("narrowing a viewer's grants")?;
    }
    member(conn, team_id, account_id)?.ok_or(StoreError::NotFound {
        resource: "team member",
    })
}

/// Removes a member and what they were granted on the team's apps.
pub(super) fn remove_member(
    conn: &Connection,
    team_id: &str,
    account_id: &str,
) -> Result<TeamMember> {
    let m = member(conn, team_id, account_id)?.ok_or(StoreError::NotFound {
        resource: "team member",
    })?;
    conn.execute(
        "DELETE FROM team_members WHERE team_id = ?1 AND account_id = ?2",
        [team_id, account_id],
    )
    .ctx("removing a team member")?;
    if m.role == TeamRole::Admin && admins(conn, team_id)? == 0 {
        return Err(StoreError::Conflict(
            "A team must keep at least one admin".into(),
        ));
    }
    conn.execute(
        "DELETE FROM collaborators WHERE account_id = ?2 AND app_id IN (SELECT id FROM apps WHERE team_id = ?1)",
        [team_id, account_id],
    )
    .ctx("removing a member's grants")?;
    Ok(m)
}

// --- collaborators ---

const SELECT_COLLAB: &str = "SELECT c.id, c.app_id, a.name, c.account_id, u.email, c.permissions, c.created_at, c.updated_at
     FROM collaborators c JOIN apps a ON a.id = c.app_id JOIN accounts u ON u.id = c.account_id";

fn collab_from_row(row: &Row<'_>) -> rusqlite::Result<Collaborator> {
    Ok(Collaborator {
        id: row.get(0)?,
        app_id: row.get(1)?,
        app_name: row.get(2)?,
        account_id: row.get(3)?,
        email: row.get(4)?,
        permissions: Permissions::from_bits(row.get(5)?),
        created_at: ts(row, 6)?,
        updated_at: ts(row, 7)?,
    })
}

pub(super) fn collaborators(conn: &Connection, app: &str) -> Result<Vec<Collaborator>> {
    let app = resolve_app(conn, app)?;
    all_rows(
        conn,
        &format!("{SELECT_COLLAB} WHERE c.app_id = ?1 ORDER BY u.email"),
        [app],
        collab_from_row,
        "listing collaborators",
    )
}

pub(super) fn collaborator(conn: &Connection, app: &str, account_id: &str) -> Result<Collaborator> {
    let app = resolve_app(conn, app)?;
    one_row(
        conn,
        &format!("{SELECT_COLLAB} WHERE c.app_id = ?1 AND c.account_id = ?2"),
        [&app, account_id],
        collab_from_row,
        "collaborator",
    )
}

/// Adds a collaborator, or changes what they hold when `update` (a second `add` is a
/// conflict, as on Heroku).
pub(super) fn set_collaborator(
    conn: &Connection,
    app: &str,
    account_id: &str,
    permissions: Permissions,
    update: bool,
) -> Result<Collaborator> {
    let app = resolve_app(conn, app)?;
    require_account(conn, account_id)?;
    if permissions.is_empty() {
        return Err(StoreError::Invalid(kiln_model::Invalid::new(
            "permissions",
            "A collaborator needs at least the view permission",
        )));
    }
    let exists = collaborator(conn, &app, account_id).is_ok();
    let now = Timestamp::now().0;
    match (exists, update) {
        (true, false) => {
            return Err(StoreError::Conflict(
                "This user is already a collaborator on this app".into(),
            ));
        }
        (false, true) => {
            return Err(StoreError::NotFound {
                resource: "collaborator",
            });
        }
        (true, true) => {
            conn.execute(
                "UPDATE collaborators SET permissions = ?3, updated_at = ?4 WHERE app_id = ?1 AND account_id = ?2",
                params![app, account_id, permissions.bits(), now],
            )
            .ctx("updating a collaborator")?;
        }
        (false, false) => {
            conn.execute(
                "INSERT INTO collaborators (id, app_id, account_id, permissions, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![new_id(), app, account_id, permissions.bits(), now],
            )
            .ctx("adding a collaborator")?;
        }
    }
    collaborator(conn, &app, account_id)
}

pub(super) fn remove_collaborator(
    conn: &Connection,
    app: &str,
    account_id: &str,
) -> Result<Collaborator> {
    let c = collaborator(conn, app, account_id)?;
    conn.execute("DELETE FROM collaborators WHERE id = ?1", [&c.id])
        .ctx("removing a collaborator")?;
    Ok(c)
}

// --- owners and transfers ---

/// Gives an app to a new owner: a person (`team_id` None) or a team. The new owner's
/// collaborator row, if any, goes (they hold everything now); the old owner of a personal
/// app keeps no access unless a team makes them a member.
pub(super) fn move_app(
    conn: &Connection,
    app: &str,
    owner_id: &str,
    team_id: Option<&str>,
) -> Result<()> {
    let app = resolve_app(conn, app)?;
    require_account(conn, owner_id)?;
    if let Some(t) = team_id {
        team(conn, t)?;
    }
    conn.execute(
        "UPDATE apps SET owner_id = ?2, team_id = ?3, updated_at = ?4 WHERE id = ?1",
        params![app, owner_id, team_id, Timestamp::now().0],
    )
    .ctx("moving an app")?;
    if team_id.is_none() {
        conn.execute(
            "DELETE FROM collaborators WHERE app_id = ?1 AND account_id = ?2",
            [&app, owner_id],
        )
        .ctx("dropping the new owner's grant")?;
    }
    conn.execute(
        "UPDATE app_transfers SET state = 'declined', updated_at = ?2 WHERE app_id = ?1 AND state = 'pending'",
        params![app, Timestamp::now().0],
    )
    .ctx("ending pending transfers")?;
    Ok(())
}

const SELECT_TRANSFER: &str = "SELECT t.id, t.app_id, a.name, t.owner_id, o.email, t.recipient_id, r.email, t.state, t.created_at, t.updated_at
     FROM app_transfers t JOIN apps a ON a.id = t.app_id JOIN accounts o ON o.id = t.owner_id JOIN accounts r ON r.id = t.recipient_id";

fn transfer_from_row(row: &Row<'_>) -> rusqlite::Result<AppTransfer> {
    let state: String = row.get(7)?;
    Ok(AppTransfer {
        id: row.get(0)?,
        app_id: row.get(1)?,
        app_name: row.get(2)?,
        owner_id: row.get(3)?,
        owner_email: row.get(4)?,
        recipient_id: row.get(5)?,
        recipient_email: row.get(6)?,
        state: TransferState::parse(&state)
            .ok_or_else(|| super::common::bad_column(7, format!("unknown state {state:?}")))?,
        created_at: ts(row, 8)?,
        updated_at: ts(row, 9)?,
    })
}

pub(super) fn create_transfer(
    conn: &Connection,
    app: &str,
    owner_id: &str,
    recipient_id: &str,
) -> Result<AppTransfer> {
    let app = resolve_app(conn, app)?;
    require_account(conn, recipient_id)?;
    let pending: Option<String> = conn
        .query_row(
            "SELECT id FROM app_transfers WHERE app_id = ?1 AND state = 'pending'",
            [&app],
            |r| r.get(0),
        )
        .optional()
        .ctx("looking for a pending transfer")?;
    if pending.is_some() {
        return Err(StoreError::Conflict(
            "This app already has a pending transfer".into(),
        ));
    }
    let id = new_id();
    let now = Timestamp::now().0;
    conn.execute(
        "INSERT INTO app_transfers (id, app_id, owner_id, recipient_id, state, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
        params![id, app, owner_id, recipient_id, now],
    )
    .ctx("inserting a transfer")?;
    transfer(conn, &id)
}

pub(super) fn transfer(conn: &Connection, id_or_app: &str) -> Result<AppTransfer> {
    one_row(
        conn,
        &format!(
            "{SELECT_TRANSFER} WHERE t.id = ?1 OR (a.name = ?1 AND t.state = 'pending') ORDER BY t.created_at DESC LIMIT 1"
        ),
        [id_or_app],
        transfer_from_row,
        "app transfer",
    )
}

/// The transfers an account made or was offered.
pub(super) fn transfers_of(conn: &Connection, account_id: &str) -> Result<Vec<AppTransfer>> {
    all_rows(
        conn,
        &format!(
            "{SELECT_TRANSFER} WHERE t.owner_id = ?1 OR t.recipient_id = ?1 ORDER BY t.created_at"
        ),
        [account_id],
        transfer_from_row,
        "listing transfers",
    )
}

/// Settles a pending transfer; accepting moves the app in the same transaction.
pub(super) fn settle_transfer(
    conn: &Connection,
    id: &str,
    state: TransferState,
) -> Result<AppTransfer> {
    let t = transfer(conn, id)?;
    if t.state != TransferState::Pending {
        return Err(StoreError::Conflict(format!(
            "This transfer is already {}",
            t.state.as_str()
        )));
    }
    if state == TransferState::Accepted {
        move_app(conn, &t.app_id, &t.recipient_id, None)?;
    }
    conn.execute(
        "UPDATE app_transfers SET state = ?2, updated_at = ?3 WHERE id = ?1",
        params![t.id, state.as_str(), Timestamp::now().0],
    )
    .ctx("settling a transfer")?;
    transfer(conn, &t.id)
}

// --- audit ---

pub(super) fn audit(
    conn: &Connection,
    app_id: &str,
    account_id: Option<&str>,
    email: &str,
    action: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO audit (app_id, account_id, email, action, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![app_id, account_id, email, action, Timestamp::now().0],
    )
    .ctx("writing the audit log")?;
    Ok(())
}

pub(super) fn audit_log(conn: &Connection, app: &str, limit: u32) -> Result<Vec<AuditEntry>> {
    let app = resolve_app(conn, app)?;
    let mut rows = all_rows(
        conn,
        "SELECT seq, email, action, created_at FROM audit WHERE app_id = ?1 ORDER BY seq DESC LIMIT ?2",
        params![app, limit],
        |r| {
            Ok(AuditEntry {
                seq: r.get(0)?,
                email: r.get(1)?,
                action: r.get(2)?,
                created_at: ts(r, 3)?,
            })
        },
        "reading the audit log",
    )?;
    rows.reverse();
    Ok(rows)
}
