//! Apps, their settings (maintenance, buildpacks) and their uids.

use super::common::{
    DbContext, all_rows, new_id, one_row, require_account, resolve_app, string_map, ts,
};
use super::{releases, slugs};
use crate::{App, Release, Result, Slug, StoreError};
use kiln_model::config::ConfigVars;
use kiln_model::records::TeamRef;
use kiln_model::records::{validate_buildpacks, validate_stack};
use kiln_model::release::initial_release;
use kiln_model::{AppName, Invalid, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::BTreeMap;

const SELECT: &str = "SELECT a.id, a.name, a.owner_id, o.email, a.uid, a.stack, a.maintenance, kiln_open('apps.config:' || a.id, a.config), \
     a.created_at, a.updated_at, a.released_at, a.acm, t.id, t.name \
     FROM apps a JOIN accounts o ON o.id = a.owner_id LEFT JOIN teams t ON t.id = a.team_id";

fn from_row(row: &Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        id: row.get(0)?,
        name: row.get(1)?,
        owner_id: row.get(2)?,
        owner_email: row.get(3)?,
        uid: row.get(4)?,
        stack: row.get(5)?,
        maintenance: row.get(6)?,
        config: string_map(row, 7)?,
        created_at: ts(row, 8)?,
        updated_at: ts(row, 9)?,
        released_at: row.get::<_, Option<i64>>(10)?.map(Timestamp),
        acm: row.get(11)?,
        team: match (
            row.get::<_, Option<String>>(12)?,
            row.get::<_, Option<String>>(13)?,
        ) {
            (Some(id), Some(name)) => Some(TeamRef { id, name }),
            _ => None,
        },
    })
}

pub(super) fn get(conn: &Connection, id_or_name: &str) -> Result<App> {
    one_row(
        conn,
        &format!("{SELECT} WHERE a.id = ?1 OR a.name = ?1"),
        [id_or_name],
        from_row,
        "app",
    )
}

pub(super) fn create(
    conn: &Connection,
    name: &str,
    owner_id: &str,
    team_id: Option<&str>,
    stack: &str,
) -> Result<(App, Release)> {
    let name = AppName::parse(name)?;
    validate_stack(stack)?;
    require_account(conn, owner_id)?;
    if let Some(t) = team_id {
        super::tenancy::team(conn, t)?;
    }
    let taken = conn
        .query_row(
            "SELECT 1 FROM apps WHERE name = ?1",
            [name.as_str()],
            |_| Ok(()),
        )
        .optional()
        .ctx("checking the app name")?
        .is_some();
    if taken {
        return Err(StoreError::Conflict(format!(
            "Name {name} is already taken"
        )));
    }
    // Uids come from a counter, not from MAX(uid)+1, so that a deleted app's uid is never
    // given to a new app that could then read files the old one left behind.
    let next: i64 = conn
        .query_row(
            "SELECT value FROM counters WHERE name = 'next_app_uid'",
            [],
            |r| r.get(0),
        )
        .ctx("reading the uid counter")?;
    let uid = App::usable_uid(next).ok_or_else(|| {
        StoreError::Db(format!(
            "the app uid counter holds {next}, outside the usable range"
        ))
    })?;
    conn.execute(
        "UPDATE counters SET value = ?1 WHERE name = 'next_app_uid'",
        [i64::from(uid) + 1],
    )
    .ctx("advancing the uid counter")?;
    let now = Timestamp::now();
    let id = new_id();
    conn.execute(
        "INSERT INTO apps (id, name, owner_id, uid, stack, maintenance, config, created_at, updated_at, released_at, team_id)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, kiln_seal('apps.config:' || ?1, '{}'), ?6, ?6, NULL, ?7)",
        params![id, name.as_str(), owner_id, uid, stack, now.0, team_id],
    )
    .ctx("inserting an app")?;
    let release = releases::insert(conn, &id, initial_release(owner_id), now)?;
    Ok((get(conn, &id)?, release))
}

pub(super) fn list(conn: &Connection) -> Result<Vec<App>> {
    all_rows(
        conn,
        &format!("{SELECT} ORDER BY a.name"),
        [],
        from_row,
        "listing apps",
    )
}

/// The apps an account may see, each with the slug of its current release, in two queries.
pub(super) fn list_of(conn: &Connection, account_id: &str) -> Result<Vec<(App, Option<Slug>)>> {
    list_where(conn, super::tenancy::VISIBLE_APPS, account_id)
}

/// A team's apps, as [`list_of`].
pub(super) fn list_of_team(conn: &Connection, team_id: &str) -> Result<Vec<(App, Option<Slug>)>> {
    list_where(conn, "SELECT id FROM apps WHERE team_id = ?1", team_id)
}

