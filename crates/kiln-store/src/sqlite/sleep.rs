//! Apps' sleep settings (`ps:autosleep`). Only a setting other than the default is stored;
//! rows belong to their app and go with it.

use super::common::{DbContext, resolve_app};
use crate::Result;
use kiln_model::Timestamp;
use kiln_model::sleep::{SleepMode, SleepSetting};
use rusqlite::{Connection, OptionalExtension, params};
use std::time::Duration;

/// The schema step that adds the table (appended to the SQLite migrations).
pub(crate) const MIGRATION: &str = r#"
    CREATE TABLE app_sleep (
        app_id       TEXT PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
        mode         TEXT NOT NULL CHECK (mode IN ('default', 'on', 'off')),
        after_secs   INTEGER CHECK (after_secs IS NULL OR after_secs > 0),
        workers_stay INTEGER NOT NULL DEFAULT 0,
        updated_at   INTEGER NOT NULL
    ) STRICT;
"#;

pub(crate) fn get(conn: &Connection, app: &str) -> Result<SleepSetting> {
    let app = resolve_app(conn, app)?;
    let row: Option<(String, Option<i64>, i64)> = conn
        .query_row(
            "SELECT mode, after_secs, workers_stay FROM app_sleep WHERE app_id = ?1",
            [app],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .ctx("reading the app's sleep setting")?;
    Ok(match row {
        None => SleepSetting::default(),
        Some((mode, after, workers)) => SleepSetting {
            // The table's CHECK keeps the mode one of three; anything else reads as default.
            mode: SleepMode::parse(&mode).unwrap_or_default(),
            after: after
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
            workers_stay: workers != 0,
        },
    })
}

pub(crate) fn set(conn: &Connection, app: &str, s: &SleepSetting) -> Result<()> {
    let app = resolve_app(conn, app)?;
    if *s == SleepSetting::default() {
        conn.execute("DELETE FROM app_sleep WHERE app_id = ?1", [&app])
            .ctx("clearing the app's sleep setting")?;
        return Ok(());
    }
    conn.execute(
        "INSERT INTO app_sleep (app_id, mode, after_secs, workers_stay, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (app_id) DO UPDATE SET mode = ?2, after_secs = ?3, workers_stay = ?4, updated_at = ?5",
        params![
            app,
            s.mode.as_str(),
            s.after.map(|d| d.as_secs().min(i64::MAX as u64) as i64),
            i64::from(s.workers_stay),
            Timestamp::now().0
        ],
    )
    .ctx("saving the app's sleep setting")?;
    Ok(())
}
