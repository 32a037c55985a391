//! Buildpack references and the output of a classic buildpack's `bin/release`.

use crate::Invalid;
use crate::procfile::{ProcessTypes, validate_process_type};

/// Where a buildpack comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildpackRef {
    /// One of Kiln's built-in buildpacks ([`BUILTIN`]), written `heroku/python`,
    /// `kiln/python` or just `python`.
    Builtin(String),
    /// A directory on the server.
    Local(String),
    /// A git repository, cloned at build time; `#ref` picks a branch or tag.
    Git {
        url: String,
        reference: Option<String>,
    },
}

/// In detection order: the first whose `bin/detect` accepts an app builds it. Heroku's
/// order: Ruby before Node.js (a Rails app has a package.json too), then Python, Java, PHP,
/// Go; a static site only when nothing else matched, and `procfile` (any app with a
/// Procfile) last.
pub const BUILTIN: [&str; 8] = [
    "ruby", "nodejs", "python", "java", "php", "go", "static", "procfile",
];

/// What a built-in buildpack builds, as the buildpack registry describes it.
pub fn builtin_description(name: &str) -> &'static str {
    match name {
        "ruby" => {
            "Ruby: Bundler into vendor/bundle, Rack apps on Thin, Puma or rackup, Rails with assets:precompile"
        }
        "nodejs" => {
            "Node.js: npm ci or npm install, engines.node checked, heroku-postbuild or build scripts"
        }
        "python" => {
            "Python: pip into the slug, the runtime.txt/.python-version series, Django collectstatic"
        }
        "java" => "Java: Maven (mvn -DskipTests package), system.properties' java.runtime.version",
        "php" => "PHP: composer install --no-dev, PHP-FPM behind nginx (heroku-php-nginx)",
        "go" => "Go: go install of the module's main packages into bin/",
        "static" => "Static sites: nginx with gzip, clean URLs and static.json's headers",
        "procfile" => "Procfile-only apps: runs what the Procfile declares, nothing to install",
        _ => "A Kiln built-in buildpack",
    }
}

impl BuildpackRef {
    pub fn parse(s: &str) -> Result<BuildpackRef, Invalid> {
        let s = s.trim();
        let bad = |why: &str| {
            Err(Invalid::new(
                "buildpack",
                format!("Invalid buildpack {s:?}: {why}"),
            ))
        };
        if s.is_empty() {
            return bad("it is empty");
        }
        if s.len() > 2048 || s.chars().any(|c| c.is_control()) {
            return bad("it is too long or contains control characters");
        }
        // `urn:buildpack:heroku/python` is how Heroku's API names a registry buildpack.
        let named = s.strip_prefix("urn:buildpack:").unwrap_or(s);
        let short = named
            .strip_prefix("heroku/")
            .or_else(|| named.strip_prefix("kiln/"))
            .unwrap_or(named);
        if BUILTIN.contains(&short) {
            return Ok(BuildpackRef::Builtin(short.to_string()));
        }
        if let Some(name) = herokus_own(s) {
            return Ok(BuildpackRef::Builtin(name.to_string()));
        }
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return bad("file:// URLs need an absolute path");
            }
            // A local git repository (`file:///srv/bp.git`) is cloned like a remote one.
            let repo = path.split('#').next().unwrap_or(path);
            if !repo.ends_with(".git") {
                return Ok(BuildpackRef::Local(path.to_string()));
            }
        }
        if s.starts_with('/') {
            return Ok(BuildpackRef::Local(s.to_string()));
        }
        if s.starts_with("https://")
            || s.starts_with("http://")
            || s.starts_with("git://")
            || s.starts_with("ssh://")
            || s.starts_with("file://")
        {
            if s.starts_with('-') {
                return bad("it starts with '-'");
            }
            let (url, reference) = match s.split_once('#') {
                Some((u, r)) if !r.is_empty() && !r.starts_with('-') => {
                    (u.to_string(), Some(r.to_string()))
                }
                Some((_, _)) => return bad("the #ref is empty or starts with '-'"),
                None => (s.to_string(), None),
            };
            return Ok(BuildpackRef::Git { url, reference });
        }
        bad(
            "use a built-in such as heroku/ruby or heroku/python (`kiln buildpacks:search` lists them), an absolute directory path, or a git URL",
        )
    }
}