/// The apps whose ids `ids` (a query over `?1`) selects.
fn list_where(conn: &Connection, ids: &str, param: &str) -> Result<Vec<(App, Option<Slug>)>> {
    let apps = all_rows(
        conn,
        &format!("{SELECT} WHERE a.id IN ({ids}) ORDER BY a.name"),
        [param],
        from_row,
        "listing apps",
    )?;
    // Each app's current release is its latest succeeded one; its slug in the same pass.
    let slugs = all_rows(
        conn,
        &format!(
            "{} WHERE id IN (SELECT r.slug_id FROM releases r JOIN apps a ON a.id = r.app_id
                 WHERE a.id IN ({ids}) AND r.status = 'succeeded'
                   AND r.version = (SELECT MAX(version) FROM releases WHERE app_id = r.app_id AND status = 'succeeded'))",
            slugs::SELECT
        ),
        [param],
        slugs::from_row,
        "listing the apps' slugs",
    )?;
    let mut by_app: BTreeMap<String, Slug> =
        slugs.into_iter().map(|s| (s.app_id.clone(), s)).collect();
    Ok(apps
        .into_iter()
        .map(|a| {
            let slug = by_app.remove(&a.id);
            (a, slug)
        })
        .collect())
}

pub(super) fn set_maintenance(conn: &Connection, app_id: &str, on: bool) -> Result<App> {
    let id = resolve_app(conn, app_id)?;
    conn.execute(
        "UPDATE apps SET maintenance = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, on, Timestamp::now().0],
    )
    .ctx("setting maintenance")?;
    get(conn, &id)
}

/// Gives an app a new name. Everything else keys on its id (releases, repository, logs,
/// add-ons), so the old name is simply free afterwards.
pub(super) fn rename(conn: &Connection, app_id: &str, new_name: &str) -> Result<App> {
    let id = resolve_app(conn, app_id)?;
    let name = AppName::parse(new_name)?;
    let holder: Option<String> = conn
        .query_row(
            "SELECT id FROM apps WHERE name = ?1",
            [name.as_str()],
            |r| r.get(0),
        )
        .optional()
        .ctx("checking the app name")?;
    match holder {
        Some(h) if h == id => return get(conn, &id),
        Some(_) => {
            return Err(StoreError::Conflict(format!(
                "Name {name} is already taken"
            )));
        }
        None => {}
    }
    conn.execute(
        "UPDATE apps SET name = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, name.as_str(), Timestamp::now().0],
    )
    .ctx("renaming the app")?;
    get(conn, &id)
}

pub(super) fn restore_config(conn: &Connection, app_id: &str, config: &ConfigVars) -> Result<App> {
    let json = super::common::map_json(config);
    let id = resolve_app(conn, app_id)?;
    conn.execute(
        "UPDATE apps SET config = kiln_seal('apps.config:' || ?1, ?2), updated_at = ?3 WHERE id = ?1",
        params![id, json, Timestamp::now().0],
    )
    .ctx("restoring config vars")?;
    get(conn, &id)
}

pub(super) fn delete(conn: &Connection, app_id: &str) -> Result<()> {
    let id = resolve_app(conn, app_id)?;
    // Children before parents: builds point at releases and slugs, releases at slugs. The
    // newer tables (domains, certificates, ACM states) go with the app (ON DELETE CASCADE).
    for (table, what) in [
        ("builds", "deleting the app's builds"),
        ("releases", "deleting the app's releases"),
        ("slugs", "deleting the app's slugs"),
        ("formation", "deleting the app's formation"),
        ("buildpacks", "deleting the app's buildpacks"),
    ] {
        conn.execute(&format!("DELETE FROM {table} WHERE app_id = ?1"), [&id])
            .ctx(what)?;
    }
    conn.execute("DELETE FROM apps WHERE id = ?1", [&id])
        .ctx("deleting the app")?;
    Ok(())
}

pub(super) fn buildpacks(conn: &Connection, app_id: &str) -> Result<Vec<String>> {
    let app = resolve_app(conn, app_id)?;
    all_rows(
        conn,
        "SELECT url FROM buildpacks WHERE app_id = ?1 ORDER BY position",
        [&app],
        |r| r.get(0),
        "listing buildpacks",
    )
}

pub(super) fn set_buildpacks(conn: &Connection, app_id: &str, urls: &[String]) -> Result<()> {
    validate_buildpacks(urls)?;
    let app = resolve_app(conn, app_id)?;
    conn.execute("DELETE FROM buildpacks WHERE app_id = ?1", [&app])
        .ctx("clearing buildpacks")?;
    for (position, url) in urls.iter().enumerate() {
        let position = i64::try_from(position)
            .map_err(|_| Invalid::new("buildpacks", "Too many buildpacks"))?;
        conn.execute(
            "INSERT INTO buildpacks (app_id, position, url) VALUES (?1, ?2, ?3)",
            params![app, position, url.trim()],
        )
        .ctx("inserting a buildpack")?;
    }
    Ok(())
}
