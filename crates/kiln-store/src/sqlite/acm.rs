//! Automatic Certificate Management (Heroku's ACM): the app's flag, each custom domain's
//! ACM state, and certificates issued by ACME, kept as SNI endpoints marked with the domain
//! they were issued for so that the router serves them like uploaded ones and `certs` lists
//! them.
//!
//! The rows follow their owners: a domain's state and its ACM certificate go with the
//! domain (`ON DELETE CASCADE`), everything with the app. Turning ACM off removes the app's
//! ACM certificates and states in the same transaction.

use super::common::{DbContext, resolve_app};
use crate::{Result, StoreError};
use kiln_model::Timestamp;
use kiln_model::records::{AcmDomain, AcmState, SniEndpoint};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// The schema step (appended to the SQLite migrations).
pub(crate) const MIGRATION: &str = r#"
    ALTER TABLE apps ADD COLUMN acm INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sni_endpoints ADD COLUMN acm_domain_id TEXT REFERENCES domains(id) ON DELETE CASCADE;
    CREATE UNIQUE INDEX sni_endpoints_acm ON sni_endpoints(acm_domain_id) WHERE acm_domain_id IS NOT NULL;
    CREATE TABLE acm_domains (
        domain_id       TEXT PRIMARY KEY REFERENCES domains(id) ON DELETE CASCADE,
        status          TEXT NOT NULL,
        reason          TEXT,
        failures        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        refresh         INTEGER NOT NULL DEFAULT 0,
        updated_at      INTEGER NOT NULL
    ) STRICT;
"#;

fn state_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<AcmState>> {
    let Some(status) = r.get::<_, Option<String>>(at)? else {
        return Ok(None);
    };
    Ok(Some(AcmState {
        status,
        reason: r.get(at + 1)?,
        failures: r.get(at + 2)?,
        next_attempt_at: r.get::<_, Option<i64>>(at + 3)?.map(Timestamp),
        refresh: r.get(at + 4)?,
        updated_at: Timestamp(r.get(at + 5)?),
    }))
}

pub(crate) fn set_enabled(conn: &Connection, app: &str, on: bool) -> Result<()> {
    let app = resolve_app(conn, app)?;
    conn.execute(
        "UPDATE apps SET acm = ?2, updated_at = ?3 WHERE id = ?1",
        params![app, on, Timestamp::now().0],
    )
    .ctx("setting the ACM flag")?;
    if !on {
        conn.execute(
            "DELETE FROM sni_endpoints WHERE app_id = ?1 AND acm_domain_id IS NOT NULL",
            [&app],
        )
        .ctx("removing ACM certificates")?;
        conn.execute(
            "DELETE FROM acm_domains WHERE domain_id IN (SELECT id FROM domains WHERE app_id = ?1)",
            [&app],
        )
        .ctx("clearing ACM states")?;
    }
    Ok(())
}

pub(crate) fn enabled_apps(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare("SELECT id FROM apps WHERE acm = 1 ORDER BY created_at, id")
        .ctx("listing ACM apps")?;
    let rows = stmt.query_map([], |r| r.get(0)).ctx("listing ACM apps")?;
    rows.collect::<rusqlite::Result<Vec<String>>>()
        .ctx("reading ACM apps")
}

pub(crate) fn domains(conn: &Connection, app: &str) -> Result<Vec<AcmDomain>> {
    let app = resolve_app(conn, app)?;
    let mut stmt = conn
        .prepare(
            "SELECT d.id, d.app_id, d.hostname, d.created_at, d.updated_at, s.status, s.reason, s.failures, s.next_attempt_at, s.refresh, s.updated_at \
             FROM domains d LEFT JOIN acm_domains s ON s.domain_id = d.id WHERE d.app_id = ?1 ORDER BY d.created_at, d.hostname",
        )
        .ctx("listing ACM domains")?;
    let rows = stmt
        .query_map([app], |r| {
            Ok(AcmDomain {
                domain: crate::Domain {
                    id: r.get(0)?,
                    app_id: r.get(1)?,
                    hostname: r.get(2)?,
                    created_at: Timestamp(r.get(3)?),
                    updated_at: Timestamp(r.get(4)?),
                },
                state: state_from_row(r, 5)?,
            })
        })
        .ctx("listing ACM domains")?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading ACM domains")
}

pub(crate) fn set_state(conn: &Connection, domain_id: &str, s: &AcmState) -> Result<()> {
    let s = s.checked()?;
    let n = conn
        .execute(
            "INSERT INTO acm_domains (domain_id, status, reason, failures, next_attempt_at, refresh, updated_at) \
             SELECT id, ?2, ?3, ?4, ?5, ?6, ?7 FROM domains WHERE id = ?1 \
             ON CONFLICT(domain_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, failures = excluded.failures, \
             next_attempt_at = excluded.next_attempt_at, refresh = excluded.refresh, updated_at = excluded.updated_at",
            params![domain_id, s.status, s.reason, s.failures, s.next_attempt_at.map(|t| t.0), s.refresh, s.updated_at.0],
        )
        .ctx("recording an ACM state")?;
    if n == 0 {
        return Err(StoreError::NotFound { resource: "domain" });
    }
    Ok(())
}

pub(crate) fn request_refresh(conn: &Connection, app: &str) -> Result<()> {
    let app = resolve_app(conn, app)?;
    conn.execute(
        "INSERT INTO acm_domains (domain_id, status, failures, refresh, updated_at) SELECT id, 'pending', 0, 1, ?2 FROM domains WHERE app_id = ?1 \
         ON CONFLICT(domain_id) DO UPDATE SET status = 'pending', reason = NULL, failures = 0, next_attempt_at = NULL, refresh = 1, updated_at = excluded.updated_at",
        params![app, Timestamp::now().0],
    )
    .ctx("asking for new ACM certificates")?;
    Ok(())
}

