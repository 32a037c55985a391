//! Accounts, their passwords (as argon2 hashes made by the platform) and their API keys
//! (Heroku's OAuth authorizations). Only a SHA-256 of a key is stored: keys are 256 random
//! bits, so a fast hash is enough, and a lookup by hash is one index probe.

use super::common::{
    DbContext, all_rows, list_json, new_id, one_row, require_account, string_list, ts,
};
use crate::{Account, Authorization, Invitation, Result, StoreError};
use kiln_model::Timestamp;
use kiln_model::records::{api_key_has_valid_length, validate_account, validate_api_key};
use rusqlite::{Connection, OptionalExtension, Row, params};
use sha2::{Digest, Sha256};

const SELECT: &str = "SELECT id, email, name, admin, created_at, updated_at FROM accounts";

/// Schema step 8 (with `tenancy::MIGRATION`): passwords, admins, and API keys becoming
/// authorizations with ids, scopes and expiry. Existing keys keep working: their hashes move.
pub(super) const MIGRATION: &str = r#"
    ALTER TABLE accounts ADD COLUMN password_hash TEXT;
    ALTER TABLE accounts ADD COLUMN admin INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1));
    UPDATE accounts SET admin = 1 WHERE email = 'admin@kiln.local';

    CREATE TABLE authorizations (
        id           TEXT PRIMARY KEY,
        account_id   TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        token_sha256 TEXT NOT NULL UNIQUE,
        token_hint   TEXT NOT NULL,
        description  TEXT NOT NULL,
        scope        TEXT NOT NULL,
        expires_at   INTEGER,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX authorizations_account ON authorizations(account_id);
    -- A random version-4 UUID for each existing key.
    INSERT INTO authorizations (id, account_id, token_sha256, token_hint, description, scope, expires_at, created_at, updated_at)
        SELECT lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4'
               || substr(lower(hex(randomblob(2))), 2) || '-'
               || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(lower(hex(randomblob(2))), 2)
               || '-' || lower(hex(randomblob(6))),
               account_id, key_sha256, '', description, '["global"]', NULL, created_at, created_at
        FROM api_keys;
    DROP TABLE api_keys;

    CREATE TABLE invitations (
        id           TEXT PRIMARY KEY,
        token_sha256 TEXT NOT NULL UNIQUE,
        email        TEXT NOT NULL COLLATE NOCASE,
        invited_by   TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        accepted_at  INTEGER
    ) STRICT;
"#;

fn from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        admin: row.get(3)?,
        created_at: ts(row, 4)?,
        updated_at: ts(row, 5)?,
    })
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Account> {
    one_row(
        conn,
        &format!("{SELECT} WHERE id = ?1"),
        [id],
        from_row,
        "account",
    )
}

/// By email (case-insensitively) or id.
pub(super) fn find(conn: &Connection, email_or_id: &str) -> Result<Option<Account>> {
    conn.query_row(
        &format!("{SELECT} WHERE email = ?1 OR id = ?1"),
        [email_or_id],
        from_row,
    )
    .optional()
    .ctx("looking up an account")
}

pub(super) fn list(conn: &Connection) -> Result<Vec<Account>> {
    all_rows(
        conn,
        &format!("{SELECT} ORDER BY email"),
        [],
        from_row,
        "listing accounts",
    )
}

pub(super) fn ensure(conn: &Connection, email: &str, name: &str) -> Result<Account> {
    validate_account(email, name)?;
    // The email column compares case-insensitively: Bob@x and bob@x are one person.
    if let Some(account) = find(conn, email)? {
        return Ok(account);
    }
    insert(conn, email, name, None, false)
}

/// Makes a new account; `Conflict` if the email is taken.
pub(super) fn create(
    conn: &Connection,
    email: &str,
    name: &str,
    password_hash: Option<&str>,
    admin: bool,
) -> Result<Account> {
    validate_account(email, name)?;
    if find(conn, email)?.is_some() {
        return Err(StoreError::Conflict(format!(
            "An account with the email {email} already exists"
        )));
    }
    insert(conn, email, name, password_hash, admin)
}

fn insert(
    conn: &Connection,
    email: &str,
    name: &str,
    password_hash: Option<&str>,
    admin: bool,
) -> Result<Account> {
    let now = Timestamp::now();
    let id = new_id();
    conn.execute(
        "INSERT INTO accounts (id, email, name, password_hash, admin, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![id, email, name, password_hash, admin, now.0],
    )
    .ctx("inserting an account")?;
    get(conn, &id)
}

pub(super) fn set_admin(conn: &Connection, id: &str, admin: bool) -> Result<Account> {
    require_account(conn, id)?;
    conn.execute(
        "UPDATE accounts SET admin = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, admin, Timestamp::now().0],
    )
    .ctx("changing an account's admin flag")?;
    get(conn, id)
}

