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
    /// `addons`: what the app's first deploy provisions, as Heroku does for app.json.
    pub addons: Vec<AddonSpec>,
}

/// One entry of `addons`: `"heroku-postgresql"` or `{"plan": "heroku-redis:mini", "as":
/// "CACHE", "options": {"maxmemory_policy": "allkeys-lru"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonSpec {
    pub plan: String,
    pub as_: Option<String>,
    pub options: BTreeMap<String, String>,
}

/// The most add-ons an app.json may ask for.
pub const MAX_ADDONS: usize = 20;

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
    out.addons = parse_addons(root.get("addons"))?;
    Ok(out)
}

fn parse_addons(v: Option<&Value>) -> Result<Vec<AddonSpec>, Invalid> {
    let bad = |m: String| Invalid::new("app.json", m);
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("app.json addons must be a list".into())),
    };
    if items.len() > MAX_ADDONS {
        return Err(bad(format!(
            "app.json asks for more than {MAX_ADDONS} add-ons"
        )));
    }
    let short = |s: &str| !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control);
    items
        .iter()
        .map(|item| {
            let (plan, as_, options) = match item {
                Value::String(p) => (p.clone(), None, BTreeMap::new()),
                Value::Object(o) => {
                    let plan = o
                        .get("plan")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("app.json addons entries need a \"plan\"".into()))?
                        .to_string();
                    let as_ = match o.get("as") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(a)) => Some(a.clone()),
                        Some(_) => {
                            return Err(bad("app.json addons \"as\" must be a string".into()));
                        }
                    };
                    let mut options = BTreeMap::new();
                    match o.get("options") {
                        None | Some(Value::Null) => {}
                        Some(Value::Object(m)) if m.len() <= 32 => {
                            for (k, v) in m {
                                let v = match v {
                                    Value::String(s) => s.clone(),
                                    Value::Bool(b) => b.to_string(),
                                    Value::Number(n) => n.to_string(),
                                    _ => {
                                        return Err(bad(format!(
                                            "app.json add-on option {k} must be a string"
                                        )));
                                    }
                                };
                                if !short(k) || v.len() > 1024 {
                                    return Err(bad(format!(
                                        "app.json add-on option {k} is too long"
                                    )));
                                }
                                options.insert(k.clone(), v);
                            }
                        }
                        Some(_) => {
                            return Err(bad("app.json addons options must be an object".into()));
                        }
                    }
                    (plan, as_, options)
                }
                _ => {
                    return Err(bad(
                        "app.json addons entries are plan names or objects".into()
                    ));
                }
            };
            if !short(&plan) {
                return Err(bad(
                    "app.json add-on plans are short names such as heroku-postgresql".into(),
                ));
            }
            Ok(AddonSpec { plan, as_, options })
        })
        .collect()
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
    fn addons_as_names_or_objects() {
        let a = parse(r#"{"addons":["heroku-postgresql",{"plan":"heroku-redis:mini","as":"CACHE","options":{"maxmemory_policy":"allkeys-lru"}}]}"#)
            .unwrap()
            .addons;
        assert_eq!(a[0].plan, "heroku-postgresql");
        assert_eq!(
            (a[1].plan.as_str(), a[1].as_.as_deref()),
            ("heroku-redis:mini", Some("CACHE"))
        );
        assert_eq!(a[1].options["maxmemory_policy"], "allkeys-lru");
        for bad in [
            r#"{"addons":"heroku-postgresql"}"#,
            r#"{"addons":[5]}"#,
            r#"{"addons":[{"as":"X"}]}"#,
            r#"{"addons":[""]}"#,
            r#"{"addons":[{"plan":"x","options":[1]}]}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let many = format!(r#"{{"addons":[{}]}}"#, vec![r#""redis""#; 21].join(","));
        assert!(parse(&many).is_err());
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
