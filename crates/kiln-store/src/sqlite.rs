//! The SQLite implementation of [`Store`]: the embedded default.
//!
//! One connection behind a mutex is enough because SQLite admits one writer at a time anyway;
//! WAL keeps readers in other processes (backups, `sqlite3` for debugging) from blocking it.
//! Every trait method runs in one transaction. Writes start with `BEGIN IMMEDIATE` so that a
//! second process on the same file waits for the write lock (up to the busy timeout) instead of
//! failing halfway through when a read lock cannot be upgraded.

use crate::{
    Account, App, Build, BuildStatus, FormationEntry, NewRelease, Release, ReleaseRange, Result,
    Slug, Store, StoreError,
};
use kiln_model::buildpack::BuildpackRef;
use kiln_model::config::{self, ConfigVars};
use kiln_model::procfile::validate_process_type;
use kiln_model::release::ReleaseStatus;
use kiln_model::{AppName, DynoSize, Invalid, Timestamp};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Apps get uids from here up, leaving the range below to the host's own users and services.
const FIRST_APP_UID: u32 = 20_000;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The size a formation entry gets when nobody asked for one (Heroku's default).
const DEFAULT_SIZE: &str = "Standard-1X";

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
    crate::sni::MIGRATION,
    // 3: custom domains.
    crate::domains::MIGRATION,
    // 4: Automatic Certificate Management.
    crate::acm::MIGRATION,
];

// Input limits. The API layer has its own, usually tighter; these keep a hostile or buggy
// caller from filling the database with one call.
const MAX_EMAIL_LEN: usize = 254;
const MAX_SHORT_TEXT: usize = 1024;
const MAX_LONG_TEXT: usize = 64 * 1024;
/// Release descriptions name every var a config change touched, so they can outgrow the 32 kB
/// of the config itself (short names joined by ", "); this bound is above any valid change.
const MAX_DESCRIPTION: usize = 256 * 1024;
const MAX_STACK_LEN: usize = 64;
const MAX_API_KEY_LEN: usize = 4096;

/// The SQLite-backed [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Db(format!("opening {}: {e}", path.display())))?;
        SqliteStore::setup(conn, true).map_err(|e| match e {
            StoreError::Db(msg) => StoreError::Db(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// A private database that lives as long as the store; for tests.
    pub fn open_in_memory() -> Result<SqliteStore> {
        let conn = Connection::open_in_memory().ctx("opening an in-memory database")?;
        SqliteStore::setup(conn, false)
    }

    fn setup(mut conn: Connection, on_disk: bool) -> Result<SqliteStore> {
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
        migrate(&mut conn)?;
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

fn migrate(conn: &mut Connection) -> Result<()> {
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
        return Ok(());
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
    Ok(())
}

/// Adds what was being done to a database error, for the person reading the log.
trait DbContext<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T> DbContext<T> for rusqlite::Result<T> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| StoreError::Db(format!("{what}: {e}")))
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn hash_api_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(digest.len() * 2);
    for b in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
    }
    hex
}

// JSON is built through `Value` rather than `serde_json::to_string` so that this crate needs no
// direct serde dependency; rendering a `Value` cannot fail.
fn map_json(map: &BTreeMap<String, String>) -> String {
    serde_json::Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
    .to_string()
}

fn list_json(items: &[String]) -> String {
    serde_json::Value::Array(
        items
            .iter()
            .map(|s| serde_json::Value::String(s.clone()))
            .collect(),
    )
    .to_string()
}

// --- input checks ---------------------------------------------------------------------------

/// A value for an error message: long hostile input is cut so the error stays readable.
fn shown(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        format!("{:?}…", s.chars().take(MAX).collect::<String>())
    }
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), Invalid> {
    if value.len() > max {
        return Err(Invalid::new(
            field,
            format!(
                "{field} is too long ({} bytes; the limit is {max})",
                value.len()
            ),
        ));
    }
    if value.contains('\0') {
        return Err(Invalid::new(field, format!("{field} contains a NUL byte")));
    }
    Ok(())
}

fn check_email(email: &str) -> Result<(), Invalid> {
    let plausible = !email.is_empty()
        && email.len() <= MAX_EMAIL_LEN
        && email.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if plausible {
        Ok(())
    } else {
        Err(Invalid::new(
            "email",
            format!("Invalid email address {}", shown(email)),
        ))
    }
}

fn check_stack(stack: &str) -> Result<(), Invalid> {
    let ok = !stack.is_empty()
        && stack.len() <= MAX_STACK_LEN
        && stack
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "stack",
            format!(
                "Invalid stack {}: use letters, digits, '-', '_' or '.'",
                shown(stack)
            ),
        ))
    }
}

/// Config vars that do not come through a PATCH (a release made by the caller, e.g. a
/// rollback) obey the same rules as those that do.
fn check_config(vars: &ConfigVars) -> Result<(), Invalid> {
    let patch: BTreeMap<String, Option<String>> = vars
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    config::apply_patch(&ConfigVars::new(), &patch).map(|_| ())
}

/// The id the store hands out is a canonical UUID; ids chosen by callers (slugs) must be too,
/// so that every id looks alike and none can smuggle in path or SQL fragments.
fn check_uuid(field: &'static str, id: &str) -> Result<(), Invalid> {
    match uuid::Uuid::parse_str(id) {
        Ok(u) if u.hyphenated().to_string() == id => Ok(()),
        _ => Err(Invalid::new(
            field,
            format!("Invalid {field} {}: expected a lowercase UUID", shown(id)),
        )),
    }
}

/// The checksum names the slug's file in the slug store, so it must not be able to name
/// anything else.
fn check_checksum(checksum: &str) -> Result<(), Invalid> {
    let ok = checksum
        .strip_prefix("SHA256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "checksum",
            format!(
                "Invalid slug checksum {}: expected SHA256:<64 hex digits>",
                shown(checksum)
            ),
        ))
    }
}

fn check_buildpacks(urls: &[String]) -> Result<(), Invalid> {
    for url in urls {
        BuildpackRef::parse(url)?;
    }
    Ok(())
}

// --- rows -----------------------------------------------------------------------------------

fn bad_column(idx: usize, why: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, why.into().into())
}

fn ts(row: &Row<'_>, idx: usize) -> rusqlite::Result<Timestamp> {
    row.get::<_, i64>(idx).map(Timestamp)
}

fn string_map(row: &Row<'_>, idx: usize) -> rusqlite::Result<BTreeMap<String, String>> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| bad_column(idx, format!("not a JSON object of strings: {e}")))
}

fn string_list(row: &Row<'_>, idx: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| bad_column(idx, format!("not a JSON array of strings: {e}")))
}

fn release_status(row: &Row<'_>, idx: usize) -> rusqlite::Result<ReleaseStatus> {
    let s: String = row.get(idx)?;
    ReleaseStatus::parse(&s).ok_or_else(|| bad_column(idx, format!("unknown release status {s:?}")))
}

fn build_status(row: &Row<'_>, idx: usize) -> rusqlite::Result<BuildStatus> {
    let s: String = row.get(idx)?;
    match s.as_str() {
        "pending" => Ok(BuildStatus::Pending),
        "succeeded" => Ok(BuildStatus::Succeeded),
        "failed" => Ok(BuildStatus::Failed),
        _ => Err(bad_column(idx, format!("unknown build status {s:?}"))),
    }
}

const ACCOUNT_SELECT: &str = "SELECT id, email, name, created_at, updated_at FROM accounts";

fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        created_at: ts(row, 3)?,
        updated_at: ts(row, 4)?,
    })
}

const APP_SELECT: &str = "SELECT a.id, a.name, a.owner_id, o.email, a.uid, a.stack, a.maintenance, a.config, \
     a.created_at, a.updated_at, a.released_at, a.acm FROM apps a JOIN accounts o ON o.id = a.owner_id";

fn app_from_row(row: &Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        id: row.get(0)?,
        name: row.get(1)?,
        owner_id: row.get(2)?,
        owner_email: row.get(3)?,
        uid: row.get(4)?,
        stack: row.get(5)?,
        maintenance: row.get(6)?,
        config: string_map(row, 7)?,
        created_at: ts(row, 8)?,
        updated_at: ts(row, 9)?,
        released_at: row.get::<_, Option<i64>>(10)?.map(Timestamp),
        acm: row.get(11)?,
    })
}

const RELEASE_SELECT: &str = "SELECT r.id, r.app_id, r.version, r.description, r.status, r.status_reason, r.slug_id, \
     r.config, r.user_id, u.email, r.created_at, r.updated_at FROM releases r JOIN accounts u ON u.id = r.user_id";

fn release_from_row(row: &Row<'_>) -> rusqlite::Result<Release> {
    Ok(Release {
        id: row.get(0)?,
        app_id: row.get(1)?,
        version: row.get(2)?,
        description: row.get(3)?,
        status: release_status(row, 4)?,
        status_reason: row.get(5)?,
        slug_id: row.get(6)?,
        config: string_map(row, 7)?,
        user_id: row.get(8)?,
        user_email: row.get(9)?,
        created_at: ts(row, 10)?,
        updated_at: ts(row, 11)?,
    })
}

const SLUG_SELECT: &str = "SELECT id, app_id, checksum, size, process_types, source_commit, commit_description, stack, \
     buildpack_provided_description, created_at FROM slugs";

fn slug_from_row(row: &Row<'_>) -> rusqlite::Result<Slug> {
    let size: i64 = row.get(3)?;
    Ok(Slug {
        id: row.get(0)?,
        app_id: row.get(1)?,
        checksum: row.get(2)?,
        size: u64::try_from(size).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(3, size))?,
        process_types: string_map(row, 4)?,
        commit: row.get(5)?,
        commit_description: row.get(6)?,
        stack: row.get(7)?,
        buildpack_provided_description: row.get(8)?,
        created_at: ts(row, 9)?,
    })
}

const BUILD_SELECT: &str = "SELECT b.id, b.app_id, b.status, b.source_version, b.output, b.buildpacks, b.slug_id, \
     b.release_id, b.user_id, u.email, b.created_at, b.updated_at FROM builds b JOIN accounts u ON u.id = b.user_id";

fn build_from_row(row: &Row<'_>) -> rusqlite::Result<Build> {
    Ok(Build {
        id: row.get(0)?,
        app_id: row.get(1)?,
        status: build_status(row, 2)?,
        source_version: row.get(3)?,
        output: row.get(4)?,
        buildpacks: string_list(row, 5)?,
        slug_id: row.get(6)?,
        release_id: row.get(7)?,
        user_id: row.get(8)?,
        user_email: row.get(9)?,
        created_at: ts(row, 10)?,
        updated_at: ts(row, 11)?,
    })
}