pub(super) fn password_hash(conn: &Connection, id: &str) -> Result<Option<String>> {
    conn.query_row(
        "SELECT password_hash FROM accounts WHERE id = ?1",
        [id],
        |r| r.get::<_, Option<String>>(0),
    )
    .optional()
    .ctx("reading a password hash")
    .map(Option::flatten)
}

/// Sets the password and ends every API key the account had: what the old password let
/// anyone make is no longer trusted.
pub(super) fn set_password(conn: &Connection, id: &str, hash: &str) -> Result<()> {
    require_account(conn, id)?;
    conn.execute(
        "UPDATE accounts SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, hash, Timestamp::now().0],
    )
    .ctx("setting a password")?;
    conn.execute("DELETE FROM authorizations WHERE account_id = ?1", [id])
        .ctx("ending the account's API keys")?;
    Ok(())
}

pub(super) fn hash_api_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
            hex
        })
}

/// The last six characters of a token: enough to tell keys apart in a redacted listing
/// (and for `heroku logout` to find its own), useless to an attacker.
fn hint(token: &str) -> String {
    let n = token.chars().count();
    token.chars().skip(n.saturating_sub(6)).collect()
}

const SELECT_AUTH: &str = "SELECT id, account_id, description, scope, token_hint, expires_at, created_at, updated_at FROM authorizations";

fn auth_from_row(row: &Row<'_>) -> rusqlite::Result<Authorization> {
    Ok(Authorization {
        id: row.get(0)?,
        account_id: row.get(1)?,
        description: row.get(2)?,
        scope: string_list(row, 3)?,
        token_hint: row.get(4)?,
        expires_at: row.get::<_, Option<i64>>(5)?.map(Timestamp),
        created_at: ts(row, 6)?,
        updated_at: ts(row, 7)?,
    })
}

/// Registers a key made outside the API (the server's bootstrap admin key). Registering the
/// same key again for the same account (at every start) only updates its description.
pub(super) fn add_api_key(
    conn: &Connection,
    account_id: &str,
    key: &str,
    description: &str,
) -> Result<()> {
    validate_api_key(key, description)?;
    let hash = hash_api_key(key);
    require_account(conn, account_id)?;
    let owner: Option<String> = conn
        .query_row(
            "SELECT account_id FROM authorizations WHERE token_sha256 = ?1",
            [&hash],
            |r| r.get(0),
        )
        .optional()
        .ctx("looking up an API key")?;
    match owner {
        Some(owner) if owner == account_id => {
            conn.execute(
                "UPDATE authorizations SET description = ?2 WHERE token_sha256 = ?1",
                params![hash, description],
            )
            .ctx("updating an API key")?;
            Ok(())
        }
        Some(_) => Err(StoreError::Conflict(
            "This API key is already registered to another account".into(),
        )),
        None => create_authorization(conn, account_id, key, description, &["global".into()], None)
            .map(|_| ()),
    }
}

pub(super) fn create_authorization(
    conn: &Connection,
    account_id: &str,
    token: &str,
    description: &str,
    scope: &[String],
    expires_at: Option<Timestamp>,
) -> Result<Authorization> {
    validate_api_key(token, description)?;
    require_account(conn, account_id)?;
    let now = Timestamp::now();
    let id = new_id();
    conn.execute(
        "INSERT INTO authorizations (id, account_id, token_sha256, token_hint, description, scope, expires_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![id, account_id, hash_api_key(token), hint(token), description, list_json(scope), expires_at.map(|t| t.0), now.0],
    )
    .ctx("inserting an authorization")?;
    authorization(conn, account_id, &id)
}

/// One of the account's authorizations; another account's is `NotFound`, like a missing one.
pub(super) fn authorization(
    conn: &Connection,
    account_id: &str,
    id: &str,
) -> Result<Authorization> {
    one_row(
        conn,
        &format!("{SELECT_AUTH} WHERE id = ?1 AND account_id = ?2"),
        [id, account_id],
        auth_from_row,
        "authorization",
    )
}

pub(super) fn authorizations(conn: &Connection, account_id: &str) -> Result<Vec<Authorization>> {
    all_rows(
        conn,
        &format!("{SELECT_AUTH} WHERE account_id = ?1 ORDER BY created_at, id"),
        [account_id],
        auth_from_row,
        "listing authorizations",
    )
}

pub(super) fn update_authorization(
    conn: &Connection,
    account_id: &str,
    id: &str,
    description: &str,
) -> Result<Authorization> {
    validate_api_key("x", description)?;
    authorization(conn, account_id, id)?;
    conn.execute(
        "UPDATE authorizations SET description = ?3, updated_at = ?4 WHERE id = ?1 AND account_id = ?2",
        params![id, account_id, description, Timestamp::now().0],
    )
    .ctx("updating an authorization")?;
    authorization(conn, account_id, id)
}

