//! The parts of `app.json` Kiln reads.

use crate::Invalid;
use serde_json::Value;
use std::collections::BTreeMap;

pub const MAX_BYTES: usize = 256 * 1024;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppJson {
    /// `formation`: initial quantity per process type, applied when a type first appears.
    pub formation: BTreeMap<String, u32>,
}

/// Parses app.json. Both the current object form of `formation`
/// (`{"web": {"quantity": 1}}`) and the 2014 array form (`[{"process": "web", "quantity": 1}]`)
/// are accepted.
pub fn parse(text: &str) -> Result<AppJson, Invalid> {
    if text.len() > MAX_BYTES {
        return Err(Invalid::new("app.json", format!("app.json is larger than {MAX_BYTES} bytes")));
    }
    let v: Value = serde_json::from_str(text).map_err(|e| Invalid::new("app.json", format!("app.json is not valid JSON: {e}")))?;
    let Value::Object(root) = v else {
        return Err(Invalid::new("app.json", "app.json must be a JSON object"));
    };
    let mut out = AppJson::default();
    let quantity = |ptype: &str, q: Option<&Value>| -> Result<Option<u32>, Invalid> {
        match q {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some_and(|q| q <= crate::formation::MAX_QUANTITY as u64) => Ok(n.as_u64().map(|q| q as u32)),
            Some(_) => Err(Invalid::new("app.json", format!("app.json formation.{ptype}.quantity must be a whole number from 0 to {}", crate::formation::MAX_QUANTITY))),
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
                    return Err(Invalid::new("app.json", "app.json formation entries need a \"process\""));
                };
                crate::procfile::validate_process_type(ptype)?;
                if let Some(q) = quantity(ptype, spec.get("quantity"))? {
                    out.formation.insert(ptype.to_string(), q);
                }
            }
        }
        Some(_) => return Err(Invalid::new("app.json", "app.json formation must be an object")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formation_forms() {
        assert_eq!(parse(r#"{"formation":{"worker":{"quantity":1,"size":"basic"}}}"#).unwrap().formation["worker"], 1);
        assert_eq!(parse(r#"{"formation":[{"process":"web","quantity":2}]}"#).unwrap().formation["web"], 2);
        assert!(parse("{}").unwrap().formation.is_empty());
    }

    #[test]
    fn hostile_input() {
        for bad in ["", "[]", "{", r#"{"formation":{"web":{"quantity":-1}}}"#, r#"{"formation":{"w b":{}}}"#, r#"{"formation":3}"#, r#"{"formation":{"web":{"quantity":1000}}}"#] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
