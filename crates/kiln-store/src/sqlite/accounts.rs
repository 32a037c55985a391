//! Accounts and their API keys. Only a SHA-256 of a key is stored.

use super::common::{DbContext, new_id, one_row, require_account, ts};
use crate::{Account, Result, StoreError};
use kiln_model::Timestamp;
use kiln_model::records::{api_key_has_valid_length, validate_account, validate_api_key};
use rusqlite::{Connection, OptionalExtension, Row, params};
use sha2::{Digest, Sha256};

const SELECT: &str = "SELECT id, email, name, created_at, updated_at FROM accounts";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        created_at: ts(row, 3)?,
        updated_at: ts(row, 4)?,
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

pub(super) fn ensure(conn: &Connection, email: &str, name: &str) -> Result<Account> {
    validate_account(email, name)?;
    // The email column compares case-insensitively: Bob@x and bob@x are one person.
    let existing = conn
        .query_row(&format!("{SELECT} WHERE email = ?1"), [email], from_row)
        .optional()
        .ctx("looking up an account by email")?;
    if let Some(account) = existing {
        return Ok(account);
    }
    let now = Timestamp::now();
    let id = new_id();
    conn.execute("INSERT INTO accounts (id, email, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)", params![id, email, name, now.0])
        .ctx("inserting an account")?;
    get(conn, &id)
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
            "SELECT account_id FROM api_keys WHERE key_sha256 = ?1",
            [&hash],
            |r| r.get(0),
        )
        .optional()
        .ctx("looking up an API key")?;
    match owner {
        // Registering the same key again (e.g. a bootstrap key at every start) is harmless.
        Some(owner) if owner == account_id => {
            conn.execute(
                "UPDATE api_keys SET description = ?2 WHERE key_sha256 = ?1",
                params![hash, description],
            )
            .ctx("updating an API key")?;
        }
        Some(_) => {
            return Err(StoreError::Conflict(
                "This API key is already registered to another account".into(),
            ));
        }
        None => {
            conn.execute("INSERT INTO api_keys (key_sha256, account_id, description, created_at) VALUES (?1, ?2, ?3, ?4)", params![hash, account_id, description, Timestamp::now().0])
                .ctx("inserting an API key")?;
        }
    }
    Ok(())
}

pub(super) fn by_api_key(conn: &Connection, key: &str) -> Result<Option<Account>> {
    if !api_key_has_valid_length(key) {
        return Ok(None);
    }
    conn.query_row(
        "SELECT a.id, a.email, a.name, a.created_at, a.updated_at FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_sha256 = ?1",
        [hash_api_key(key)],
        from_row,
    )
    .optional()
    .ctx("looking up an API key")
}