pub(super) fn delete_authorization(
    conn: &Connection,
    account_id: &str,
    id: &str,
) -> Result<Authorization> {
    let a = authorization(conn, account_id, id)?;
    conn.execute(
        "DELETE FROM authorizations WHERE id = ?1 AND account_id = ?2",
        params![id, account_id],
    )
    .ctx("deleting an authorization")?;
    Ok(a)
}

/// Gives an authorization a new token; the old one stops working in the same transaction.
pub(super) fn regenerate_authorization(
    conn: &Connection,
    account_id: &str,
    id: &str,
    token: &str,
) -> Result<Authorization> {
    validate_api_key(token, "")?;
    authorization(conn, account_id, id)?;
    conn.execute(
        "UPDATE authorizations SET token_sha256 = ?3, token_hint = ?4, updated_at = ?5 WHERE id = ?1 AND account_id = ?2",
        params![id, account_id, hash_api_key(token), hint(token), Timestamp::now().0],
    )
    .ctx("regenerating an authorization")?;
    authorization(conn, account_id, id)
}

/// The account and authorization a presented key belongs to (expired or not: the caller
/// decides, so that it can say why).
pub(super) fn by_api_key(conn: &Connection, key: &str) -> Result<Option<(Account, Authorization)>> {
    if !api_key_has_valid_length(key) {
        return Ok(None);
    }
    let auth = conn
        .query_row(
            &format!("{SELECT_AUTH} WHERE token_sha256 = ?1"),
            [hash_api_key(key)],
            auth_from_row,
        )
        .optional()
        .ctx("looking up an API key")?;
    match auth {
        None => Ok(None),
        Some(auth) => Ok(Some((get(conn, &auth.account_id)?, auth))),
    }
}

// --- invitations ---

const SELECT_INVITE: &str =
    "SELECT id, email, invited_by, created_at, expires_at, accepted_at FROM invitations";

fn invite_from_row(row: &Row<'_>) -> rusqlite::Result<Invitation> {
    Ok(Invitation {
        id: row.get(0)?,
        email: row.get(1)?,
        invited_by: row.get(2)?,
        created_at: ts(row, 3)?,
        expires_at: ts(row, 4)?,
        accepted_at: row.get::<_, Option<i64>>(5)?.map(Timestamp),
    })
}

pub(super) fn create_invitation(
    conn: &Connection,
    email: &str,
    token: &str,
    invited_by: &str,
    expires_at: Timestamp,
) -> Result<Invitation> {
    validate_account(email, "invitation")?;
    validate_api_key(token, "")?;
    require_account(conn, invited_by)?;
    if find(conn, email)?.is_some() {
        return Err(StoreError::Conflict(format!(
            "An account with the email {email} already exists"
        )));
    }
    let id = new_id();
    conn.execute(
        "INSERT INTO invitations (id, token_sha256, email, invited_by, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, hash_api_key(token), email, invited_by, Timestamp::now().0, expires_at.0],
    )
    .ctx("inserting an invitation")?;
    one_row(
        conn,
        &format!("{SELECT_INVITE} WHERE id = ?1"),
        [&id],
        invite_from_row,
        "invitation",
    )
}

pub(super) fn invitation_by_token(conn: &Connection, token: &str) -> Result<Option<Invitation>> {
    if !api_key_has_valid_length(token) {
        return Ok(None);
    }
    conn.query_row(
        &format!("{SELECT_INVITE} WHERE token_sha256 = ?1"),
        [hash_api_key(token)],
        invite_from_row,
    )
    .optional()
    .ctx("looking up an invitation")
}

/// Uses an invitation to make its account, once: the invitation's own email is the
/// account's, whatever else the caller sends.
pub(super) fn accept_invitation(
    conn: &Connection,
    id: &str,
    name: &str,
    password_hash: &str,
) -> Result<Account> {
    let inv = one_row(
        conn,
        &format!("{SELECT_INVITE} WHERE id = ?1"),
        [id],
        invite_from_row,
        "invitation",
    )?;
    if inv.accepted_at.is_some() {
        return Err(StoreError::Conflict(
            "This invitation has already been used".into(),
        ));
    }
    let account = create(conn, &inv.email, name, Some(password_hash), false)?;
    let changed = conn
        .execute(
            "UPDATE invitations SET accepted_at = ?2 WHERE id = ?1 AND accepted_at IS NULL",
            params![id, Timestamp::now().0],
        )
        .ctx("using an invitation")?;
    if changed != 1 {
        return Err(StoreError::Db("an invitation changed under us".into()));
    }
    Ok(account)
}
