//! `~/.netrc`, where the Heroku CLI keeps API keys (`machine <host:port> login <email>
//! password <key>`). Kiln uses the same file and format so a key stored by one tool works
//! in the other, and so `kiln login` must edit its own entry without disturbing anything
//! else a user keeps there (other machines, comments, macros).

use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// One token of a netrc file and where it sits, so an entry can be cut out by byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    start: usize,
    end: usize,
}

/// Splits netrc text into tokens: whitespace-separated words, `"quoted strings"` with
/// backslash escapes, `#` comments skipped to the end of the line, and the body of a
/// `macdef` (everything up to the next blank line) as one token.
fn tokenize(text: &str) -> Vec<Token> {
    let b = text.as_bytes();
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let mut word = String::new();
        if c == b'"' {
            i += 1;
            let mut buf = Vec::new();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                buf.push(b[i]);
                i += 1;
            }
            i = (i + 1).min(b.len()); // the closing quote, if any
            word.push_str(&String::from_utf8_lossy(&buf));
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            word.push_str(&text[start..i]);
        }
        let is_macdef_name = out.last().is_some_and(|t| t.text == "macdef");
        out.push(Token {
            text: word,
            start,
            end: i,
        });
        if is_macdef_name {
            // The macro body runs from the next line to the first empty line.
            let body_start = text[i..].find('\n').map_or(b.len(), |n| i + n + 1);
            let body_end = text[body_start..]
                .find("\n\n")
                .map_or(b.len(), |n| body_start + n + 1);
            if body_end > body_start {
                out.push(Token {
                    text: text[body_start..body_end].to_string(),
                    start: body_start,
                    end: body_end,
                });
            }
            i = body_end;
        }
    }
    out
}

/// A machine's entry: `[index of "machine" token, index past its last token)`.
fn entries(tokens: &[Token]) -> Vec<(Option<&str>, usize, usize)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].text.as_str();
        if t == "machine" || t == "default" {
            let name = if t == "machine" {
                tokens.get(i + 1).map(|t| t.text.as_str())
            } else {
                None
            };
            let mut j = i + if t == "machine" { 2 } else { 1 };
            while j < tokens.len() {
                match tokens[j].text.as_str() {
                    "machine" | "default" => break,
                    // Skip values as a pair, so a login or password that happens to be the
                    // word "machine" does not end the entry. A macdef's body is one token
                    // after its name, so a body containing "machine" does not either.
                    "login" | "password" | "account" | "macdef" => j += 2,
                    _ => j += 1,
                }
            }
            let j = j.min(tokens.len());
            found.push((name, i, j));
            i = j;
        } else {
            i += 1;
        }
    }
    found
}

/// The login and password stored for `machine`, if it has an entry.
pub fn lookup(text: &str, machine: &str) -> Option<(Option<String>, Option<String>)> {
    let tokens = tokenize(text);
    let (_, start, end) = entries(&tokens)
        .into_iter()
        .find(|(name, _, _)| *name == Some(machine))?;
    let (mut login, mut password) = (None, None);
    let mut k = start + 2;
    while k < end {
        match tokens[k].text.as_str() {
            "login" => login = tokens.get(k + 1).map(|t| t.text.clone()),
            "password" => password = tokens.get(k + 1).map(|t| t.text.clone()),
            "account" | "macdef" => {}
            _ => {
                k += 1;
                continue;
            }
        }
        k += 2;
    }
    Some((login, password))
}

fn quote(word: &str) -> String {
    if !word.is_empty()
        && !word
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'"' || b == b'#' || b == b'\\')
    {
        return word.to_string();
    }
    let mut q = String::from("\"");
    for c in word.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Returns `text` with `machine`'s entry replaced by one holding `login` and `password`
