//! Who is at the browser: sign-in, the session cookie, and the CSRF token every form carries.
//!
//! A dashboard session *is* an API key (an OAuth authorization described as "Dashboard
//! session", expiring after [`SESSION_SECS`]), kept in an `HttpOnly`, `SameSite=Lax` cookie
//! (`Secure` when the page came over HTTPS). Making it a key rather than a second kind of
//! credential means everything that ends keys ends sessions too, with no code of its own: a
//! password change deletes the account's keys, revoking the key on the Account page or with
//! `heroku authorizations:revoke` signs that browser out, and the platform's `authenticate`
//! is the one place a session is checked. Sign-out revokes the key.
//!
//! Forms carry `_csrf`, a hash of the session's key: a page from another site cannot read
//! the cookie or this page, so it cannot compute the value, and a post without it is refused
//! (403) before anything is read. The sign-in form, which has no session yet, uses a random
//! value held in a short-lived cookie and repeated in the form (double submit).

use crate::DashState;
use crate::html::esc;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use kiln_platform::Caller;
use sha2::{Digest, Sha256};

/// The cookies' names. Over HTTPS they carry the `__Host-` prefix, which browsers accept only
/// from a secure page of this very host with no `Domain`: a site on a sibling or parent name
/// (an app's hostname) cannot plant one (session fixation, or a known sign-in token).
fn session_cookie(secure: bool) -> &'static str {
    if secure {
        "__Host-kiln_session"
    } else {
        "kiln_session"
    }
}

fn login_cookie(secure: bool) -> &'static str {
    if secure {
        "__Host-kiln_login"
    } else {
        "kiln_login"
    }
}
/// A session lasts a working day; signing in again makes a new one.
pub const SESSION_SECS: u64 = 12 * 3600;
/// The largest form body read (a config var's value may be long; nothing else is).
pub const MAX_FORM: usize = 256 * 1024;

/// A signed-in user, as every page and action sees them.
pub struct Session {
    pub caller: Caller,
    /// The token this session's forms must carry.
    pub csrf: String,
    /// Whether cookies set now must be `Secure` (the request came over HTTPS).
    pub secure: bool,
}

impl Session {
    pub fn user(&self) -> &kiln_model::records::Account {
        &self.caller.account
    }

    /// The hidden field every form of this session carries.
    pub fn csrf_field(&self) -> String {
        format!(
            r#"<input type="hidden" name="_csrf" value="{}">"#,
            esc(&self.csrf)
        )
    }

    /// The form's fields, if it carries this session's token; else the 403 page.
    pub fn form(&self, headers: &HeaderMap, body: &[u8]) -> Result<Form, Response> {
        let form = Form::parse(headers, body)?;
        let sent = form.get("_csrf").unwrap_or("");
        if !same(sent.as_bytes(), self.csrf.as_bytes()) {
            return Err(refused_csrf());
        }
        Ok(form)
    }

    /// For the page's scripts' own posts (`X-CSRF-Token`).
    pub fn check_header(&self, headers: &HeaderMap) -> Result<(), Response> {
        let sent = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if same(sent.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(refused_csrf())
        }
    }
}

fn refused_csrf() -> Response {
    crate::pages::bare_page(
        StatusCode::FORBIDDEN,
        "Form expired",
        "<p>This form did not carry a valid token (it may come from another site, or from before you signed in again). Go back, reload the page and try again.</p>",
    )
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The CSRF token of a session key: not the key, and not computable without it.
fn csrf_of(key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"kiln dashboard csrf\n")
        .chain_update(key.as_bytes())
        .finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// A cookie of the request, by name.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

pub fn via_tls(parts: &Parts) -> bool {
    parts.extensions.get::<kiln_net::ViaTls>().is_some()
}

fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    // Values are tokens of [A-Za-z0-9_-]; anything else never gets here.
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("kiln_invalid=; Max-Age=0"))
}

/// Whether the browser says the request comes from another site: `Sec-Fetch-Site:
/// cross-site`, or an `Origin` whose host is not the one asked.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if text("sec-fetch-site") == Some("cross-site") {
        return true;
    }
    match (text("origin"), text("host")) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            origin
                .split_once("://")
                .map(|(_, h)| h.trim_end_matches('/'))
                != Some(host)
        }
        _ => false,
    }
}

/// Where to send someone who must sign in, and back afterwards.
fn to_sign_in(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/dashboard");
    let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    Redirect::to(&format!("/dashboard/login?next={next}")).into_response()
}

impl FromRequestParts<DashState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &DashState) -> Result<Session, Response> {
        let secure = via_tls(parts);
        let Some(key) = cookie(&parts.headers, session_cookie(secure)).filter(|k| k.len() <= 512)
        else {
            return Err(to_sign_in(parts));
        };
        let platform = st.platform.clone();
        let key = key.to_string();
        let caller = match platform.authenticate(&key) {
            Ok(Some(c)) => c,
            Ok(None) => return Err(to_sign_in(parts)),
            Err(e) => return Err(crate::pages::error_page(None, e)),
        };
        // The dashboard spends the same hourly budget as the API: it is the same user.
        if !st.platform.charge_request(&caller.account).allowed {
            return Err(crate::pages::bare_page(
                StatusCode::TOO_MANY_REQUESTS,
                "Slow down",
                "<p>Your account has made too many requests in the last hour. Try again in a few minutes.</p>",
            ));
        }
        Ok(Session {
            csrf: csrf_of(&key),
            caller,
            secure,
        })
    }
}

