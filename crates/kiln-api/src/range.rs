//! Heroku's `Range` header: `<field> [<start>]..[<end>][; max=<n>[,order=asc|desc]]`.
//! Clients send it in several spellings (`version ..; max=15, order=desc`,
//! `id ..; max=10;`), so the parser is tolerant; anything it cannot read is a 400.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub field: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub max: Option<u32>,
    pub descending: bool,
}

pub const DEFAULT_MAX: u32 = 200;
pub const MAX_MAX: u32 = 1000;

/// A `Range` header that does not parse; the message says how to write it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RangeError(String);

impl From<String> for RangeError {
    fn from(message: String) -> Self {
        RangeError(message)
    }
}

pub fn parse(header: &str) -> Result<Range, RangeError> {
    if header.len() > 1024 {
        return Err(RangeError("Range header is too long".into()));
    }
    let mut parts = header.split(';');
    let spec = parts.next().unwrap_or("").trim();
    let (field, bounds) = match spec.split_once(char::is_whitespace) {
        Some((f, b)) => (f.trim(), b.trim()),
        None => (spec, ""),
    };
    if field.is_empty()
        || !field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(format!("Invalid Range header {header:?}: expected `<field> [start]..[end]; max=N, order=asc|desc`").into());
    }
    let (start, end) = if bounds.is_empty() {
        (None, None)
    } else {
        let (s, e) = bounds
            .split_once("..")
            .ok_or_else(|| format!("Invalid Range header {header:?}: missing `..`"))?;
        let clean = |v: &str| {
            let v = v.trim();
            (!v.is_empty()).then(|| v.to_string())
        };
        (clean(s), clean(e))
    };
    let mut r = Range {
        field: field.to_string(),
        start,
        end,
        max: None,
        descending: false,
    };
    for opt in parts.flat_map(|p| p.split(',')) {
        let opt = opt.trim();
        if opt.is_empty() {
            continue;
        }
        let (k, v) = opt
            .split_once('=')
            .ok_or_else(|| format!("Invalid Range option {opt:?}"))?;
        match k.trim() {
            "max" => {
                let n: u32 = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("Invalid Range max {v:?}"))?;
                r.max = Some(n.clamp(1, MAX_MAX));
            }
            "order" => match v.trim() {
                "asc" => r.descending = false,
                "desc" => r.descending = true,
                other => {
                    return Err(format!("Invalid Range order {other:?}: use asc or desc").into());
                }
            },
            other => return Err(format!("Unknown Range option {other:?}").into()),
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_clients_send() {
        let r = parse("version ..; max=15, order=desc").unwrap();
        assert_eq!(
            (r.field.as_str(), r.max, r.descending),
            ("version", Some(15), true)
        );
        let r = parse("version ..; order=desc,max=1").unwrap();
        assert_eq!((r.max, r.descending), (Some(1), true));
        let r = parse("id ..; max=10;").unwrap();
        assert_eq!(r.max, Some(10));
        let r = parse("version 3..7").unwrap();
        assert_eq!(
            (r.start.as_deref(), r.end.as_deref()),
            (Some("3"), Some("7"))
        );
        assert_eq!(parse("version").unwrap().max, None);
        assert_eq!(parse("version ..; max=99999").unwrap().max, Some(MAX_MAX));
    }

    #[test]
    fn hostile() {
        for bad in [
            "",
            "; max=1",
            "version ..; max=x",
            "version ..; order=sideways",
            "version ..; evil=1",
            "ver sion 1",
            "version 1-2",
            &"a".repeat(5000),
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
