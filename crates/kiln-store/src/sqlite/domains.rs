//! Custom domains: hostnames an app is served at besides `<app>.<domain>`. Heroku's
//! `domain` resource of kind `custom` (the default domain is derived, never stored).
//!
//! A hostname belongs to one app at most (`UNIQUE`), stored lowercase; checking that it is
//! a valid DNS name is the platform's job, done before anything is written. Rows belong to
//! their app and go with it (`ON DELETE CASCADE`).

use super::common::{DbContext, resolve_app};
use crate::{Result, StoreError};
use kiln_model::Timestamp;
use kiln_model::records::Domain;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// The schema step that adds the table (appended to the SQLite migrations).
pub(crate) const MIGRATION: &str = r#"
    CREATE TABLE domains (
        id         TEXT PRIMARY KEY,
        app_id     TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        hostname   TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX domains_app ON domains(app_id, created_at);
"#;

const SELECT: &str = "SELECT id, app_id, hostname, created_at, updated_at FROM domains";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Domain> {
    Ok(Domain {
        id: r.get(0)?,
        app_id: r.get(1)?,
        hostname: r.get(2)?,
        created_at: Timestamp(r.get(3)?),
        updated_at: Timestamp(r.get(4)?),
    })
}

pub(crate) fn list(conn: &Connection, app: &str) -> Result<Vec<Domain>> {
    let app = resolve_app(conn, app)?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE app_id = ?1 ORDER BY created_at, hostname"
        ))
        .ctx("listing domains")?;
    let rows = stmt.query_map([app], from_row).ctx("listing domains")?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading domains")
}

pub(crate) fn get(conn: &Connection, app: &str, id_or_hostname: &str) -> Result<Domain> {
    let app = resolve_app(conn, app)?;
    let hostname = id_or_hostname.trim_end_matches('.').to_ascii_lowercase();
    conn.query_row(
        &format!("{SELECT} WHERE app_id = ?1 AND (id = ?2 OR hostname = ?3)"),
        params![app, id_or_hostname, hostname],
        from_row,
    )
    .optional()
    .ctx("reading a domain")?
    .ok_or(StoreError::NotFound { resource: "domain" })
}

pub(crate) fn add(conn: &Connection, app: &str, hostname: &str) -> Result<Domain> {
    Domain::validate_hostname(hostname)?;
    let app = resolve_app(conn, app)?;
    let taken: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM domains WHERE hostname = ?1)",
            [hostname],
            |r| r.get(0),
        )
        .ctx("checking the hostname")?;
    if taken {
        // Whose it is stays private: it may be another account's app.
        return Err(StoreError::Conflict(format!(
            "{hostname} is already in use"
        )));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = Timestamp::now().0;
    conn.execute("INSERT INTO domains (id, app_id, hostname, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)", params![id, app, hostname, now])
        .ctx("adding a domain")?;
    get(conn, &app, &id)
}

pub(crate) fn remove(conn: &Connection, app: &str, id_or_hostname: &str) -> Result<Domain> {
    let existing = get(conn, app, id_or_hostname)?;
    conn.execute("DELETE FROM domains WHERE id = ?1", [&existing.id])
        .ctx("removing a domain")?;
    Ok(existing)
}

#[cfg(test)]
mod tests {
    use crate::{SqliteStore, Store, StoreError};

    #[test]
    fn domains_belong_to_one_app() {
        let s = SqliteStore::open_in_memory().unwrap();
        let owner = s.ensure_account("o@example.com", "O").unwrap();
        let (app, _) = s.create_app("domain-app", &owner.id, "heroku-24").unwrap();
        let (other, _) = s.create_app("other-app", &owner.id, "heroku-24").unwrap();

        let www = s.add_domain(&app.id, "www.example.com").unwrap();
        assert_eq!(
            (www.app_id.as_str(), www.hostname.as_str()),
            (app.id.as_str(), "www.example.com")
        );
        let api = s.add_domain("domain-app", "*.api.example.com").unwrap();
        assert_eq!(s.domains(&app.id).unwrap(), vec![www.clone(), api.clone()]);
        assert_eq!(s.domains(&other.id).unwrap(), vec![]);

        // One app per hostname, whichever app asks.
        for app_id in [&app.id, &other.id] {
            match s.add_domain(app_id, "www.example.com") {
                Err(StoreError::Conflict(m)) => assert_eq!(m, "www.example.com is already in use"),
                r => panic!("{r:?}"),
            }
        }
        assert!(
            matches!(
                s.add_domain(&app.id, "WWW.example.com"),
                Err(StoreError::Invalid(_))
            ),
            "the platform lowercases first"
        );
        assert!(matches!(
            s.add_domain(&app.id, &"a".repeat(254)),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.add_domain("nope", "x.example.com"),
            Err(StoreError::NotFound { resource: "app" })
        ));

        // By id or hostname (any case, trailing dot), only through its own app.
        assert_eq!(s.domain(&app.id, &www.id).unwrap(), www);
        assert_eq!(s.domain(&app.id, "WWW.Example.com.").unwrap(), www);
        assert!(matches!(
            s.domain(&other.id, &www.id),
            Err(StoreError::NotFound { resource: "domain" })
        ));
        assert!(matches!(
            s.remove_domain(&other.id, "www.example.com"),
            Err(StoreError::NotFound { .. })
        ));

        assert_eq!(s.remove_domain(&app.id, "www.example.com").unwrap(), www);
        assert!(
            s.add_domain(&other.id, "www.example.com").is_ok(),
            "a removed hostname is free again"
        );

        // Destroying an app takes its domains along.
        s.delete_app(&app.id).unwrap();
        assert!(s.add_domain(&other.id, "*.api.example.com").is_ok());
    }
}
