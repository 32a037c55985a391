//! What every table's code shares: the one error-context helper, the one app lookup, ids,
//! JSON columns and row decoding.

use crate::{Result, StoreError};
use kiln_model::Timestamp;
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row};
use std::collections::BTreeMap;

/// Adds what was being done to a database error, for the person reading the log.
pub(super) trait DbContext<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T> DbContext<T> for rusqlite::Result<T> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| StoreError::Db(format!("{what}: {e}")))
    }
}

/// The id of an app named by id or name. The two cannot collide: a UUID is 36 characters and
/// an app name at most 30.
pub(super) fn resolve_app(conn: &Connection, id_or_name: &str) -> Result<String> {
    conn.query_row(
        "SELECT id FROM apps WHERE id = ?1 OR name = ?1",
        [id_or_name],
        |r| r.get(0),
    )
    .optional()
    .ctx("looking up an app")?
    .ok_or(StoreError::NotFound { resource: "app" })
}

/// Fails unless the account exists.
pub(super) fn require_account(conn: &Connection, id: &str) -> Result<()> {
    let found = conn
        .query_row("SELECT 1 FROM accounts WHERE id = ?1", [id], |_| Ok(()))
        .optional()
        .ctx("looking up an account")?;
    found.ok_or(StoreError::NotFound {
        resource: "account",
    })
}

/// Every row of a query, or the error with what was being read.
pub(super) fn all_rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    from_row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    what: &str,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).ctx(what)?;
    let rows = stmt.query_map(params, from_row).ctx(what)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().ctx(what)
}

/// One row of a query, `NotFound { resource }` when there is none.
pub(super) fn one_row<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    from_row: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    resource: &'static str,
) -> Result<T> {
    conn.query_row(sql, params, from_row)
        .optional()
        .ctx(&format!("reading the {resource}"))?
        .ok_or(StoreError::NotFound { resource })
}

pub(super) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

// JSON is built through `Value` rather than `serde_json::to_string` so that this crate needs no
// direct serde dependency; rendering a `Value` cannot fail.
pub(super) fn map_json(map: &BTreeMap<String, String>) -> String {
    serde_json::Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
    .to_string()
}

pub(super) fn list_json(items: &[String]) -> String {
    serde_json::Value::Array(
        items
            .iter()
            .map(|s| serde_json::Value::String(s.clone()))
            .collect(),
    )
    .to_string()
}

pub(super) fn bad_column(idx: usize, why: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, why.into().into())
}

pub(super) fn ts(row: &Row<'_>, idx: usize) -> rusqlite::Result<Timestamp> {
    row.get::<_, i64>(idx).map(Timestamp)
}

pub(super) fn string_map(row: &Row<'_>, idx: usize) -> rusqlite::Result<BTreeMap<String, String>> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| bad_column(idx, format!("not a JSON object of strings: {e}")))
}

pub(super) fn string_list(row: &Row<'_>, idx: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| bad_column(idx, format!("not a JSON array of strings: {e}")))
}