/// Stores the certificate issued for a domain: replaces the chain and key of the domain's
/// ACM endpoint, or adds one named `name`.
pub(crate) fn put_certificate(
    conn: &Connection,
    domain_id: &str,
    name: &str,
    chain: &str,
    key: &str,
) -> Result<SniEndpoint> {
    let app: String = conn
        .query_row(
            "SELECT app_id FROM domains WHERE id = ?1",
            [domain_id],
            |r| r.get(0),
        )
        .optional()
        .ctx("looking up a domain")?
        .ok_or(StoreError::NotFound { resource: "domain" })?;
    // An order that finishes after ACM was turned off must not bring a certificate back.
    let on: bool = conn
        .query_row("SELECT acm FROM apps WHERE id = ?1", [&app], |r| r.get(0))
        .ctx("reading the ACM flag")?;
    if !on {
        return Err(StoreError::Conflict(
            "Automatic Certificate Management is off for this app".into(),
        ));
    }
    let existing: Option<String> = conn
        .query_row(
            "SELECT id FROM sni_endpoints WHERE acm_domain_id = ?1",
            [domain_id],
            |r| r.get(0),
        )
        .optional()
        .ctx("looking up an ACM certificate")?;
    match existing {
        Some(id) => super::sni::update(conn, &app, &id, chain, key),
        None => {
            let created = super::sni::create(conn, &app, name, chain, key)?;
            conn.execute(
                "UPDATE sni_endpoints SET acm_domain_id = ?2 WHERE id = ?1",
                params![created.id, domain_id],
            )
            .ctx("marking an ACM certificate")?;
            super::sni::get(conn, &app, &created.id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SqliteStore, Store};

    #[test]
    fn acm_flag_states_and_certificates() {
        let s = SqliteStore::open_in_memory().unwrap();
        let owner = s.ensure_account("o@example.com", "O").unwrap();
        let (app, _) = s.create_app("acm-app", &owner.id, "heroku-24").unwrap();
        assert!(!app.acm);
        let www = s.add_domain(&app.id, "www.example.com").unwrap();
        let api = s.add_domain(&app.id, "api.example.com").unwrap();
        assert!(s.acm_apps().unwrap().is_empty());
        assert!(s.set_acm(&app.id, true).unwrap().acm);
        assert_eq!(s.acm_apps().unwrap(), [app.id.clone()]);

        let listed = s.acm_domains(&app.id).unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|d| (d.domain.hostname.as_str(), d.state.is_none()))
                .collect::<Vec<_>>(),
            [("www.example.com", true), ("api.example.com", true)]
        );

        let mut failed = AcmState::new("failed", Some("x".repeat(10_000)));
        failed.failures = 2;
        failed.next_attempt_at = Some(Timestamp(12345));
        s.set_acm_state(&api.id, &failed).unwrap();
        let got = s.acm_domains(&app.id).unwrap()[1].state.clone().unwrap();
        assert_eq!(
            (got.status.as_str(), got.failures, got.next_attempt_at),
            ("failed", 2, Some(Timestamp(12345)))
        );
        assert!(got.reason.unwrap().len() < 4000, "long reasons are cut");
        assert!(matches!(
            s.set_acm_state("nope", &failed),
            Err(StoreError::NotFound { .. })
        ));

        // An issued certificate is an SNI endpoint marked with its domain; a renewal replaces it.
        let first = s
            .put_acm_certificate(&www.id, "acm-one", "CHAIN1", "KEY1")
            .unwrap();
        assert_eq!(first.acm_domain_id.as_deref(), Some(www.id.as_str()));
        let again = s
            .put_acm_certificate(&www.id, "acm-two", "CHAIN2", "KEY2")
            .unwrap();
        assert_eq!(
            (
                again.id.as_str(),
                again.name.as_str(),
                again.certificate_chain.as_str()
            ),
            (first.id.as_str(), "acm-one", "CHAIN2")
        );
        let uploaded = s
            .create_sni_endpoint(&app.id, "uploaded-1", "C", "K")
            .unwrap();
        assert_eq!(uploaded.acm_domain_id, None);

        s.request_acm_refresh(&app.id).unwrap();
        assert!(s.acm_domains(&app.id).unwrap().iter().all(|d| {
            d.state
                .as_ref()
                .is_some_and(|st| st.refresh && st.status == "pending" && st.failures == 0)
        }));

        // Removing the domain takes its ACM certificate and state along.
        s.remove_domain(&app.id, "www.example.com").unwrap();
        assert_eq!(s.sni_endpoints(&app.id).unwrap().len(), 1);
        let _ = s
            .put_acm_certificate(&api.id, "acm-three", "C3", "K3")
            .unwrap();

        // Off: ACM certificates and states go, uploaded ones stay.
        assert!(!s.set_acm(&app.id, false).unwrap().acm);
        assert_eq!(s.sni_endpoints(&app.id).unwrap(), vec![uploaded]);
        assert!(
            matches!(
                s.put_acm_certificate(&api.id, "acm-four", "C", "K"),
                Err(StoreError::Conflict(_))
            ),
            "not while ACM is off"
        );
        assert!(
            s.acm_domains(&app.id)
                .unwrap()
                .iter()
                .all(|d| d.state.is_none())
        );
        assert!(matches!(
            s.set_acm("nope", true),
            Err(StoreError::NotFound { resource: "app" })
        ));
    }
}
