//! Config vars: Heroku's rules for their names and sizes, and how a PATCH applies to them.

use crate::Invalid;
use std::collections::BTreeMap;

/// An app's config vars. Ordered so that listings and release snapshots are stable.
pub type ConfigVars = BTreeMap<String, String>;

/// Heroku caps all keys and values of one app at 32 kB.
pub const MAX_TOTAL_BYTES: usize = 32 * 1024;
pub const MAX_KEY_LEN: usize = 256;

/// Checks one config var name: ASCII letters, digits and underscores, not starting with a
/// digit (so it is a valid shell variable), and not in the platform's reserved space.
pub fn validate_key(key: &str) -> Result<(), Invalid> {
    let bad = |why: &str| {
        Err(Invalid::new(
            "config_vars",
            format!("Invalid config var name {key:?}: {why}"),
        ))
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("it is longer than 256 characters");
    }
    let b = key.as_bytes();
    if b[0].is_ascii_digit() {
        return bad("it must not start with a digit");
    }
    if !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_') {
        return bad("only letters, digits and underscores are allowed");
    }
    if key.starts_with("__") {
        return bad("names starting with __ are reserved");
    }
    Ok(())
}

pub fn validate_value(key: &str, value: &str) -> Result<(), Invalid> {
    if value.contains('\0') {
        return Err(Invalid::new(
            "config_vars",
            format!("Config var {key} contains a NUL byte"),
        ));
    }
    Ok(())
}

/// What a PATCH changed, used for the release description ("Set FOO, BAR config vars").
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub set: Vec<String>,
    pub unset: Vec<String>,
}

impl ConfigChange {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.unset.is_empty()
    }

    /// Heroku's release description for a config change.
    pub fn description(&self) -> String {
        match (self.set.is_empty(), self.unset.is_empty()) {
            (false, true) => format!("Set {} config vars", self.set.join(", ")),
            (true, false) => format!("Remove {} config vars", self.unset.join(", ")),
            _ => format!(
                "Set {} and remove {} config vars",
                self.set.join(", "),
                self.unset.join(", ")
            ),
        }
    }
}

/// Applies a Heroku config-vars PATCH (`{"KEY": "value" | null}`) to `current`, validating every
/// key first so that a bad patch changes nothing. Setting a var to its current value is not a
/// change; unsetting an absent var is not either.
pub fn apply_patch(
    current: &ConfigVars,
    patch: &BTreeMap<String, Option<String>>,
) -> Result<(ConfigVars, ConfigChange), Invalid> {
    for (k, v) in patch {
        validate_key(k)?;
        if let Some(v) = v {
            validate_value(k, v)?;
        }
    }
    let mut next = current.clone();
    let mut change = ConfigChange::default();
    for (k, v) in patch {
        match v {
            Some(v) => {
                if next.get(k) != Some(v) {
                    next.insert(k.clone(), v.clone());
                    change.set.push(k.clone());
                }
            }
            None => {
                if next.remove(k).is_some() {
                    change.unset.push(k.clone());
                }
            }
        }
    }
    let total: usize = next.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_TOTAL_BYTES {
        return Err(Invalid::new(
            "config_vars",
            format!(
                "Config vars would total {total} bytes; the limit is {MAX_TOTAL_BYTES} bytes per app"
            ),
        ));
    }
    Ok((next, change))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(items: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn keys() {
        for ok in ["FOO", "foo_bar", "_X", "A1", "DATABASE_URL"] {
            validate_key(ok).unwrap();
        }
        for bad in ["", "1A", "FOO-BAR", "FOO BAR", "__X", "A=B", "Ä", "FOO\n"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn patch_sets_and_unsets() {
        let cur: ConfigVars = [("A".to_string(), "1".to_string())].into();
        let (next, ch) = apply_patch(&cur, &patch(&[("B", Some("2")), ("A", None)])).unwrap();
        assert_eq!(next.get("B").unwrap(), "2");
        assert!(!next.contains_key("A"));
        assert_eq!(ch.description(), "Set B and remove A config vars");
    }

    #[test]
    fn noop_patch_is_empty() {
        let cur: ConfigVars = [("A".to_string(), "1".to_string())].into();
        let (_, ch) = apply_patch(&cur, &patch(&[("A", Some("1")), ("Z", None)])).unwrap();
        assert!(ch.is_empty());
    }

    #[test]
    fn bad_key_changes_nothing() {
        let cur = ConfigVars::new();
        assert!(apply_patch(&cur, &patch(&[("GOOD", Some("1")), ("BAD-KEY", Some("2"))])).is_err());
    }

    #[test]
    fn oversized_is_refused() {
        let big = "x".repeat(MAX_TOTAL_BYTES);
        assert!(apply_patch(&ConfigVars::new(), &patch(&[("BIG", Some(&big))])).is_err());
    }
}