const FORMATION_SELECT: &str =
    "SELECT id, app_id, process_type, quantity, size, created_at, updated_at FROM formation";

fn formation_from_row(row: &Row<'_>) -> rusqlite::Result<FormationEntry> {
    Ok(FormationEntry {
        id: row.get(0)?,
        app_id: row.get(1)?,
        process_type: row.get(2)?,
        quantity: row.get(3)?,
        size: row.get(4)?,
        created_at: ts(row, 5)?,
        updated_at: ts(row, 6)?,
    })
}

// --- lookups shared by the methods ----------------------------------------------------------

/// The id of an app named by id or name. The two cannot collide: a UUID is 36 characters and
/// an app name at most 30.
fn resolve_app(conn: &Connection, id_or_name: &str) -> Result<String> {
    conn.query_row(
        "SELECT id FROM apps WHERE id = ?1 OR name = ?1",
        [id_or_name],
        |r| r.get(0),
    )
    .optional()
    .ctx("looking up an app")?
    .ok_or(StoreError::NotFound { resource: "app" })
}

fn load_app(conn: &Connection, id_or_name: &str) -> Result<App> {
    conn.query_row(
        &format!("{APP_SELECT} WHERE a.id = ?1 OR a.name = ?1"),
        [id_or_name],
        app_from_row,
    )
    .optional()
    .ctx("reading an app")?
    .ok_or(StoreError::NotFound { resource: "app" })
}

fn load_account(conn: &Connection, id: &str) -> Result<Account> {
    conn.query_row(
        &format!("{ACCOUNT_SELECT} WHERE id = ?1"),
        [id],
        account_from_row,
    )
    .optional()
    .ctx("reading an account")?
    .ok_or(StoreError::NotFound {
        resource: "account",
    })
}

fn require_account(conn: &Connection, id: &str) -> Result<()> {
    let found = conn
        .query_row("SELECT 1 FROM accounts WHERE id = ?1", [id], |_| Ok(()))
        .optional()
        .ctx("looking up an account")?;
    found.ok_or(StoreError::NotFound {
        resource: "account",
    })
}

/// Slugs, releases and builds only ever point at things of their own app, so that deleting
/// an app can delete everything it owns without breaking another app's ledger.
fn require_slug_of(conn: &Connection, app_id: &str, slug_id: &str) -> Result<()> {
    let found = conn
        .query_row(
            "SELECT 1 FROM slugs WHERE id = ?1 AND app_id = ?2",
            [slug_id, app_id],
            |_| Ok(()),
        )
        .optional()
        .ctx("looking up a slug")?;
    found.ok_or(StoreError::NotFound { resource: "slug" })
}

fn require_release_of(conn: &Connection, app_id: &str, release_id: &str) -> Result<()> {
    let found = conn
        .query_row(
            "SELECT 1 FROM releases WHERE id = ?1 AND app_id = ?2",
            [release_id, app_id],
            |_| Ok(()),
        )
        .optional()
        .ctx("looking up a release")?;
    found.ok_or(StoreError::NotFound {
        resource: "release",
    })
}

fn load_release_by_id(conn: &Connection, release_id: &str) -> Result<Release> {
    conn.query_row(
        &format!("{RELEASE_SELECT} WHERE r.id = ?1"),
        [release_id],
        release_from_row,
    )
    .optional()
    .ctx("reading a release")?
    .ok_or(StoreError::NotFound {
        resource: "release",
    })
}

fn load_build(conn: &Connection, build_id: &str) -> Result<Build> {
    conn.query_row(
        &format!("{BUILD_SELECT} WHERE b.id = ?1"),
        [build_id],
        build_from_row,
    )
    .optional()
    .ctx("reading a build")?
    .ok_or(StoreError::NotFound { resource: "build" })
}

fn list_formation(conn: &Connection, app_id: &str) -> Result<Vec<FormationEntry>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "{FORMATION_SELECT} WHERE app_id = ?1 ORDER BY process_type"
        ))
        .ctx("reading formation")?;
    let rows = stmt
        .query_map([app_id], formation_from_row)
        .ctx("reading formation")?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading formation")
}

/// Appends a release to an app's ledger and makes its config the app's current config. The
/// version is read and written inside the caller's (immediate) transaction, so no other writer
/// can take the same number; the UNIQUE (app_id, version) constraint backs that up.
fn insert_release(
    conn: &Connection,
    app_id: &str,
    new: NewRelease,
    now: Timestamp,
) -> Result<Release> {
    check_text("description", &new.description, MAX_DESCRIPTION)?;
    check_config(&new.config)?;
    require_account(conn, &new.user_id)?;
    if let Some(slug_id) = &new.slug_id {
        require_slug_of(conn, app_id, slug_id)?;
    }
    let last: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM releases WHERE app_id = ?1",
            [app_id],
            |r| r.get(0),
        )
        .ctx("reading the newest release version")?;
    let version = u32::try_from(last + 1)
        .map_err(|_| StoreError::Db(format!("release version {last} cannot be followed")))?;
    let id = new_id();
    let config_json = map_json(&new.config);
    conn.execute(
        "INSERT INTO releases (id, app_id, version, description, status, status_reason, slug_id, config, user_id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7, ?8, ?9, ?9)",
        params![id, app_id, version, new.description, new.status.as_str(), new.slug_id, config_json, new.user_id, now.0],
    )
    .ctx("inserting a release")?;
    conn.execute(
        "UPDATE apps SET config = ?2, released_at = ?3, updated_at = ?3 WHERE id = ?1",
        params![app_id, config_json, now.0],
    )
    .ctx("updating the app's config")?;
    load_release_by_id(conn, &id)
}

// --- the trait ------------------------------------------------------------------------------

impl Store for SqliteStore {
    fn ensure_account(&self, email: &str, name: &str) -> Result<Account> {
        check_email(email)?;
        check_text("name", name, MAX_SHORT_TEXT)?;
        self.write(|tx| {
            // The email column compares case-insensitively: Bob@x and bob@x are one person.
            let existing = tx
                .query_row(&format!("{ACCOUNT_SELECT} WHERE email = ?1"), [email], account_from_row)
                .optional()
                .ctx("looking up an account by email")?;
            if let Some(account) = existing {
                return Ok(account);
            }
            let now = Timestamp::now();
            let id = new_id();
            tx.execute(
                "INSERT INTO accounts (id, email, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![id, email, name, now.0],
            )
            .ctx("inserting an account")?;
            load_account(tx, &id)
        })
    }

    fn add_api_key(&self, account_id: &str, key: &str, description: &str) -> Result<()> {
        if key.is_empty() || key.len() > MAX_API_KEY_LEN {
            return Err(Invalid::new(
                "api_key",
                format!("An API key must be 1 to {MAX_API_KEY_LEN} bytes long"),
            )
            .into());
        }
        check_text("description", description, MAX_SHORT_TEXT)?;
        let hash = hash_api_key(key);
        self.write(|tx| {
            require_account(tx, account_id)?;
            let owner: Option<String> = tx
                .query_row("SELECT account_id FROM api_keys WHERE key_sha256 = ?1", [&hash], |r| r.get(0))
                .optional()
                .ctx("looking up an API key")?;
            match owner {
                // Registering the same key again (e.g. a bootstrap key at every start) is harmless.
                Some(owner) if owner == account_id => {
                    tx.execute("UPDATE api_keys SET description = ?2 WHERE key_sha256 = ?1", params![hash, description])
                        .ctx("updating an API key")?;
                }
                Some(_) => return Err(StoreError::Conflict("This API key is already registered to another account".into())),
                None => {
                    tx.execute(
                        "INSERT INTO api_keys (key_sha256, account_id, description, created_at) VALUES (?1, ?2, ?3, ?4)",
                        params![hash, account_id, description, Timestamp::now().0],
                    )
                    .ctx("inserting an API key")?;
                }
            }
            Ok(())
        })
    }

    fn account_by_api_key(&self, key: &str) -> Result<Option<Account>> {
        if key.is_empty() || key.len() > MAX_API_KEY_LEN {
            return Ok(None);
        }
        let hash = hash_api_key(key);
        self.read(|tx| {
            tx.query_row(
                "SELECT a.id, a.email, a.name, a.created_at, a.updated_at
                 FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_sha256 = ?1",
                [&hash],
                account_from_row,
            )
            .optional()
            .ctx("looking up an API key")
        })
    }

    fn account(&self, id: &str) -> Result<Account> {
        self.read(|tx| load_account(tx, id))
    }

    fn create_app(&self, name: &str, owner_id: &str, stack: &str) -> Result<(App, Release)> {
        let name = AppName::parse(name)?;
        check_stack(stack)?;
        self.write(|tx| {
            require_account(tx, owner_id)?;
            let taken = tx
                .query_row("SELECT 1 FROM apps WHERE name = ?1", [name.as_str()], |_| Ok(()))
                .optional()
                .ctx("checking the app name")?
                .is_some();
            if taken {
                return Err(StoreError::Conflict(format!("Name {name} is already taken")));
            }
            // Uids come from a counter, not from MAX(uid)+1, so that a deleted app's uid is never
            // given to a new app that could then read files the old one left behind.
            let next: i64 =
                tx.query_row("SELECT value FROM counters WHERE name = 'next_app_uid'", [], |r| r.get(0)).ctx("reading the uid counter")?;
            let uid = u32::try_from(next)
                .ok()
                .filter(|uid| *uid >= FIRST_APP_UID && *uid < u32::MAX)
                .ok_or_else(|| StoreError::Db(format!("the app uid counter holds {next}, outside the usable range")))?;
            tx.execute("UPDATE counters SET value = ?1 WHERE name = 'next_app_uid'", [i64::from(uid) + 1])
                .ctx("advancing the uid counter")?;
            let now = Timestamp::now();
            let id = new_id();
            tx.execute(
                "INSERT INTO apps (id, name, owner_id, uid, stack, maintenance, config, created_at, updated_at, released_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, '{}', ?6, ?6, NULL)",
                params![id, name.as_str(), owner_id, uid, stack, now.0],
            )
            .ctx("inserting an app")?;
            let initial = NewRelease {
                description: "Initial release".to_string(),
                status: ReleaseStatus::Succeeded,
                slug_id: None,
                config: ConfigVars::new(),
                user_id: owner_id.to_string(),
            };
            let release = insert_release(tx, &id, initial, now)?;
            Ok((load_app(tx, &id)?, release))
        })
    }

    fn app(&self, id_or_name: &str) -> Result<App> {
        self.read(|tx| load_app(tx, id_or_name))
    }

