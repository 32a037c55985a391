//! The ACME server's JSON objects (RFC 8555 §7.1), read as outside input: every field Kiln
//! uses is checked for presence and type, URLs must be HTTPS, tokens base64url, and the
//! error says which object and field was wrong rather than panicking or guessing.

use super::AcmeError;
use serde_json::Value;

/// The most of a response body read, whatever it is: directories, orders and chains are a
/// few kilobytes.
pub(crate) const MAX_BODY: usize = 256 * 1024;
/// Authorizations a single order may list (one per hostname; Let's Encrypt allows 100).
const MAX_AUTHORIZATIONS: usize = 100;

pub(crate) fn parse_json(what: &str, body: &[u8]) -> Result<Value, AcmeError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| AcmeError::protocol(format!("the {what} is not valid JSON ({e})")))?;
    if !value.is_object() {
        return Err(AcmeError::protocol(format!(
            "the {what} is not a JSON object"
        )));
    }
    Ok(value)
}

fn string<'a>(what: &str, v: &'a Value, field: &str) -> Result<&'a str, AcmeError> {
    match v.get(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(AcmeError::protocol(format!(
            "the {what} has no \"{field}\""
        ))),
        Some(_) => Err(AcmeError::protocol(format!(
            "the {what}'s \"{field}\" is not a string"
        ))),
    }
}

/// A URL the server gives us to call: HTTPS only, of sane length.
pub(crate) fn https_url(what: &str, field: &str, s: &str) -> Result<String, AcmeError> {
    if s.len() > 2048 || !s.starts_with("https://") || s.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(AcmeError::protocol(format!(
            "the {what}'s \"{field}\" is not an https URL: {}",
            shown(s)
        )));
    }
    Ok(s.to_string())
}

fn url(what: &str, v: &Value, field: &str) -> Result<String, AcmeError> {
    https_url(what, field, string(what, v, field)?)
}

