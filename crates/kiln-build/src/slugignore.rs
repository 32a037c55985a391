//! `.slugignore`: paths removed from the source before buildpacks run (Heroku's rule), with
//! gitignore-like patterns: `#` comments, `*` and `?` within a path component, `**` across
//! components, a leading `/` (or any inner `/`) anchoring the pattern at the app root.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
struct Pattern {
    parts: Vec<String>,
    anchored: bool,
}

pub struct SlugIgnore {
    patterns: Vec<Pattern>,
}

impl SlugIgnore {
    pub fn parse(text: &str) -> SlugIgnore {
        let mut patterns = Vec::new();
        for line in text.lines().take(10_000) {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let trimmed = line.trim_end_matches('/');
            let anchored =
                trimmed.starts_with('/') || trimmed.trim_start_matches('/').contains('/');
            let parts: Vec<String> = trimmed
                .trim_start_matches('/')
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            if parts.is_empty() || parts.iter().any(|p| p == "..") {
                continue;
            }
            patterns.push(Pattern { parts, anchored });
        }
        SlugIgnore { patterns }
    }

    /// Whether `rel` (a path relative to the app root, `/`-separated) is ignored.
    pub fn matches(&self, rel: &str) -> bool {
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        self.patterns.iter().any(|p| {
            if p.anchored {
                match_parts(&p.parts, &comps)
            } else {
                comps
                    .last()
                    .is_some_and(|last| p.parts.len() == 1 && glob(&p.parts[0], last))
            }
        })
    }

    /// Deletes every ignored path under `root`; returns how many were removed.
    pub fn apply(&self, root: &Path) -> std::io::Result<usize> {
        let mut removed = 0;
        let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
        while let Some(rel_dir) = stack.pop() {
            for entry in std::fs::read_dir(root.join(&rel_dir))? {
                let entry = entry?;
                let rel = rel_dir.join(entry.file_name());
                let rel_s = rel.to_string_lossy().replace('\\', "/");
                let ft = entry.file_type()?;
                if self.matches(&rel_s) {
                    if ft.is_dir() {
                        std::fs::remove_dir_all(entry.path())?
                    } else {
                        std::fs::remove_file(entry.path())?
                    }
                    removed += 1;
                } else if ft.is_dir() {
                    stack.push(rel);
                }
            }
        }
        Ok(removed)
    }
}

fn match_parts(pat: &[String], comps: &[&str]) -> bool {
    match pat.first() {
        None => comps.is_empty(),
        Some(p) if p == "**" => (0..=comps.len()).any(|i| match_parts(&pat[1..], &comps[i..])),
        Some(p) => !comps.is_empty() && glob(p, comps[0]) && match_parts(&pat[1..], &comps[1..]),
    }
}

/// `*` and `?` glob on one path component, iteratively (no exponential backtracking).
fn glob(pat: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let s = SlugIgnore::parse("# comment\n*.psd\n/test\ndocs/*.md\n**/tmp\n");
        assert!(s.matches("a.psd"));
        assert!(s.matches("x/y/a.psd"));
        assert!(s.matches("test"));
        assert!(!s.matches("src/test"));
        assert!(s.matches("docs/readme.md"));
        assert!(!s.matches("docs/sub/readme.md"));
        assert!(s.matches("a/b/tmp"));
        assert!(!s.matches("app.py"));
    }

    #[test]
    fn hostile_patterns_are_harmless() {
        let s = SlugIgnore::parse("../../etc\n/\n\n!keep\n");
        assert!(!s.matches("etc"));
        assert!(glob("*a*a*a*a*a*a*a*b", &"a".repeat(5000)) == false);
    }

    #[test]
    fn apply_removes_only_matches() {
        let dir = kiln_testkit::TempDir::new("slugignore");
        std::fs::create_dir_all(dir.join("test/deep")).unwrap();
        std::fs::write(dir.join("test/deep/x"), "").unwrap();
        std::fs::write(dir.join("app.py"), "").unwrap();
        std::fs::write(dir.join("big.psd"), "").unwrap();
        let n = SlugIgnore::parse("/test\n*.psd").apply(&dir).unwrap();
        assert_eq!(n, 2);
        assert!(dir.join("app.py").exists());
        assert!(!dir.join("test").exists());
    }
}
