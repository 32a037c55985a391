//! Accounts and their credentials: passwords (argon2id), API keys as Heroku's OAuth
//! authorizations (shown once, stored as SHA-256, listed redacted, optionally expiring),
//! invitations and sign-up, failed-login throttling, the per-user API rate limit, and the
//! signal that ends what a revoked credential allowed.
//!
//! Why these numbers:
//! - argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane) is OWASP's recommended
//!   minimum; a login costs tens of milliseconds, paid on a blocking thread.
//! - an account is locked after [`ACCOUNT_FREE_FAILURES`] failed logins in a row, for a time
//!   that doubles with each further failure up to [`ACCOUNT_MAX_LOCK`]; an address gets
//!   [`ADDRESS_FAILURES`] failures per [`ADDRESS_WINDOW`]. Guessing is then hopeless, and a
//!   locked account is never told whether the password was right (it is not checked).
//! - Heroku's API allows 4,500 requests per hour per user, refilled continuously
//!   (`RateLimit-Remaining`), which is what [`RateLimiter`] does.

use crate::{Platform, PlatformError, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use kiln_model::Timestamp;
use kiln_model::access::validate_password;
use kiln_model::records::{Authorization, Invitation};
use kiln_store::{Account, StoreError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const ACCOUNT_FREE_FAILURES: u32 = 5;
pub const ACCOUNT_MAX_LOCK: Duration = Duration::from_secs(15 * 60);
pub const ADDRESS_FAILURES: u32 = 50;
pub const ADDRESS_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Heroku's API rate limit.
pub const HEROKU_RATE_LIMIT_PER_HOUR: u32 = 4500;
/// How long an invitation link stays good.
pub const INVITATION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest expiry an authorization may ask for (Heroku's CLI logs in for 30 days; a
/// year is generous and keeps `expires_in` arithmetic far from overflow).
pub const MAX_EXPIRES_IN: u64 = 366 * 24 * 3600;

/// Who may make an account without an administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupMode {
    /// Anyone who can reach the API.
    Open,
    /// Only the holder of an invitation, for the address it was sent to.
    Invite,
    /// Only an administrator (`kiln users:create`).
    Closed,
}

impl SignupMode {
    pub fn parse(s: &str) -> Option<SignupMode> {
        match s {
            "open" => Some(SignupMode::Open),
            "invite" => Some(SignupMode::Invite),
            "closed" => Some(SignupMode::Closed),
            _ => None,
        }
    }
}

/// An authenticated request's caller: the account, the authorization (API key) it used,
/// and the key itself, kept so that a long session can ask whether it still holds.
#[derive(Clone)]
pub struct Caller {
    pub account: Account,
    pub authorization: Authorization,
    key: Arc<str>,
}

impl Caller {
    pub(crate) fn key_for_recheck(&self) -> Arc<str> {
        self.key.clone()
    }

    /// The key this caller presented, to show back to them (`GET /oauth/authorizations/~`);
    /// never to anyone else.
    pub fn key_shown_to_its_holder(&self) -> String {
        self.key.to_string()
    }
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("account", &self.account.email)
            .field("authorization", &self.authorization.id)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct AccountFailures {
    count: u32,
    locked_until: Option<Instant>,
}

#[derive(Default)]
pub(crate) struct LoginThrottle {
    accounts: Mutex<HashMap<String, AccountFailures>>,
    addresses: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// The most addresses and accounts the throttle remembers; beyond it the oldest are
/// forgotten first (an attacker with that many addresses is not stopped by per-address
/// counts anyway; the per-account lock still holds).
const THROTTLE_ENTRIES: usize = 100_000;

impl LoginThrottle {
    /// Refuses an attempt before the password is looked at.
    fn check(&self, account_key: &str, addr: IpAddr) -> Result<()> {
        let now = Instant::now();
        if let Some((start, n)) = lock(&self.addresses).get(&addr) {
            if now.duration_since(*start) < ADDRESS_WINDOW && *n >= ADDRESS_FAILURES {
                let wait = ADDRESS_WINDOW.saturating_sub(now.duration_since(*start));
                return Err(PlatformError::TooManyRequests(format!(
                    "Too many failed logins from your address; try again in {} seconds.",
                    wait.as_secs().max(1)
                )));
            }
        }
        if let Some(f) = lock(&self.accounts).get(account_key) {
            if let Some(until) = f.locked_until.filter(|u| *u > now) {
                return Err(PlatformError::TooManyRequests(format!(
                    "Too many failed logins for this account; try again in {} seconds.",
                    until.duration_since(now).as_secs().max(1)
                )));
            }
        }
        Ok(())
    }

    fn failed(&self, account_key: &str, addr: IpAddr) {
        let now = Instant::now();
        {
            let mut addresses = lock(&self.addresses);
            if addresses.len() >= THROTTLE_ENTRIES {
                addresses.retain(|_, (start, _)| now.duration_since(*start) < ADDRESS_WINDOW);
            }
            let e = addresses.entry(addr).or_insert((now, 0));
            if now.duration_since(e.0) >= ADDRESS_WINDOW {
                *e = (now, 0);
            }
            e.1 = e.1.saturating_add(1);
        }
        let mut accounts = lock(&self.accounts);
        if accounts.len() >= THROTTLE_ENTRIES {
            accounts.retain(|_, f| f.locked_until.is_some_and(|u| u > now));
        }
        let f = accounts.entry(account_key.to_string()).or_default();
        f.count = f.count.saturating_add(1);
        if f.count >= ACCOUNT_FREE_FAILURES {
            let doublings = (f.count - ACCOUNT_FREE_FAILURES).min(20);
            let lock_for = Duration::from_secs(1u64 << doublings).min(ACCOUNT_MAX_LOCK);
            f.locked_until = Some(now + lock_for);
        }
    }

    fn succeeded(&self, account_key: &str) {
        lock(&self.accounts).remove(account_key);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Heroku's per-user request budget: a bucket of `per_hour` requests refilled continuously.
pub(crate) struct RateLimiter {
    per_hour: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// What one request cost.
#[derive(Debug, Clone, Copy)]
pub struct RateCheck {
    pub allowed: bool,
    /// Requests left now (`RateLimit-Remaining`).
    pub remaining: u32,
}

impl RateLimiter {
    pub(crate) fn new(per_hour: u32) -> RateLimiter {
        RateLimiter {
            per_hour,
            buckets: Mutex::default(),
        }
    }

    fn charge(&self, account_id: &str) -> RateCheck {
        let cap = f64::from(self.per_hour);
        let rate = cap / 3600.0;
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= THROTTLE_ENTRIES {
            // A full bucket is the same as no entry.
            buckets.retain(|_, (level, at)| {
                *level + now.duration_since(*at).as_secs_f64() * rate < cap
            });
        }
        let (level, at) = buckets.entry(account_id.to_string()).or_insert((cap, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * rate).min(cap);
        *at = now;
        let allowed = *level >= 1.0;
        if allowed {
            *level -= 1.0;
        }
        RateCheck {
            allowed,
            remaining: level.floor() as u32,
        }
    }
}

fn argon2() -> argon2::Argon2<'static> {
    argon2::Argon2::default()
}

fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    kiln_model::secret::fill_random(&mut salt)?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| PlatformError::Internal(format!("encoding a password salt: {e}")))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PlatformError::Internal(format!("hashing a password: {e}")))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .ok()
        .is_some_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash to check against when the account does not exist, so that a login for an
/// unknown email costs what one for a known email costs.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password("kiln decoy password, never valid").unwrap_or_default())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PlatformError::Internal(format!("a password check stopped: {e}")))
}

fn invalid_credentials() -> PlatformError {
    PlatformError::Unauthorized("Invalid credentials provided.".into())
}

impl Platform {
    /// The caller a presented API key stands for: `None` for an unknown, revoked or expired
    /// key (the door answers all three alike).
    pub fn authenticate(&self, key: &str) -> Result<Option<Caller>> {
        let Some((account, authorization)) = self.store.account_by_api_key(key)? else {
            return Ok(None);
        };
        if authorization.expired(Timestamp::now()) {
            return Ok(None);
        }
        Ok(Some(Caller {
            account,
            authorization,
            key: Arc::from(key),
        }))
    }

    /// Charges one API request to the caller's hourly budget.
    pub fn charge_request(&self, account: &Account) -> RateCheck {
        self.rate_limiter.charge(&account.id)
    }

    /// Checks an email and password (`heroku login -i`, `kiln login`), throttled per
    /// account and per address. Every refusal reads the same whether or not the email has
    /// an account.
    pub async fn login(&self, email: &str, password: &str, addr: IpAddr) -> Result<Account> {
        let key = email.trim().to_ascii_lowercase();
        if key.is_empty() || key.len() > 254 || password.len() > kiln_model::access::PASSWORD_MAX {
            return Err(invalid_credentials());
        }
        self.login_throttle.check(&key, addr)?;
        let account = self.store.find_account(email.trim())?;
        let hash = match &account {
            Some(a) => self.store.password_hash(&a.id)?,
            None => None,
        };
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| decoy_hash().to_string());
        let password = password.to_string();
        let ok = blocking(move || verify_password(&password, &hash)).await? && known;
        match account {
            Some(a) if ok => {
                self.login_throttle.succeeded(&key);
                Ok(a)
            }
            _ => {
                self.login_throttle.failed(&key, addr);
                Err(invalid_credentials())
            }
        }
    }

    /// Makes an API key for the user; the token is returned once and never again.
    pub fn create_authorization(
        &self,
        user: &Account,
        description: &str,
        scope: Vec<String>,
        expires_in: Option<u64>,
    ) -> Result<(Authorization, String)> {
        let scope = check_scope(scope)?;
        let expires_at = expires_at(expires_in)?;
        let token = kiln_model::secret::new_api_token()?;
        let a =
            self.store
                .create_authorization(&user.id, &token, description, &scope, expires_at)?;
        Ok((a, token))
    }

    pub fn authorizations(&self, user: &Account) -> Result<Vec<Authorization>> {
        Ok(self.store.authorizations(&user.id)?)
    }

    pub fn authorization(&self, user: &Account, id: &str) -> Result<Authorization> {
        Ok(self.store.authorization(&user.id, id)?)
    }

    pub fn update_authorization(
        &self,
        user: &Account,
        id: &str,
        description: &str,
    ) -> Result<Authorization> {
        Ok(self.store.update_authorization(&user.id, id, description)?)
    }

    /// Deletes a key; sessions it opened (log tails, `run`) end at once.
    pub fn revoke_authorization(&self, user: &Account, id: &str) -> Result<Authorization> {
        let a = self.store.delete_authorization(&user.id, id)?;
        self.credentials_changed();
        Ok(a)
    }

    /// Gives a key a new token; the old one stops working at once.
    pub fn regenerate_authorization(
        &self,
        user: &Account,
        id: &str,
    ) -> Result<(Authorization, String)> {
        let token = kiln_model::secret::new_api_token()?;
        let a = self.store.regenerate_authorization(&user.id, id, &token)?;
        self.credentials_changed();
        Ok((a, token))
    }

    /// Changes a password after checking the current one; every key the account had ends.
    pub async fn change_password(
        &self,
        user: &Account,
        current: &str,
        new: &str,
        addr: IpAddr,
    ) -> Result<()> {
        validate_password(new)?;
        if self.store.password_hash(&user.id)?.is_some() {
            self.login(&user.email, current, addr).await?;
        }
        let new = new.to_string();
        let hash = blocking(move || hash_password(&new)).await??;
        self.store.set_password(&user.id, &hash)?;
        self.credentials_changed();
        Ok(())
    }

    /// Refuses anyone but a server administrator.
    pub fn require_admin(&self, user: &Account) -> Result<()> {
        if user.admin {
            Ok(())
        } else {
            Err(PlatformError::Forbidden(
                "Only a Kiln administrator may do this.".into(),
            ))
        }
    }

    /// An administrator makes an account (`kiln users:create`).
    pub async fn create_user(
        &self,
        admin: &Account,
        email: &str,
        name: &str,
        password: &str,
        make_admin: bool,
    ) -> Result<Account> {
        self.require_admin(admin)?;
        validate_password(password)?;
        let password = password.to_string();
        let hash = blocking(move || hash_password(&password)).await??;
        Ok(self
            .store
            .create_account(email.trim(), name, Some(&hash), make_admin)?)
    }

    pub fn users(&self, admin: &Account) -> Result<Vec<Account>> {
        self.require_admin(admin)?;
        Ok(self.store.accounts()?)
    }

    /// An administrator invites an address; the token goes into the link they send.
    pub fn invite_user(&self, admin: &Account, email: &str) -> Result<(Invitation, String)> {
        self.require_admin(admin)?;
        let token = kiln_model::secret::new_secret()?;
        let expires =
            Timestamp(Timestamp::now().0 + INVITATION_LIFETIME.as_secs() as i64 * 1_000_000);
        let inv = self
            .store
            .create_invitation(email.trim(), &token, &admin.id, expires)?;
        Ok((inv, token))
    }

    /// Makes an account without an administrator: with an invitation (bound to the address
    /// it was sent to) or, when sign-up is open, without one.
    pub async fn signup(
        &self,
        invitation: Option<&str>,
        email: &str,
        name: &str,
        password: &str,
    ) -> Result<Account> {
        validate_password(password)?;
        kiln_model::records::validate_account(email.trim(), name)?;
        let invitation = match invitation {
            Some(token) => {
                let inv = self
                    .store
                    .invitation_by_token(token)?
                    .filter(|i| i.accepted_at.is_none() && i.expires_at.0 > Timestamp::now().0)
                    .ok_or_else(|| {
                        PlatformError::Forbidden(
                            "This invitation is not valid: it was used, it expired, or it never existed.".into(),
                        )
                    })?;
                // The CVE-2025-64423 lesson: an invitation is for the address it was sent to,
                // not for whoever holds the link.
                if !inv.email.eq_ignore_ascii_case(email.trim()) {
                    return Err(PlatformError::Forbidden(
                        "This invitation was sent to another address.".into(),
                    ));
                }
                Some(inv)
            }
            None => None,
        };
        let password = password.to_string();
        match (invitation, self.settings.signup) {
            (Some(inv), SignupMode::Open | SignupMode::Invite) => {
                let hash = blocking(move || hash_password(&password)).await??;
                Ok(self.store.accept_invitation(&inv.id, name, &hash)?)
            }
            (None, SignupMode::Open) => {
                let hash = blocking(move || hash_password(&password)).await??;
                Ok(self
                    .store
                    .create_account(email.trim(), name, Some(&hash), false)
                    .map_err(|e| match e {
                        // Whether an address has an account is not told to strangers.
                        StoreError::Conflict(_) => PlatformError::Forbidden(
                            "Sign-up failed for this address.".into(),
                        ),
                        other => other.into(),
                    })?)
            }
            (_, SignupMode::Closed) | (None, SignupMode::Invite) => Err(PlatformError::Forbidden(
                "Sign-up is closed on this Kiln: ask an administrator for an account or an invitation.".into(),
            )),
        }
    }

    /// Wakes every long session so it checks whether its credential and access still hold.
    pub(crate) fn credentials_changed(&self) {
        self.revocations.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Resolves when the caller's key stops working (revoked, regenerated, expired, or the
    /// password changed), or, with an app, when the caller may no longer do `need` to it.
    /// Log tails and `run` sessions end with it.
    pub async fn access_ended(
        &self,
        caller: &Caller,
        app_id: Option<&str>,
        need: kiln_model::access::Need,
    ) {
        let mut rx = self.revocations.subscribe();
        loop {
            rx.borrow_and_update();
            let still = match self.authenticate(&caller.key) {
                Ok(Some(c)) if c.account.id == caller.account.id => match app_id {
                    None => true,
                    Some(app) => self.app_for(&c.account, app, need).is_ok(),
                },
                Ok(_) => false,
                // A store error is not a revocation: look again on the next change.
                Err(_) => true,
            };
            if !still {
                return;
            }
            // Expiry is a change nobody announces: look again by then at the latest.
            let wait = caller
                .authorization
                .expires_at
                .map(|t| {
                    Duration::from_micros(u64::try_from(t.0 - Timestamp::now().0).unwrap_or(0))
                        + Duration::from_secs(1)
                })
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn check_scope(scope: Vec<String>) -> Result<Vec<String>> {
    if scope.len() > 8 {
        return Err(kiln_model::Invalid::new("scope", "Too many scopes").into());
    }
    for s in &scope {
        // Heroku's scopes; Kiln keys act for the whole account, so all of them mean global.
        if !matches!(
            s.as_str(),
            "global" | "identity" | "read" | "write" | "read-protected" | "write-protected"
        ) {
            return Err(kiln_model::Invalid::new(
                "scope",
                format!(
                    "Unknown scope {}: use global, identity, read, write, read-protected or write-protected",
                    kiln_model::records::shown(s)
                ),
            )
            .into());
        }
    }
    Ok(if scope.is_empty() {
        vec!["global".into()]
    } else {
        scope
    })
}

fn expires_at(expires_in: Option<u64>) -> Result<Option<Timestamp>> {
    match expires_in {
        None => Ok(None),
        Some(0) => Err(kiln_model::Invalid::new(
            "expires_in",
            "expires_in must be at least 1 second",
        )
        .into()),
        Some(s) if s > MAX_EXPIRES_IN => Err(kiln_model::Invalid::new(
            "expires_in",
            format!("expires_in may be at most {MAX_EXPIRES_IN} seconds"),
        )
        .into()),
        // Timestamps count microseconds.
        Some(s) => Ok(Some(Timestamp(Timestamp::now().0 + s as i64 * 1_000_000))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn an_account_locks_after_repeated_failures_and_an_address_too() {
        let t = LoginThrottle::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..ACCOUNT_FREE_FAILURES {
            t.check("bob@x", a).unwrap();
            t.failed("bob@x", a);
        }
        assert!(matches!(
            t.check("bob@x", a),
            Err(PlatformError::TooManyRequests(_))
        ));
        // Another account from another address is not affected.
        t.check("eve@x", "192.0.2.2".parse().unwrap()).unwrap();
        let b: IpAddr = "192.0.2.3".parse().unwrap();
        for i in 0..ADDRESS_FAILURES {
            t.check(&format!("u{i}@x"), b).unwrap();
            t.failed(&format!("u{i}@x"), b);
        }
        assert!(matches!(
            t.check("new@x", b),
            Err(PlatformError::TooManyRequests(_))
        ));
    }

    #[test]
    fn the_rate_limit_counts_down_and_refuses_at_zero() {
        let r = RateLimiter::new(3);
        let counts: Vec<_> = (0..4).map(|_| r.charge("a")).collect();
        assert_eq!(
            counts.iter().map(|c| c.remaining).collect::<Vec<_>>(),
            [2, 1, 0, 0]
        );
        assert!(counts[2].allowed && !counts[3].allowed);
        assert!(r.charge("b").allowed, "per user");
    }

    #[test]
    fn scopes_and_expiry_are_checked() {
        assert_eq!(check_scope(vec![]).unwrap(), ["global"]);
        assert!(check_scope(vec!["root".into()]).is_err());
        assert!(expires_at(Some(0)).is_err());
        assert!(expires_at(Some(u64::MAX)).is_err());
        assert!(expires_at(Some(60)).unwrap().is_some());
    }
}
