//! The parts of `app.json` Kiln reads.

use crate::Invalid;
use serde_json::Value;
use std::collections::BTreeMap;

pub const MAX_BYTES: usize = 256 * 1024;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppJson {
    /// `formation`: initial quantity per process type, applied when a type first appears.
    pub formation: BTreeMap<String, u32>,
    /// The web process's startup health check, in Dokku's `healthchecks` format
    /// (`{"web": [{"type": "startup", "path": "/health", "timeout": 5}]}`): a new web dyno is
    /// `up` only once `GET path` answers 2xx or 3xx.
    pub web_healthcheck: Option<HealthCheckSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    pub path: String,
    /// Seconds one attempt may take.
    pub timeout_secs: u64,
}

/// Parses app.json. Both the current object form of `formation`
/// (`{"web": {"quantity": 1}}`) and the 2014 array form (`[{"process": "web", "quantity": 1}]`)
/// are accepted.
pub fn parse(text: &str) -> Result<AppJson, Invalid> {
    if text.len() > MAX_BYTES {
        return Err(Invalid::new(
            "app.json",
            format!("app.json is larger than {MAX_BYTES} bytes"),
        ));
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Invalid::new("app.json", format!("app.json is not valid JSON: {e}")))?;
    let Value::Object(root) = v else {
        return Err(Invalid::new("app.json", "app.json must be a JSON object"));
    };
    let mut out = AppJson::default();
    let quantity = |ptype: &str, q: Option<&Value>| -> Result<Option<u32>, Invalid> {
        match q {
            None => Ok(None),
            Some(Value::Number(n))
                if n.as_u64()
                    .is_some_and(|q| q <= crate::formation::MAX_QUANTITY as u64) =>
            {
                Ok(n.as_u64().map(|q| q as u32))
            }
            Some(_) => Err(Invalid::new(
                "app.json",
                format!(
                    "app.json formation.{ptype}.quantity must be a whole number from 0 to {}",
                    crate::formation::MAX_QUANTITY
                ),
            )),
        }
    };
    match root.get("formation") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (ptype, spec) in m {
                crate::procfile::validate_process_type(ptype)?;
                if let Some(q) = quantity(ptype, spec.get("quantity"))? {
                    out.formation.insert(ptype.clone(), q);
                }
            }
        }
        Some(Value::Array(items)) => {
            for spec in items {
                let Some(ptype) = spec.get("process").and_then(Value::as_str) else {
                    return Err(Invalid::new(
                        "app.json",
                        "app.json formation entries need a \"process\"",
                    ));
                };
                crate::procfile::validate_process_type(ptype)?;
                if let Some(q) = quantity(ptype, spec.get("quantity"))? {
                    out.formation.insert(ptype.to_string(), q);
                }
            }
        }
        Some(_) => {
            return Err(Invalid::new(
                "app.json",
                "app.json formation must be an object",
            ));
        }
    }
    match root.get("healthchecks") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            let checks = match m.get("web") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a.clone(),
                Some(_) => {
                    return Err(Invalid::new(
                        "app.json",
                        "app.json healthchecks.web must be a list of checks",
                    ));
                }
            };
            for c in checks {
                let kind = c.get("type").and_then(Value::as_str).unwrap_or("startup");
                if kind != "startup" {
                    continue;
                }
                let path = c.get("path").and_then(Value::as_str).unwrap_or("/");
                if !path.starts_with('/')
                    || path.len() > 1024
                    || path.chars().any(|ch| ch.is_control() || ch == ' ')
                {
                    return Err(Invalid::new(
                        "app.json",
                        format!(
                            "app.json health check path {path:?} must start with / and contain no spaces"
                        ),
                    ));
                }
                let timeout_secs = match c.get("timeout") {
                    None | Some(Value::Null) => 5,
                    Some(Value::Number(n))
                        if n.as_u64().is_some_and(|t| (1..=120).contains(&t)) =>
                    {
                        n.as_u64().unwrap_or(5)
                    }
                    Some(_) => {
                        return Err(Invalid::new(
                            "app.json",
                            "app.json health check timeout must be 1 to 120 seconds",
                        ));
                    }
                };
                out.web_healthcheck = Some(HealthCheckSpec {
                    path: path.to_string(),
                    timeout_secs,
                });
                break;
            }
        }
        Some(_) => {
            return Err(Invalid::new(
                "app.json",
                "app.json healthchecks must be an object",
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formation_forms() {
        assert_eq!(
            parse(r#"{"formation":{"worker":{"quantity":1,"size":"basic"}}}"#)
                .unwrap()
                .formation["worker"],
            1
        );
        assert_eq!(
            parse(r#"{"formation":[{"process":"web","quantity":2}]}"#)
                .unwrap()
                .formation["web"],
            2
        );
        assert!(parse("{}").unwrap().formation.is_empty());
    }

    #[test]
    fn healthchecks() {
        let a =
            parse(r#"{"healthchecks":{"web":[{"type":"startup","path":"/health","timeout":3}]}}"#)
                .unwrap();
        assert_eq!(
            a.web_healthcheck,
            Some(HealthCheckSpec {
                path: "/health".into(),
                timeout_secs: 3
            })
        );
        assert_eq!(parse("{}").unwrap().web_healthcheck, None);
        for bad in [
            r#"{"healthchecks":{"web":[{"path":"nope"}]}}"#,
            r#"{"healthchecks":{"web":[{"path":"/x","timeout":0}]}}"#,
            r#"{"healthchecks":[]}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_input() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"formation":{"web":{"quantity":-1}}}"#,
            r#"{"formation":{"w b":{}}}"#,
            r#"{"formation":3}"#,
            r#"{"formation":{"web":{"quantity":1000}}}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
