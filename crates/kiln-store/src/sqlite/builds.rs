//! Builds: pending while they run, then succeeded or failed once, with their output.

use super::common::{
    DbContext, all_rows, bad_column, list_json, new_id, one_row, require_account, resolve_app,
    string_list, ts,
};
use super::{releases, slugs};
use crate::{Build, BuildStatus, Result, StoreError};
use kiln_model::Timestamp;
use kiln_model::records::{interrupted_build_line, validate_build_end, validate_new_build};
use rusqlite::{Connection, Row, params};

const SELECT: &str = "SELECT b.id, b.app_id, b.status, b.source_version, b.output, b.buildpacks, b.slug_id, \
     b.release_id, b.user_id, u.email, b.created_at, b.updated_at FROM builds b JOIN accounts u ON u.id = b.user_id";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Build> {
    let status: String = row.get(2)?;
    Ok(Build {
        id: row.get(0)?,
        app_id: row.get(1)?,
        status: BuildStatus::parse(&status)
            .ok_or_else(|| bad_column(2, format!("unknown build status {status:?}")))?,
        source_version: row.get(3)?,
        output: row.get(4)?,
        buildpacks: string_list(row, 5)?,
        slug_id: row.get(6)?,
        release_id: row.get(7)?,
        user_id: row.get(8)?,
        user_email: row.get(9)?,
        created_at: ts(row, 10)?,
        updated_at: ts(row, 11)?,
    })
}

pub(super) fn by_id(conn: &Connection, build_id: &str) -> Result<Build> {
    one_row(
        conn,
        &format!("{SELECT} WHERE b.id = ?1"),
        [build_id],
        from_row,
        "build",
    )
}

pub(super) fn create(
    conn: &Connection,
    app_id: &str,
    user_id: &str,
    source_version: Option<&str>,
    buildpacks: &[String],
) -> Result<Build> {
    validate_new_build(source_version, buildpacks)?;
    let app = resolve_app(conn, app_id)?;
    require_account(conn, user_id)?;
    let id = new_id();
    conn.execute(
        "INSERT INTO builds (id, app_id, status, source_version, output, buildpacks, slug_id, release_id, user_id, created_at, updated_at)
         VALUES (?1, ?2, 'pending', ?3, '', ?4, NULL, NULL, ?5, ?6, ?6)",
        params![id, app, source_version, list_json(buildpacks), user_id, Timestamp::now().0],
    )
    .ctx("inserting a build")?;
    by_id(conn, &id)
}

pub(super) fn finish(
    conn: &Connection,
    build_id: &str,
    status: BuildStatus,
    output: &str,
    slug_id: Option<&str>,
    release_id: Option<&str>,
) -> Result<Build> {
    validate_build_end(status)?;
    let build = by_id(conn, build_id)?;
    if build.status != BuildStatus::Pending {
        return Err(StoreError::Conflict(format!(
            "Build {} has already ended ({})",
            build.id,
            build.status.as_str()
        )));
    }
    if let Some(slug_id) = slug_id {
        slugs::require_of(conn, &build.app_id, slug_id)?;
    }
    if let Some(release_id) = release_id {
        releases::require_of(conn, &build.app_id, release_id)?;
    }
    conn.execute(
        "UPDATE builds SET status = ?2, output = ?3, slug_id = ?4, release_id = ?5, updated_at = ?6 WHERE id = ?1",
        params![build.id, status.as_str(), output, slug_id, release_id, Timestamp::now().0],
    )
    .ctx("finishing a build")?;
    by_id(conn, &build.id)
}

pub(super) fn get(conn: &Connection, app_id: &str, build_id: &str) -> Result<Build> {
    let app = resolve_app(conn, app_id)?;
    one_row(
        conn,
        &format!("{SELECT} WHERE b.id = ?1 AND b.app_id = ?2"),
        [build_id, &app],
        from_row,
        "build",
    )
}

pub(super) fn list(conn: &Connection, app_id: &str) -> Result<Vec<Build>> {
    let app = resolve_app(conn, app_id)?;
    // Two builds can start in the same microsecond; the rowid keeps their order.
    all_rows(
        conn,
        &format!("{SELECT} WHERE b.app_id = ?1 ORDER BY b.created_at DESC, b.rowid DESC"),
        [&app],
        from_row,
        "listing builds",
    )
}

/// The newest `limit` builds without their output (a list to show, not to read).
pub(super) fn recent(conn: &Connection, app_id: &str, limit: u32) -> Result<Vec<Build>> {
    let app = resolve_app(conn, app_id)?;
    let brief = SELECT.replacen("b.output", "'' AS output", 1);
    all_rows(
        conn,
        &format!("{brief} WHERE b.app_id = ?1 ORDER BY b.created_at DESC, b.rowid DESC LIMIT ?2"),
        params![app, limit],
        from_row,
        "listing recent builds",
    )
}

pub(super) fn fail_pending(conn: &Connection, reason: &str) -> Result<usize> {
    let line = interrupted_build_line(reason)?;
    conn.execute(
        "UPDATE builds SET status = 'failed',
             output = CASE WHEN output = '' OR substr(output, -1) = char(10) THEN output ELSE output || char(10) END || ?1,
             updated_at = ?2
         WHERE status = 'pending'",
        params![line, Timestamp::now().0],
    )
    .ctx("failing pending builds")
}
