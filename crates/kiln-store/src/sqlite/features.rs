//! App features that can be switched (Heroku's labs: `heroku labs:enable log-runtime-metrics`).
//! Only features switched on are stored; which features exist is the API's catalog, not the
//! store's concern. Rows belong to their app and go with it.

use super::common::{DbContext, resolve_app};
use crate::Result;
use kiln_model::Timestamp;
use rusqlite::{Connection, params};

/// The schema step that adds the table (appended to the SQLite migrations).
pub(crate) const MIGRATION: &str = r#"
    CREATE TABLE app_features (
        app_id     TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        enabled_at INTEGER NOT NULL,
        PRIMARY KEY (app_id, name)
    ) STRICT;
"#;

/// The features switched on for an app, by name, sorted.
pub(crate) fn enabled(conn: &Connection, app: &str) -> Result<Vec<String>> {
    let app = resolve_app(conn, app)?;
    let mut stmt = conn
        .prepare_cached("SELECT name FROM app_features WHERE app_id = ?1 ORDER BY name")
        .ctx("listing app features")?;
    let rows = stmt
        .query_map([app], |r| r.get(0))
        .ctx("listing app features")?;
    rows.collect::<rusqlite::Result<Vec<String>>>()
        .ctx("reading app features")
}

/// Switches a feature on or off; `true` if that changed anything.
pub(crate) fn set(conn: &Connection, app: &str, name: &str, on: bool) -> Result<bool> {
    let app = resolve_app(conn, app)?;
    let changed = if on {
        conn.execute(
            "INSERT OR IGNORE INTO app_features (app_id, name, enabled_at) VALUES (?1, ?2, ?3)",
            params![app, name, Timestamp::now().0],
        )
    } else {
        conn.execute(
            "DELETE FROM app_features WHERE app_id = ?1 AND name = ?2",
            params![app, name],
        )
    }
    .ctx("switching an app feature")?;
    Ok(changed > 0)
}
