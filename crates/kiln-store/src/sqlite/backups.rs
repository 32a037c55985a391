//! PostgreSQL backups and restores (Heroku's transfers) and daily backup schedules. A
//! transfer names its app and add-on by id and name but does not reference them: a final
//! backup outlives both, for a week.

use super::common::{DbContext, all_rows, bad_column, new_id, one_row, resolve_app, ts};
use crate::{Result, StoreError};
use kiln_model::Timestamp;
use kiln_model::records::{Addon, BackupSchedule, Transfer, TransferKind, TransferStatus};
use rusqlite::{Connection, Row, params};

pub(crate) const MIGRATION: &str = r#"
    CREATE TABLE transfers (
        id          TEXT PRIMARY KEY,
        num         INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        app_id      TEXT NOT NULL,
        app_name    TEXT NOT NULL,
        addon_id    TEXT NOT NULL,
        addon_name  TEXT NOT NULL,
        path        TEXT NOT NULL,
        status      TEXT NOT NULL,
        error       TEXT,
        bytes       INTEGER NOT NULL DEFAULT 0,
        created_at  INTEGER NOT NULL,
        started_at  INTEGER,
        finished_at INTEGER,
        expires_at  INTEGER,
        UNIQUE (app_id, num)
    ) STRICT;
    CREATE INDEX transfers_addon ON transfers(addon_id, num);
    CREATE TABLE backup_schedules (
        id         TEXT PRIMARY KEY,
        addon_id   TEXT NOT NULL UNIQUE REFERENCES addons(id) ON DELETE CASCADE,
        app_id     TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        hour       INTEGER NOT NULL CHECK (hour BETWEEN 0 AND 23),
        created_at INTEGER NOT NULL
    ) STRICT;
"#;

const SELECT: &str = "SELECT id, num, kind, app_id, app_name, addon_id, addon_name, path, status, error, bytes, \
     created_at, started_at, finished_at, expires_at FROM transfers";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Transfer> {
    let kind: String = r.get(2)?;
    let status: String = r.get(8)?;
    let opt_ts = |i| r.get::<_, Option<i64>>(i).map(|v| v.map(Timestamp));
    Ok(Transfer {
        id: r.get(0)?,
        num: r.get(1)?,
        kind: TransferKind::parse(&kind)
            .ok_or_else(|| bad_column(2, format!("unknown kind {kind:?}")))?,
        app_id: r.get(3)?,
        app_name: r.get(4)?,
        addon_id: r.get(5)?,
        addon_name: r.get(6)?,
        path: r.get(7)?,
        status: TransferStatus::parse(&status)
            .ok_or_else(|| bad_column(8, format!("unknown status {status:?}")))?,
        error: r.get(9)?,
        bytes: r.get::<_, i64>(10)?.max(0) as u64,
        created_at: ts(r, 11)?,
        started_at: opt_ts(12)?,
        finished_at: opt_ts(13)?,
        expires_at: opt_ts(14)?,
    })
}

