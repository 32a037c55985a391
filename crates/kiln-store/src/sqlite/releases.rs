//! The release ledger: append-only, one transaction per change. Its rules (version numbers,
//! status moves, what a config change appends) are `kiln_model::release`'s; this is the SQL.

use super::common::{
    DbContext, all_rows, bad_column, list_json, map_json, new_id, one_row, require_account,
    resolve_app, string_list, string_map, ts,
};
use super::{apps, slugs};
use crate::{NewRelease, Release, ReleaseRange, Result, StoreError};
use kiln_model::Timestamp;
use kiln_model::config::ConfigVars;
use kiln_model::records::{check_text, limits};
use kiln_model::release::{ReleaseRef, ReleaseStatus, config_release, next_version};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::BTreeMap;

const SELECT: &str = "SELECT r.id, r.app_id, r.version, r.description, r.status, r.status_reason, r.slug_id, \
     kiln_open('releases.config:' || r.id, r.config), r.user_id, u.email, r.created_at, r.updated_at, r.addon_plans, \
     EXISTS (SELECT 1 FROM release_outputs o WHERE o.release_id = r.id) \
     FROM releases r JOIN accounts u ON u.id = r.user_id";

/// Migration 7: the output of each release's release phase (`releases:output`), kept apart
/// from the ledger's rows, which it does not change.
pub(super) const OUTPUT_MIGRATION: &str = r#"
    CREATE TABLE release_outputs (
        release_id TEXT PRIMARY KEY REFERENCES releases(id) ON DELETE CASCADE,
        output     TEXT NOT NULL
    ) STRICT;
"#;

/// Keeps (or replaces) the output of a release's release phase.
pub(super) fn set_output(conn: &Connection, release_id: &str, output: &str) -> Result<()> {
    by_id(conn, release_id)?;
    conn.execute(
        "INSERT INTO release_outputs (release_id, output) VALUES (?1, ?2)
         ON CONFLICT (release_id) DO UPDATE SET output = excluded.output",
        params![release_id, output],
    )
    .ctx("keeping the release output")?;
    Ok(())
}

/// The output of a release's release phase, if it had one.
pub(super) fn output(conn: &Connection, release_id: &str) -> Result<Option<String>> {
    conn.query_row(
        "SELECT output FROM release_outputs WHERE release_id = ?1",
        [release_id],
        |r| r.get(0),
    )
    .optional()
    .ctx("reading the release output")
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Release> {
    let status: String = row.get(4)?;
    Ok(Release {
        id: row.get(0)?,
        app_id: row.get(1)?,
        version: row.get(2)?,
        description: row.get(3)?,
        status: ReleaseStatus::parse(&status)
            .ok_or_else(|| bad_column(4, format!("unknown release status {status:?}")))?,
        status_reason: row.get(5)?,
        slug_id: row.get(6)?,
        config: string_map(row, 7)?,
        user_id: row.get(8)?,
        user_email: row.get(9)?,
        addon_plan_names: string_list(row, 12)?,
        has_output: row.get(13)?,
        created_at: ts(row, 10)?,
        updated_at: ts(row, 11)?,
    })
}

fn by_id(conn: &Connection, release_id: &str) -> Result<Release> {
    one_row(
        conn,
        &format!("{SELECT} WHERE r.id = ?1"),
        [release_id],
        from_row,
        "release",
    )
}

/// Fails unless the release belongs to the app: slugs, releases and builds only ever point at
/// things of their own app, so that deleting an app cannot break another app's ledger.
pub(super) fn require_of(conn: &Connection, app_id: &str, release_id: &str) -> Result<()> {
    let found = conn
        .query_row(
            "SELECT 1 FROM releases WHERE id = ?1 AND app_id = ?2",
            [release_id, app_id],
            |_| Ok(()),
        )
        .optional()
        .ctx("looking up a release")?;
    found.ok_or(StoreError::NotFound {
        resource: "release",
    })
}

/// Appends a release to an app's ledger and makes its config the app's current config. The
/// version is read and written inside the caller's (immediate) transaction, so no other writer
/// can take the same number; the UNIQUE (app_id, version) constraint backs that up.
pub(super) fn insert(
    conn: &Connection,
    app_id: &str,
    new: NewRelease,
    now: Timestamp,
) -> Result<Release> {
    new.validate()?;
    require_account(conn, &new.user_id)?;
    if let Some(slug_id) = &new.slug_id {
        slugs::require_of(conn, app_id, slug_id)?;
    }
    let last: u32 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM releases WHERE app_id = ?1",
            [app_id],
            |r| r.get(0),
        )
        .ctx("reading the newest release version")?;
    let version = next_version(last)
        .ok_or_else(|| StoreError::Db(format!("release version {last} cannot be followed")))?;
    let id = new_id();
    let config_json = map_json(&new.config);
    let plans = list_json(&super::addons::plan_names(conn, app_id)?);
    conn.execute(
        "INSERT INTO releases (id, app_id, version, description, status, status_reason, slug_id, config, user_id, created_at, updated_at, addon_plans)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, kiln_seal('releases.config:' || ?1, ?7), ?8, ?9, ?9, ?10)",
        params![id, app_id, version, new.description, new.status.as_str(), new.slug_id, config_json, new.user_id, now.0, plans],
    )
    .ctx("inserting a release")?;
    conn.execute(
        "UPDATE apps SET config = kiln_seal('apps.config:' || ?1, ?2), released_at = ?3, updated_at = ?3 WHERE id = ?1",
        params![app_id, config_json, now.0],
    )
    .ctx("updating the app's config")?;
    by_id(conn, &id)
}

