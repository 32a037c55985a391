//! The app both runtimes start: an unpacked, slug-like directory shaped like what Kiln's
//! Python buildpack produces (app code, `Procfile`, `.profile.d/python.sh`, a vendored
//! package tree under `.heroku/python`), owned by the dyno's uid as the slug cache leaves it.

use anyhow::{Context, Result};
use std::path::Path;

/// The `.profile.d` script Kiln's Python buildpack writes (crates/kiln-build/buildpacks/python).
const PYTHON_PROFILE: &str = r#"export PYTHONPATH="$HOME/.heroku/python${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$HOME/.heroku/python/bin:$PATH"
export PYTHONUNBUFFERED="${PYTHONUNBUFFERED:-true}"
export LANG="${LANG:-C.UTF-8}"
"#;

/// Writes the slug into `dir` (created) and chowns it to `uid`. Returns the number of files.
pub fn write_slug(dir: &Path, uid: u32) -> Result<usize> {
    let mut files = 0;
    let mut put = |rel: &str, content: &[u8]| -> Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, content).with_context(|| format!("writing {}", p.display()))?;
        files += 1;
        Ok(())
    };
    put("Procfile", b"web: python3 -m http.server $PORT\n")?;
    put("requirements.txt", b"")?;
    put("app.py", b"import http.server\nhttp.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler)\n")?;
    put(".profile.d/python.sh", PYTHON_PROFILE.as_bytes())?;
    // A vendored dependency tree: 20 packages of 25 modules, ~1 KiB each (~500 files, 0.5 MB).
    let module = "# vendored module\n".repeat(56);
    for p in 0..20 {
        put(
            &format!(".heroku/python/pkg{p:02}-1.0.dist-info/METADATA"),
            format!("Name: pkg{p:02}\nVersion: 1.0\n").as_bytes(),
        )?;
        for m in 0..25 {
            put(
                &format!(".heroku/python/pkg{p:02}/mod{m:02}.py"),
                module.as_bytes(),
            )?;
        }
    }
    chown_tree(dir, uid)?;
    Ok(files)
}

pub fn chown_tree(dir: &Path, uid: u32) -> Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid))
        .with_context(|| format!("chown {}", dir.display()))?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            chown_tree(&e.path(), uid)?;
        } else {
            std::os::unix::fs::lchown(e.path(), Some(uid), Some(uid))?;
        }
    }
    Ok(())
}
