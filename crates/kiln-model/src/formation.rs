//! Formation maths: how `ps:scale` requests turn into quantities.

use crate::Invalid;
use serde_json::Value;

/// The most dynos of one process type an app may run (Heroku's default limit).
pub const MAX_QUANTITY: u32 = 100;

/// A requested quantity: absolute (`3`) or relative (`+1`, `-2`). The Heroku CLI sends it as a
/// string, the schema says integer; both are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityChange {
    Set(u32),
    Add(i64),
}

impl QuantityChange {
    pub fn from_json(v: &Value) -> Result<QuantityChange, Invalid> {
        match v {
            Value::Number(n) => match n.as_u64() {
                Some(q) if q <= u32::MAX as u64 => Ok(QuantityChange::Set(q as u32)),
                _ => Err(Invalid::new(
                    "quantity",
                    format!("Invalid quantity {n}: expected a whole number from 0"),
                )),
            },
            Value::String(s) => QuantityChange::parse(s),
            _ => Err(Invalid::new(
                "quantity",
                "Invalid quantity: expected a number or a string such as \"2\" or \"+1\"",
            )),
        }
    }

    pub fn parse(s: &str) -> Result<QuantityChange, Invalid> {
        let s = s.trim();
        let bad = || {
            Invalid::new(
                "quantity",
                format!("Invalid quantity {s:?}: expected a number such as 2, +1 or -1"),
            )
        };
        if s.is_empty() || s.len() > 10 {
            return Err(bad());
        }
        if let Some(rest) = s.strip_prefix('+') {
            return rest
                .parse::<u32>()
                .map(|n| QuantityChange::Add(n as i64))
                .map_err(|_| bad());
        }
        if let Some(rest) = s.strip_prefix('-') {
            return rest
                .parse::<u32>()
                .map(|n| QuantityChange::Add(-(n as i64)))
                .map_err(|_| bad());
        }
        s.parse::<u32>().map(QuantityChange::Set).map_err(|_| bad())
    }

    /// The new quantity, clamped at zero for relative decreases, refused above the limit.
    pub fn apply(self, current: u32, max: u32) -> Result<u32, Invalid> {
        let next = match self {
            QuantityChange::Set(n) => n as i64,
            QuantityChange::Add(d) => (current as i64 + d).max(0),
        };
        if next > max as i64 {
            return Err(Invalid::new(
                "quantity",
                format!("Cannot scale to more than {max} dynos per process type"),
            ));
        }
        Ok(next as u32)
    }
}

/// The quantity a process type gets when it first appears in a release: one web dyno, no
/// other dynos (as Heroku), unless app.json's `formation` says otherwise.
pub fn initial_quantity(process_type: &str, from_app_json: Option<u32>) -> u32 {
    from_app_json.unwrap_or(if process_type == "web" { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_cli_and_schema_forms() {
        assert_eq!(
            QuantityChange::from_json(&json!("2")).unwrap(),
            QuantityChange::Set(2)
        );
        assert_eq!(
            QuantityChange::from_json(&json!(3)).unwrap(),
            QuantityChange::Set(3)
        );
        assert_eq!(
            QuantityChange::from_json(&json!("+1")).unwrap(),
            QuantityChange::Add(1)
        );
        assert_eq!(
            QuantityChange::from_json(&json!("-4")).unwrap(),
            QuantityChange::Add(-4)
        );
        for bad in [
            json!("x"),
            json!(-1),
            json!(1.5),
            json!(null),
            json!("99999999999"),
            json!(""),
        ] {
            assert!(QuantityChange::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn applies_with_limits() {
        assert_eq!(QuantityChange::Add(-5).apply(2, 100).unwrap(), 0);
        assert_eq!(QuantityChange::Add(2).apply(2, 100).unwrap(), 4);
        assert!(QuantityChange::Set(101).apply(0, 100).is_err());
    }
}