/// (appended when there was none). Other entries, comments and layout are kept byte for
/// byte; duplicate entries for the same machine are removed so the new key is the one used.
pub fn upsert(text: &str, machine: &str, login: &str, password: &str) -> String {
    let entry = format!(
        "machine {}\n  login {}\n  password {}\n",
        quote(machine),
        quote(login),
        quote(password)
    );
    let ours = entry_ranges(text, machine);
    if ours.is_empty() {
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&entry);
        return out;
    }
    splice(text, &ours, &entry)
}

/// Returns `text` without `machine`'s entries (`kiln logout`), everything else as it was.
pub fn remove(text: &str, machine: &str) -> String {
    splice(text, &entry_ranges(text, machine), "")
}

/// `text` with the ranges cut out and `entry` put where the first one was.
fn splice(text: &str, ranges: &[(usize, usize)], entry: &str) -> String {
    let mut out = String::with_capacity(text.len() + entry.len());
    let mut pos = 0;
    for (n, (start, end)) in ranges.iter().enumerate() {
        out.push_str(&text[pos..*start]);
        if n == 0 {
            out.push_str(entry);
        }
        pos = *end;
    }
    out.push_str(&text[pos..]);
    out
}

/// Where `machine`'s entries are in `text`.
fn entry_ranges(text: &str, machine: &str) -> Vec<(usize, usize)> {
    let tokens = tokenize(text);
    entries(&tokens)
        .into_iter()
        .filter(|(name, _, _)| *name == Some(machine))
        .map(|(_, first, past)| {
            let start = tokens[first].start;
            let mut end = tokens[past - 1].end;
            // Take the rest of the last line when it is only blanks, so no empty line is left
            // behind; anything after (comments, the next entry) stays.
            let rest = &text[end..];
            let line_end = rest.find('\n').map_or(rest.len(), |n| n + 1);
            if rest[..line_end].trim().is_empty() {
                end += line_end;
            }
            (start, end)
        })
        .collect()
}

/// Reads the password for `machine` from the netrc file at `path` (none if the file is absent).
pub fn read_password(path: &Path, machine: &str) -> Result<Option<String>> {
    let text = match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    };
    Ok(lookup(&text, machine).and_then(|(_, password)| password))
}