/// A parsed `application/x-www-form-urlencoded` body.
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Form, Response> {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
        {
            return Err(crate::pages::bare_page(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Not a form",
                "<p>The dashboard takes form posts only.</p>",
            ));
        }
        if body.len() > MAX_FORM {
            return Err(crate::pages::bare_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "<p>That form was larger than the dashboard reads (256 KB).</p>",
            ));
        }
        Ok(Form {
            fields: form_urlencoded::parse(body)
                .into_owned()
                .take(1000)
                .collect(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field that must be there and not blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

// ---- sign in and out ----

/// `next` if it is a dashboard path of this site (never another site: no open redirect).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/dashboard")
                && !n.contains("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/dashboard",
    }
}

fn sign_in_page(
    status: StatusCode,
    token: &str,
    next: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    let error = error
        .map(|e| format!(r#"<p class="notice error" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<form method="post" action="/dashboard/login" class="card narrow">
{error}<input type="hidden" name="_csrf" value="{token}"><input type="hidden" name="next" value="{next}">
<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required value="{email}" autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" class="primary">Sign in</button>
</form>"#,
        token = esc(token),
        next = esc(next),
        email = esc(email),
    );
    crate::pages::bare_page(status, "Sign in to Kiln", &body)
}

pub async fn sign_in_form(
    axum::extract::Query(q): axum::extract::Query<Vec<(String, String)>>,
    parts: Parts,
) -> Response {
    let next = q.iter().find(|(k, _)| k == "next").map(|(_, v)| v.as_str());
    // Another tab's sign-in form keeps working: reuse a token this browser already holds.
    let secure = via_tls(&parts);
    let held = cookie(&parts.headers, login_cookie(secure))
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string);
    let Some(token) = held.or_else(|| kiln_model::secret::new_secret().ok()) else {
        return crate::pages::bare_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "<p>No randomness available; try again.</p>",
        );
    };
    let mut r = sign_in_page(StatusCode::OK, &token, safe_next(next), "", None);
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(login_cookie(secure), &token, 3600, secure),
    );
    r
}

pub async fn sign_in(
    axum::extract::State(st): axum::extract::State<DashState>,
    parts: Parts,
    body: bytes::Bytes,
) -> Response {
    let form = match Form::parse(&parts.headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let secure = via_tls(&parts);
    // A post from another site is refused before its fields are looked at, where the browser
    // says so (every current one does).
    if cross_site(&parts.headers) {
        return refused_csrf();
    }
    let token = cookie(&parts.headers, login_cookie(secure)).unwrap_or("");
    if token.is_empty() || !same(form.get("_csrf").unwrap_or("").as_bytes(), token.as_bytes()) {
        return refused_csrf();
    }
    let next = safe_next(form.get("next")).to_string();
    let email = form.get("email").unwrap_or("").trim().to_string();
    let password = form.get("password").unwrap_or("");
    let addr = parts
        .extensions
        .get::<kiln_net::ClientAddr>()
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| {
            a.0.ip()
        });
    let account = match st.platform.login(&email, password, addr).await {
        Ok(a) => a,
        Err(e) => {
            let status = match e {
                kiln_platform::PlatformError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            return sign_in_page(status, token, &next, &email, Some(&e.to_string()));
        }
    };
    let made = st.platform.create_authorization(
        &account,
        "Dashboard session",
        Vec::new(),
        Some(SESSION_SECS),
    );
    let key = match made {
        Ok((_, key)) => key,
        Err(e) => return crate::pages::error_page(None, e),
    };
    let mut r = Redirect::to(&next).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(session_cookie(secure), &key, SESSION_SECS, secure),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(login_cookie(secure), "", 0, secure),
    );
    r
}

pub async fn sign_out(
    axum::extract::State(st): axum::extract::State<DashState>,
    session: Session,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if let Err(r) = session.form(&headers, &body) {
        return r;
    }
    if let Err(e) = st
        .platform
        .revoke_authorization(session.user(), &session.caller.authorization.id)
    {
        return crate::pages::error_page(Some(&session), e);
    }
    let mut r = Redirect::to("/dashboard/login").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(session_cookie(session.secure), "", 0, session.secure),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_from_other_sites_are_told_apart() {
        let mut h = HeaderMap::new();
        h.insert(
            header::HOST,
            HeaderValue::from_static("kiln.example.com:5000"),
        );
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://kiln.example.com:5000"),
        );
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cross_site(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
    }

    #[test]
    fn next_stays_on_the_dashboard() {
        assert_eq!(safe_next(Some("/dashboard/apps/a")), "/dashboard/apps/a");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/dashboard//evil",
            "/dashboard\\x",
            "/api",
            "/dashboard/a b",
        ] {
            assert_eq!(safe_next(Some(bad)), "/dashboard", "{bad}");
        }
        assert_eq!(safe_next(None), "/dashboard");
    }

    #[test]
    fn the_csrf_token_depends_on_the_key_and_is_not_it() {
        let a = csrf_of("key-a");
        assert_ne!(a, csrf_of("key-b"));
        assert_eq!(a, csrf_of("key-a"));
        assert!(!a.contains("key-a"));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; kiln_session_x=2; kiln_session=3"),
        );
        assert_eq!(cookie(&h, session_cookie(false)), Some("3"));
        assert_eq!(cookie(&h, session_cookie(true)), None);
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn forms_refuse_other_types_and_oversized_bodies() {
        let mut h = HeaderMap::new();
        assert!(Form::parse(&h, b"a=1").is_err());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let f = Form::parse(&h, b"a=1&b=%3Cx%3E&a=2").ok().unwrap();
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), Some("<x>"));
        assert_eq!(f.all("a").count(), 2);
        assert!(Form::parse(&h, &vec![b'a'; MAX_FORM + 1]).is_err());
    }
}
