//! A small client for Kiln's Heroku Platform API v3: every request carries the headers the
//! Heroku CLI sends, JSON goes both ways, and error bodies (`{"id", "message"}`) become
//! [`ApiError`]s that the CLI prints the way Heroku's does.

use crate::settings::ApiUrl;
use crate::transport::{ConnectError, HttpClient, read_body};
use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::Full;
use serde_json::Value;
use std::time::Duration;

pub const ACCEPT: &str = "application/vnd.heroku+json; version=3";
pub const USER_AGENT: &str = concat!("kiln-cli/", env!("CARGO_PKG_VERSION"));

/// How long one API call may take. Streams (logs) are not API calls and have no limit.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// An error reply from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub id: Option<String>,
    pub message: String,
    /// A documentation link some errors carry.
    pub url: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Reads an error body; a body without a message (a proxy's HTML page, say) still gives
    /// the person something to go on.
    fn from_reply(status: http::StatusCode, method: &Method, url: &str, body: &[u8]) -> ApiError {
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let field = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_string);
        let message = field("message").unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let snippet: String = text.trim().chars().take(200).collect();
            let reason = status.canonical_reason().unwrap_or("");
            if snippet.is_empty() {
                format!("HTTP {} {reason} from {method} {url}", status.as_u16())
            } else {
                format!(
                    "HTTP {} {reason} from {method} {url}: {snippet}",
                    status.as_u16()
                )
            }
        });
        ApiError {
            status: status.as_u16(),
            id: field("id"),
            message,
            url: field("url"),
        }
    }
}

pub struct Api {
    http: HttpClient,
    url: ApiUrl,
    /// The `Authorization` header: `Bearer <key>`, or Basic for a login.
    authorization: String,
}

impl Api {
    pub fn new(url: ApiUrl, key: String) -> Api {
        Api {
            http: HttpClient::new(),
            url,
            authorization: format!("Bearer {key}"),
        }
    }

    /// A client that presents an email and password (only `POST /oauth/authorizations`
    /// accepts them), as `heroku login -i` does.
    pub fn with_password(url: ApiUrl, email: &str, password: &str) -> Api {
        use base64::Engine;
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{email}:{password}"));
        Api {
            http: HttpClient::new(),
            url,
            authorization: format!("Basic {pair}"),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None, None).await
    }

    /// A GET with a `Range` header (`version ..; max=15, order=desc`), read as one page.
    pub async fn get_range(&self, path: &str, range: &str) -> Result<Value> {
        self.call(Method::GET, path, None, Some(range)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::POST, path, Some(body), None).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::PATCH, path, Some(body), None).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::PUT, path, Some(body), None).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.call(Method::DELETE, path, None, None).await
    }

    /// Streams a GET's body into `dest` (a backup's dump, say); returns how many bytes. The
    /// file is written beside `dest` and renamed into place once whole.
    pub async fn download(&self, path: &str, dest: &std::path::Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let url = self.url.join(path);
        let req = Request::builder()
            .method(Method::GET)
            .uri(&url)
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::AUTHORIZATION, &self.authorization)
            .body(Full::new(Bytes::new()))
            .map_err(|e| anyhow!("could not build the request to {url}: {e}"))?;
        let resp = self.http.send(req).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = read_body(body).await.unwrap_or_default();
            return Err(ApiError::from_reply(status, &Method::GET, &url, &bytes).into());
        }
        let partial = dest.with_extension("partial");
        let mut file = tokio::fs::File::create(&partial)
            .await
            .with_context(|| format!("creating {}", partial.display()))?;
        let mut total = 0u64;
        while let Some(chunk) = crate::transport::next_chunk(&mut body).await? {
            file.write_all(&chunk)
                .await
                .with_context(|| format!("writing {}", partial.display()))?;
            total += chunk.len() as u64;
        }
        file.flush().await?;
        drop(file);
        std::fs::rename(&partial, dest).with_context(|| format!("writing {}", dest.display()))?;
        Ok(total)
    }

    /// One API call. A 2xx reply's JSON is returned (`null` for an empty body); anything else
    /// becomes an [`ApiError`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        range: Option<&str>,
    ) -> Result<Value> {
        let url = self.url.join(path);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(header::ACCEPT, ACCEPT)
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::AUTHORIZATION, &self.authorization);
        if let Some(range) = range {
            req = req.header(header::RANGE, range);
        }
        let payload = match body {
            Some(json) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(json)?)
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| anyhow!("could not build the request to {url}: {e} (is the API key made of printable characters?)"))?;

        let exchange = async {
            let resp =
                self.http
                    .send(req)
                    .await
                    .map_err(|e| match e.downcast::<ConnectError>() {
                        // Name the API, not the endpoint: that is what the person configured.
                        Ok(c) => anyhow!(ConnectError {
                            url: self.url.base.clone(),
                            reason: c.reason
                        }),
                        Err(e) => e,
                    })?;
            let status = resp.status();
            let bytes = read_body(resp.into_body())
                .await
                .with_context(|| format!("{method} {url}"))?;
            Ok::<_, anyhow::Error>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                anyhow!(
                    "{method} {url} got no answer within {} seconds",
                    CALL_TIMEOUT.as_secs()
                )
            })??;

        if !status.is_success() {
            return Err(ApiError::from_reply(status, &method, &url, &bytes).into());
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the reply to {method} {url} is not valid JSON"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let e = ApiError::from_reply(
            http::StatusCode::NOT_FOUND,
            &Method::GET,
            "http://x/apps/a",
            br#"{"id":"not_found","message":"Couldn't find that app.","resource":"app"}"#,
        );
        assert_eq!(
            (e.status, e.id.as_deref(), e.message.as_str()),
            (404, Some("not_found"), "Couldn't find that app.")
        );
        let e = ApiError::from_reply(
            http::StatusCode::BAD_GATEWAY,
            &Method::GET,
            "http://x/apps",
            b"<html>oops</html>",
        );
        assert_eq!(e.id, None);
        assert_eq!(
            e.message,
            "HTTP 502 Bad Gateway from GET http://x/apps: <html>oops</html>"
        );
    }
}