pub(super) fn append(conn: &Connection, app_id: &str, release: NewRelease) -> Result<Release> {
    let id = resolve_app(conn, app_id)?;
    insert(conn, &id, release, Timestamp::now())
}

pub(super) fn update_config(
    conn: &Connection,
    app_id: &str,
    patch: &BTreeMap<String, Option<String>>,
    user_id: &str,
) -> Result<(ConfigVars, Option<Release>)> {
    let app = apps::get(conn, app_id)?;
    require_account(conn, user_id)?;
    // What an add-on set is the add-on's to change (its credentials, its detach).
    let owned = super::addons::owned_vars(conn, &app.id)?;
    if let Some((key, addon)) = patch.keys().find_map(|k| owned.get(k).map(|a| (k, a))) {
        return Err(kiln_model::Invalid::new(
            "config",
            format!(
                "{key} is set by the add-on {addon}: it cannot be changed or unset with config:set or config:unset (detach or destroy the add-on instead)"
            ),
        )
        .into());
    }
    let newest_slug: Option<String> = conn
        .query_row(
            "SELECT slug_id FROM releases WHERE app_id = ?1 ORDER BY version DESC LIMIT 1",
            [&app.id],
            |r| r.get(0),
        )
        .optional()
        .ctx("reading the newest release's slug")?
        .flatten();
    match config_release(&app.config, patch, newest_slug, user_id)? {
        None => Ok((app.config, None)),
        Some((next, new)) => Ok((next, Some(insert(conn, &app.id, new, Timestamp::now())?))),
    }
}

pub(super) fn set_status(
    conn: &Connection,
    release_id: &str,
    status: ReleaseStatus,
    reason: Option<&str>,
) -> Result<Release> {
    if let Some(reason) = reason {
        check_text("status_reason", reason, limits::LONG_TEXT)?;
    }
    let current = by_id(conn, release_id)?;
    if !current.status.can_become(status) {
        return Err(StoreError::Conflict(format!(
            "Release v{} is {} and cannot become {}",
            current.version,
            current.status.as_str(),
            status.as_str()
        )));
    }
    conn.execute(
        "UPDATE releases SET status = ?2, status_reason = ?3, updated_at = ?4 WHERE id = ?1",
        params![current.id, status.as_str(), reason, Timestamp::now().0],
    )
    .ctx("updating a release's status")?;
    by_id(conn, &current.id)
}

pub(super) fn fail_pending(conn: &Connection, reason: &str) -> Result<Vec<(String, u32)>> {
    check_text("status_reason", reason, limits::LONG_TEXT)?;
    let rows = all_rows(
        conn,
        "SELECT app_id, version FROM releases WHERE status = 'pending'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
        "finding pending releases",
    )?;
    conn.execute("UPDATE releases SET status = 'failed', status_reason = ?1, updated_at = ?2 WHERE status = 'pending'", params![reason, Timestamp::now().0])
        .ctx("failing pending releases")?;
    Ok(rows)
}

pub(super) fn get(conn: &Connection, app_id: &str, id_or_version: &str) -> Result<Release> {
    let app = resolve_app(conn, app_id)?;
    match ReleaseRef::parse(id_or_version) {
        ReleaseRef::Version(v) => one_row(
            conn,
            &format!("{SELECT} WHERE r.app_id = ?1 AND r.version = ?2"),
            params![app, v],
            from_row,
            "release",
        ),
        ReleaseRef::Id(id) => one_row(
            conn,
            &format!("{SELECT} WHERE r.app_id = ?1 AND r.id = ?2"),
            params![app, id],
            from_row,
            "release",
        ),
        ReleaseRef::Impossible => Err(StoreError::NotFound {
            resource: "release",
        }),
    }
}

pub(super) fn list(conn: &Connection, app_id: &str, range: ReleaseRange) -> Result<Vec<Release>> {
    let order = if range.descending { "DESC" } else { "ASC" };
    let app = resolve_app(conn, app_id)?;
    all_rows(
        conn,
        &format!(
            "{SELECT} WHERE r.app_id = ?1 AND r.version >= ?2 AND r.version <= ?3 ORDER BY r.version {order} LIMIT ?4"
        ),
        params![
            app,
            range.first.unwrap_or(0),
            range.last.unwrap_or(u32::MAX),
            range.max
        ],
        from_row,
        "listing releases",
    )
}

pub(super) fn current(conn: &Connection, app_id: &str) -> Result<Option<Release>> {
    let app = resolve_app(conn, app_id)?;
    conn.query_row(&format!("{SELECT} WHERE r.app_id = ?1 AND r.status = 'succeeded' ORDER BY r.version DESC LIMIT 1"), [&app], from_row)
        .optional()
        .ctx("reading the current release")
}
