//! PostgreSQL from the tests' side: the `psql` client, as an app or an operator would run it.

use std::process::Command;

/// What psql said when it failed (read as text: `e.contains("permission denied")`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsqlError(pub String);

impl std::fmt::Display for PsqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for PsqlError {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Runs `sql` with `psql` as the URL's user: `Ok(output)` (unaligned, tuples only) or
/// `Err(psql's error)`.
pub fn psql(url: &str, sql: &str) -> Result<String, PsqlError> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .map_err(|e| PsqlError(format!("running psql: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(PsqlError(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}
