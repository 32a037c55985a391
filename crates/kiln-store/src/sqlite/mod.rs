//! The SQLite implementation of [`Store`]: the embedded default.
//!
//! One connection behind a mutex is enough because SQLite admits one writer at a time anyway;
//! WAL keeps readers in other processes (backups, `sqlite3` for debugging) from blocking it.
//! Every trait method runs in one transaction. Writes start with `BEGIN IMMEDIATE` so that a
//! second process on the same file waits for the write lock (up to the busy timeout) instead of
//! failing halfway through when a read lock cannot be upgraded.

//!
//! Each aggregate has its file (accounts, apps, releases, slugs, builds, formation, domains,
//! SNI endpoints, ACM); they share [`common`]'s app lookup, row decoding and error context.
//! The rules on what may be written are `kiln_model`'s, checked here before any SQL runs, so
//! another backend would be only its SQL.

mod accounts;
mod acm;
mod addons;
mod apps;
mod backups;
mod builds;
mod common;
mod domains;
mod drains;
mod features;
mod formation;
mod releases;
mod schedules;
mod seal;
mod sleep;
mod slugs;
mod sni;
mod tenancy;
#[cfg(test)]
mod tests;

use crate::{
    Account, App, Build, BuildStatus, FormationEntry, NewRelease, Release, ReleaseRange, Result,
    Slug, Store, StoreError,
};
use common::DbContext;
use kiln_model::config::ConfigVars;
use kiln_model::drain::LogDrain;
use kiln_model::release::ReleaseStatus;
use rusqlite::{Connection, Transaction, TransactionBehavior};
pub use seal::MasterKey;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema steps, applied in order; `PRAGMA user_version` counts how many a database has.
/// Never edit a step once released: add a new one at the end.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE accounts (
        id          TEXT PRIMARY KEY,
        email       TEXT NOT NULL UNIQUE COLLATE NOCASE,
        name        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE api_keys (
        key_sha256  TEXT PRIMARY KEY,
        account_id  TEXT NOT NULL REFERENCES accounts(id),
        description TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX api_keys_account ON api_keys(account_id);

    -- Counters that must never go backwards, even when the rows they numbered are deleted.
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) STRICT;
    INSERT INTO counters (name, value) VALUES ('next_app_uid', 20000);

    CREATE TABLE apps (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        owner_id    TEXT NOT NULL REFERENCES accounts(id),
        uid         INTEGER NOT NULL UNIQUE,
        stack       TEXT NOT NULL,
        maintenance INTEGER NOT NULL DEFAULT 0 CHECK (maintenance IN (0, 1)),
        config      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        released_at INTEGER
    ) STRICT;
    CREATE INDEX apps_owner ON apps(owner_id);

    CREATE TABLE slugs (
        id                             TEXT PRIMARY KEY,
        app_id                         TEXT NOT NULL REFERENCES apps(id),
        checksum                       TEXT NOT NULL,
        size                           INTEGER NOT NULL CHECK (size >= 0),
        process_types                  TEXT NOT NULL,
        source_commit                  TEXT,
        commit_description             TEXT,
        stack                          TEXT NOT NULL,
        buildpack_provided_description TEXT,
        created_at                     INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX slugs_app ON slugs(app_id);

    CREATE TABLE releases (
        id            TEXT PRIMARY KEY,
        app_id        TEXT NOT NULL REFERENCES apps(id),
        version       INTEGER NOT NULL CHECK (version >= 1),
        description   TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        status_reason TEXT,
        slug_id       TEXT REFERENCES slugs(id),
        config        TEXT NOT NULL,
        user_id       TEXT NOT NULL REFERENCES accounts(id),
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        UNIQUE (app_id, version)
    ) STRICT;
    CREATE INDEX releases_slug ON releases(slug_id);

    -- The ledger is append-only: only the status (and why, and when) of a release may move.
    -- Enforced here too so that a bug elsewhere cannot rewrite history.
    CREATE TRIGGER releases_append_only
    BEFORE UPDATE OF id, app_id, version, description, slug_id, config, user_id, created_at ON releases
    BEGIN
        SELECT RAISE(ABORT, 'releases are append-only');
    END;

    CREATE TABLE builds (
        id             TEXT PRIMARY KEY,
        app_id         TEXT NOT NULL REFERENCES apps(id),
        status         TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        source_version TEXT,
        output         TEXT NOT NULL,
        buildpacks     TEXT NOT NULL,
        slug_id        TEXT REFERENCES slugs(id),
        release_id     TEXT REFERENCES releases(id),
        user_id        TEXT NOT NULL REFERENCES accounts(id),
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX builds_app ON builds(app_id, created_at);
    CREATE INDEX builds_pending ON builds(status) WHERE status = 'pending';
    CREATE INDEX builds_slug ON builds(slug_id);
    CREATE INDEX builds_release ON builds(release_id);

    CREATE TABLE formation (
        id           TEXT PRIMARY KEY,
        app_id       TEXT NOT NULL REFERENCES apps(id),
        process_type TEXT NOT NULL,
        quantity     INTEGER NOT NULL CHECK (quantity >= 0),
        size         TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL,
        UNIQUE (app_id, process_type)
    ) STRICT;

    CREATE TABLE buildpacks (
        app_id   TEXT NOT NULL REFERENCES apps(id),
        position INTEGER NOT NULL,
        url      TEXT NOT NULL,
        PRIMARY KEY (app_id, position)
    ) STRICT;
    "#,
    // 2: uploaded TLS certificates (Heroku's SNI endpoints).
    sni::MIGRATION,
    // 3: custom domains.
    domains::MIGRATION,
    // 4: Automatic Certificate Management.
    acm::MIGRATION,
    // 5: add-ons, their attachments, and the plans each release had attached.
    addons::MIGRATION,
    // 6: PostgreSQL backups and their schedules.
    backups::MIGRATION,
    // 7: the output of release phases.
    releases::OUTPUT_MIGRATION,
    // 8: passwords, admins, API keys as authorizations, invitations.
    accounts::MIGRATION,
    // 9: teams, collaborators, app transfers, the audit log.
    tenancy::MIGRATION,
    // 10: secrets sealed under the master key.
    seal::MIGRATION,
    // 11: log drains.
    drains::MIGRATION,
    // 12: app features switched on (labs).
    features::MIGRATION,
    // 13: apps' sleep settings.
    sleep::MIGRATION,
    // 14: scheduled jobs.
    schedules::MIGRATION,
];

/// The step that seals the secrets of an older database; after it, the file is rewritten so
/// no page keeps them in clear.
const SEALING_STEP: usize = 10;

/// The SQLite-backed [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path`, with the master key that seals
    /// its secrets, and brings its schema up to date.
    pub fn open(path: &Path, key: &MasterKey) -> Result<SqliteStore> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Db(format!("opening {}: {e}", path.display())))?;
        SqliteStore::setup(conn, true, key).map_err(|e| match e {
            StoreError::Db(msg) => StoreError::Db(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// A private database that lives as long as the store; for tests.
    pub fn open_in_memory() -> Result<SqliteStore> {
        let conn = Connection::open_in_memory().ctx("opening an in-memory database")?;
        SqliteStore::setup(conn, false, &MasterKey::generate()?)
    }

    fn setup(mut conn: Connection, on_disk: bool, key: &MasterKey) -> Result<SqliteStore> {
        seal::register(&conn, key)?;
        // Freed pages are zeroed, so a value replaced or deleted leaves no copy in the file.
        conn.pragma_update(None, "secure_delete", "ON")
            .ctx("setting secure_delete=ON")?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .ctx("setting busy_timeout")?;
        // journal_mode answers with the mode actually in effect; an in-memory database stays
        // "memory", but a file that silently stayed in rollback mode would block readers.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .ctx("setting journal_mode=WAL")?;
        if on_disk && !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Db(format!(
                "the database could not be put in WAL mode (it is in {mode:?} mode); is it on a filesystem without shared memory support?"
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .ctx("setting synchronous=NORMAL")?;
        // Foreign keys are off by default in SQLite and the setting is per connection.
        conn.pragma_update(None, "foreign_keys", "ON")
            .ctx("setting foreign_keys=ON")?;
        let from = migrate(&mut conn)?;
        if on_disk && from < SEALING_STEP && MIGRATIONS.len() >= SEALING_STEP {
            // The secrets were just sealed; rewrite the file (and empty the WAL) so that the
            // pages that held them in clear are gone.
            conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
                .ctx("rewriting the database after sealing its secrets")?;
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A thread that panicked while holding the lock dropped its transaction on the way out,
        // which rolled it back; the connection is therefore clean and safe to reuse.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in a write transaction, committed only if `f` succeeds.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a write transaction")?;
        let out = f(&tx)?;
        tx.commit().ctx("committing")?;
        Ok(out)
    }

    /// Runs `f` in a read transaction, so that multi-query reads see one snapshot.
    fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .ctx("starting a read transaction")?;
        let out = f(&tx)?;
        tx.commit().ctx("ending a read transaction")?;
        Ok(out)
    }
}

/// Brings the schema up to date; returns the version the database had.
fn migrate(conn: &mut Connection) -> Result<usize> {
    // Immediate, so that two processes opening a fresh file at once do not both migrate it.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("starting the schema migration")?;
    let current: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx("reading the schema version")?;
    let known = MIGRATIONS.len();
    let current = usize::try_from(current).map_err(|_| {
        StoreError::Db(format!(
            "the database has a negative schema version ({current}); it is not a Kiln database"
        ))
    })?;
    if current > known {
        return Err(StoreError::Db(format!(
            "the database schema is version {current} but this Kiln knows only up to {known}; run a newer Kiln"
        )));
    }
    if current == known {
        return Ok(current);
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(step)
            .map_err(|e| StoreError::Db(format!("applying schema migration {}: {e}", i + 1)))?;
    }
    // user_version lives in the database header, which is part of the transaction: a crash
    // before the commit leaves both the schema and the version as they were.
    tx.pragma_update(None, "user_version", known as i64)
        .ctx("recording the schema version")?;
    tx.commit().ctx("committing the schema migration")?;
    Ok(current)
}

impl Store for SqliteStore {
    fn ensure_account(&self, email: &str, name: &str) -> Result<Account> {
        self.write(|tx| accounts::ensure(tx, email, name))
    }

    fn add_api_key(&self, account_id: &str, key: &str, description: &str) -> Result<()> {
        self.write(|tx| accounts::add_api_key(tx, account_id, key, description))
    }

    fn account_by_api_key(&self, key: &str) -> Result<Option<(Account, crate::Authorization)>> {
        self.read(|tx| accounts::by_api_key(tx, key))
    }

    fn find_account(&self, email_or_id: &str) -> Result<Option<Account>> {
        self.read(|tx| accounts::find(tx, email_or_id))
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        self.read(|tx| accounts::list(tx))
    }

    fn create_account(
        &self,
        email: &str,
        name: &str,
        password_hash: Option<&str>,
        admin: bool,
    ) -> Result<Account> {
        self.write(|tx| accounts::create(tx, email, name, password_hash, admin))
    }

    fn set_admin(&self, account_id: &str, admin: bool) -> Result<Account> {
        self.write(|tx| accounts::set_admin(tx, account_id, admin))
    }

    fn password_hash(&self, account_id: &str) -> Result<Option<String>> {
        self.read(|tx| accounts::password_hash(tx, account_id))
    }

    fn set_password(&self, account_id: &str, hash: &str) -> Result<()> {
        self.write(|tx| accounts::set_password(tx, account_id, hash))
    }

    fn create_authorization(
        &self,
        account_id: &str,
        token: &str,
        description: &str,
        scope: &[String],
        expires_at: Option<kiln_model::Timestamp>,
    ) -> Result<crate::Authorization> {
        self.write(|tx| {
            accounts::create_authorization(tx, account_id, token, description, scope, expires_at)
        })
    }

    fn authorizations(&self, account_id: &str) -> Result<Vec<crate::Authorization>> {
        self.read(|tx| accounts::authorizations(tx, account_id))
    }

    fn authorization(&self, account_id: &str, id: &str) -> Result<crate::Authorization> {
        self.read(|tx| accounts::authorization(tx, account_id, id))
    }

    fn update_authorization(
        &self,
        account_id: &str,
        id: &str,
        description: &str,
    ) -> Result<crate::Authorization> {
        self.write(|tx| accounts::update_authorization(tx, account_id, id, description))
    }

    fn delete_authorization(&self, account_id: &str, id: &str) -> Result<crate::Authorization> {
        self.write(|tx| accounts::delete_authorization(tx, account_id, id))
    }

    fn regenerate_authorization(
        &self,
        account_id: &str,
        id: &str,
        token: &str,
    ) -> Result<crate::Authorization> {
        self.write(|tx| accounts::regenerate_authorization(tx, account_id, id, token))
    }

    fn create_invitation(
        &self,
        email: &str,
        token: &str,
        invited_by: &str,
        expires_at: kiln_model::Timestamp,
    ) -> Result<crate::Invitation> {
        self.write(|tx| accounts::create_invitation(tx, email, token, invited_by, expires_at))
    }

    fn invitation_by_token(&self, token: &str) -> Result<Option<crate::Invitation>> {
        self.read(|tx| accounts::invitation_by_token(tx, token))
    }

    fn accept_invitation(&self, id: &str, name: &str, password_hash: &str) -> Result<Account> {
        self.write(|tx| accounts::accept_invitation(tx, id, name, password_hash))
    }

    fn access_facts(&self, app: &str, account_id: &str) -> Result<crate::AccessFacts> {
        self.read(|tx| tenancy::access_facts(tx, app, account_id))
    }

    fn create_team(&self, name: &str, creator_id: &str) -> Result<crate::Team> {
        self.write(|tx| tenancy::create_team(tx, name, creator_id))
    }

    fn team(&self, id_or_name: &str) -> Result<crate::Team> {
        self.read(|tx| tenancy::team(tx, id_or_name))
    }

    fn teams_of(
        &self,
        account_id: &str,
    ) -> Result<Vec<(crate::Team, kiln_model::access::TeamRole)>> {
        self.read(|tx| tenancy::teams_of(tx, account_id))
    }

    fn team_members(&self, team_id: &str) -> Result<Vec<crate::TeamMember>> {
        self.read(|tx| tenancy::members(tx, team_id))
    }

    fn team_member(&self, team_id: &str, account_id: &str) -> Result<Option<crate::TeamMember>> {
        self.read(|tx| tenancy::member(tx, team_id, account_id))
    }

    fn set_team_member(
        &self,
        team_id: &str,
        account_id: &str,
        role: kiln_model::access::TeamRole,
    ) -> Result<crate::TeamMember> {
        self.write(|tx| tenancy::set_member(tx, team_id, account_id, role))
    }

    fn remove_team_member(&self, team_id: &str, account_id: &str) -> Result<crate::TeamMember> {
        self.write(|tx| tenancy::remove_member(tx, team_id, account_id))
    }

    fn team_apps(&self, team_id: &str) -> Result<Vec<(App, Option<Slug>)>> {
        self.read(|tx| apps::list_of_team(tx, team_id))
    }

    fn collaborators(&self, app: &str) -> Result<Vec<crate::Collaborator>> {
        self.read(|tx| tenancy::collaborators(tx, app))
    }

    fn set_collaborator(
        &self,
        app: &str,
        account_id: &str,
        permissions: kiln_model::access::Permissions,
        update: bool,
    ) -> Result<crate::Collaborator> {
        self.write(|tx| tenancy::set_collaborator(tx, app, account_id, permissions, update))
    }

    fn remove_collaborator(&self, app: &str, account_id: &str) -> Result<crate::Collaborator> {
        self.write(|tx| tenancy::remove_collaborator(tx, app, account_id))
    }

    fn move_app(&self, app: &str, owner_id: &str, team_id: Option<&str>) -> Result<App> {
        self.write(|tx| {
            tenancy::move_app(tx, app, owner_id, team_id)?;
            apps::get(tx, app)
        })
    }

    fn create_app_transfer(
        &self,
        app: &str,
        owner_id: &str,
        recipient_id: &str,
    ) -> Result<crate::AppTransfer> {
        self.write(|tx| tenancy::create_transfer(tx, app, owner_id, recipient_id))
    }

    fn app_transfer(&self, id_or_app: &str) -> Result<crate::AppTransfer> {
        self.read(|tx| tenancy::transfer(tx, id_or_app))
    }

    fn app_transfers_of(&self, account_id: &str) -> Result<Vec<crate::AppTransfer>> {
        self.read(|tx| tenancy::transfers_of(tx, account_id))
    }

    fn settle_app_transfer(
        &self,
        id: &str,
        state: crate::TransferState,
    ) -> Result<crate::AppTransfer> {
        self.write(|tx| tenancy::settle_transfer(tx, id, state))
    }

    fn audit(
        &self,
        app_id: &str,
        account_id: Option<&str>,
        email: &str,
        action: &str,
    ) -> Result<()> {
        self.write(|tx| tenancy::audit(tx, app_id, account_id, email, action))
    }

    fn audit_log(&self, app: &str, limit: u32) -> Result<Vec<crate::AuditEntry>> {
        self.read(|tx| tenancy::audit_log(tx, app, limit))
    }

    fn account(&self, id: &str) -> Result<Account> {
        self.read(|tx| accounts::get(tx, id))
    }

    fn create_app_in(
        &self,
        name: &str,
        owner_id: &str,
        team_id: Option<&str>,
        stack: &str,
    ) -> Result<(App, Release)> {
        self.write(|tx| apps::create(tx, name, owner_id, team_id, stack))
    }

    fn app(&self, id_or_name: &str) -> Result<App> {
        self.read(|tx| apps::get(tx, id_or_name))
    }

    fn apps(&self) -> Result<Vec<App>> {
        self.read(|tx| apps::list(tx))
    }

    fn apps_of(&self, owner_id: &str) -> Result<Vec<(App, Option<Slug>)>> {
        self.read(|tx| apps::list_of(tx, owner_id))
    }

    fn set_maintenance(&self, app_id: &str, on: bool) -> Result<App> {
        self.write(|tx| apps::set_maintenance(tx, app_id, on))
    }

    fn restore_config(&self, app_id: &str, config: &ConfigVars) -> Result<App> {
        self.write(|tx| apps::restore_config(tx, app_id, config))
    }

    fn fail_pending_releases(&self, reason: &str) -> Result<Vec<(String, u32)>> {
        self.write(|tx| releases::fail_pending(tx, reason))
    }

    fn delete_app(&self, app_id: &str) -> Result<()> {
        self.write(|tx| apps::delete(tx, app_id))
    }

    fn rename_app(&self, app_id: &str, new_name: &str) -> Result<App> {
        self.write(|tx| apps::rename(tx, app_id, new_name))
    }

    fn set_release_output(&self, release_id: &str, output: &str) -> Result<()> {
        self.write(|tx| releases::set_output(tx, release_id, output))
    }

    fn release_output(&self, release_id: &str) -> Result<Option<String>> {
        self.read(|tx| releases::output(tx, release_id))
    }

    fn update_config(
        &self,
        app_id: &str,
        patch: &BTreeMap<String, Option<String>>,
        user_id: &str,
    ) -> Result<(ConfigVars, Option<Release>)> {
        self.write(|tx| releases::update_config(tx, app_id, patch, user_id))
    }

    fn append_release(&self, app_id: &str, release: NewRelease) -> Result<Release> {
        self.write(|tx| releases::append(tx, app_id, release))
    }

    fn set_release_status(
        &self,
        release_id: &str,
        status: ReleaseStatus,
        reason: Option<&str>,
    ) -> Result<Release> {
        self.write(|tx| releases::set_status(tx, release_id, status, reason))
    }

    fn release(&self, app_id: &str, id_or_version: &str) -> Result<Release> {
        self.read(|tx| releases::get(tx, app_id, id_or_version))
    }

    fn releases(&self, app_id: &str, range: ReleaseRange) -> Result<Vec<Release>> {
        self.read(|tx| releases::list(tx, app_id, range))
    }

    fn current_release(&self, app_id: &str) -> Result<Option<Release>> {
        self.read(|tx| releases::current(tx, app_id))
    }

    fn insert_slug(&self, slug: &Slug) -> Result<()> {
        self.write(|tx| slugs::insert(tx, slug))
    }

    fn slug(&self, slug_id: &str) -> Result<Slug> {
        self.read(|tx| slugs::get(tx, slug_id))
    }

    fn create_build(
        &self,
        app_id: &str,
        user_id: &str,
        source_version: Option<&str>,
        buildpacks: &[String],
    ) -> Result<Build> {
        self.write(|tx| builds::create(tx, app_id, user_id, source_version, buildpacks))
    }

    fn finish_build(
        &self,
        build_id: &str,
        status: BuildStatus,
        output: &str,
        slug_id: Option<&str>,
        release_id: Option<&str>,
    ) -> Result<Build> {
        self.write(|tx| builds::finish(tx, build_id, status, output, slug_id, release_id))
    }

    fn build(&self, app_id: &str, build_id: &str) -> Result<Build> {
        self.read(|tx| builds::get(tx, app_id, build_id))
    }

    fn build_by_id(&self, build_id: &str) -> Result<Build> {
        self.read(|tx| builds::by_id(tx, build_id))
    }

    fn builds(&self, app_id: &str) -> Result<Vec<Build>> {
        self.read(|tx| builds::list(tx, app_id))
    }

    fn recent_builds(&self, app_id: &str, limit: u32) -> Result<Vec<Build>> {
        self.read(|tx| builds::recent(tx, app_id, limit))
    }

    fn fail_pending_builds(&self, reason: &str) -> Result<usize> {
        self.write(|tx| builds::fail_pending(tx, reason))
    }

    fn formation(&self, app_id: &str) -> Result<Vec<FormationEntry>> {
        self.read(|tx| formation::list(tx, app_id))
    }

    fn ensure_formation(
        &self,
        app_id: &str,
        initial: &BTreeMap<String, u32>,
    ) -> Result<Vec<FormationEntry>> {
        self.write(|tx| formation::ensure(tx, app_id, initial))
    }

    fn update_formation(
        &self,
        app_id: &str,
        updates: &[(String, Option<u32>, Option<String>)],
    ) -> Result<Vec<FormationEntry>> {
        self.write(|tx| formation::update(tx, app_id, updates))
    }

    fn buildpacks(&self, app_id: &str) -> Result<Vec<String>> {
        self.read(|tx| apps::buildpacks(tx, app_id))
    }

    fn set_buildpacks(&self, app_id: &str, urls: &[String]) -> Result<()> {
        self.write(|tx| apps::set_buildpacks(tx, app_id, urls))
    }

    fn sni_endpoints(&self, app_id: &str) -> Result<Vec<crate::SniEndpoint>> {
        self.read(|tx| sni::list(tx, Some(app_id)))
    }

    fn all_sni_endpoints(&self) -> Result<Vec<crate::SniEndpoint>> {
        self.read(|tx| sni::list(tx, None))
    }

    fn sni_endpoint(&self, app_id: &str, id_or_name: &str) -> Result<crate::SniEndpoint> {
        self.read(|tx| sni::get(tx, app_id, id_or_name))
    }

    fn create_sni_endpoint(
        &self,
        app_id: &str,
        name: &str,
        certificate_chain: &str,
        private_key: &str,
    ) -> Result<crate::SniEndpoint> {
        self.write(|tx| sni::create(tx, app_id, name, certificate_chain, private_key))
    }

    fn update_sni_endpoint(
        &self,
        app_id: &str,
        id_or_name: &str,
        certificate_chain: &str,
        private_key: &str,
    ) -> Result<crate::SniEndpoint> {
        self.write(|tx| sni::update(tx, app_id, id_or_name, certificate_chain, private_key))
    }

    fn delete_sni_endpoint(&self, app_id: &str, id_or_name: &str) -> Result<crate::SniEndpoint> {
        self.write(|tx| sni::delete(tx, app_id, id_or_name))
    }

    fn domains(&self, app_id: &str) -> Result<Vec<crate::Domain>> {
        self.read(|tx| domains::list(tx, app_id))
    }

    fn domain(&self, app_id: &str, id_or_hostname: &str) -> Result<crate::Domain> {
        self.read(|tx| domains::get(tx, app_id, id_or_hostname))
    }

    fn add_domain(&self, app_id: &str, hostname: &str) -> Result<crate::Domain> {
        self.write(|tx| domains::add(tx, app_id, hostname))
    }

    fn remove_domain(&self, app_id: &str, id_or_hostname: &str) -> Result<crate::Domain> {
        self.write(|tx| domains::remove(tx, app_id, id_or_hostname))
    }

    fn drains(&self, app_id: &str) -> Result<Vec<LogDrain>> {
        self.read(|tx| drains::list(tx, app_id))
    }

    fn all_drains(&self) -> Result<Vec<LogDrain>> {
        self.read(|tx| drains::all(tx))
    }

    fn drain(&self, app_id: &str, identity: &str) -> Result<LogDrain> {
        self.read(|tx| drains::get(tx, app_id, identity))
    }

    fn add_drain(&self, app_id: &str, url: &str, addon_id: Option<&str>) -> Result<LogDrain> {
        self.write(|tx| drains::add(tx, app_id, url, addon_id))
    }

    fn remove_drain(&self, app_id: &str, identity: &str) -> Result<LogDrain> {
        self.write(|tx| drains::remove(tx, app_id, identity))
    }

    fn app_features(&self, app_id: &str) -> Result<Vec<String>> {
        self.read(|tx| features::enabled(tx, app_id))
    }

    fn set_app_feature(&self, app_id: &str, name: &str, on: bool) -> Result<bool> {
        self.write(|tx| features::set(tx, app_id, name, on))
    }

    fn add_schedule(
        &self,
        app_id: &str,
        account_id: &str,
        expression: &str,
        command: &str,
        allow_overlap: bool,
        next_run_at: i64,
    ) -> Result<kiln_model::records::ScheduledJob> {
        self.write(|tx| {
            schedules::add(
                tx,
                app_id,
                account_id,
                expression,
                command,
                allow_overlap,
                next_run_at,
            )
        })
    }

    fn schedules(&self, app_id: &str) -> Result<Vec<kiln_model::records::ScheduledJob>> {
        self.read(|tx| schedules::list(tx, app_id))
    }

    fn schedule(&self, app_id: &str, id: &str) -> Result<kiln_model::records::ScheduledJob> {
        self.read(|tx| schedules::get(tx, app_id, id))
    }

    fn remove_schedule(&self, app_id: &str, id: &str) -> Result<kiln_model::records::ScheduledJob> {
        self.write(|tx| schedules::remove(tx, app_id, id))
    }

    fn remove_schedules(&self, app_id: &str) -> Result<usize> {
        self.write(|tx| schedules::remove_all(tx, app_id))
    }

    fn due_schedules(&self, now: i64) -> Result<Vec<kiln_model::records::ScheduledJob>> {
        self.read(|tx| schedules::due(tx, now))
    }

    fn schedule_advanced(&self, id: &str, ran_at: Option<i64>, next_run_at: i64) -> Result<()> {
        self.write(|tx| schedules::advance(tx, id, ran_at, next_run_at))
    }

    fn app_sleep(&self, app_id: &str) -> Result<kiln_model::sleep::SleepSetting> {
        self.read(|tx| sleep::get(tx, app_id))
    }

    fn set_app_sleep(&self, app_id: &str, s: &kiln_model::sleep::SleepSetting) -> Result<()> {
        self.write(|tx| sleep::set(tx, app_id, s))
    }

    fn set_acm(&self, app_id: &str, on: bool) -> Result<App> {
        self.write(|tx| {
            acm::set_enabled(tx, app_id, on)?;
            apps::get(tx, app_id)
        })
    }

    fn acm_apps(&self) -> Result<Vec<String>> {
        self.read(|tx| acm::enabled_apps(tx))
    }

    fn acm_domains(&self, app_id: &str) -> Result<Vec<crate::AcmDomain>> {
        self.read(|tx| acm::domains(tx, app_id))
    }

    fn set_acm_state(&self, domain_id: &str, state: &crate::AcmState) -> Result<()> {
        self.write(|tx| acm::set_state(tx, domain_id, state))
    }

    fn request_acm_refresh(&self, app_id: &str) -> Result<()> {
        self.write(|tx| acm::request_refresh(tx, app_id))
    }

    fn put_acm_certificate(
        &self,
        domain_id: &str,
        name: &str,
        certificate_chain: &str,
        private_key: &str,
    ) -> Result<crate::SniEndpoint> {
        self.write(|tx| acm::put_certificate(tx, domain_id, name, certificate_chain, private_key))
    }

    fn addon(&self, id_or_name: &str) -> Result<crate::Addon> {
        self.read(|tx| addons::get(tx, id_or_name))
    }

    fn all_addons(&self) -> Result<Vec<crate::Addon>> {
        self.read(|tx| addons::all(tx))
    }

    fn app_addons(&self, app_id: &str) -> Result<Vec<crate::Addon>> {
        self.read(|tx| addons::of_app(tx, app_id))
    }

    fn account_addons(&self, account_id: &str) -> Result<Vec<crate::Addon>> {
        self.read(|tx| addons::of_owner(tx, account_id))
    }

    fn app_attachments(&self, app_id: &str) -> Result<Vec<crate::AddonAttachment>> {
        self.read(|tx| addons::attachments_of_app(tx, app_id))
    }

    fn addon_attachments(&self, addon_id: &str) -> Result<Vec<crate::AddonAttachment>> {
        self.read(|tx| addons::attachments_of_addon(tx, addon_id))
    }

    fn account_attachments(&self, account_id: &str) -> Result<Vec<crate::AddonAttachment>> {
        self.read(|tx| addons::attachments_of_owner(tx, account_id))
    }

    fn attachment(&self, id: &str) -> Result<crate::AddonAttachment> {
        self.read(|tx| addons::attachment(tx, id))
    }

    fn create_addon(
        &self,
        addon: &crate::NewAddon,
        attachment_name: &str,
        user_id: &str,
    ) -> Result<(crate::Addon, crate::AddonAttachment, Release)> {
        self.write(|tx| addons::create(tx, addon, attachment_name, user_id))
    }

    fn attach_addon(
        &self,
        addon_id: &str,
        app_id: &str,
        name: &str,
        namespace: Option<&str>,
        user_id: &str,
    ) -> Result<(crate::AddonAttachment, Release)> {
        self.write(|tx| addons::attach(tx, addon_id, app_id, name, namespace, user_id))
    }

    fn detach_addon(
        &self,
        attachment_id: &str,
        user_id: &str,
    ) -> Result<(crate::AddonAttachment, Release)> {
        self.write(|tx| addons::detach(tx, attachment_id, user_id))
    }

    fn destroy_addon(&self, addon_id: &str, user_id: &str) -> Result<(crate::Addon, Vec<Release>)> {
        self.write(|tx| addons::destroy(tx, addon_id, user_id))
    }

    fn change_addon_plan(
        &self,
        addon_id: &str,
        plan: &str,
        config: &BTreeMap<String, String>,
        message: &str,
        user_id: &str,
    ) -> Result<(crate::Addon, Vec<Release>)> {
        self.write(|tx| addons::change_plan(tx, addon_id, plan, config, message, user_id))
    }

    fn rotate_addon_config(
        &self,
        addon_id: &str,
        config: &BTreeMap<String, String>,
        user_id: &str,
    ) -> Result<(crate::Addon, Vec<Release>)> {
        self.write(|tx| addons::rotate(tx, addon_id, config, user_id))
    }

    fn create_transfer(
        &self,
        addon: &crate::Addon,
        kind: crate::TransferKind,
        path: &str,
        expires_at: Option<kiln_model::Timestamp>,
    ) -> Result<crate::Transfer> {
        self.write(|tx| backups::create(tx, addon, kind, path, expires_at))
    }

    fn transfer(&self, id: &str) -> Result<crate::Transfer> {
        self.read(|tx| backups::get(tx, id))
    }

    fn transfer_by_num(&self, app_id: &str, num: u32) -> Result<crate::Transfer> {
        self.read(|tx| backups::by_num(tx, app_id, num))
    }

    fn transfers(&self, app_id: &str) -> Result<Vec<crate::Transfer>> {
        self.read(|tx| backups::list(tx, app_id))
    }

    fn all_transfers(&self) -> Result<Vec<crate::Transfer>> {
        self.read(|tx| backups::all(tx))
    }

    fn set_transfer_status(
        &self,
        id: &str,
        status: crate::TransferStatus,
        error: Option<&str>,
        bytes: u64,
    ) -> Result<crate::Transfer> {
        self.write(|tx| backups::set_status(tx, id, status, error, bytes))
    }

    fn delete_transfer(&self, id: &str) -> Result<()> {
        self.write(|tx| backups::delete(tx, id))
    }

    fn fail_unfinished_transfers(&self, reason: &str) -> Result<usize> {
        self.write(|tx| backups::fail_unfinished(tx, reason))
    }

    fn set_backup_schedule(
        &self,
        addon: &crate::Addon,
        name: &str,
        hour: u8,
    ) -> Result<crate::BackupSchedule> {
        self.write(|tx| backups::set_schedule(tx, addon, name, hour))
    }

    fn backup_schedules(&self, app_id: Option<&str>) -> Result<Vec<crate::BackupSchedule>> {
        self.read(|tx| backups::schedules(tx, app_id))
    }

    fn delete_backup_schedule(&self, addon_id: &str) -> Result<()> {
        self.write(|tx| backups::delete_schedule(tx, addon_id))
    }
}