/// Heroku's canonical URL for its buildpack `name`, as its buildpack registry hands it out
/// (`blob_url`) and its CLI writes it into apps' buildpack lists.
pub fn canonical_url(name: &str) -> String {
    format!("https://buildpack-registry.s3.amazonaws.com/buildpacks/heroku/{name}.tgz")
}

/// The built-in that stands for one of Heroku's official buildpack URLs: the registry's and
/// the older codon `.tgz` URLs, and `github.com/heroku/heroku-buildpack-NAME` (any `#ref`
/// is ignored: the built-in is Kiln's own, not a checkout of Heroku's).
fn herokus_own(s: &str) -> Option<&'static str> {
    let tgz = |prefix: &str| {
        s.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(".tgz"))
    };
    let name = tgz("https://buildpack-registry.s3.amazonaws.com/buildpacks/heroku/")
        .or_else(|| tgz("https://codon-buildpacks.s3.amazonaws.com/buildpacks/heroku/"))
        .or_else(|| {
            let rest = s
                .strip_prefix("https://github.com/heroku/heroku-buildpack-")
                .or_else(|| s.strip_prefix("http://github.com/heroku/heroku-buildpack-"))?;
            let rest = rest.split('#').next().unwrap_or(rest);
            Some(
                rest.strip_suffix(".git")
                    .unwrap_or(rest)
                    .trim_end_matches('/'),
            )
        })?;
    BUILTIN.iter().copied().find(|b| *b == name)
}

/// Reads the `default_process_types` mapping out of `bin/release`'s YAML output. Only that
/// mapping matters to Kiln (add-ons and config_vars are legacy), so this reads the small YAML
/// subset buildpacks print instead of pulling in a YAML library:
///
/// ```yaml
/// ---
/// default_process_types:
///   web: npm start
/// ```
pub fn parse_release_output(text: &str) -> Result<ProcessTypes, Invalid> {
    let mut types = ProcessTypes::new();
    let mut in_map = false;
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') || line.trim() == "---" {
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        if !indented {
            in_map = line.trim_end() == "default_process_types:";
            continue;
        }
        if !in_map {
            continue;
        }
        let Some((k, v)) = line.trim().split_once(':') else {
            return Err(Invalid::new(
                "bin/release",
                format!("bin/release printed a line that is not `type: command`: {line:?}"),
            ));
        };
        let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
        validate_process_type(k).map_err(|e| Invalid::new("bin/release", e.message))?;
        let mut v = v.trim();
        if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            v = &v[1..v.len() - 1];
        }
        if !v.is_empty() {
            types.insert(k.to_string(), v.to_string());
        }
    }
    Ok(types)
}