/// What a quoted server string may show in an error: bounded and printable.
pub(crate) fn shown(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control()).take(200).collect();
    if s.chars().count() > 200 {
        format!("{clean}…")
    } else {
        clean
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Directory {
    pub new_nonce: String,
    pub new_account: String,
    pub new_order: String,
}

impl Directory {
    pub(crate) fn parse(body: &[u8]) -> Result<Directory, AcmeError> {
        let v = parse_json("ACME directory", body)?;
        Ok(Directory {
            new_nonce: url("ACME directory", &v, "newNonce")?,
            new_account: url("ACME directory", &v, "newAccount")?,
            new_order: url("ACME directory", &v, "newOrder")?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Pending,
    Ready,
    Processing,
    Valid,
    Invalid,
    /// `deactivated`, `expired`, `revoked`: final and not valid.
    Dead,
}

fn status(what: &str, v: &Value) -> Result<Status, AcmeError> {
    Ok(match string(what, v, "status")? {
        "pending" => Status::Pending,
        "ready" => Status::Ready,
        "processing" => Status::Processing,
        "valid" => Status::Valid,
        "invalid" => Status::Invalid,
        "deactivated" | "expired" | "revoked" => Status::Dead,
        other => {
            return Err(AcmeError::protocol(format!(
                "the {what} has an unknown status {:?}",
                shown(other)
            )));
        }
    })
}

#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub status: Status,
    pub authorizations: Vec<String>,
    pub finalize: String,
    pub certificate: Option<String>,
    /// The CA's reason when the order is invalid.
    pub error: Option<Problem>,
}

impl Order {
    pub(crate) fn parse(body: &[u8]) -> Result<Order, AcmeError> {
        let what = "ACME order";
        let v = parse_json(what, body)?;
        let status = status(what, &v)?;
        let authorizations = match v.get("authorizations") {
            Some(Value::Array(a)) if a.len() <= MAX_AUTHORIZATIONS => a
                .iter()
                .map(|u| {
                    u.as_str()
                        .ok_or_else(|| {
                            AcmeError::protocol("an ACME order's authorization is not a string")
                        })
                        .and_then(|u| https_url(what, "authorizations", u))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(Value::Array(_)) => {
                return Err(AcmeError::protocol(format!(
                    "the ACME order lists more than {MAX_AUTHORIZATIONS} authorizations"
                )));
            }
            _ => {
                return Err(AcmeError::protocol(
                    "the ACME order has no \"authorizations\" list",
                ));
            }
        };
        let certificate = match v.get("certificate") {
            None | Some(Value::Null) => None,
            Some(_) => Some(url(what, &v, "certificate")?),
        };
        if status == Status::Valid && certificate.is_none() {
            return Err(AcmeError::protocol(
                "the ACME order is valid but names no certificate URL",
            ));
        }
        Ok(Order {
            status,
            authorizations,
            finalize: url(what, &v, "finalize")?,
            certificate,
            error: v.get("error").and_then(Problem::from_value),
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Challenge {
    pub kind: String,
    pub url: String,
    pub token: String,
    pub error: Option<Problem>,
}

#[derive(Debug, Clone)]
pub(crate) struct Authorization {
    pub status: Status,
    /// The DNS name it is for.
    pub identifier: String,
    pub challenges: Vec<Challenge>,
}

impl Authorization {
    pub(crate) fn parse(body: &[u8]) -> Result<Authorization, AcmeError> {
        let what = "ACME authorization";
        let v = parse_json(what, body)?;
        let status = status(what, &v)?;
        let identifier = v
            .get("identifier")
            .and_then(|i| i.get("value"))
            .and_then(Value::as_str)
            .ok_or_else(|| AcmeError::protocol("the ACME authorization has no identifier"))?
            .to_string();
        let Some(Value::Array(list)) = v.get("challenges") else {
            return Err(AcmeError::protocol(
                "the ACME authorization has no \"challenges\" list",
            ));
        };
        let mut challenges = Vec::new();
        // Only HTTP-01 is answered; other kinds are skipped unread, so a CA adding new ones
        // (or sending odd ones) is no reason to fail.
        for c in list.iter().take(32) {
            if c.get("type").and_then(Value::as_str) != Some("http-01") {
                continue;
            }
            let token = string("ACME challenge", c, "token")?;
            // RFC 8555 §8.3: base64url, at least 128 bits. It goes into a URL path the
            // router answers, so nothing else may pass.
            if !(22..=256).contains(&token.len())
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(AcmeError::protocol(format!(
                    "the ACME challenge token {:?} is not base64url of 128 bits or more",
                    shown(token)
                )));
            }
            challenges.push(Challenge {
                kind: "http-01".into(),
                url: url("ACME challenge", c, "url")?,
                token: token.to_string(),
                error: c.get("error").and_then(Problem::from_value),
            });
        }
        Ok(Authorization {
            status,
            identifier: shown(&identifier),
            challenges,
        })
    }

    pub(crate) fn http01(&self) -> Option<&Challenge> {
        self.challenges.iter().find(|c| c.kind == "http-01")
    }
}

/// An RFC 7807 problem document, as ACME errors come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `urn:ietf:params:acme:error:badNonce` and the like.
    pub kind: String,
    pub detail: String,
}

impl Problem {
    pub(crate) fn parse(body: &[u8]) -> Option<Problem> {
        serde_json::from_slice::<Value>(body)
            .ok()
            .as_ref()
            .and_then(Problem::from_value)
    }

    fn from_value(v: &Value) -> Option<Problem> {
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("about:blank");
        let mut detail = v
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        // Subproblems say which identifier failed (RFC 8555 §6.7.1).
        if let Some(Value::Array(subs)) = v.get("subproblems") {
            for s in subs.iter().take(5) {
                if let Some(d) = s.get("detail").and_then(Value::as_str) {
                    detail.push_str("; ");
                    detail.push_str(d);
                }
            }
        }
        if kind == "about:blank" && detail.is_empty() {
            return None;
        }
        Some(Problem {
            kind: shown(kind),
            detail: shown(&detail),
        })
    }

    pub(crate) fn is_bad_nonce(&self) -> bool {
        self.kind == "urn:ietf:params:acme:error:badNonce"
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = self
            .kind
            .strip_prefix("urn:ietf:params:acme:error:")
            .unwrap_or(&self.kind);
        if self.detail.is_empty() {
            write!(f, "{short}")
        } else {
            write!(f, "{} ({short})", self.detail)
        }
    }
}

/// A nonce from `Replay-Nonce`: base64url, bounded (it goes back into a signed header).
pub(crate) fn nonce(header: &str) -> Option<String> {
    let ok = !header.is_empty()
        && header.len() <= 256
        && header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| header.to_string())
}

/// `Retry-After` in seconds (dates are ignored: the caller falls back to its own pace).
pub(crate) fn retry_after(header: Option<&str>) -> Option<u64> {
    header.and_then(|h| h.trim().parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: std::fmt::Debug>(r: Result<T, AcmeError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn directories() {
        let d = Directory::parse(br#"{"newNonce":"https://ca/nonce","newAccount":"https://ca/acct","newOrder":"https://ca/order","meta":{}}"#).unwrap();
        assert_eq!(
            (d.new_nonce.as_str(), d.new_order.as_str()),
            ("https://ca/nonce", "https://ca/order")
        );
        assert!(
            err(Directory::parse(b"<html>oops</html>"))
                .contains("ACME directory is not valid JSON")
        );
        assert!(err(Directory::parse(b"[1,2]")).contains("not a JSON object"));
        assert!(
            err(Directory::parse(
                br#"{"newNonce":"https://ca/n","newAccount":"https://ca/a"}"#
            ))
            .contains("no \"newOrder\"")
        );
        assert!(err(Directory::parse(br#"{"newNonce":"http://ca/n","newAccount":"https://ca/a","newOrder":"https://ca/o"}"#)).contains("not an https URL"));
        assert!(
            err(Directory::parse(
                br#"{"newNonce":5,"newAccount":"https://ca/a","newOrder":"https://ca/o"}"#
            ))
            .contains("not a string")
        );
        assert!(err(Directory::parse(&[0xff, 0xfe])).contains("not valid JSON"));
    }

    #[test]
    fn orders() {
        let o = Order::parse(br#"{"status":"pending","authorizations":["https://ca/authz/1"],"finalize":"https://ca/fin/1"}"#).unwrap();
        assert_eq!(
            (o.status, o.authorizations.len(), o.certificate.is_none()),
            (Status::Pending, 1, true)
        );
        assert!(
            err(Order::parse(
                br#"{"status":"valid","authorizations":[],"finalize":"https://ca/f"}"#
            ))
            .contains("names no certificate")
        );
        assert!(
            err(Order::parse(
                br#"{"status":"weird","authorizations":[],"finalize":"https://ca/f"}"#
            ))
            .contains("unknown status")
        );
        assert!(
            err(Order::parse(
                br#"{"status":"pending","authorizations":[7],"finalize":"https://ca/f"}"#
            ))
            .contains("not a string")
        );
        assert!(
            err(Order::parse(
                br#"{"status":"pending","finalize":"https://ca/f"}"#
            ))
            .contains("no \"authorizations\"")
        );
        assert!(err(Order::parse(br#"{"status":"pending","authorizations":["file:///etc/passwd"],"finalize":"https://ca/f"}"#)).contains("not an https URL"));
        let many = format!(
            r#"{{"status":"pending","authorizations":[{}],"finalize":"https://ca/f"}}"#,
            vec![r#""https://ca/a""#; 101].join(",")
        );
        assert!(err(Order::parse(many.as_bytes())).contains("more than 100"));
        let invalid = Order::parse(br#"{"status":"invalid","authorizations":[],"finalize":"https://ca/f","error":{"type":"urn:ietf:params:acme:error:unauthorized","detail":"nope"}}"#).unwrap();
        assert_eq!(invalid.error.unwrap().to_string(), "nope (unauthorized)");
    }

    #[test]
    fn authorizations_and_tokens() {
        let good = br#"{"status":"pending","identifier":{"type":"dns","value":"www.example.test"},"challenges":[
            {"type":"dns-01","url":"https://ca/c/1","token":"whatever"},
            {"type":"http-01","url":"https://ca/c/2","token":"LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"}]}"#;
        let a = Authorization::parse(good).unwrap();
        assert_eq!(a.identifier, "www.example.test");
        assert_eq!(a.http01().unwrap().url, "https://ca/c/2");
        for token in [
            "../../etc/passwd/aaaaaaaaaaaaaaaaaa",
            "short",
            "has space aaaaaaaaaaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaaaaaaaaaa%2F",
        ] {
            let body = format!(
                r#"{{"status":"pending","identifier":{{"value":"x"}},"challenges":[{{"type":"http-01","url":"https://ca/c","token":"{token}"}}]}}"#
            );
            assert!(
                err(Authorization::parse(body.as_bytes())).contains("not base64url"),
                "{token}"
            );
        }
        let none = Authorization::parse(br#"{"status":"pending","identifier":{"value":"x"},"challenges":[{"type":"tls-alpn-01"}]}"#).unwrap();
        assert!(none.http01().is_none());
        assert!(
            err(Authorization::parse(
                br#"{"status":"pending","challenges":[]}"#
            ))
            .contains("no identifier")
        );
        assert!(
            err(Authorization::parse(
                br#"{"status":"pending","identifier":{"value":"x"}}"#
            ))
            .contains("no \"challenges\"")
        );
    }

    #[test]
    fn problems_nonces_and_retry_after() {
        let p = Problem::parse(br#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce"}"#).unwrap();
        assert!(p.is_bad_nonce());
        let sub = Problem::parse(br#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"bad","subproblems":[{"detail":"x.test is forbidden"}]}"#).unwrap();
        assert_eq!(
            sub.to_string(),
            "bad; x.test is forbidden (rejectedIdentifier)"
        );
        assert_eq!(Problem::parse(b"not json"), None);
        assert_eq!(Problem::parse(b"{}"), None);
        let long = format!(r#"{{"type":"t","detail":"{}\u0007"}}"#, "x".repeat(10_000));
        assert!(
            Problem::parse(long.as_bytes())
                .unwrap()
                .detail
                .chars()
                .count()
                <= 201
        );
        assert_eq!(nonce("abc-_DEF123"), Some("abc-_DEF123".into()));
        assert_eq!(nonce("a\"b"), None);
        assert_eq!(nonce(""), None);
        assert_eq!(nonce(&"a".repeat(300)), None);
        assert_eq!(retry_after(Some(" 3 ")), Some(3));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
    }
}
