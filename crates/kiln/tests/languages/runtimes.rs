//! Runtime versions and build steps of the Python and Node.js buildpacks, as Heroku's run them
//! (issue 16, "compatibility gaps"): a Python (`runtime.txt`, `.python-version`) or Node.js
//! (`engines.node`) version the stack lacks fails the build naming what it has, with no
//! release and the running version still serving; npm's `heroku-prebuild`, `build` and
//! `heroku-postbuild` scripts run in Heroku's order; Django's `collectstatic` runs in the build.

use crate::common::*;
use std::process::Command;
use std::time::Duration;

fn wait_for_body(s: &Server, app: &str, what: &str, want: impl Fn(&str) -> bool) -> String {
    s.wait_for_app(app, Duration::from_secs(60), what, || {
        let r = s.get(app, "/");
        (r.status == 200 && want(&r.body)).then_some(r.body)
    })
}

/// The stack's python3 as major.minor (e.g. `3.11`).
fn stack_python_minor() -> String {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_python_version_the_stack_lacks_fails_naming_the_stacks_and_the_app_keeps_serving() {
    let s = Server::start("rt-python");
    s.ok(&["apps:create", "pyver"]);
    let dir = python_app(&[]);
    let (ok, out) = s.push(&dir, "pyver");
    assert!(ok, "{out}");
    let before = wait_for_body(&s, "pyver", "the Python web dyno", |b| {
        b.contains("GREETING=hello-from-wheel")
    });
    let releases = s.release_versions("pyver");

    std::fs::write(dir.join("runtime.txt"), "python-3.6.15\n").unwrap();
    commit_all(&dir, "ask for python 3.6.15");
    let (ok, out) = s.push(&dir, "pyver");
    assert!(!ok, "{out}");
    let minor = stack_python_minor();
    let line = out
        .lines()
        .find(|l| l.contains("Requested Python 3.6.15 (from runtime.txt), but this stack has: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(&format!("{minor}.")), "{line}");
    assert!(!out.contains("Installing requirements with pip"), "{out}");
    assert_eq!(s.release_versions("pyver"), releases);
    let r = s.get("pyver", "/");
    assert_eq!((r.status, r.body.as_str()), (200, before.as_str()));

    // The stack's own major.minor in .python-version builds, and says which Python it picked;
    // the dyno's `python` is that Python.
    std::fs::remove_file(dir.join("runtime.txt")).unwrap();
    std::fs::write(dir.join(".python-version"), format!("{minor}\n")).unwrap();
    commit_all(&dir, "ask for the stack's python");
    let (ok, out) = s.push(&dir, "pyver");
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("-----> Using Python {minor}."))
            && out.contains("from the stack (/usr/"),
        "{out}"
    );
    let out = s.ok(&[
        "run",
        "-a",
        "pyver",
        "--",
        "python",
        "-c",
        "import sys; print('python %d.%d' % sys.version_info[:2])",
    ]);
    assert_eq!(out.trim(), format!("python {minor}"), "{out}");
}

#[test]
fn a_node_range_the_stack_lacks_fails_naming_the_stacks_version_and_the_app_keeps_serving() {
    let s = Server::start("rt-node");
    s.ok(&["apps:create", "nodever"]);
    let dir = fixture_repo("node-app", &[]);
    let (ok, out) = s.push(&dir, "nodever");
    assert!(ok, "{out}");
    let before = wait_for_body(&s, "nodever", "the Node.js web dyno", |b| {
        b.starts_with("node DYNO=web.1")
    });
    let releases = s.release_versions("nodever");
    let stack = Command::new("node")
        .arg("--version")
        .output()
        .expect("node");
    let stack = String::from_utf8_lossy(&stack.stdout)
        .trim()
        .trim_start_matches('v')
        .to_string();

    let package = r#"{
  "name": "node-fixture",
  "version": "1.0.0",
  "private": true,
  "engines": { "node": ">=99" },
  "scripts": { "start": "node server.js" }
}
"#;
    std::fs::write(dir.join("package.json"), package).unwrap();
    commit_all(&dir, "ask for node 99");
    let (ok, out) = s.push(&dir, "nodever");
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "Requested Node.js >=99 (from package.json engines.node), but this stack has: {stack}"
        )),
        "{out}"
    );
    assert!(!out.contains("Installing dependencies"), "{out}");
    assert_eq!(s.release_versions("nodever"), releases);
    let r = s.get("nodever", "/");
    assert_eq!((r.status, r.body.as_str()), (200, before.as_str()));

    // A range the stack meets builds.
    let major = stack.split('.').next().unwrap();
    std::fs::write(
        dir.join("package.json"),
        package.replace(">=99", &format!("{major}.x")),
    )
    .unwrap();
    commit_all(&dir, "ask for the stack's node");
    let (ok, out) = s.push(&dir, "nodever");
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("engines.node \"{major}.x\" is met")),
        "{out}"
    );
}

const WRITE_JS: &str = "require('fs').writeFileSync(process.argv[2], process.argv[3]);\n";

const SERVER_JS: &str = r#"const fs = require("fs");
const http = require("http");
const read = (f) => {
  try {
    return fs.readFileSync(f, "utf8");
  } catch (e) {
    return "none";
  }
};
http
  .createServer((req, res) => {
    res.end(`built=${read("built.txt")} prebuild=${read("prebuild.txt")}\n`);
  })
  .listen(process.env.PORT);
"#;