/// Reads the `addons:` list out of `bin/release`'s YAML output: the add-ons a buildpack asks
/// for (`- heroku-postgresql`, `- heroku-redis:mini`), which an app's first deploy
/// provisions. At most 20 names, each a short plan spec.
pub fn parse_release_addons(text: &str) -> Result<Vec<String>, Invalid> {
    let mut out = Vec::new();
    let mut in_list = false;
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') || line.trim() == "---" {
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t') || line.starts_with('-');
        if !indented {
            in_list = line.trim_end() == "addons:";
            // `addons: []`, or a flow list on one line.
            if let Some(flow) = line.trim().strip_prefix("addons:") {
                let flow = flow.trim();
                if let Some(inner) = flow.strip_prefix('[').and_then(|f| f.strip_suffix(']')) {
                    out.extend(
                        inner
                            .split(',')
                            .map(|x| x.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
                            .filter(|x| !x.is_empty()),
                    );
                }
            }
            continue;
        }
        if !in_list {
            continue;
        }
        let Some(item) = line.trim().strip_prefix('-') else {
            continue;
        };
        let item = item.trim().trim_matches(|c| c == '"' || c == '\'');
        if !item.is_empty() {
            out.push(item.to_string());
        }
    }
    if out.len() > 20
        || out
            .iter()
            .any(|a| a.len() > 128 || a.chars().any(char::is_control))
    {
        return Err(Invalid::new(
            "bin/release",
            "bin/release asks for too many or malformed add-ons",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_addons() {
        assert_eq!(
            parse_release_addons("---\naddons:\n  - heroku-postgresql\n  - \"heroku-redis:mini\"\ndefault_process_types:\n  web: x\n").unwrap(),
            ["heroku-postgresql", "heroku-redis:mini"]
        );
        assert_eq!(
            parse_release_addons("addons: [heroku-postgresql]\n").unwrap(),
            ["heroku-postgresql"]
        );
        assert!(parse_release_addons("addons: []\n").unwrap().is_empty());
        assert!(
            parse_release_addons("default_process_types:\n  web: x\n")
                .unwrap()
                .is_empty()
        );
        let many = format!("addons:\n{}", "  - redis\n".repeat(21));
        assert!(parse_release_addons(&many).is_err());
    }

    #[test]
    fn herokus_official_buildpack_urls_are_the_built_ins() {
        for url in [
            "https://buildpack-registry.s3.amazonaws.com/buildpacks/heroku/python.tgz",
            "https://codon-buildpacks.s3.amazonaws.com/buildpacks/heroku/python.tgz",
            "https://github.com/heroku/heroku-buildpack-python",
            "https://github.com/heroku/heroku-buildpack-python.git",
            "https://github.com/heroku/heroku-buildpack-python#v250",
            "urn:buildpack:heroku/python",
            &canonical_url("python"),
        ] {
            assert_eq!(
                BuildpackRef::parse(url).unwrap(),
                BuildpackRef::Builtin("python".into()),
                "{url}"
            );
        }
        // Not Heroku's, or not one Kiln has: fetched as git, as before.
        for url in [
            "https://github.com/heroku/heroku-buildpack-cobol",
            "https://github.com/someone/heroku-buildpack-python",
            "https://buildpack-registry.s3.amazonaws.com/buildpacks/heroku/python.tgz.evil",
        ] {
            assert!(
                matches!(BuildpackRef::parse(url).unwrap(), BuildpackRef::Git { .. }),
                "{url}"
            );
        }
    }

    #[test]
    fn refs() {
        assert_eq!(
            BuildpackRef::parse("heroku/python").unwrap(),
            BuildpackRef::Builtin("python".into())
        );
        assert_eq!(
            BuildpackRef::parse("/opt/bp").unwrap(),
            BuildpackRef::Local("/opt/bp".into())
        );
        assert_eq!(
            BuildpackRef::parse("file:///opt/bp").unwrap(),
            BuildpackRef::Local("/opt/bp".into())
        );
        assert_eq!(
            BuildpackRef::parse("file:///srv/bp.git#main").unwrap(),
            BuildpackRef::Git {
                url: "file:///srv/bp.git".into(),
                reference: Some("main".into())
            }
        );
        assert_eq!(
            BuildpackRef::parse("https://example.com/bp.git#v2").unwrap(),
            BuildpackRef::Git {
                url: "https://example.com/bp.git".into(),
                reference: Some("v2".into())
            }
        );
        for bad in [
            "",
            "relative/dir",
            "file://rel",
            "https://x#",
            "https://x#-oops",
            "foo\nbar",
        ] {
            assert!(BuildpackRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn release_yaml() {
        let t = parse_release_output("---\naddons:\n  - heroku-postgresql\ndefault_process_types:\n  web: npm start\n  worker: \"node w.js\"\n").unwrap();
        assert_eq!(t["web"], "npm start");
        assert_eq!(t["worker"], "node w.js");
        assert!(parse_release_output("").unwrap().is_empty());
        assert!(parse_release_output("default_process_types:\n  nocolon\n").is_err());
    }
}
