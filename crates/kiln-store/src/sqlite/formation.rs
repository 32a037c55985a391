//! Formation: how many dynos of each process type, of which size.

use super::common::{DbContext, all_rows, new_id, resolve_app, ts};
use crate::{FormationEntry, Result, StoreError};
use kiln_model::Timestamp;
use kiln_model::procfile::validate_process_type;
use kiln_model::records::FormationUpdate;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::BTreeMap;

const SELECT: &str =
    "SELECT id, app_id, process_type, quantity, size, created_at, updated_at FROM formation";

fn from_row(row: &Row<'_>) -> rusqlite::Result<FormationEntry> {
    Ok(FormationEntry {
        id: row.get(0)?,
        app_id: row.get(1)?,
        process_type: row.get(2)?,
        quantity: row.get(3)?,
        size: row.get(4)?,
        created_at: ts(row, 5)?,
        updated_at: ts(row, 6)?,
    })
}

fn list_of(conn: &Connection, app: &str) -> Result<Vec<FormationEntry>> {
    all_rows(
        conn,
        &format!("{SELECT} WHERE app_id = ?1 ORDER BY process_type"),
        [app],
        from_row,
        "reading formation",
    )
}

pub(super) fn list(conn: &Connection, app_id: &str) -> Result<Vec<FormationEntry>> {
    let app = resolve_app(conn, app_id)?;
    list_of(conn, &app)
}

/// Adds the process types that have no entry yet, with their initial quantity.
pub(super) fn ensure(
    conn: &Connection,
    app_id: &str,
    initial: &BTreeMap<String, u32>,
) -> Result<Vec<FormationEntry>> {
    for process_type in initial.keys() {
        validate_process_type(process_type)?;
    }
    let app = resolve_app(conn, app_id)?;
    let now = Timestamp::now();
    for (process_type, quantity) in initial {
        conn.execute(
            "INSERT INTO formation (id, app_id, process_type, quantity, size, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (app_id, process_type) DO NOTHING",
            params![new_id(), app, process_type, quantity, FormationEntry::default_size(), now.0],
        )
        .ctx("inserting a formation entry")?;
    }
    list_of(conn, &app)
}

pub(super) fn update(
    conn: &Connection,
    app_id: &str,
    updates: &[(String, Option<u32>, Option<String>)],
) -> Result<Vec<FormationEntry>> {
    let updates = FormationUpdate::parse_all(updates)?;
    let app = resolve_app(conn, app_id)?;
    // Every type is checked before anything is written: a scale of several types is all or
    // nothing.
    for u in &updates {
        let exists = conn
            .query_row(
                "SELECT 1 FROM formation WHERE app_id = ?1 AND process_type = ?2",
                [&app, &u.process_type],
                |_| Ok(()),
            )
            .optional()
            .ctx("looking up a formation entry")?
            .is_some();
        if !exists {
            return Err(StoreError::NotFound {
                resource: "formation",
            });
        }
    }
    let now = Timestamp::now();
    for u in updates.iter().filter(|u| u.changes_anything()) {
        conn.execute(
            "UPDATE formation SET quantity = COALESCE(?3, quantity), size = COALESCE(?4, size), updated_at = ?5
             WHERE app_id = ?1 AND process_type = ?2",
            params![app, u.process_type, u.quantity, u.size, now.0],
        )
        .ctx("updating a formation entry")?;
    }
    list_of(conn, &app)
}
