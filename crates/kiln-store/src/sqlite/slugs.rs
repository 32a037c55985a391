//! Slugs: what a build made, kept by checksum in the slug store; rows belong to their app.

use super::common::{DbContext, map_json, one_row, resolve_app, string_map, ts};
use crate::{Result, Slug, StoreError};
use rusqlite::{Connection, OptionalExtension, Row, params};

pub(super) const SELECT: &str = "SELECT id, app_id, checksum, size, process_types, source_commit, commit_description, stack, \
     buildpack_provided_description, created_at FROM slugs";

pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<Slug> {
    let size: i64 = row.get(3)?;
    Ok(Slug {
        id: row.get(0)?,
        app_id: row.get(1)?,
        checksum: row.get(2)?,
        size: u64::try_from(size).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(3, size))?,
        process_types: string_map(row, 4)?,
        commit: row.get(5)?,
        commit_description: row.get(6)?,
        stack: row.get(7)?,
        buildpack_provided_description: row.get(8)?,
        created_at: ts(row, 9)?,
    })
}

/// Fails unless the slug belongs to the app (see `releases::require_of`).
pub(super) fn require_of(conn: &Connection, app_id: &str, slug_id: &str) -> Result<()> {
    let found = conn
        .query_row(
            "SELECT 1 FROM slugs WHERE id = ?1 AND app_id = ?2",
            [slug_id, app_id],
            |_| Ok(()),
        )
        .optional()
        .ctx("looking up a slug")?;
    found.ok_or(StoreError::NotFound { resource: "slug" })
}

pub(super) fn insert(conn: &Connection, slug: &Slug) -> Result<()> {
    slug.validate()?;
    // Checked by `validate`: the size fits.
    let size = i64::try_from(slug.size).unwrap_or(i64::MAX);
    let app = resolve_app(conn, &slug.app_id)?;
    let exists = conn
        .query_row("SELECT 1 FROM slugs WHERE id = ?1", [&slug.id], |_| Ok(()))
        .optional()
        .ctx("looking up a slug")?
        .is_some();
    if exists {
        return Err(StoreError::Conflict(format!(
            "Slug {} already exists",
            slug.id
        )));
    }
    conn.execute(
        "INSERT INTO slugs (id, app_id, checksum, size, process_types, source_commit, commit_description, stack,
                            buildpack_provided_description, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![slug.id, app, slug.checksum, size, map_json(&slug.process_types), slug.commit, slug.commit_description, slug.stack, slug.buildpack_provided_description, slug.created_at.0],
    )
    .ctx("inserting a slug")?;
    Ok(())
}

pub(super) fn get(conn: &Connection, slug_id: &str) -> Result<Slug> {
    one_row(
        conn,
        &format!("{SELECT} WHERE id = ?1"),
        [slug_id],
        from_row,
        "slug",
    )
}