/// Stores `login`/`password` for `machine` in the netrc file at `path`, keeping its other
/// entries. The file is written beside the old one and renamed over it, so a crash leaves
/// either the old or the new file, and it is created with mode 0600 because it holds secrets.
pub fn write_entry(path: &Path, machine: &str, login: &str, password: &str) -> Result<()> {
    for (what, v) in [
        ("machine", machine),
        ("login", login),
        ("password", password),
    ] {
        if v.is_empty() || v.chars().any(|c| c.is_control()) {
            bail!(
                "refusing to write an empty {what}, or one with control characters, to {}",
                path.display()
            );
        }
    }
    let old = match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .with_context(|| format!("{} is not UTF-8 text; not editing it", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    };
    write_atomically(path, &upsert(&old, machine, login, password))
}

/// Removes `machine`'s entry from the netrc file at `path`, if there is one.
pub fn remove_entry(path: &Path, machine: &str) -> Result<()> {
    let old = match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .with_context(|| format!("{} is not UTF-8 text; not editing it", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    };
    let new = remove(&old, machine);
    if new == old {
        return Ok(());
    }
    write_atomically(path, &new)
}

/// Writes beside the old file and renames over it, so a crash leaves either the old or the
/// new file; created with mode 0600 because it holds secrets.
fn write_atomically(path: &Path, new: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("netrc");
    let tmp = dir.join(format!(".{file_name}.kiln-{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // `mode` only applies when the file is created; a leftover temp file may be wider.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(new.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write()
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
        .with_context(|| format!("could not write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_the_machines_entry() {
        let text = "# mine\nmachine a.example login x password 1\nmachine 127.0.0.1:5000\n  login me@x\n  password k2\nmachine b.example login y password 2\n";
        let out = remove(text, "127.0.0.1:5000");
        assert_eq!(
            out,
            "# mine\nmachine a.example login x password 1\nmachine b.example login y password 2\n"
        );
        assert_eq!(remove(&out, "127.0.0.1:5000"), out);
    }

    #[test]
    fn looks_up_heroku_style_entries() {
        let text = "machine api.heroku.com\n  login a@b.c\n  password h1\nmachine 127.0.0.1:5000 login me@x password k2\n";
        assert_eq!(
            lookup(text, "127.0.0.1:5000"),
            Some((Some("me@x".into()), Some("k2".into())))
        );
        assert_eq!(
            lookup(text, "api.heroku.com").and_then(|e| e.1),
            Some("h1".into())
        );
        assert_eq!(lookup(text, "nowhere"), None);
    }

    #[test]
    fn handles_comments_quotes_and_macros() {
        let text = "# my hosts\nmachine a password \"with space\" # trailing\nmacdef init\nmachine fake password nope\n\nmachine b password pb\ndefault login anon password x\n";
        assert_eq!(
            lookup(text, "a").and_then(|e| e.1),
            Some("with space".into())
        );
        assert_eq!(
            lookup(text, "fake"),
            None,
            "text inside a macdef body is not an entry"
        );
        assert_eq!(lookup(text, "b").and_then(|e| e.1), Some("pb".into()));
    }

    #[test]
    fn upsert_replaces_only_our_entry() {
        let text = "# keep me\nmachine other\n  login o\n  password po\n\nmachine 127.0.0.1:5000\n  login old@x\n  password old\n# and me\nmachine last login l password pl";
        let new = upsert(text, "127.0.0.1:5000", "new@x", "newkey");
        assert!(
            new.starts_with("# keep me\nmachine other\n  login o\n  password po\n\n"),
            "{new}"
        );
        assert!(
            new.contains("machine 127.0.0.1:5000\n  login new@x\n  password newkey\n# and me\n"),
            "{new}"
        );
        assert!(new.ends_with("machine last login l password pl"), "{new}");
        assert!(!new.contains("old"));
        assert_eq!(lookup(&new, "other").and_then(|e| e.1), Some("po".into()));
        assert_eq!(lookup(&new, "last").and_then(|e| e.1), Some("pl".into()));
    }

    #[test]
    fn upsert_appends_and_dedupes() {
        assert_eq!(
            upsert("", "h:1", "l", "p"),
            "machine h:1\n  login l\n  password p\n"
        );
        assert_eq!(
            upsert("machine x password y", "h:1", "l", "p"),
            "machine x password y\nmachine h:1\n  login l\n  password p\n"
        );
        let twice = "machine h:1 password a\nmachine h:1 password b\n";
        let new = upsert(twice, "h:1", "l", "c");
        assert_eq!(new, "machine h:1\n  login l\n  password c\n");
    }

    #[test]
    fn quotes_odd_values_so_they_read_back() {
        let new = upsert("", "h", "a b", "p\"q");
        assert_eq!(
            lookup(&new, "h"),
            Some((Some("a b".into()), Some("p\"q".into())))
        );
    }

    #[test]
    fn writes_with_mode_0600_and_keeps_others() {
        let dir = kiln_testkit::TempDir::new("netrc");
        let path = dir.join(".netrc");
        fs::write(&path, "machine keep.example login k password kp\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_entry(&path, "127.0.0.1:5000", "me@x", "secret").unwrap();
        write_entry(&path, "127.0.0.1:5000", "me@x", "secret2").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "machine keep.example login k password kp\nmachine 127.0.0.1:5000\n  login me@x\n  password secret2\n"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            read_password(&path, "127.0.0.1:5000").unwrap(),
            Some("secret2".into())
        );
        assert_eq!(read_password(&dir.join("absent"), "x").unwrap(), None);
        assert!(write_entry(&path, "h", "l", "bad\nkey").is_err());
    }
}
