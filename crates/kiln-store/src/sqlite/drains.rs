//! Log drains: where each app's log stream is copied (Heroku's `log-drain`). A drain's URL
//! may carry a password (HTTPS Basic authentication), so it is sealed like config vars; the
//! token (`d.<uuid>`) is not secret: receivers see it on every line. Rows belong to their app
//! and go with it; add-on drains go with their add-on.

use super::common::{DbContext, resolve_app};
use crate::{Result, StoreError};
use kiln_model::Timestamp;
use kiln_model::drain::{LogDrain, MAX_DRAINS_PER_APP};
use rusqlite::{Connection, Row, params};

/// The schema step that adds the table (appended to the SQLite migrations).
pub(crate) const MIGRATION: &str = r#"
    CREATE TABLE log_drains (
        id         TEXT PRIMARY KEY,
        app_id     TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        url        TEXT NOT NULL,
        token      TEXT NOT NULL UNIQUE,
        addon_id   TEXT REFERENCES addons(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX log_drains_app ON log_drains(app_id, created_at);
"#;

const SELECT: &str = "SELECT id, app_id, kiln_open('log_drains.url:' || id, url), token, addon_id, created_at, updated_at FROM log_drains";

fn from_row(r: &Row<'_>) -> rusqlite::Result<LogDrain> {
    Ok(LogDrain {
        id: r.get(0)?,
        app_id: r.get(1)?,
        url: r.get(2)?,
        token: r.get(3)?,
        addon_id: r.get(4)?,
        created_at: Timestamp(r.get(5)?),
        updated_at: Timestamp(r.get(6)?),
    })
}

pub(crate) fn list(conn: &Connection, app: &str) -> Result<Vec<LogDrain>> {
    let app = resolve_app(conn, app)?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE app_id = ?1 ORDER BY created_at, id"
        ))
        .ctx("listing drains")?;
    let rows = stmt.query_map([app], from_row).ctx("listing drains")?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading drains")
}

/// Every drain of every app, for starting them when the server starts.
pub(crate) fn all(conn: &Connection) -> Result<Vec<LogDrain>> {
    let mut stmt = conn
        .prepare_cached(&format!("{SELECT} ORDER BY app_id, created_at, id"))
        .ctx("listing drains")?;
    let rows = stmt.query_map([], from_row).ctx("listing drains")?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading drains")
}

/// A drain by id, token or URL (Heroku's `query_identity`). URLs are sealed, so they are
/// compared after opening; an app has at most a handful of drains.
pub(crate) fn get(conn: &Connection, app: &str, identity: &str) -> Result<LogDrain> {
    list(conn, app)?
        .into_iter()
        .find(|d| d.id == identity || d.token == identity || d.url == identity)
        .ok_or(StoreError::NotFound {
            resource: "log-drain",
        })
}

pub(crate) fn add(
    conn: &Connection,
    app: &str,
    url: &str,
    addon_id: Option<&str>,
) -> Result<LogDrain> {
    let app = resolve_app(conn, app)?;
    let existing = list(conn, &app)?;
    if existing.iter().any(|d| d.url == url) {
        return Err(StoreError::Conflict(
            "This app already has a drain with that URL.".to_string(),
        ));
    }
    if existing.len() >= MAX_DRAINS_PER_APP {
        return Err(StoreError::Conflict(format!(
            "An app may have at most {MAX_DRAINS_PER_APP} log drains; remove one first."
        )));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let token = format!("d.{}", uuid::Uuid::new_v4());
    let now = Timestamp::now().0;
    conn.execute(
        "INSERT INTO log_drains (id, app_id, url, token, addon_id, created_at, updated_at) \
         VALUES (?1, ?2, kiln_seal('log_drains.url:' || ?1, ?3), ?4, ?5, ?6, ?6)",
        params![id, app, url, token, addon_id, now],
    )
    .ctx("adding a drain")?;
    get(conn, &app, &id)
}

pub(crate) fn remove(conn: &Connection, app: &str, identity: &str) -> Result<LogDrain> {
    let existing = get(conn, app, identity)?;
    conn.execute("DELETE FROM log_drains WHERE id = ?1", [&existing.id])
        .ctx("removing a drain")?;
    Ok(existing)
}

#[cfg(test)]
mod tests {
    use crate::{SqliteStore, Store, StoreError};

    #[test]
    fn drains_belong_to_their_app_and_are_found_by_id_token_or_url() {
        let s = SqliteStore::open_in_memory().unwrap();
        let owner = s.ensure_account("o@example.com", "O").unwrap();
        let (app, _) = s.create_app("drain-app", &owner.id, "heroku-24").unwrap();
        let (other, _) = s.create_app("other-app", &owner.id, "heroku-24").unwrap();
        let url = "https://user:secret@logs.example.com/in";
        let d = s.add_drain(&app.id, url, None).unwrap();
        assert!(d.token.starts_with("d.") && d.token.len() == 38, "{d:?}");
        assert_eq!(d.url, url);
        for identity in [d.id.as_str(), d.token.as_str(), url] {
            assert_eq!(s.drain(&app.id, identity).unwrap(), d);
            assert!(matches!(
                s.drain(&other.id, identity),
                Err(StoreError::NotFound { .. })
            ));
        }
        assert!(matches!(
            s.add_drain(&app.id, url, None),
            Err(StoreError::Conflict(_))
        ));
        for i in 1..kiln_model::drain::MAX_DRAINS_PER_APP {
            s.add_drain(&app.id, &format!("syslog://h{i}.example.com:514"), None)
                .unwrap();
        }
        assert!(matches!(
            s.add_drain(&app.id, "syslog://one-more.example.com:514", None),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.all_drains().unwrap().len(), 6);
        assert_eq!(s.remove_drain(&app.id, &d.token).unwrap(), d);
        assert_eq!(s.drains(&app.id).unwrap().len(), 5);
        assert!(s.drains(&other.id).unwrap().is_empty());
    }
}