    fn apps(&self) -> Result<Vec<App>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare_cached(&format!("{APP_SELECT} ORDER BY a.name"))
                .ctx("listing apps")?;
            let rows = stmt.query_map([], app_from_row).ctx("listing apps")?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .ctx("listing apps")
        })
    }

    fn apps_of(&self, owner_id: &str) -> Result<Vec<(App, Option<Slug>)>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(&format!("{APP_SELECT} WHERE a.owner_id = ?1 ORDER BY a.name")).ctx("listing apps")?;
            let apps = stmt.query_map([owner_id], app_from_row).ctx("listing apps")?.collect::<rusqlite::Result<Vec<_>>>().ctx("listing apps")?;
            // Each app's current release is its latest succeeded one; its slug in the same pass.
            let mut stmt = tx
                .prepare_cached(&format!(
                    "{SLUG_SELECT} WHERE id IN (SELECT r.slug_id FROM releases r JOIN apps a ON a.id = r.app_id
                         WHERE a.owner_id = ?1 AND r.status = 'succeeded'
                           AND r.version = (SELECT MAX(version) FROM releases WHERE app_id = r.app_id AND status = 'succeeded'))"
                ))
                .ctx("listing the apps' slugs")?;
            let slugs = stmt.query_map([owner_id], slug_from_row).ctx("listing the apps' slugs")?.collect::<rusqlite::Result<Vec<_>>>().ctx("listing the apps' slugs")?;
            let mut by_app: BTreeMap<String, Slug> = slugs.into_iter().map(|s| (s.app_id.clone(), s)).collect();
            Ok(apps.into_iter().map(|a| { let slug = by_app.remove(&a.id); (a, slug) }).collect())
        })
    }

    fn set_maintenance(&self, app_id: &str, on: bool) -> Result<App> {
        self.write(|tx| {
            let id = resolve_app(tx, app_id)?;
            tx.execute(
                "UPDATE apps SET maintenance = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, on, Timestamp::now().0],
            )
            .ctx("setting maintenance")?;
            load_app(tx, &id)
        })
    }

    fn restore_config(&self, app_id: &str, config: &ConfigVars) -> Result<App> {
        let json = serde_json::to_string(config)
            .map_err(|e| StoreError::Db(format!("encoding config vars: {e}")))?;
        self.write(|tx| {
            let id = resolve_app(tx, app_id)?;
            tx.execute(
                "UPDATE apps SET config = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, json, Timestamp::now().0],
            )
            .ctx("restoring config vars")?;
            load_app(tx, &id)
        })
    }

    fn fail_pending_releases(&self, reason: &str) -> Result<Vec<(String, u32)>> {
        self.write(|tx| {
            let mut stmt = tx.prepare("SELECT app_id, version FROM releases WHERE status = 'pending'").ctx("finding pending releases")?;
            let rows: Vec<(String, u32)> = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))
                .ctx("finding pending releases")?
                .collect::<std::result::Result<_, _>>()
                .ctx("reading pending releases")?;
            drop(stmt);
            tx.execute("UPDATE releases SET status = 'failed', status_reason = ?1, updated_at = ?2 WHERE status = 'pending'", params![reason, Timestamp::now().0])
                .ctx("failing pending releases")?;
            Ok(rows)
        })
    }

    fn delete_app(&self, app_id: &str) -> Result<()> {
        self.write(|tx| {
            let id = resolve_app(tx, app_id)?;
            // Children before parents: builds point at releases and slugs, releases at slugs.
            for (table, what) in [
                ("builds", "deleting the app's builds"),
                ("releases", "deleting the app's releases"),
                ("slugs", "deleting the app's slugs"),
                ("formation", "deleting the app's formation"),
                ("buildpacks", "deleting the app's buildpacks"),
            ] {
                tx.execute(&format!("DELETE FROM {table} WHERE app_id = ?1"), [&id])
                    .ctx(what)?;
            }
            tx.execute("DELETE FROM apps WHERE id = ?1", [&id])
                .ctx("deleting the app")?;
            Ok(())
        })
    }

    fn update_config(
        &self,
        app_id: &str,
        patch: &BTreeMap<String, Option<String>>,
        user_id: &str,
    ) -> Result<(ConfigVars, Option<Release>)> {
        self.write(|tx| {
            let app = load_app(tx, app_id)?;
            require_account(tx, user_id)?;
            let (next, change) = config::apply_patch(&app.config, patch)?;
            if change.is_empty() {
                return Ok((app.config, None));
            }
            let slug_id: Option<String> = tx
                .query_row(
                    "SELECT slug_id FROM releases WHERE app_id = ?1 ORDER BY version DESC LIMIT 1",
                    [&app.id],
                    |r| r.get(0),
                )
                .optional()
                .ctx("reading the newest release's slug")?
                .flatten();
            // With code to run, the release goes live only after the platform has run its
            // release phase and restarted the dynos; without, there is nothing to wait for.
            let status = if slug_id.is_some() {
                ReleaseStatus::Pending
            } else {
                ReleaseStatus::Succeeded
            };
            let new = NewRelease {
                description: change.description(),
                status,
                slug_id,
                config: next.clone(),
                user_id: user_id.to_string(),
            };
            let release = insert_release(tx, &app.id, new, Timestamp::now())?;
            Ok((next, Some(release)))
        })
    }

    fn append_release(&self, app_id: &str, release: NewRelease) -> Result<Release> {
        self.write(|tx| {
            let id = resolve_app(tx, app_id)?;
            insert_release(tx, &id, release, Timestamp::now())
        })
    }

    fn set_release_status(
        &self,
        release_id: &str,
        status: ReleaseStatus,
        reason: Option<&str>,
    ) -> Result<Release> {
        if let Some(reason) = reason {
            check_text("status_reason", reason, MAX_LONG_TEXT)?;
        }
        self.write(|tx| {
            let current = load_release_by_id(tx, release_id)?;
            if !current.status.can_become(status) {
                return Err(StoreError::Conflict(format!(
                    "Release v{} is {} and cannot become {}",
                    current.version,
                    current.status.as_str(),
                    status.as_str()
                )));
            }
            tx.execute(
                "UPDATE releases SET status = ?2, status_reason = ?3, updated_at = ?4 WHERE id = ?1",
                params![current.id, status.as_str(), reason, Timestamp::now().0],
            )
            .ctx("updating a release's status")?;
            load_release_by_id(tx, &current.id)
        })
    }

    fn release(&self, app_id: &str, id_or_version: &str) -> Result<Release> {
        let digits = id_or_version.strip_prefix('v').unwrap_or(id_or_version);
        // Only plain digits are a version: u32's parser would also take "+3".
        let version = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            // Too many digits for a u32 is a version that cannot exist.
            Some(digits.parse::<u32>().map_err(|_| StoreError::NotFound {
                resource: "release",
            })?)
        } else {
            None
        };
        self.read(|tx| {
            let app = resolve_app(tx, app_id)?;
            let found = match version {
                Some(v) => tx
                    .query_row(
                        &format!("{RELEASE_SELECT} WHERE r.app_id = ?1 AND r.version = ?2"),
                        params![app, v],
                        release_from_row,
                    )
                    .optional(),
                None => tx
                    .query_row(
                        &format!("{RELEASE_SELECT} WHERE r.app_id = ?1 AND r.id = ?2"),
                        params![app, id_or_version],
                        release_from_row,
                    )
                    .optional(),
            };
            found.ctx("reading a release")?.ok_or(StoreError::NotFound {
                resource: "release",
            })
        })
    }

    fn releases(&self, app_id: &str, range: ReleaseRange) -> Result<Vec<Release>> {
        let order = if range.descending { "DESC" } else { "ASC" };
        self.read(|tx| {
            let app = resolve_app(tx, app_id)?;
            let mut stmt = tx
                .prepare_cached(&format!(
                    "{RELEASE_SELECT} WHERE r.app_id = ?1 AND r.version >= ?2 AND r.version <= ?3 ORDER BY r.version {order} LIMIT ?4"
                ))
                .ctx("listing releases")?;
            let rows = stmt
                .query_map(params![app, range.first.unwrap_or(0), range.last.unwrap_or(u32::MAX), range.max], release_from_row)
                .ctx("listing releases")?;
            rows.collect::<rusqlite::Result<Vec<_>>>().ctx("listing releases")
        })
    }

    fn current_release(&self, app_id: &str) -> Result<Option<Release>> {
        self.read(|tx| {
            let app = resolve_app(tx, app_id)?;
            tx.query_row(
                &format!("{RELEASE_SELECT} WHERE r.app_id = ?1 AND r.status = 'succeeded' ORDER BY r.version DESC LIMIT 1"),
                [&app],
                release_from_row,
            )
            .optional()
            .ctx("reading the current release")
        })
    }

    fn insert_slug(&self, slug: &Slug) -> Result<()> {
        check_uuid("id", &slug.id)?;
        check_checksum(&slug.checksum)?;
        check_stack(&slug.stack)?;
        for (name, command) in &slug.process_types {
            validate_process_type(name)?;
            check_text("process_types", command, MAX_LONG_TEXT)?;
        }
        if let Some(commit) = &slug.commit {
            check_text("commit", commit, MAX_SHORT_TEXT)?;
        }
        if let Some(d) = &slug.commit_description {
            check_text("commit_description", d, MAX_LONG_TEXT)?;
        }
        if let Some(d) = &slug.buildpack_provided_description {
            check_text("buildpack_provided_description", d, MAX_SHORT_TEXT)?;
        }
        let size = i64::try_from(slug.size)
            .map_err(|_| Invalid::new("size", format!("Slug size {} is too large", slug.size)))?;
        let process_types = map_json(&slug.process_types);
        self.write(|tx| {
            let app = resolve_app(tx, &slug.app_id)?;
            let exists =
                tx.query_row("SELECT 1 FROM slugs WHERE id = ?1", [&slug.id], |_| Ok(())).optional().ctx("looking up a slug")?.is_some();
            if exists {
                return Err(StoreError::Conflict(format!("Slug {} already exists", slug.id)));
            }
            tx.execute(
                "INSERT INTO slugs (id, app_id, checksum, size, process_types, source_commit, commit_description, stack,
                                    buildpack_provided_description, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    slug.id,
                    app,
                    slug.checksum,
                    size,
                    process_types,
                    slug.commit,
                    slug.commit_description,
                    slug.stack,
                    slug.buildpack_provided_description,
                    slug.created_at.0
                ],
            )
            .ctx("inserting a slug")?;
            Ok(())
        })
    }

    fn slug(&self, slug_id: &str) -> Result<Slug> {
        self.read(|tx| {
            tx.query_row(
                &format!("{SLUG_SELECT} WHERE id = ?1"),
                [slug_id],
                slug_from_row,
            )
            .optional()
            .ctx("reading a slug")?
            .ok_or(StoreError::NotFound { resource: "slug" })
        })
    }

    fn create_build(
        &self,
        app_id: &str,
        user_id: &str,
        source_version: Option<&str>,
        buildpacks: &[String],
    ) -> Result<Build> {
        if let Some(v) = source_version {
            check_text("source_version", v, MAX_SHORT_TEXT)?;
        }
        check_buildpacks(buildpacks)?;
        let buildpacks = list_json(buildpacks);
        self.write(|tx| {
            let app = resolve_app(tx, app_id)?;
            require_account(tx, user_id)?;
            let id = new_id();
            tx.execute(
                "INSERT INTO builds (id, app_id, status, source_version, output, buildpacks, slug_id, release_id, user_id, created_at, updated_at)
                 VALUES (?1, ?2, 'pending', ?3, '', ?4, NULL, NULL, ?5, ?6, ?6)",
                params![id, app, source_version, buildpacks, user_id, Timestamp::now().0],
            )
            .ctx("inserting a build")?;
            load_build(tx, &id)
        })
    }

    fn finish_build(
        &self,
        build_id: &str,
        status: BuildStatus,
        output: &str,
        slug_id: Option<&str>,
        release_id: Option<&str>,
    ) -> Result<Build> {
        if status == BuildStatus::Pending {
            return Err(
                Invalid::new("status", "A build ends as succeeded or failed, not pending").into(),
            );
        }
        self.write(|tx| {
            let build = load_build(tx, build_id)?;
            if build.status != BuildStatus::Pending {
                return Err(StoreError::Conflict(format!("Build {} has already ended ({})", build.id, build.status.as_str())));
            }
            if let Some(slug_id) = slug_id {
                require_slug_of(tx, &build.app_id, slug_id)?;
            }
            if let Some(release_id) = release_id {
                require_release_of(tx, &build.app_id, release_id)?;
            }
            tx.execute(
                "UPDATE builds SET status = ?2, output = ?3, slug_id = ?4, release_id = ?5, updated_at = ?6 WHERE id = ?1",
                params![build.id, status.as_str(), output, slug_id, release_id, Timestamp::now().0],
            )
            .ctx("finishing a build")?;
            load_build(tx, &build.id)
        })
    }

    fn build(&self, app_id: &str, build_id: &str) -> Result<Build> {
        self.read(|tx| {
            let app = resolve_app(tx, app_id)?;
            tx.query_row(
                &format!("{BUILD_SELECT} WHERE b.id = ?1 AND b.app_id = ?2"),
                [build_id, &app],
                build_from_row,
            )
            .optional()
            .ctx("reading a build")?
            .ok_or(StoreError::NotFound { resource: "build" })
        })
    }

    fn build_by_id(&self, build_id: &str) -> Result<Build> {
        self.read(|tx| {
            tx.query_row(
                &format!("{BUILD_SELECT} WHERE b.id = ?1"),
                [build_id],
                build_from_row,
            )
            .optional()
            .ctx("reading a build")?
            .ok_or(StoreError::NotFound { resource: "build" })
        })
    }

    fn builds(&self, app_id: &str) -> Result<Vec<Build>> {
        self.read(|tx| {
            let app = resolve_app(tx, app_id)?;
            // Two builds can start in the same microsecond; the rowid keeps their order.
            let mut stmt = tx
                .prepare_cached(&format!(
                    "{BUILD_SELECT} WHERE b.app_id = ?1 ORDER BY b.created_at DESC, b.rowid DESC"
                ))
                .ctx("listing builds")?;
            let rows = stmt
                .query_map([&app], build_from_row)
                .ctx("listing builds")?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .ctx("listing builds")
        })
    }

    fn fail_pending_builds(&self, reason: &str) -> Result<usize> {
        check_text("reason", reason, MAX_LONG_TEXT)?;
        let line = format!("{}\n", reason.trim_end_matches('\n'));
        self.write(|tx| {
            // The reason goes on a line of its own, whatever the interrupted output ended with.
            tx.execute(
                "UPDATE builds SET status = 'failed',
                     output = CASE WHEN output = '' OR substr(output, -1) = char(10) THEN output ELSE output || char(10) END || ?1,
                     updated_at = ?2
                 WHERE status = 'pending'",
                params![line, Timestamp::now().0],
            )
            .ctx("failing pending builds")
        })
    }

    fn formation(&self, app_id: &str) -> Result<Vec<FormationEntry>> {
        self.read(|tx| {
            let app = resolve_app(tx, app_id)?;
            list_formation(tx, &app)
        })
    }

    fn ensure_formation(
        &self,
        app_id: &str,
        initial: &BTreeMap<String, u32>,
    ) -> Result<Vec<FormationEntry>> {
        for process_type in initial.keys() {
            validate_process_type(process_type)?;
        }
        self.write(|tx| {
            let app = resolve_app(tx, app_id)?;
            let now = Timestamp::now();
            for (process_type, quantity) in initial {
                tx.execute(
                    "INSERT INTO formation (id, app_id, process_type, quantity, size, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                     ON CONFLICT (app_id, process_type) DO NOTHING",
                    params![new_id(), app, process_type, quantity, DEFAULT_SIZE, now.0],
                )
                .ctx("inserting a formation entry")?;
            }
            list_formation(tx, &app)
        })
    }

    fn update_formation(
        &self,
        app_id: &str,
        updates: &[(String, Option<u32>, Option<String>)],
    ) -> Result<Vec<FormationEntry>> {
        // Sizes are stored in Heroku's spelling whatever form the caller used ("1x", "standard-1x").
        let mut checked = Vec::with_capacity(updates.len());
        for (process_type, quantity, size) in updates {
            validate_process_type(process_type)?;
            let size = size
                .as_deref()
                .map(DynoSize::parse)
                .transpose()?
                .map(DynoSize::name);
            checked.push((process_type, *quantity, size));
        }
        self.write(|tx| {
            let app = resolve_app(tx, app_id)?;
            // Every type is checked before anything is written: a scale of several types is all
            // or nothing.
            for (process_type, _, _) in &checked {
                let exists = tx
                    .query_row("SELECT 1 FROM formation WHERE app_id = ?1 AND process_type = ?2", [&app, *process_type], |_| Ok(()))
                    .optional()
                    .ctx("looking up a formation entry")?
                    .is_some();
                if !exists {
                    return Err(StoreError::NotFound { resource: "formation" });
                }
            }
            let now = Timestamp::now();
            for (process_type, quantity, size) in &checked {
                if quantity.is_none() && size.is_none() {
                    continue;
                }
                tx.execute(
                    "UPDATE formation SET quantity = COALESCE(?3, quantity), size = COALESCE(?4, size), updated_at = ?5
                     WHERE app_id = ?1 AND process_type = ?2",
                    params![app, process_type, quantity, size, now.0],
                )
                .ctx("updating a formation entry")?;
            }
            list_formation(tx, &app)
        })
    }

    fn buildpacks(&self, app_id: &str) -> Result<Vec<String>> {
        self.read(|tx| {
            let app = resolve_app(tx, app_id)?;
            let mut stmt = tx
                .prepare_cached("SELECT url FROM buildpacks WHERE app_id = ?1 ORDER BY position")
                .ctx("listing buildpacks")?;
            let rows = stmt
                .query_map([&app], |r| r.get(0))
                .ctx("listing buildpacks")?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .ctx("listing buildpacks")
        })
    }

    fn set_buildpacks(&self, app_id: &str, urls: &[String]) -> Result<()> {
        check_buildpacks(urls)?;
        self.write(|tx| {
            let app = resolve_app(tx, app_id)?;
            tx.execute("DELETE FROM buildpacks WHERE app_id = ?1", [&app])
                .ctx("clearing buildpacks")?;
            for (position, url) in urls.iter().enumerate() {
                let position = i64::try_from(position)
                    .map_err(|_| Invalid::new("buildpacks", "Too many buildpacks"))?;
                tx.execute(
                    "INSERT INTO buildpacks (app_id, position, url) VALUES (?1, ?2, ?3)",
                    params![app, position, url.trim()],
                )
                .ctx("inserting a buildpack")?;
            }
            Ok(())
        })
    }

    fn sni_endpoints(&self, app_id: &str) -> Result<Vec<crate::SniEndpoint>> {
        self.read(|tx| crate::sni::list(tx, Some(app_id)))
    }

    fn all_sni_endpoints(&self) -> Result<Vec<crate::SniEndpoint>> {
        self.read(|tx| crate::sni::list(tx, None))
    }

    fn sni_endpoint(&self, app_id: &str, id_or_name: &str) -> Result<crate::SniEndpoint> {
        self.read(|tx| crate::sni::get(tx, app_id, id_or_name))
    }

    fn create_sni_endpoint(
        &self,
        app_id: &str,
        name: &str,
        certificate_chain: &str,
        private_key: &str,
    ) -> Result<crate::SniEndpoint> {
        self.write(|tx| crate::sni::create(tx, app_id, name, certificate_chain, private_key))
    }

    fn update_sni_endpoint(
        &self,
        app_id: &str,
        id_or_name: &str,
        certificate_chain: &str,
        private_key: &str,
    ) -> Result<crate::SniEndpoint> {
        self.write(|tx| crate::sni::update(tx, app_id, id_or_name, certificate_chain, private_key))
    }

    fn delete_sni_endpoint(&self, app_id: &str, id_or_name: &str) -> Result<crate::SniEndpoint> {
        self.write(|tx| crate::sni::delete(tx, app_id, id_or_name))
    }

    fn domains(&self, app_id: &str) -> Result<Vec<crate::Domain>> {
        self.read(|tx| crate::domains::list(tx, app_id))
    }

    fn domain(&self, app_id: &str, id_or_hostname: &str) -> Result<crate::Domain> {
        self.read(|tx| crate::domains::get(tx, app_id, id_or_hostname))
    }

    fn add_domain(&self, app_id: &str, hostname: &str) -> Result<crate::Domain> {
        self.write(|tx| crate::domains::add(tx, app_id, hostname))
    }

    fn remove_domain(&self, app_id: &str, id_or_hostname: &str) -> Result<crate::Domain> {
        self.write(|tx| crate::domains::remove(tx, app_id, id_or_hostname))
    }

    fn set_acm(&self, app_id: &str, on: bool) -> Result<App> {
        self.write(|tx| {
            crate::acm::set_enabled(tx, app_id, on)?;
            load_app(tx, app_id)
        })
    }

    fn acm_apps(&self) -> Result<Vec<String>> {
        self.read(|tx| crate::acm::enabled_apps(tx))
    }

    fn acm_domains(&self, app_id: &str) -> Result<Vec<crate::AcmDomain>> {
        self.read(|tx| crate::acm::domains(tx, app_id))
    }

    fn set_acm_state(&self, domain_id: &str, state: &crate::AcmState) -> Result<()> {
        self.write(|tx| crate::acm::set_state(tx, domain_id, state))
    }

    fn request_acm_refresh(&self, app_id: &str) -> Result<()> {
        self.write(|tx| crate::acm::request_refresh(tx, app_id))
    }

    fn put_acm_certificate(
        &self,
        domain_id: &str,
        name: &str,
        certificate_chain: &str,
        private_key: &str,
    ) -> Result<crate::SniEndpoint> {
        self.write(|tx| {
            crate::acm::put_certificate(tx, domain_id, name, certificate_chain, private_key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Arc;

    /// A directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("kiln-store-test-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        fn db(&self) -> PathBuf {
            self.0.join("kiln.db")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn store() -> (SqliteStore, Account) {
        let s = SqliteStore::open_in_memory().unwrap();
        let a = s.ensure_account("owner@example.com", "Owner").unwrap();
        (s, a)
    }

    fn patch(items: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    fn all() -> ReleaseRange {
        ReleaseRange {
            first: None,
            last: None,
            max: 1000,
            descending: false,
        }
    }

    fn new_release(
        user: &Account,
        status: ReleaseStatus,
        slug: Option<&str>,
        config: &[(&str, &str)],
    ) -> NewRelease {
        NewRelease {
            description: "Deploy abc123".into(),
            status,
            slug_id: slug.map(str::to_string),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            user_id: user.id.clone(),
        }
    }

    fn slug_for(app: &App) -> Slug {
        Slug {
            id: new_id(),
            app_id: app.id.clone(),
            checksum: format!("SHA256:{}", "ab".repeat(32)),
            size: 1234,
            process_types: [("web".to_string(), "python app.py".to_string())].into(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            commit_description: Some("fix things".into()),
            stack: "heroku-24".into(),
            buildpack_provided_description: Some("Python".into()),
            created_at: Timestamp::now(),
        }
    }

    /// Every row of every table, for "nothing changed" checks.
    fn dump(s: &SqliteStore) -> String {
        let conn = s.lock();
        let mut out = String::new();
        for table in [
            "accounts",
            "api_keys",
            "counters",
            "apps",
            "slugs",
            "releases",
            "builds",
            "formation",
            "buildpacks",
        ] {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
                .unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..n)
                        .map(|i| r.get::<_, rusqlite::types::Value>(i))
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .unwrap();
            for row in rows {
                out.push_str(&format!("{table}: {:?}\n", row.unwrap()));
            }
        }
        out
    }

    fn versions(s: &SqliteStore, app: &str) -> Vec<u32> {
        s.releases(app, all())
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect()
    }

    #[test]
    fn create_app_appends_the_initial_release() {
        let (s, owner) = store();
        let (app, v1) = s.create_app("my-app", &owner.id, "heroku-24").unwrap();
        assert_eq!(app.name, "my-app");
        assert_eq!(app.owner_email, "owner@example.com");
        assert_eq!(app.uid, FIRST_APP_UID);
        assert!(app.config.is_empty());
        assert!(!app.maintenance);
        assert_eq!(app.released_at, Some(v1.created_at));
        assert_eq!(v1.version, 1);
        assert_eq!(v1.description, "Initial release");
        assert_eq!(v1.status, ReleaseStatus::Succeeded);
        assert_eq!(v1.slug_id, None);
        assert_eq!(v1.user_email, "owner@example.com");
        assert!(uuid::Uuid::parse_str(&app.id).is_ok());
        assert_eq!(s.app(&app.id).unwrap(), app);
        assert_eq!(s.app("my-app").unwrap(), app);
        assert_eq!(s.current_release("my-app").unwrap(), Some(v1));
        assert!(matches!(
            s.app("nope"),
            Err(StoreError::NotFound { resource: "app" })
        ));
    }

    #[test]
    fn duplicate_and_bad_names_are_refused_and_change_nothing() {
        let (s, owner) = store();
        s.create_app("foo", &owner.id, "heroku-24").unwrap();
        let before = dump(&s);
        match s.create_app("foo", &owner.id, "heroku-24") {
            Err(StoreError::Conflict(msg)) => assert_eq!(msg, "Name foo is already taken"),
            other => panic!("{other:?}"),
        }
        for bad in [
            "",
            "Foo",
            "ab",
            "foo bar",
            "x'; DROP TABLE apps;--",
            "../etc",
            &"a".repeat(10_000),
        ] {
            match s.create_app(bad, &owner.id, "heroku-24") {
                Err(StoreError::Invalid(e)) => assert_eq!(e.field, "name"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(matches!(
            s.create_app("bar", "no-such-account", "heroku-24"),
            Err(StoreError::NotFound {
                resource: "account"
            })
        ));
        assert!(matches!(
            s.create_app("bar", &owner.id, "heroku; rm -rf /"),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(dump(&s), before);
        assert_eq!(s.apps().unwrap().len(), 1);
    }

    #[test]
    fn uids_are_unique_and_never_reused() {
        let (s, owner) = store();
        let (a, _) = s.create_app("app-a", &owner.id, "heroku-24").unwrap();
        let (b, _) = s.create_app("app-b", &owner.id, "heroku-24").unwrap();
        assert_eq!((a.uid, b.uid), (20_000, 20_001));
        s.delete_app(&b.id).unwrap();
        s.delete_app("app-a").unwrap();
        let (c, _) = s.create_app("app-b", &owner.id, "heroku-24").unwrap();
        assert_eq!(c.uid, 20_002, "a deleted app's uid must not come back");
        assert_ne!(c.id, b.id);
        assert_eq!(
            versions(&s, &c.id),
            vec![1],
            "the new app's ledger starts afresh"
        );
    }

    #[test]
    fn config_patch_appends_exactly_one_release() {
        let (s, owner) = store();
        let (app, _) = s.create_app("cfg-app", &owner.id, "heroku-24").unwrap();

        let (cfg, rel) = s
            .update_config(
                &app.id,
                &patch(&[("FOO", Some("1")), ("BAR", Some("2"))]),
                &owner.id,
            )
            .unwrap();
        let rel = rel.unwrap();
        assert_eq!(cfg.get("FOO").map(String::as_str), Some("1"));
        assert_eq!(rel.version, 2);
        assert_eq!(rel.description, "Set BAR, FOO config vars");
        assert_eq!(rel.status, ReleaseStatus::Succeeded);
        assert_eq!(rel.config, cfg);
        assert_eq!(s.app(&app.id).unwrap().config, cfg);
        assert_eq!(versions(&s, &app.id), vec![1, 2]);

        // The same values again and the removal of an absent var change nothing.
        let before = dump(&s);
        let (same, none) = s
            .update_config(
                "cfg-app",
                &patch(&[("FOO", Some("1")), ("NOPE", None)]),
                &owner.id,
            )
            .unwrap();
        assert!(none.is_none());
        assert_eq!(same, cfg);
        let (same, none) = s
            .update_config("cfg-app", &BTreeMap::new(), &owner.id)
            .unwrap();
        assert!(none.is_none());
        assert_eq!(same, cfg);
        assert_eq!(dump(&s), before);

        let (cfg, rel) = s
            .update_config(
                "cfg-app",
                &patch(&[("FOO", None), ("BAZ", Some("3"))]),
                &owner.id,
            )
            .unwrap();
        assert_eq!(
            rel.unwrap().description,
            "Set BAZ and remove FOO config vars"
        );
        assert!(!cfg.contains_key("FOO"));
        assert_eq!(versions(&s, &app.id), vec![1, 2, 3]);
    }

    #[test]
    fn the_largest_valid_patch_is_accepted() {
        let (s, owner) = store();
        let (app, _) = s.create_app("big-patch", &owner.id, "heroku-24").unwrap();
        // As many short names as the 32 kB budget allows: the longest description a change can have.
        let alphabet: Vec<char> = ('A'..='Z').collect();
        let mut big = BTreeMap::new();
        'outer: for a in &alphabet {
            for b in &alphabet {
                for c in &alphabet {
                    if big.len() * 3 + 3 > config::MAX_TOTAL_BYTES {
                        break 'outer;
                    }
                    big.insert(format!("{a}{b}{c}"), Some(String::new()));
                }
            }
        }
        let (cfg, rel) = s.update_config(&app.id, &big, &owner.id).unwrap();
        assert_eq!(cfg.len(), big.len());
        assert_eq!(rel.unwrap().version, 2);
    }

    #[test]
    fn config_release_keeps_the_newest_slug() {
        let (s, owner) = store();
        let (app, _) = s.create_app("slug-app", &owner.id, "heroku-24").unwrap();
        let slug = slug_for(&app);
        s.insert_slug(&slug).unwrap();
        // The newest release is pending (a deploy in its release phase); its slug still counts.
        s.append_release(
            &app.id,
            new_release(&owner, ReleaseStatus::Pending, Some(&slug.id), &[]),
        )
        .unwrap();
        let (_, rel) = s
            .update_config(&app.id, &patch(&[("A", Some("1"))]), &owner.id)
            .unwrap();
        assert_eq!(rel.unwrap().slug_id.as_deref(), Some(slug.id.as_str()));
    }

    #[test]
    fn a_bad_patch_changes_nothing() {
        let (s, owner) = store();
        let (app, _) = s.create_app("bad-patch", &owner.id, "heroku-24").unwrap();
        s.update_config(&app.id, &patch(&[("KEEP", Some("me"))]), &owner.id)
            .unwrap();
        let before = dump(&s);
        let huge = "x".repeat(config::MAX_TOTAL_BYTES + 1);
        for bad in [
            patch(&[("GOOD", Some("1")), ("BAD-KEY", Some("2"))]),
            patch(&[("GOOD", Some("1")), ("", Some("2"))]),
            patch(&[("X'); DELETE FROM releases;--", Some("1"))]),
            patch(&[("NUL", Some("a\0b"))]),
            patch(&[("HUGE", Some(&huge))]),
            patch(&[("KEEP", None), ("__RESERVED", Some("1"))]),
        ] {
            assert!(
                matches!(
                    s.update_config(&app.id, &bad, &owner.id),
                    Err(StoreError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            s.update_config(&app.id, &patch(&[("A", Some("1"))]), "ghost"),
            Err(StoreError::NotFound {
                resource: "account"
            })
        ));
        assert!(matches!(
            s.update_config("ghost-app", &patch(&[("A", Some("1"))]), &owner.id),
            Err(StoreError::NotFound { resource: "app" })
        ));
        assert_eq!(dump(&s), before);
    }

    #[test]
    fn append_release_numbers_and_sets_config() {
        let (s, owner) = store();
        let (app, _) = s.create_app("rel-app", &owner.id, "heroku-24").unwrap();
        let slug = slug_for(&app);
        s.insert_slug(&slug).unwrap();
        let r = s
            .append_release(
                &app.id,
                new_release(
                    &owner,
                    ReleaseStatus::Pending,
                    Some(&slug.id),
                    &[("A", "1")],
                ),
            )
            .unwrap();
        assert_eq!(r.version, 2);
        assert_eq!(r.status, ReleaseStatus::Pending);
        assert_eq!(r.user_email, owner.email);
        let now = s.app(&app.id).unwrap();
        assert_eq!(now.config, r.config);
        assert_eq!(now.released_at, Some(r.created_at));

        // A slug must exist and belong to the same app; the user must exist; config obeys the rules.
        let (other, _) = s.create_app("other-app", &owner.id, "heroku-24").unwrap();
        let before = dump(&s);
        assert!(matches!(
            s.append_release(
                &other.id,
                new_release(&owner, ReleaseStatus::Succeeded, Some(&slug.id), &[])
            ),
            Err(StoreError::NotFound { resource: "slug" })
        ));
        let mut ghost = new_release(&owner, ReleaseStatus::Succeeded, None, &[]);
        ghost.user_id = "ghost".into();
        assert!(matches!(
            s.append_release(&app.id, ghost),
            Err(StoreError::NotFound {
                resource: "account"
            })
        ));
        assert!(matches!(
            s.append_release(
                &app.id,
                new_release(&owner, ReleaseStatus::Succeeded, None, &[("1BAD", "x")])
            ),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.append_release(
                "ghost-app",
                new_release(&owner, ReleaseStatus::Succeeded, None, &[])
            ),
            Err(StoreError::NotFound { resource: "app" })
        ));
        assert_eq!(dump(&s), before);
    }

    #[test]
    fn release_lookup_by_id_and_version() {
        let (s, owner) = store();
        let (app, _) = s.create_app("look-app", &owner.id, "heroku-24").unwrap();
        let (other, _) = s.create_app("look-other", &owner.id, "heroku-24").unwrap();
        s.append_release(
            &app.id,
            new_release(&owner, ReleaseStatus::Succeeded, None, &[]),
        )
        .unwrap();
        let v3 = s
            .append_release(
                &app.id,
                new_release(&owner, ReleaseStatus::Succeeded, None, &[]),
            )
            .unwrap();
        assert_eq!(v3.version, 3);
        assert_eq!(s.release(&app.id, &v3.id).unwrap(), v3);
        assert_eq!(s.release(&app.id, "3").unwrap(), v3);
        assert_eq!(s.release("look-app", "v3").unwrap(), v3);
        assert_eq!(
            s.release(&app.id, "1").unwrap().description,
            "Initial release"
        );
        for missing in [
            "4",
            "v4",
            "0",
            "v",
            "",
            "+3",
            "v+3",
            "-3",
            "99999999999999999999",
            "3 ",
            "' OR 1=1 --",
            &"9".repeat(100_000),
        ] {
            assert!(
                matches!(
                    s.release(&app.id, missing),
                    Err(StoreError::NotFound {
                        resource: "release"
                    })
                ),
                "{missing:?}"
            );
        }
        // A release of another app is not found through this one.
        assert!(matches!(
            s.release(&other.id, &v3.id),
            Err(StoreError::NotFound {
                resource: "release"
            })
        ));
        assert!(matches!(
            s.release("ghost-app", "1"),
            Err(StoreError::NotFound { resource: "app" })
        ));
    }

    #[test]
    fn release_ranges_order_and_max() {
        let (s, owner) = store();
        let (app, _) = s.create_app("range-app", &owner.id, "heroku-24").unwrap();
        for _ in 0..9 {
            s.append_release(
                &app.id,
                new_release(&owner, ReleaseStatus::Succeeded, None, &[]),
            )
            .unwrap();
        }
        let get = |first, last, max, descending| -> Vec<u32> {
            s.releases(
                &app.id,
                ReleaseRange {
                    first,
                    last,
                    max,
                    descending,
                },
            )
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect()
        };
        assert_eq!(get(None, None, 100, false), (1..=10).collect::<Vec<_>>());
        assert_eq!(
            get(None, None, 100, true),
            (1..=10).rev().collect::<Vec<_>>()
        );
        assert_eq!(get(None, None, 3, false), vec![1, 2, 3]);
        assert_eq!(get(None, None, 3, true), vec![10, 9, 8]);
        assert_eq!(get(Some(4), Some(6), 100, false), vec![4, 5, 6]);
        assert_eq!(get(Some(4), Some(8), 2, true), vec![8, 7]);
        assert_eq!(get(Some(8), None, 100, false), vec![8, 9, 10]);
        assert_eq!(get(None, Some(2), 100, true), vec![2, 1]);
        assert_eq!(get(Some(7), Some(3), 100, false), Vec::<u32>::new());
        assert_eq!(get(Some(11), None, 100, false), Vec::<u32>::new());
        assert_eq!(get(None, None, 0, false), Vec::<u32>::new());
        assert_eq!(
            get(Some(u32::MAX), Some(u32::MAX), u32::MAX, true),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn status_moves_only_from_pending() {
        let (s, owner) = store();
        let (app, v1) = s.create_app("status-app", &owner.id, "heroku-24").unwrap();
        let v2 = s
            .append_release(
                &app.id,
                new_release(&owner, ReleaseStatus::Pending, None, &[]),
            )
            .unwrap();
        // A pending release is not what should run yet.
        assert_eq!(s.current_release(&app.id).unwrap().unwrap().id, v1.id);

        let v2 = s
            .set_release_status(&v2.id, ReleaseStatus::Succeeded, None)
            .unwrap();
        assert_eq!(v2.status, ReleaseStatus::Succeeded);
        assert_eq!(s.current_release(&app.id).unwrap().unwrap().id, v2.id);

        let v3 = s
            .append_release(
                &app.id,
                new_release(&owner, ReleaseStatus::Pending, None, &[]),
            )
            .unwrap();
        let v3 = s
            .set_release_status(
                &v3.id,
                ReleaseStatus::Failed,
                Some("release command exited with status 1"),
            )
            .unwrap();
        assert_eq!(v3.status, ReleaseStatus::Failed);
        assert_eq!(
            v3.status_reason.as_deref(),
            Some("release command exited with status 1")
        );
        assert_eq!(
            s.current_release(&app.id).unwrap().unwrap().id,
            v2.id,
            "a failed release never becomes current"
        );

        let before = dump(&s);
        for (id, to) in [
            (&v2.id, ReleaseStatus::Failed),
            (&v2.id, ReleaseStatus::Pending),
            (&v3.id, ReleaseStatus::Succeeded),
            (&v1.id, ReleaseStatus::Succeeded),
        ] {
            assert!(
                matches!(
                    s.set_release_status(id, to, None),
                    Err(StoreError::Conflict(_))
                ),
                "{id} -> {to:?}"
            );
        }
        let v4 = s
            .append_release(
                &app.id,
                new_release(&owner, ReleaseStatus::Pending, None, &[]),
            )
            .unwrap();
        let before_v4 = dump(&s);
        match s.set_release_status(&v4.id, ReleaseStatus::Pending, None) {
            Err(StoreError::Conflict(msg)) => {
                assert_eq!(msg, "Release v4 is pending and cannot become pending")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.set_release_status("ghost", ReleaseStatus::Failed, None),
            Err(StoreError::NotFound {
                resource: "release"
            })
        ));
        assert_eq!(dump(&s), before_v4);
        assert_ne!(before, before_v4);
    }

    #[test]
    fn the_ledger_cannot_be_rewritten_even_by_raw_sql() {
        let (s, owner) = store();
        let (app, v1) = s.create_app("ledger-app", &owner.id, "heroku-24").unwrap();
        let conn = s.lock();
        let err = conn
            .execute(
                "UPDATE releases SET config = '{\"A\":\"1\"}' WHERE id = ?1",
                [&v1.id],
            )
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        drop(conn);
        assert_eq!(s.release(&app.id, "1").unwrap(), v1);
    }

    #[test]
    fn formation_ensure_and_update() {
        let (s, owner) = store();
        let (app, _) = s.create_app("form-app", &owner.id, "heroku-24").unwrap();
        assert!(s.formation(&app.id).unwrap().is_empty());
        let f = s
            .ensure_formation(
                &app.id,
                &[("web".to_string(), 1), ("worker".to_string(), 0)].into(),
            )
            .unwrap();
        assert_eq!(
            f.iter()
                .map(|e| (e.process_type.as_str(), e.quantity, e.size.as_str()))
                .collect::<Vec<_>>(),
            vec![("web", 1, "Standard-1X"), ("worker", 0, "Standard-1X")]
        );

        let f = s
            .update_formation(
                &app.id,
                &[("web".into(), Some(3), Some("standard-2x".into()))],
            )
            .unwrap();
        assert_eq!((f[0].quantity, f[0].size.as_str()), (3, "Standard-2X"));

        // Existing entries are left alone; new ones are added.
        let f = s
            .ensure_formation(
                "form-app",
                &[("web".to_string(), 1), ("clock".to_string(), 1)].into(),
            )
            .unwrap();
        assert_eq!(
            f.iter()
                .map(|e| (e.process_type.as_str(), e.quantity))
                .collect::<Vec<_>>(),
            vec![("clock", 1), ("web", 3), ("worker", 0)]
        );

        // All or nothing: one missing type and nothing changes.
        let before = dump(&s);
        assert!(matches!(
            s.update_formation(
                &app.id,
                &[
                    ("web".into(), Some(5), None),
                    ("missing".into(), Some(1), None)
                ]
            ),
            Err(StoreError::NotFound {
                resource: "formation"
            })
        ));
        assert!(matches!(
            s.update_formation(&app.id, &[("web".into(), None, Some("Mega-9000".into()))]),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.update_formation(&app.id, &[("we b'".into(), Some(1), None)]),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.ensure_formation(&app.id, &[("bad type".to_string(), 1)].into()),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.ensure_formation("ghost-app", &BTreeMap::new()),
            Err(StoreError::NotFound { resource: "app" })
        ));
        assert_eq!(dump(&s), before);

        let f = s
            .update_formation(
                &app.id,
                &[
                    ("worker".into(), Some(2), None),
                    ("clock".into(), None, Some("1x".into())),
                ],
            )
            .unwrap();
        assert_eq!(
            f.iter()
                .map(|e| (e.process_type.as_str(), e.quantity, e.size.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("clock", 1, "Standard-1X"),
                ("web", 3, "Standard-2X"),
                ("worker", 2, "Standard-1X")
            ]
        );
    }

    #[test]
    fn listing_an_owners_apps_brings_their_current_slugs() {
        let (s, owner) = store();
        let other = s.ensure_account("other@kiln.local", "Other").unwrap();
        let (a, _) = s.create_app("list-b", &owner.id, "heroku-24").unwrap();
        let (b, _) = s.create_app("list-a", &owner.id, "heroku-24").unwrap();
        let (_theirs, _) = s.create_app("list-c", &other.id, "heroku-24").unwrap();
        let old = slug_for(&a);
        s.insert_slug(&old).unwrap();
        s.append_release(
            &a.id,
            new_release(&owner, ReleaseStatus::Succeeded, Some(&old.id), &[]),
        )
        .unwrap();
        let new = Slug {
            id: uuid::Uuid::new_v4().to_string(),
            checksum: format!("SHA256:{}", "b".repeat(64)),
            ..slug_for(&a)
        };
        s.insert_slug(&new).unwrap();
        s.append_release(
            &a.id,
            new_release(&owner, ReleaseStatus::Succeeded, Some(&new.id), &[]),
        )
        .unwrap();
        // A later release that failed is not current.
        let failed = Slug {
            id: uuid::Uuid::new_v4().to_string(),
            checksum: format!("SHA256:{}", "c".repeat(64)),
            ..slug_for(&a)
        };
        s.insert_slug(&failed).unwrap();
        s.append_release(
            &a.id,
            new_release(&owner, ReleaseStatus::Failed, Some(&failed.id), &[]),
        )
        .unwrap();
        let listed = s.apps_of(&owner.id).unwrap();
        let names: Vec<_> = listed
            .iter()
            .map(|(app, slug)| (app.name.as_str(), slug.as_ref().map(|s| s.id.clone())))
            .collect();
        assert_eq!(
            names,
            vec![("list-a", None), ("list-b", Some(new.id.clone()))]
        );
        assert_eq!(listed[0].0, b);
    }

    #[test]
    fn builds_lifecycle_and_order() {
        let (s, owner) = store();
        let (app, _) = s.create_app("build-app", &owner.id, "heroku-24").unwrap();
        let packs = vec!["heroku/python".to_string()];
        let b1 = s
            .create_build(&app.id, &owner.id, Some("abc"), &packs)
            .unwrap();
        let b2 = s.create_build(&app.id, &owner.id, None, &[]).unwrap();
        let b3 = s
            .create_build(&app.id, &owner.id, Some("def"), &[])
            .unwrap();
        assert_eq!(b1.status, BuildStatus::Pending);
        assert_eq!(b1.buildpacks, packs);
        assert_eq!(b1.user_email, owner.email);
        let ids: Vec<_> = s
            .builds(&app.id)
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(ids, vec![b3.id.clone(), b2.id.clone(), b1.id.clone()]);

        let slug = slug_for(&app);
        s.insert_slug(&slug).unwrap();
        let rel = s
            .append_release(
                &app.id,
                new_release(&owner, ReleaseStatus::Succeeded, Some(&slug.id), &[]),
            )
            .unwrap();
        let done = s
            .finish_build(
                &b1.id,
                BuildStatus::Succeeded,
                "-----> Python app detected\n",
                Some(&slug.id),
                Some(&rel.id),
            )
            .unwrap();
        assert_eq!(done.status, BuildStatus::Succeeded);
        assert_eq!(done.slug_id.as_deref(), Some(slug.id.as_str()));
        assert_eq!(done.release_id.as_deref(), Some(rel.id.as_str()));
        assert_eq!(s.build("build-app", &b1.id).unwrap(), done);
        assert_eq!(
            s.build_by_id(&b1.id).unwrap(),
            done,
            "found by its id alone"
        );
        assert!(matches!(
            s.build_by_id("ghost"),
            Err(StoreError::NotFound { resource: "build" })
        ));
        assert!(matches!(
            s.finish_build(&b1.id, BuildStatus::Failed, "", None, None),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            s.finish_build(&b2.id, BuildStatus::Pending, "", None, None),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.finish_build(&b2.id, BuildStatus::Failed, "", Some("ghost"), None),
            Err(StoreError::NotFound { resource: "slug" })
        ));
        assert!(matches!(
            s.finish_build(&b2.id, BuildStatus::Failed, "", None, Some("ghost")),
            Err(StoreError::NotFound {
                resource: "release"
            })
        ));
        assert!(matches!(
            s.finish_build("ghost", BuildStatus::Failed, "", None, None),
            Err(StoreError::NotFound { resource: "build" })
        ));

        // Interrupted builds: partial output keeps its lines and gets the reason last.
        {
            let conn = s.lock();
            conn.execute(
                "UPDATE builds SET output = 'half a line' WHERE id = ?1",
                [&b3.id],
            )
            .unwrap();
        }
        assert_eq!(
            s.fail_pending_builds("Build interrupted: the server restarted")
                .unwrap(),
            2
        );
        let b2 = s.build(&app.id, &b2.id).unwrap();
        let b3 = s.build(&app.id, &b3.id).unwrap();
        assert_eq!(
            (b2.status, b2.output.as_str()),
            (
                BuildStatus::Failed,
                "Build interrupted: the server restarted\n"
            )
        );
        assert_eq!(
            b3.output,
            "half a line\nBuild interrupted: the server restarted\n"
        );
        assert_eq!(
            s.build(&app.id, &b1.id).unwrap(),
            done,
            "finished builds are untouched"
        );
        assert_eq!(s.fail_pending_builds("again").unwrap(), 0);

        let (other, _) = s.create_app("build-other", &owner.id, "heroku-24").unwrap();
        assert!(matches!(
            s.build(&other.id, &b1.id),
            Err(StoreError::NotFound { resource: "build" })
        ));
        assert!(matches!(
            s.create_build(&app.id, &owner.id, None, &["not a buildpack".into()]),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.create_build(&app.id, "ghost", None, &[]),
            Err(StoreError::NotFound {
                resource: "account"
            })
        ));
    }

    #[test]
    fn slugs_are_checked_and_stored() {
        let (s, owner) = store();
        let (app, _) = s.create_app("slug-store", &owner.id, "heroku-24").unwrap();
        let slug = slug_for(&app);
        s.insert_slug(&slug).unwrap();
        assert_eq!(s.slug(&slug.id).unwrap(), slug);
        assert!(matches!(s.insert_slug(&slug), Err(StoreError::Conflict(_))));
        assert!(matches!(
            s.slug("ghost"),
            Err(StoreError::NotFound { resource: "slug" })
        ));

        let before = dump(&s);
        let mut bad = Vec::new();
        for checksum in [
            "",
            "SHA256:../../etc/passwd",
            "sha256:abc",
            &format!("SHA256:{}", "g".repeat(64)),
        ] {
            bad.push(Slug {
                id: new_id(),
                checksum: checksum.to_string(),
                ..slug.clone()
            });
        }
        bad.push(Slug {
            id: "../../x".into(),
            ..slug.clone()
        });
        bad.push(Slug {
            id: slug.id.to_uppercase(),
            ..slug.clone()
        });
        bad.push(Slug {
            id: new_id(),
            size: u64::MAX,
            ..slug.clone()
        });
        bad.push(Slug {
            id: new_id(),
            process_types: [("we b".to_string(), "x".to_string())].into(),
            ..slug.clone()
        });
        bad.push(Slug {
            id: new_id(),
            commit: Some("x".repeat(MAX_SHORT_TEXT + 1)),
            ..slug.clone()
        });
        for b in bad {
            assert!(
                matches!(s.insert_slug(&b), Err(StoreError::Invalid(_))),
                "{b:?}"
            );
        }
        assert!(matches!(
            s.insert_slug(&Slug {
                id: new_id(),
                app_id: "ghost".into(),
                ..slug.clone()
            }),
            Err(StoreError::NotFound { resource: "app" })
        ));
        assert_eq!(dump(&s), before);
    }

    #[test]
    fn accounts_and_api_keys() {
        let (s, owner) = store();
        assert_eq!(
            s.ensure_account("OWNER@example.com", "Someone else")
                .unwrap(),
            owner,
            "emails match case-insensitively"
        );
        assert_eq!(s.account(&owner.id).unwrap(), owner);
        assert!(matches!(
            s.account("ghost"),
            Err(StoreError::NotFound {
                resource: "account"
            })
        ));

        s.add_api_key(&owner.id, "secret-key-1", "bootstrap")
            .unwrap();
        s.add_api_key(&owner.id, "secret-key-1", "bootstrap again")
            .unwrap();
        assert_eq!(
            s.account_by_api_key("secret-key-1").unwrap(),
            Some(owner.clone())
        );
        assert_eq!(s.account_by_api_key("secret-key-2").unwrap(), None);
        assert_eq!(s.account_by_api_key("").unwrap(), None);
        assert_eq!(s.account_by_api_key("' OR '1'='1").unwrap(), None);

        // Only the hash is on disk.
        let stored: Vec<String> = {
            let conn = s.lock();
            let mut stmt = conn.prepare("SELECT key_sha256 FROM api_keys").unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert_eq!(stored, vec![hash_api_key("secret-key-1")]);
        assert_eq!(stored[0].len(), 64);
        assert!(!dump(&s).contains("secret-key-1"));
        // SHA-256("abc"), the FIPS 180-2 test vector.
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );

        let other = s.ensure_account("other@example.com", "").unwrap();
        let before = dump(&s);
        assert!(matches!(
            s.add_api_key(&other.id, "secret-key-1", ""),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            s.add_api_key("ghost", "secret-key-9", ""),
            Err(StoreError::NotFound {
                resource: "account"
            })
        ));
        assert!(matches!(
            s.add_api_key(&other.id, "", ""),
            Err(StoreError::Invalid(_))
        ));
        for bad in [
            "",
            "no-at-sign",
            "a b@example.com",
            "x@y\n",
            &format!("{}@example.com", "a".repeat(300)),
        ] {
            assert!(
                matches!(s.ensure_account(bad, "x"), Err(StoreError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            s.ensure_account("n@example.com", &"n".repeat(MAX_SHORT_TEXT + 1)),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(dump(&s), before);
    }

    #[test]
    fn maintenance_and_buildpacks() {
        let (s, owner) = store();
        let (app, _) = s.create_app("misc-app", &owner.id, "heroku-24").unwrap();
        assert!(s.set_maintenance("misc-app", true).unwrap().maintenance);
        assert!(!s.set_maintenance(&app.id, false).unwrap().maintenance);
        assert!(matches!(
            s.set_maintenance("ghost-app", true),
            Err(StoreError::NotFound { resource: "app" })
        ));

        assert!(s.buildpacks(&app.id).unwrap().is_empty());
        let packs = vec![
            "heroku/nodejs".to_string(),
            "https://github.com/heroku/heroku-buildpack-python#v1".to_string(),
        ];
        s.set_buildpacks(&app.id, &packs).unwrap();
        assert_eq!(s.buildpacks("misc-app").unwrap(), packs);
        let before = dump(&s);
        assert!(matches!(
            s.set_buildpacks(
                &app.id,
                &["heroku/ruby".into(), "--upload-pack=evil".into()]
            ),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(dump(&s), before);
        s.set_buildpacks(&app.id, &[]).unwrap();
        assert!(s.buildpacks(&app.id).unwrap().is_empty());
    }

    #[test]
    fn delete_app_removes_everything_it_owns() {
        let (s, owner) = store();
        let (keep, _) = s.create_app("keep-app", &owner.id, "heroku-24").unwrap();
        s.update_config(&keep.id, &patch(&[("A", Some("1"))]), &owner.id)
            .unwrap();
        let kept = dump(&s);

        let (app, _) = s.create_app("doomed", &owner.id, "heroku-24").unwrap();
        let slug = slug_for(&app);
        s.insert_slug(&slug).unwrap();
        let rel = s
            .append_release(
                &app.id,
                new_release(
                    &owner,
                    ReleaseStatus::Succeeded,
                    Some(&slug.id),
                    &[("X", "y")],
                ),
            )
            .unwrap();
        let b = s.create_build(&app.id, &owner.id, None, &[]).unwrap();
        s.finish_build(
            &b.id,
            BuildStatus::Succeeded,
            "ok\n",
            Some(&slug.id),
            Some(&rel.id),
        )
        .unwrap();
        s.create_build(&app.id, &owner.id, None, &[]).unwrap();
        s.ensure_formation(&app.id, &[("web".to_string(), 1)].into())
            .unwrap();
        s.set_buildpacks(&app.id, &["heroku/python".into()])
            .unwrap();

        s.delete_app("doomed").unwrap();
        assert!(matches!(
            s.app("doomed"),
            Err(StoreError::NotFound { resource: "app" })
        ));
        assert!(matches!(
            s.slug(&slug.id),
            Err(StoreError::NotFound { resource: "slug" })
        ));
        assert!(matches!(
            s.delete_app(&app.id),
            Err(StoreError::NotFound { resource: "app" })
        ));
        // Only the uid counter remembers the deleted app.
        let counter_line = |d: &str| {
            d.lines()
                .filter(|l| !l.starts_with("counters:"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(counter_line(&dump(&s)), counter_line(&kept));
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let (s, owner) = store();
        let (app, _) = s.create_app("corrupt-app", &owner.id, "heroku-24").unwrap();
        s.lock()
            .execute(
                "UPDATE apps SET config = 'not json' WHERE id = ?1",
                [&app.id],
            )
            .unwrap();
        match s.app(&app.id) {
            Err(StoreError::Db(msg)) => assert!(msg.contains("JSON"), "{msg}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.update_config(&app.id, &patch(&[("A", Some("1"))]), &owner.id),
            Err(StoreError::Db(_))
        ));
    }

    #[test]
    fn a_file_database_survives_reopening() {
        let dir = TempDir::new();
        let (app_id, owner_id) = {
            let s = SqliteStore::open(&dir.db()).unwrap();
            let owner = s.ensure_account("owner@example.com", "Owner").unwrap();
            s.add_api_key(&owner.id, "key", "").unwrap();
            let (app, _) = s.create_app("durable", &owner.id, "heroku-24").unwrap();
            s.update_config(&app.id, &patch(&[("A", Some("1"))]), &owner.id)
                .unwrap();
            s.ensure_formation(&app.id, &[("web".to_string(), 2)].into())
                .unwrap();
            s.delete_app(&s.create_app("gone", &owner.id, "heroku-24").unwrap().0.id)
                .unwrap();
            let mode: String = s
                .lock()
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            (app.id, owner.id)
        };
        for _ in 0..2 {
            let s = SqliteStore::open(&dir.db()).unwrap();
            let version: i64 = s
                .lock()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(version, MIGRATIONS.len() as i64);
            let fk: i64 = s
                .lock()
                .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
                .unwrap();
            assert_eq!(fk, 1);
            let app = s.app("durable").unwrap();
            assert_eq!(app.id, app_id);
            assert_eq!(app.config.get("A").map(String::as_str), Some("1"));
            assert_eq!(versions(&s, &app_id), vec![1, 2]);
            assert_eq!(s.formation(&app_id).unwrap()[0].quantity, 2);
            assert_eq!(
                s.account_by_api_key("key").unwrap().map(|a| a.id),
                Some(owner_id.clone())
            );
            assert!(matches!(s.app("gone"), Err(StoreError::NotFound { .. })));
        }
        // The uid counter survived too: "gone" took 20001, so the next app gets 20002.
        let s = SqliteStore::open(&dir.db()).unwrap();
        assert_eq!(
            s.create_app("after", &owner_id, "heroku-24").unwrap().0.uid,
            20_002
        );
    }

    #[test]
    fn a_database_from_a_newer_kiln_is_refused() {
        let dir = TempDir::new();
        drop(SqliteStore::open(&dir.db()).unwrap());
        {
            let conn = Connection::open(dir.db()).unwrap();
            conn.pragma_update(None, "user_version", MIGRATIONS.len() as i64 + 1)
                .unwrap();
        }
        match SqliteStore::open(&dir.db()) {
            Err(StoreError::Db(msg)) => assert!(msg.contains("newer Kiln"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn concurrent_appends_make_a_gap_free_ledger() {
        let dir = TempDir::new();
        // Two stores on one file: threads contend both for the mutex and for SQLite's lock.
        let a = Arc::new(SqliteStore::open(&dir.db()).unwrap());
        let b = Arc::new(SqliteStore::open(&dir.db()).unwrap());
        let owner = a.ensure_account("owner@example.com", "Owner").unwrap();
        let (app, _) = a.create_app("busy-app", &owner.id, "heroku-24").unwrap();
        const THREADS: usize = 6;
        const EACH: usize = 20;
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let s = if t % 2 == 0 {
                    Arc::clone(&a)
                } else {
                    Arc::clone(&b)
                };
                let owner = owner.clone();
                let app_id = app.id.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..EACH {
                        let value = format!("{t}-{i}");
                        let r = if i % 2 == 0 {
                            s.append_release(
                                &app_id,
                                new_release(
                                    &owner,
                                    ReleaseStatus::Succeeded,
                                    None,
                                    &[("T", &value)],
                                ),
                            )
                            .unwrap()
                        } else {
                            s.update_config(&app_id, &patch(&[("T", Some(&value))]), &owner.id)
                                .unwrap()
                                .1
                                .unwrap()
                        };
                        mine.push(r.version);
                    }
                    mine
                })
            })
            .collect();
        let mut seen: Vec<u32> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        seen.sort_unstable();
        let expected: Vec<u32> = (2..=(THREADS * EACH + 1) as u32).collect();
        assert_eq!(seen, expected, "every append got its own version");
        assert_eq!(
            versions(&a, &app.id),
            (1..=(THREADS * EACH + 1) as u32).collect::<Vec<_>>()
        );
        // The app's config is the newest release's config.
        let newest = a
            .releases(
                &app.id,
                ReleaseRange {
                    first: None,
                    last: None,
                    max: 1,
                    descending: true,
                },
            )
            .unwrap();
        assert_eq!(b.app(&app.id).unwrap().config, newest[0].config);
    }

    #[test]
    fn huge_and_hostile_input_is_refused_and_changes_nothing() {
        let (s, owner) = store();
        let (app, _) = s.create_app("target", &owner.id, "heroku-24").unwrap();
        s.ensure_formation(&app.id, &[("web".to_string(), 1)].into())
            .unwrap();
        let before = dump(&s);
        let sqlish = "target'; DROP TABLE apps; --";
        let huge = "A".repeat(1 << 20);

        assert!(matches!(
            s.app(sqlish),
            Err(StoreError::NotFound { resource: "app" })
        ));
        assert!(matches!(
            s.app(&huge),
            Err(StoreError::NotFound { resource: "app" })
        ));
        assert!(matches!(
            s.delete_app(sqlish),
            Err(StoreError::NotFound { resource: "app" })
        ));
        assert!(matches!(
            s.delete_app("%"),
            Err(StoreError::NotFound { resource: "app" })
        ));
        assert!(matches!(
            s.create_app(sqlish, &owner.id, "heroku-24"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.create_app("fine-name", &owner.id, &huge),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.update_config(&app.id, &patch(&[(&huge, Some("x"))]), &owner.id),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.update_config(&app.id, &patch(&[("BIG", Some(&huge))]), &owner.id),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.update_config(&app.id, &patch(&[(sqlish, Some("x"))]), &owner.id),
            Err(StoreError::Invalid(_))
        ));
        let mut big_release = new_release(&owner, ReleaseStatus::Succeeded, None, &[]);
        big_release.description = huge.clone();
        assert!(matches!(
            s.append_release(&app.id, big_release),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.release(&app.id, &huge),
            Err(StoreError::NotFound {
                resource: "release"
            })
        ));
        assert!(matches!(
            s.update_formation(&app.id, &[(huge.clone(), Some(1), None)]),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.update_formation(&app.id, &[("web".into(), Some(1), Some(huge.clone()))]),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.create_build(&app.id, &owner.id, Some(&huge), &[]),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.set_buildpacks(&app.id, std::slice::from_ref(&huge)),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.ensure_account(&huge, "x"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.add_api_key(&owner.id, &huge, ""),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(s.account_by_api_key(&huge).unwrap(), None);
        assert!(matches!(
            s.fail_pending_builds(&huge),
            Err(StoreError::Invalid(_))
        ));
        // Error messages quote hostile input only in part.
        let Err(StoreError::Invalid(e)) = s.create_app("fine-name", &owner.id, &huge) else {
            panic!()
        };
        assert!(e.message.len() < 300, "{}", e.message.len());
        assert_eq!(dump(&s), before);
    }

    #[test]
    fn a_panic_while_holding_the_lock_does_not_break_the_store() {
        let (s, owner) = store();
        let s = Arc::new(s);
        let s2 = Arc::clone(&s);
        let owner2 = owner.clone();
        let result = std::thread::spawn(move || {
            s2.write(|tx| {
                tx.execute(
                    "UPDATE accounts SET name = 'half done' WHERE id = ?1",
                    [&owner2.id],
                )
                .unwrap();
                panic!("boom");
                #[allow(unreachable_code)]
                Ok(())
            })
        })
        .join();
        assert!(result.is_err());
        assert_eq!(
            s.account(&owner.id).unwrap().name,
            "Owner",
            "the panicking transaction was rolled back"
        );
        s.create_app("still-works", &owner.id, "heroku-24").unwrap();
    }
}
