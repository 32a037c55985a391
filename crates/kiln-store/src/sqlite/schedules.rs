//! Scheduled jobs (`kiln schedules:add "every 10 minutes" -- CMD`): what to run, when it runs
//! next, and when it last ran. The expression is checked and the next run computed by the
//! platform (`kiln_model::schedule`) before anything is written; the scheduler asks for the
//! jobs that are due and records each run. Rows belong to their app and go with it.

use super::common::{DbContext, resolve_app};
use crate::{Result, StoreError};
use kiln_model::Timestamp;
use kiln_model::records::ScheduledJob;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// The schema step that adds the table (appended to the SQLite migrations).
pub(crate) const MIGRATION: &str = r#"
    CREATE TABLE schedules (
        id            TEXT PRIMARY KEY,
        app_id        TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        expression    TEXT NOT NULL,
        command       TEXT NOT NULL,
        allow_overlap INTEGER NOT NULL DEFAULT 0,
        account_id    TEXT NOT NULL,
        next_run_at   INTEGER NOT NULL,
        last_run_at   INTEGER,
        created_at    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX schedules_due ON schedules(next_run_at);
    CREATE INDEX schedules_app ON schedules(app_id, created_at);
"#;

const SELECT: &str = "SELECT s.id, s.app_id, a.name, s.expression, s.command, s.allow_overlap, \
     s.account_id, COALESCE(u.email, ''), s.next_run_at, s.last_run_at, s.created_at \
     FROM schedules s JOIN apps a ON a.id = s.app_id LEFT JOIN accounts u ON u.id = s.account_id";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ScheduledJob> {
    Ok(ScheduledJob {
        id: r.get(0)?,
        app_id: r.get(1)?,
        app_name: r.get(2)?,
        expression: r.get(3)?,
        command: r.get(4)?,
        allow_overlap: r.get::<_, i64>(5)? != 0,
        user_id: r.get(6)?,
        user_email: r.get(7)?,
        next_run_at: r.get(8)?,
        last_run_at: r.get(9)?,
        created_at: Timestamp(r.get(10)?),
    })
}

/// The most jobs an app may have.
pub const MAX_PER_APP: i64 = 100;

pub(crate) fn add(
    conn: &Connection,
    app: &str,
    account_id: &str,
    expression: &str,
    command: &str,
    allow_overlap: bool,
    next_run_at: i64,
) -> Result<ScheduledJob> {
    let app = resolve_app(conn, app)?;
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM schedules WHERE app_id = ?1",
            [&app],
            |r| r.get(0),
        )
        .ctx("counting schedules")?;
    if n >= MAX_PER_APP {
        return Err(StoreError::Conflict(format!(
            "An app may have at most {MAX_PER_APP} scheduled jobs"
        )));
    }
    let id = uuid::Uuid::new_v4().to_string();
    conn.execute(
        "INSERT INTO schedules (id, app_id, expression, command, allow_overlap, account_id, next_run_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![id, app, expression, command, i64::from(allow_overlap), account_id, next_run_at, Timestamp::now().0],
    )
    .ctx("adding a schedule")?;
    get(conn, &app, &id)
}

pub(crate) fn list(conn: &Connection, app: &str) -> Result<Vec<ScheduledJob>> {
    let app = resolve_app(conn, app)?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE s.app_id = ?1 ORDER BY s.created_at, s.id"
        ))
        .ctx("listing schedules")?;
    let rows = stmt.query_map([app], from_row).ctx("listing schedules")?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading schedules")
}

pub(crate) fn get(conn: &Connection, app: &str, id: &str) -> Result<ScheduledJob> {
    let app = resolve_app(conn, app)?;
    conn.query_row(
        &format!("{SELECT} WHERE s.app_id = ?1 AND s.id = ?2"),
        params![app, id],
        from_row,
    )
    .optional()
    .ctx("reading a schedule")?
    .ok_or(StoreError::NotFound {
        resource: "schedule",
    })
}

pub(crate) fn remove(conn: &Connection, app: &str, id: &str) -> Result<ScheduledJob> {
    let job = get(conn, app, id)?;
    conn.execute("DELETE FROM schedules WHERE id = ?1", [&job.id])
        .ctx("removing a schedule")?;
    Ok(job)
}

pub(crate) fn remove_all(conn: &Connection, app: &str) -> Result<usize> {
    let app = resolve_app(conn, app)?;
    conn.execute("DELETE FROM schedules WHERE app_id = ?1", [&app])
        .ctx("removing an app's schedules")
}

/// Jobs whose next run is at or before `now` (Unix seconds), soonest first.
pub(crate) fn due(conn: &Connection, now: i64) -> Result<Vec<ScheduledJob>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE s.next_run_at <= ?1 ORDER BY s.next_run_at LIMIT 1000"
        ))
        .ctx("finding due schedules")?;
    let rows = stmt
        .query_map([now], from_row)
        .ctx("finding due schedules")?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading due schedules")
}

/// Records a run (or a skip, with `ran_at` `None`) and when the job runs next.
pub(crate) fn advance(
    conn: &Connection,
    id: &str,
    ran_at: Option<i64>,
    next_run_at: i64,
) -> Result<()> {
    conn.execute(
        "UPDATE schedules SET next_run_at = ?2, last_run_at = COALESCE(?3, last_run_at) WHERE id = ?1",
        params![id, next_run_at, ran_at],
    )
    .ctx("recording a scheduled run")?;
    Ok(())
}
