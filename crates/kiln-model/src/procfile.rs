//! Procfile parsing.
//!
//! Heroku's classic parser silently ignores lines it cannot read, which hides typos until a
//! process type is missing in production. Kiln accepts the same files but refuses a line that
//! is neither blank, a `#` comment, nor `type: command`, and says which line and why.

use crate::Invalid;
use std::collections::BTreeMap;

/// A Procfile bigger than this is not a Procfile.
pub const MAX_BYTES: usize = 64 * 1024;
pub const MAX_TYPE_LEN: usize = 63;

/// Process types and their commands, in name order.
pub type ProcessTypes = BTreeMap<String, String>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Procfile {
    pub types: ProcessTypes,
    /// Notes for the person deploying (duplicate types), shown in the build output.
    pub warnings: Vec<String>,
}

/// Validates a process type name: letters, digits, `_` and `-`, 1 to 63 characters.
pub fn validate_process_type(name: &str) -> Result<(), Invalid> {
    if name.is_empty()
        || name.len() > MAX_TYPE_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Invalid::new(
            "type",
            format!(
                "Invalid process type {name:?}: use 1 to {MAX_TYPE_LEN} letters, digits, '_' or '-'"
            ),
        ));
    }
    Ok(())
}

pub fn parse(text: &str) -> Result<Procfile, Invalid> {
    if text.len() > MAX_BYTES {
        return Err(Invalid::new(
            "Procfile",
            format!("Procfile is larger than {MAX_BYTES} bytes"),
        ));
    }
    let mut out = Procfile::default();
    for (i, raw) in text.split('\n').enumerate() {
        let lineno = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw).trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| {
            Invalid::new(
                "Procfile",
                format!(
                    "Procfile line {lineno} ({line:?}): {why}; expected `<process type>: <command>`"
                ),
            )
        };
        let Some((name, command)) = line.split_once(':') else {
            return Err(bad("no ':' after the process type"));
        };
        let name = name.trim();
        let command = command.trim();
        validate_process_type(name).map_err(|e| bad(&e.message))?;
        if command.is_empty() {
            return Err(bad("the command is empty"));
        }
        if command.contains('\0') {
            return Err(bad("the command contains a NUL byte"));
        }
        if out
            .types
            .insert(name.to_string(), command.to_string())
            .is_some()
        {
            out.warnings.push(format!(
                "Procfile declares {name} more than once; the last line wins"
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_comments_and_crlf() {
        let p = parse("# comment\r\nweb: python app.py --port $PORT\r\n\r\n  worker:python worker.py\nrelease: ./migrate: now\n").unwrap();
        assert_eq!(p.types["web"], "python app.py --port $PORT");
        assert_eq!(p.types["worker"], "python worker.py");
        assert_eq!(p.types["release"], "./migrate: now");
    }

    #[test]
    fn duplicate_last_wins_with_warning() {
        let p = parse("web: a\nweb: b\n").unwrap();
        assert_eq!(p.types["web"], "b");
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn malformed_lines_are_refused_with_line_numbers() {
        for (text, line) in [
            ("web python app.py", 1),
            ("web: ok\nworker:", 2),
            ("web: a\n\nbad type: x", 3),
            ("w/eb: x", 1),
            (": x", 1),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.message.contains(&format!("line {line}")),
                "{text:?}: {}",
                err.message
            );
        }
    }

    #[test]
    fn oversized_is_refused() {
        assert!(parse(&"web: x\n".repeat(20_000)).is_err());
    }

    #[test]
    fn empty_is_no_types() {
        assert!(parse("").unwrap().types.is_empty());
    }
}