#[test]
fn npm_build_scripts_run_as_herokus_buildpack_runs_them() {
    let s = Server::start("rt-npm-scripts");
    s.ok(&["apps:create", "npmbuild"]);
    let dir = fixture_repo(
        "npm-scripts-app",
        &[
            (
                "package.json",
                r#"{
  "name": "npm-scripts",
  "version": "1.0.0",
  "private": true,
  "scripts": {
    "heroku-prebuild": "node write.js prebuild.txt heroku-prebuild",
    "build": "node write.js built.txt build",
    "start": "node server.js"
  }
}
"#,
            ),
            ("write.js", WRITE_JS),
            ("server.js", SERVER_JS),
        ],
    );
    let (ok, out) = s.push(&dir, "npmbuild");
    assert!(ok, "{out}");
    let pre = out.find("Running heroku-prebuild").expect(&out);
    let install = out.find("Installing dependencies with npm").expect(&out);
    let build = out.find("Running the build script").expect(&out);
    assert!(pre < install && install < build, "{out}");
    let body = wait_for_body(&s, "npmbuild", "the web dyno", |_| true);
    assert_eq!(body, "built=build prebuild=heroku-prebuild\n");

    // heroku-postbuild replaces build.
    let package = std::fs::read_to_string(dir.join("package.json")).unwrap();
    std::fs::write(
        dir.join("package.json"),
        package.replace(
            r#""build": "node write.js built.txt build","#,
            r#""build": "node write.js built.txt build",
    "heroku-postbuild": "node write.js built.txt heroku-postbuild","#,
        ),
    )
    .unwrap();
    commit_all(&dir, "add heroku-postbuild");
    let (ok, out) = s.push(&dir, "npmbuild");
    assert!(ok, "{out}");
    assert!(out.contains("Running heroku-postbuild"), "{out}");
    assert!(!out.contains("Running the build script"), "{out}");
    let body = wait_for_body(&s, "npmbuild", "the new release", |b| {
        b.contains("heroku-postbuild")
    });
    assert_eq!(body, "built=heroku-postbuild prebuild=heroku-prebuild\n");
}

const MANAGE_PY: &str = r#"#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hello.settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
"#;

const SETTINGS_PY: &str = r#"import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# Config vars reach collectstatic, as on Heroku: this one must be set.
SECRET_KEY = os.environ["SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.staticfiles"]
MIDDLEWARE = []
ROOT_URLCONF = "hello.urls"
DATABASES = {}
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "assets"]
"#;

const URLS_PY: &str = r#"import django
from django.conf import settings
from django.http import HttpResponse
from django.urls import path, re_path
from django.views.static import serve


def index(request):
    return HttpResponse("hello from django %s\n" % django.get_version(), content_type="text/plain")


urlpatterns = [
    path("", index),
    # The collected files, from STATIC_ROOT: only there if collectstatic ran in the build.
    re_path(r"^static/(?P<path>.*)$", serve, {"document_root": settings.STATIC_ROOT}),
]
"#;

/// Django from PyPI (the one download these tests make), as Heroku users deploy it.
#[test]
fn django_collectstatic_runs_in_the_build_as_on_heroku() {
    let s = Server::start("rt-django");
    s.ok(&["apps:create", "djangoapp"]);
    s.ok(&[
        "config:set",
        "SECRET_KEY=kiln-test-secret",
        "-a",
        "djangoapp",
    ]);
    let dir = fixture_repo(
        "django-app",
        &[
            ("requirements.txt", "Django\n"),
            ("manage.py", MANAGE_PY),
            ("hello/__init__.py", ""),
            ("hello/settings.py", SETTINGS_PY),
            ("hello/urls.py", URLS_PY),
            ("assets/site.css", "body { color: rebeccapurple; }\n"),
            (
                "Procfile",
                "web: python manage.py runserver 0.0.0.0:$PORT --noreload\n",
            ),
        ],
    );
    let (ok, out) = s.push(&dir, "djangoapp");
    assert!(ok, "{out}");
    assert!(
        out.contains("$ python manage.py collectstatic --noinput"),
        "{out}"
    );
    assert!(
        out.contains("1 static file copied to '/app/staticfiles'"),
        "{out}"
    );
    let body = wait_for_body(&s, "djangoapp", "the Django web dyno", |_| true);
    assert!(body.starts_with("hello from django "), "{body}");
    let css = s.get("djangoapp", "/static/site.css");
    assert_eq!(
        (css.status, css.body.as_str()),
        (200, "body { color: rebeccapurple; }\n")
    );
    let releases = s.release_versions("djangoapp");

    // Without STATIC_ROOT, collectstatic fails, and so does the build (Heroku's message).
    std::fs::write(
        dir.join("hello/settings.py"),
        SETTINGS_PY.replace("STATIC_ROOT = BASE_DIR / \"staticfiles\"\n", ""),
    )
    .unwrap();
    commit_all(&dir, "no STATIC_ROOT");
    let (ok, out) = s.push(&dir, "djangoapp");
    assert!(!ok, "{out}");
    assert!(out.contains("STATIC_ROOT"), "{out}");
    assert!(
        out.contains("Error: Unable to generate Django static files.")
            && out.contains("config:set DISABLE_COLLECTSTATIC=1"),
        "{out}"
    );
    assert_eq!(s.release_versions("djangoapp"), releases);
    assert_eq!(s.get("djangoapp", "/static/site.css").status, 200);

    // DISABLE_COLLECTSTATIC skips it.
    s.ok(&["config:set", "DISABLE_COLLECTSTATIC=1", "-a", "djangoapp"]);
    let (ok, out) = s.push(&dir, "djangoapp");
    assert!(ok, "{out}");
    assert!(
        out.contains(
            "Skipping Django collectstatic since the env var DISABLE_COLLECTSTATIC is set."
        ),
        "{out}"
    );
    assert!(!out.contains("collectstatic --noinput"), "{out}");
}