pub(super) fn create(
    conn: &Connection,
    addon: &Addon,
    kind: TransferKind,
    path: &str,
    expires_at: Option<Timestamp>,
) -> Result<Transfer> {
    let num: u32 = conn
        .query_row(
            "SELECT COALESCE(MAX(num), 0) + 1 FROM transfers WHERE app_id = ?1",
            [&addon.app_id],
            |r| r.get(0),
        )
        .ctx("numbering a transfer")?;
    let id = new_id();
    conn.execute(
        "INSERT INTO transfers (id, num, kind, app_id, app_name, addon_id, addon_name, path, status, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?10)",
        params![id, num, kind.as_str(), addon.app_id, addon.app_name, addon.id, addon.name, path, Timestamp::now().0, expires_at.map(|t| t.0)],
    )
    .ctx("inserting a transfer")?;
    get(conn, &id)
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Transfer> {
    one_row(
        conn,
        &format!("{SELECT} WHERE id = ?1"),
        [id],
        from_row,
        "backup",
    )
}

pub(super) fn by_num(conn: &Connection, app: &str, num: u32) -> Result<Transfer> {
    let app = resolve_app(conn, app)?;
    one_row(
        conn,
        &format!("{SELECT} WHERE app_id = ?1 AND num = ?2"),
        params![app, num],
        from_row,
        "backup",
    )
}

pub(super) fn list(conn: &Connection, app: &str) -> Result<Vec<Transfer>> {
    let app = resolve_app(conn, app)?;
    all_rows(
        conn,
        &format!("{SELECT} WHERE app_id = ?1 ORDER BY num DESC"),
        [app],
        from_row,
        "listing backups",
    )
}

/// Every transfer (for expiry and retention sweeps).
pub(super) fn all(conn: &Connection) -> Result<Vec<Transfer>> {
    all_rows(
        conn,
        &format!("{SELECT} ORDER BY app_id, num DESC"),
        [],
        from_row,
        "listing backups",
    )
}

pub(super) fn set_status(
    conn: &Connection,
    id: &str,
    status: TransferStatus,
    error: Option<&str>,
    bytes: u64,
) -> Result<Transfer> {
    let now = Timestamp::now().0;
    let n = match status {
        TransferStatus::Running => conn.execute(
            "UPDATE transfers SET status = 'running', started_at = ?2 WHERE id = ?1 AND status = 'pending'",
            params![id, now],
        ),
        TransferStatus::Succeeded | TransferStatus::Failed => conn.execute(
            "UPDATE transfers SET status = ?2, error = ?3, bytes = ?4, finished_at = ?5 WHERE id = ?1 AND status IN ('pending', 'running')",
            params![id, status.as_str(), error.map(cut), bytes as i64, now],
        ),
        TransferStatus::Pending => return Err(StoreError::Conflict("A transfer cannot become pending again".into())),
    }
    .ctx("updating a transfer")?;
    if n == 0 {
        return Err(StoreError::Conflict(
            "The transfer has already ended".into(),
        ));
    }
    get(conn, id)
}

/// An error as kept: at most 4 KiB (a tool's whole stderr is not needed to say what failed),
/// cut on a character boundary, without NULs.
fn cut(e: &str) -> String {
    let mut end = e.len().min(4096);
    while !e.is_char_boundary(end) {
        end -= 1;
    }
    e[..end].replace('\0', "")
}

pub(super) fn delete(conn: &Connection, id: &str) -> Result<()> {
    conn.execute("DELETE FROM transfers WHERE id = ?1", [id])
        .ctx("deleting a transfer")?;
    Ok(())
}

/// Transfers that were running when the server stopped: failed, with the reason.
pub(super) fn fail_unfinished(conn: &Connection, reason: &str) -> Result<usize> {
    conn.execute(
        "UPDATE transfers SET status = 'failed', error = ?1, finished_at = ?2 WHERE status IN ('pending', 'running')",
        params![reason, Timestamp::now().0],
    )
    .ctx("failing interrupted transfers")
}

const SELECT_SCHEDULE: &str =
    "SELECT id, addon_id, app_id, name, hour, created_at FROM backup_schedules";

fn schedule_from_row(r: &Row<'_>) -> rusqlite::Result<BackupSchedule> {
    Ok(BackupSchedule {
        id: r.get(0)?,
        addon_id: r.get(1)?,
        app_id: r.get(2)?,
        name: r.get(3)?,
        hour: r.get(4)?,
        created_at: ts(r, 5)?,
    })
}

pub(super) fn set_schedule(
    conn: &Connection,
    addon: &Addon,
    name: &str,
    hour: u8,
) -> Result<BackupSchedule> {
    if hour > 23 {
        return Err(kiln_model::Invalid::new("hour", "The hour must be 0 to 23").into());
    }
    kiln_model::records::check_text("name", name, kiln_model::records::limits::SHORT_TEXT)?;
    conn.execute(
        "INSERT INTO backup_schedules (id, addon_id, app_id, name, hour, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (addon_id) DO UPDATE SET hour = excluded.hour, name = excluded.name",
        params![new_id(), addon.id, addon.app_id, name, hour, Timestamp::now().0],
    )
    .ctx("saving a backup schedule")?;
    one_row(
        conn,
        &format!("{SELECT_SCHEDULE} WHERE addon_id = ?1"),
        [&addon.id],
        schedule_from_row,
        "backup schedule",
    )
}

pub(super) fn schedules(conn: &Connection, app: Option<&str>) -> Result<Vec<BackupSchedule>> {
    match app {
        Some(app) => {
            let app = resolve_app(conn, app)?;
            all_rows(
                conn,
                &format!("{SELECT_SCHEDULE} WHERE app_id = ?1 ORDER BY created_at"),
                [app],
                schedule_from_row,
                "listing schedules",
            )
        }
        None => all_rows(
            conn,
            &format!("{SELECT_SCHEDULE} ORDER BY created_at"),
            [],
            schedule_from_row,
            "listing schedules",
        ),
    }
}

pub(super) fn delete_schedule(conn: &Connection, addon_id: &str) -> Result<()> {
    let n = conn
        .execute(
            "DELETE FROM backup_schedules WHERE addon_id = ?1",
            [addon_id],
        )
        .ctx("deleting a schedule")?;
    if n == 0 {
        return Err(StoreError::NotFound {
            resource: "backup schedule",
        });
    }
    Ok(())
}
