//! Parsing of the free-form arguments that clap passes through as strings: `KEY=value`
//! pairs, `ps:scale` changes and release versions. Each is checked before any request is
//! sent, so a typo changes nothing on the server.

use anyhow::{Result, anyhow, bail};
use kiln_model::DynoSize;
use kiln_model::config::validate_key;
use kiln_model::procfile::validate_process_type;

/// Splits `config:set` arguments at their first `=` (so values may contain `=`), checking
/// every key. Later duplicates win, as they would in a shell.
pub fn parse_config_pairs(args: &[String]) -> Result<Vec<(String, String)>> {
    if args.is_empty() {
        bail!(
            "Usage: kiln config:set KEY1=VALUE1 [KEY2=VALUE2 ...]\nMust specify KEY and VALUE to set."
        );
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            bail!("{arg} is invalid. Must be in the format FOO=bar.");
        };
        validate_key(key).map_err(|e| anyhow!("{e}"))?;
        out.retain(|(k, _)| k != key);
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Checks `config:unset` keys.
pub fn parse_config_keys(args: &[String]) -> Result<Vec<String>> {
    if args.is_empty() {
        bail!("Usage: kiln config:unset KEY1 [KEY2 ...]\nMust specify KEY to unset.");
    }
    let mut out: Vec<String> = Vec::new();
    for key in args {
        if key.contains('=') {
            bail!("{key} is invalid: config:unset takes names only, such as FOO.");
        }
        validate_key(key).map_err(|e| anyhow!("{e}"))?;
        if !out.contains(key) {
            out.push(key.clone());
        }
    }
    Ok(out)
}

/// One `ps:scale` change: `web=2`, `worker+1`, `web-1`, `web=2:standard-2x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleChange {
    pub process_type: String,
    /// As the Heroku CLI sends it: `"2"` for absolute, `"+1"`/`"-1"` for relative.
    pub quantity: String,
    pub size: Option<String>,
}

impl ScaleChange {
    pub fn parse(arg: &str) -> Result<ScaleChange> {
        let bad = |why: &str| {
            anyhow!(
                "Invalid scale argument {arg:?}: {why}. Use TYPE=N, TYPE+N or TYPE-N, optionally followed by :SIZE (e.g. web=2, worker+1, web=2:standard-2x)."
            )
        };
        // The size may itself contain '-' (standard-2x), so it is cut off first.
        let (change, size) = match arg.split_once(':') {
            Some((c, s)) => (c, Some(s)),
            None => (arg, None),
        };
        let digits = change.len() - change.bytes().rev().take_while(u8::is_ascii_digit).count();
        let number = &change[digits..];
        if number.is_empty() {
            return Err(bad("no quantity"));
        }
        let Some(op) = change[..digits]
            .chars()
            .last()
            .filter(|c| matches!(c, '=' | '+' | '-'))
        else {
            return Err(bad("expected =, + or - before the quantity"));
        };
        let process_type = &change[..digits - 1];
        validate_process_type(process_type).map_err(|e| bad(&e.message))?;
        let n: u32 = number
            .parse()
            .map_err(|_| bad("the quantity is too large"))?;
        let quantity = match op {
            '=' => n.to_string(),
            sign => format!("{sign}{n}"),
        };
        let size = match size {
            Some(s) => {
                DynoSize::parse(s).map_err(|e| bad(&e.message))?;
                Some(s.to_string())
            }
            None => None,
        };
        Ok(ScaleChange {
            process_type: process_type.to_string(),
            quantity,
            size,
        })
    }
}

/// `v12` or `12` (a release version), as `releases:info` and `releases:rollback` take it.
pub fn parse_version(arg: &str) -> Result<u64> {
    let digits = arg
        .strip_prefix('v')
        .or_else(|| arg.strip_prefix('V'))
        .unwrap_or(arg);
    match digits.parse::<u64>() {
        Ok(n) if n > 0 && !digits.starts_with('+') => Ok(n),
        _ => bail!("Invalid release {arg:?}: expected a version such as v12"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn config_pairs_split_at_the_first_equals() {
        let got = parse_config_pairs(&strings(&["A=1", "B=two=2", "EMPTY=", "A=3"])).unwrap();
        assert_eq!(
            got,
            vec![
                ("B".into(), "two=2".into()),
                ("EMPTY".into(), "".into()),
                ("A".into(), "3".into())
            ]
        );
    }

    #[test]
    fn config_pairs_refuse_bad_input() {
        for bad in [&["NOEQUALS"][..], &["=x"], &["1A=x"], &["FOO-BAR=x"], &[]] {
            let err = parse_config_pairs(&strings(bad)).unwrap_err().to_string();
            assert!(!err.is_empty());
        }
        let err = parse_config_pairs(&strings(&["GOOD=1", "bad key=2"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad key"), "{err}");
        assert!(
            parse_config_pairs(&strings(&["FOO"]))
                .unwrap_err()
                .to_string()
                .contains("FOO=bar")
        );
    }

    #[test]
    fn config_keys() {
        assert_eq!(
            parse_config_keys(&strings(&["A", "B", "A"])).unwrap(),
            vec!["A", "B"]
        );
        assert!(parse_config_keys(&strings(&["A=1"])).is_err());
        assert!(parse_config_keys(&[]).is_err());
    }

    #[test]
    fn scale_changes() {
        let p = |s| ScaleChange::parse(s).unwrap();
        assert_eq!(
            p("web=2"),
            ScaleChange {
                process_type: "web".into(),
                quantity: "2".into(),
                size: None
            }
        );
        assert_eq!(p("web+1").quantity, "+1");
        assert_eq!(p("web-1").quantity, "-1");
        let sized = p("worker=2:standard-2x");
        assert_eq!(
            (
                sized.process_type.as_str(),
                sized.quantity.as_str(),
                sized.size.as_deref()
            ),
            ("worker", "2", Some("standard-2x"))
        );
        assert_eq!(p("my-worker-3").process_type, "my-worker");
        assert_eq!(p("my-worker-3").quantity, "-3");
        assert_eq!(p("web=2:Standard-1X").size.as_deref(), Some("Standard-1X"));
    }

    #[test]
    fn scale_refuses_bad_input() {
        for bad in [
            "web",
            "web=",
            "=2",
            "web=x",
            "web*2",
            "web=2:huge",
            "we b=2",
            "web=99999999999",
            "web=2:",
            ":2",
        ] {
            let err = ScaleChange::parse(bad).unwrap_err().to_string();
            assert!(err.contains("Invalid scale argument"), "{bad}: {err}");
        }
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("v12").unwrap(), 12);
        assert_eq!(parse_version("7").unwrap(), 7);
        for bad in ["v", "v0", "x1", "-1", "+3", "v1.2", ""] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
    }
}
