//! SNI endpoints: TLS certificates (chain and private key, PEM) uploaded to an app, which
//! the router presents for the app's hostnames. Heroku's `sni-endpoint` resource.
//!
//! The store keeps the PEM text as given; checking it (it parses, the key matches, which
//! names it covers) is the platform's job, done before anything is written. Rows belong to
//! their app and go with it (`ON DELETE CASCADE`). Private keys are stored in the clear,
//! like every other secret in the database (config vars); the data directory is 0700.

use super::common::{DbContext, resolve_app};
use crate::{Result, StoreError};
use kiln_model::Timestamp;
use kiln_model::records::SniEndpoint;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// The schema step that adds the table (appended to the SQLite migrations).
pub(crate) const MIGRATION: &str = r#"
    CREATE TABLE sni_endpoints (
        id                TEXT PRIMARY KEY,
        app_id            TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name              TEXT NOT NULL UNIQUE,
        certificate_chain TEXT NOT NULL,
        private_key       TEXT NOT NULL,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX sni_endpoints_app ON sni_endpoints(app_id, created_at);
"#;

const SELECT: &str = "SELECT id, app_id, name, certificate_chain, kiln_open('sni_endpoints.private_key:' || id, private_key), created_at, updated_at, acm_domain_id FROM sni_endpoints";

fn from_row(r: &Row<'_>) -> rusqlite::Result<SniEndpoint> {
    Ok(SniEndpoint {
        id: r.get(0)?,
        app_id: r.get(1)?,
        name: r.get(2)?,
        certificate_chain: r.get(3)?,
        private_key: r.get(4)?,
        created_at: Timestamp(r.get(5)?),
        updated_at: Timestamp(r.get(6)?),
        acm_domain_id: r.get(7)?,
    })
}

pub(crate) fn list(conn: &Connection, app: Option<&str>) -> Result<Vec<SniEndpoint>> {
    let rows = match app {
        Some(app) => {
            let app = resolve_app(conn, app)?;
            let mut stmt = conn
                .prepare(&format!(
                    "{SELECT} WHERE app_id = ?1 ORDER BY created_at, id"
                ))
                .ctx("listing SNI endpoints")?;
            stmt.query_map([app], from_row)
                .ctx("listing SNI endpoints")?
                .collect::<rusqlite::Result<Vec<_>>>()
        }
        None => {
            let mut stmt = conn
                .prepare(&format!("{SELECT} ORDER BY app_id, created_at, id"))
                .ctx("listing SNI endpoints")?;
            stmt.query_map([], from_row)
                .ctx("listing SNI endpoints")?
                .collect::<rusqlite::Result<Vec<_>>>()
        }
    };
    rows.ctx("reading SNI endpoints")
}

pub(crate) fn get(conn: &Connection, app: &str, id_or_name: &str) -> Result<SniEndpoint> {
    let app = resolve_app(conn, app)?;
    conn.query_row(
        &format!("{SELECT} WHERE app_id = ?1 AND (id = ?2 OR name = ?2)"),
        params![app, id_or_name],
        from_row,
    )
    .optional()
    .ctx("reading an SNI endpoint")?
    .ok_or(StoreError::NotFound {
        resource: "sni-endpoint",
    })
}

pub(crate) fn create(
    conn: &Connection,
    app: &str,
    name: &str,
    certificate_chain: &str,
    private_key: &str,
) -> Result<SniEndpoint> {
    kiln_model::records::validate_sni_endpoint_name(name)?;
    SniEndpoint::validate_pem(certificate_chain, private_key)?;
    let app = resolve_app(conn, app)?;
    let taken: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sni_endpoints WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )
        .ctx("checking the name")?;
    if taken {
        return Err(StoreError::Conflict(format!(
            "The SNI endpoint name {name} is already taken"
        )));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = Timestamp::now().0;
    conn.execute(
        "INSERT INTO sni_endpoints (id, app_id, name, certificate_chain, private_key, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, kiln_seal('sni_endpoints.private_key:' || ?1, ?5), ?6, ?6)",
        params![id, app, name, certificate_chain, private_key, now],
    )
    .ctx("adding an SNI endpoint")?;
    get(conn, &app, &id)
}

pub(crate) fn update(
    conn: &Connection,
    app: &str,
    id_or_name: &str,
    certificate_chain: &str,
    private_key: &str,
) -> Result<SniEndpoint> {
    SniEndpoint::validate_pem(certificate_chain, private_key)?;
    let existing = get(conn, app, id_or_name)?;
    conn.execute(
        "UPDATE sni_endpoints SET certificate_chain = ?2, private_key = kiln_seal('sni_endpoints.private_key:' || ?1, ?3), updated_at = ?4 WHERE id = ?1",
        params![existing.id, certificate_chain, private_key, Timestamp::now().0],
    )
    .ctx("updating an SNI endpoint")?;
    get(conn, &existing.app_id, &existing.id)
}

pub(crate) fn delete(conn: &Connection, app: &str, id_or_name: &str) -> Result<SniEndpoint> {
    let existing = get(conn, app, id_or_name)?;
    conn.execute("DELETE FROM sni_endpoints WHERE id = ?1", [&existing.id])
        .ctx("removing an SNI endpoint")?;
    Ok(existing)
}

#[cfg(test)]
mod tests {
    use crate::{SqliteStore, Store, StoreError};

    #[test]
    fn endpoints_belong_to_their_app() {
        let s = SqliteStore::open_in_memory().unwrap();
        let owner = s.ensure_account("o@example.com", "O").unwrap();
        let (app, _) = s.create_app("certs-app", &owner.id, "heroku-24").unwrap();
        let (other, _) = s.create_app("other-app", &owner.id, "heroku-24").unwrap();

        let e = s
            .create_sni_endpoint(&app.id, "tokyo-1050", "CHAIN", "KEY")
            .unwrap();
        assert_eq!(
            (
                e.app_id.as_str(),
                e.name.as_str(),
                e.certificate_chain.as_str(),
                e.private_key.as_str()
            ),
            (app.id.as_str(), "tokyo-1050", "CHAIN", "KEY")
        );
        assert!(
            !format!("{e:?}").contains("KEY"),
            "debug output hides the key"
        );
        assert!(
            matches!(
                s.create_sni_endpoint(&other.id, "tokyo-1050", "C", "K"),
                Err(StoreError::Conflict(_))
            ),
            "names are unique"
        );
        assert!(matches!(
            s.create_sni_endpoint(&app.id, "Bad_Name", "C", "K"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.create_sni_endpoint("nope", "okay-name", "C", "K"),
            Err(StoreError::NotFound { resource: "app" })
        ));
        let second = s
            .create_sni_endpoint("certs-app", "osaka-2", "CHAIN2", "KEY2")
            .unwrap();

        assert_eq!(
            s.sni_endpoints("certs-app").unwrap(),
            vec![e.clone(), second.clone()]
        );
        assert_eq!(s.sni_endpoints(&other.id).unwrap(), vec![]);
        assert_eq!(s.sni_endpoint(&app.id, "tokyo-1050").unwrap(), e);
        assert_eq!(s.sni_endpoint(&app.id, &e.id).unwrap(), e);
        assert!(
            matches!(
                s.sni_endpoint(&other.id, &e.id),
                Err(StoreError::NotFound {
                    resource: "sni-endpoint"
                })
            ),
            "not through another app"
        );

        let updated = s
            .update_sni_endpoint(&app.id, "tokyo-1050", "NEWCHAIN", "NEWKEY")
            .unwrap();
        assert_eq!(
            (
                updated.id.as_str(),
                updated.certificate_chain.as_str(),
                updated.private_key.as_str()
            ),
            (e.id.as_str(), "NEWCHAIN", "NEWKEY")
        );
        assert!(updated.updated_at >= e.updated_at);
        assert!(matches!(
            s.update_sni_endpoint(&other.id, &e.id, "X", "Y"),
            Err(StoreError::NotFound { .. })
        ));

        assert_eq!(s.all_sni_endpoints().unwrap().len(), 2);
        assert_eq!(
            s.delete_sni_endpoint(&app.id, &second.id).unwrap().name,
            "osaka-2"
        );
        assert!(matches!(
            s.delete_sni_endpoint(&app.id, &second.id),
            Err(StoreError::NotFound { .. })
        ));

        // Destroying the app takes its certificates along.
        s.delete_app(&app.id).unwrap();
        assert!(s.all_sni_endpoints().unwrap().is_empty());
        assert!(
            s.create_sni_endpoint(&other.id, "tokyo-1050", "C", "K")
                .is_ok(),
            "the name is free again"
        );
        assert!(matches!(
            s.create_sni_endpoint(&other.id, "big-one", &"x".repeat(200 * 1024), "K"),
            Err(StoreError::Invalid(_))
        ));
    }
}
