//! Every language Heroku runs (issue 16), each deployed with `git push` and served through the
//! router: Go here; Ruby, Java, PHP, static sites and the Python and Node.js runtime versions
//! in `languages/`; nginx logging to /dev/stderr, two buildpacks in one app, and the
//! buildpack registry's search.

mod common;

#[path = "languages/java.rs"]
mod java;
#[path = "languages/php.rs"]
mod php;
#[path = "languages/ruby.rs"]
mod ruby;
#[path = "languages/runtimes.rs"]
mod runtimes;
#[path = "languages/static_site.rs"]
mod static_site;

use common::*;
use std::time::Duration;

const GO_MAIN: &str = r#"package main

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from go %s on %s\n", runtime.Version(), os.Getenv("DYNO"))
	})
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), nil); err != nil {
		panic(err)
	}
}
"#;

#[test]
fn a_go_module_builds_with_the_stacks_go_and_serves_without_a_procfile() {
    assert!(
        std::path::Path::new("/usr/bin/go").exists(),
        "Go is not installed: test.sh installs golang-go"
    );
    let s = Server::start("lang-go");
    s.ok(&["apps:create", "gohello"]);
    let dir = fixture_repo(
        "go-app",
        &[
            ("go.mod", "module example.com/gohello\n\ngo 1.18\n"),
            ("main.go", GO_MAIN),
        ],
    );
    let (ok, out) = s.push(&dir, "gohello");
    assert!(ok, "{out}");
    assert!(
        out.contains("Go app detected") || out.contains("-----> Go"),
        "{out}"
    );
    assert!(
        out.contains("Running: go install -tags heroku example.com/gohello"),
        "{out}"
    );
    assert!(
        out.contains("default types for buildpack") || out.contains("web"),
        "{out}"
    );
    let body = s.wait_for_app(
        "gohello",
        Duration::from_secs(60),
        "the Go web dyno",
        || {
            let r = s.get("gohello", "/");
            (r.status == 200).then_some(r.body)
        },
    );
    assert!(
        body.starts_with("hello from go go1.") && body.contains("web.1"),
        "{body}"
    );
    // The binary is on the dyno's PATH.
    let out = s.ok(&[
        "run",
        "-a",
        "gohello",
        "--",
        "sh",
        "-c",
        "command -v gohello",
    ]);
    assert_eq!(out.trim(), "/app/bin/gohello", "{out}");
}

#[test]
fn a_go_module_that_needs_a_newer_go_than_the_stacks_fails_saying_so() {
    let s = Server::start("lang-go-new");
    s.ok(&["apps:create", "gonew"]);
    let dir = fixture_repo(
        "go-app-new",
        &[
            ("go.mod", "module example.com/gonew\n\ngo 1.99\n"),
            ("main.go", GO_MAIN),
        ],
    );
    let (ok, out) = s.push(&dir, "gonew");
    assert!(!ok, "{out}");
    assert!(
        out.contains("This app needs Go 1.99 (go.mod's go line), and this stack has go1."),
        "{out}"
    );
    // GOVERSION asks for the stack's own version: the build goes through.
    s.ok(&["config:set", "GOVERSION=go1.10", "-a", "gonew"]);
    let (ok, out) = s.push(&dir, "gonew");
    assert!(ok, "{out}");
}

#[test]
fn broken_go_modules_fail_with_gos_own_words() {
    let s = Server::start("lang-go-bad");
    s.ok(&["apps:create", "gobad"]);
    for (files, expect) in [
        (
            vec![
                ("go.mod", "module example.com/gobad\n\ngo banana\n"),
                ("main.go", GO_MAIN),
            ],
            "go.mod",
        ),
        (
            vec![
                ("go.mod", "module example.com/gobad\n\ngo 1.18\n"),
                (
                    "lib.go",
                    "package gobad\n\nfunc Answer() int { return 42 }\n",
                ),
            ],
            "This module has no main package",
        ),
        (
            vec![
                ("go.mod", "module example.com/gobad\n\ngo 1.18\n"),
                ("main.go", "package main\n\nfunc main() { undefined() }\n"),
            ],
            "undefined",
        ),
        (
            vec![
                (
                    "go.mod",
                    "module example.com/gobad\n\n// +heroku goVersion go1.x; rm -rf /\ngo 1.18\n",
                ),
                ("main.go", GO_MAIN),
            ],
            "is not a Go version",
        ),
    ] {
        let dir = fixture_repo("go-app-bad", &files);
        let (ok, out) = s.push(&dir, "gobad");
        assert!(!ok && out.contains(expect), "{expect}:\n{out}");
    }
}

/// nginx as Heroku users configure it in a dyno: `error_log /dev/stderr` and
/// `access_log /dev/stdout`. Opening those failed with EACCES inside a dyno (the log pipes
/// belonged to root), so nginx died at boot.
#[test]
fn an_nginx_app_logging_to_dev_stderr_boots_and_its_lines_reach_the_logs() {
    let s = Server::start("lang-nginx");
    s.ok(&["apps:create", "nginxlogs"]);
    let conf = r#"daemon off;
pid /tmp/nginx.pid;
error_log /dev/stderr info;
events { worker_connections 64; }
http {
  access_log /dev/stdout;
  client_body_temp_path /tmp/nginx-body;
  proxy_temp_path /tmp/nginx-proxy;
  fastcgi_temp_path /tmp/nginx-fastcgi;
  uwsgi_temp_path /tmp/nginx-uwsgi;
  scgi_temp_path /tmp/nginx-scgi;
  server {
    listen PORT_HERE;
    root /app/site;
  }
}
"#;
    let dir = fixture_repo(
        "nginx-app",
        &[
            (
                "Procfile",
                "web: sed \"s/PORT_HERE/$PORT/\" nginx.conf > /tmp/nginx.conf && exec /usr/sbin/nginx -p /tmp -c /tmp/nginx.conf\n",
            ),
            ("nginx.conf", conf),
            ("site/hello.txt", "hello from nginx\n"),
        ],
    );
    let (ok, out) = s.push(&dir, "nginxlogs");
    assert!(ok, "{out}");
    let body = s.wait_for_app("nginxlogs", Duration::from_secs(60), "nginx", || {
        let r = s.get("nginxlogs", "/hello.txt");
        (r.status == 200).then_some(r.body)
    });
    assert_eq!(body, "hello from nginx\n");
    // A missing file: nginx writes the error to /dev/stderr, the access line to /dev/stdout.
    assert_eq!(s.get("nginxlogs", "/missing-kiln-file").status, 404);
    let logs = s.wait_for_app(
        "nginxlogs",
        Duration::from_secs(20),
        "nginx's lines",
        || {
            let l = s.logs("nginxlogs");
            (l.contains("missing-kiln-file\" failed (2: No such file or directory)")
                && l.contains("\"GET /missing-kiln-file HTTP/1.1\" 404"))
            .then_some(l)
        },
    );
    assert!(logs.contains("app[web.1]"), "{logs}");
    assert!(!logs.contains("Permission denied"), "{logs}");
}

/// Two buildpacks in order (Heroku's multi-buildpack): Node.js builds the assets, Python
/// serves them; the second sees what the first exported, and the first one's default process
/// type (`web: npm start`) wins. The list is managed with buildpacks:add/remove/clear.
#[test]
fn an_app_with_two_buildpacks_builds_node_assets_then_serves_them_with_python() {
    let s = Server::start("lang-multi");
    s.ok(&["apps:create", "multibp"]);
    let out = s.ok(&["buildpacks:add", "heroku/python", "-a", "multibp"]);
    assert!(
        out.contains("Buildpack added. Next release on ⬢ multibp will use heroku/python."),
        "{out}"
    );
    let out = s.ok(&[
        "buildpacks:add",
        "heroku/nodejs",
        "-i",
        "1",
        "-a",
        "multibp",
    ]);
    assert!(
        out.contains("will use:\n  1. heroku/nodejs\n  2. heroku/python\n"),
        "{out}"
    );
    let err = s.fails(&["buildpacks:add", "heroku/python", "-a", "multibp"]);
    assert!(err.contains("already set on your app"), "{err}");
    let err = s.fails(&["buildpacks:add", "heroku/go", "-i", "7", "-a", "multibp"]);
    assert!(err.contains("Invalid index 7"), "{err}");
    // Add a third, remove it by index; clear and set back, to use each command.
    s.ok(&["buildpacks:add", "heroku/go", "-a", "multibp"]);
    let out = s.ok(&["buildpacks:remove", "-i", "3", "-a", "multibp"]);
    assert!(out.contains("Buildpack removed."), "{out}");
    let err = s.fails(&["buildpacks:remove", "heroku/go", "-a", "multibp"]);
    assert!(err.contains("not found"), "{err}");
    let out = s.ok(&["buildpacks", "-a", "multibp"]);
    assert_eq!(
        out,
        "=== multibp Buildpack URLs\n\n1. heroku/nodejs\n2. heroku/python\n"
    );

    let dir = fixture_repo(
        "multi-app",
        &[
            (
                "package.json",
                r#"{"name": "multi", "version": "1.0.0", "private": true,
  "scripts": {"build": "node build.js", "start": "python3 server.py"}}
"#,
            ),
            (
                "build.js",
                "require('fs').mkdirSync('static', {recursive: true});\n\
                 require('fs').writeFileSync('static/app.js', 'built by node ' + process.version + '\\n');\n",
            ),
            ("requirements.txt", "\n"),
            (
                "server.py",
                r#"import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open("static/app.js", "rb").read() + ("served by python %d.%d\n" % sys.version_info[:2]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
"#,
            ),
        ],
    );
    let (ok, out) = s.push(&dir, "multibp");
    assert!(ok, "{out}");
    let node = out.find("Node.js app detected").expect(&out);
    let python = out.find("Python app detected").expect(&out);
    assert!(node < python, "{out}");
    assert!(out.contains("Running the build script"), "{out}");
    let body = s.wait_for_app("multibp", Duration::from_secs(60), "the web dyno", || {
        let r = s.get("multibp", "/");
        (r.status == 200).then_some(r.body)
    });
    assert!(
        body.starts_with("built by node v") && body.contains("served by python 3."),
        "{body}"
    );
    let ps = s.ok(&["ps", "-a", "multibp"]);
    assert!(ps.contains("npm start"), "{ps}");

    let out = s.ok(&["buildpacks:clear", "-a", "multibp"]);
    assert!(
        out.contains(
            "Buildpacks cleared. Next release on ⬢ multibp will detect buildpacks normally."
        ),
        "{out}"
    );
    assert_eq!(
        s.ok(&["buildpacks", "-a", "multibp"]),
        "multibp has no Buildpacks.\n"
    );
}

/// Node.js first only to build assets, as Heroku's docs order a Rails or Django app's
/// buildpacks: with no `start` script and no server.js it declares no `web`, so the next
/// buildpack's `web` runs.
#[test]
fn nodejs_listed_first_for_assets_leaves_web_to_the_next_buildpack() {
    let s = Server::start("lang-bp-assets");
    s.ok(&["apps:create", "bpassets"]);
    let dir = fixture_repo(
        "bp-assets-app",
        &[(
            "package.json",
            "{\"name\": \"assets\", \"version\": \"1.0.0\", \"private\": true}\n",
        )],
    );
    let web = script_buildpack(
        dir.parent().unwrap(),
        "Site",
        "mkdir -p \"$1/site\" && echo served-by-site > \"$1/site/which.txt\"\n",
    );
    script_release(
        &web,
        "  web: python3 -m http.server $PORT --directory site\n",
    );
    s.ok(&["buildpacks:add", "heroku/nodejs", "-a", "bpassets"]);
    s.ok(&["buildpacks:add", web.to_str().unwrap(), "-a", "bpassets"]);
    let (ok, out) = s.push(&dir, "bpassets");
    assert!(ok, "{out}");
    assert!(out.contains("Node.js app detected"), "{out}");
    let which = s.wait_for_app("bpassets", Duration::from_secs(60), "the web dyno", || {
        let r = s.get("bpassets", "/which.txt");
        (r.status == 200).then_some(r.body)
    });
    assert_eq!(which, "served-by-site\n");
    let ps = s.ok(&["ps", "-a", "bpassets"]);
    assert!(!ps.contains("npm start"), "{ps}");
}

/// Two buildpacks that both declare default process types: for each type the first one's
/// command wins (a type only the second declares is kept), and the second's compile sees
/// what the first wrote to its `export` file.
#[test]
fn the_first_buildpacks_default_process_types_win_and_exports_reach_the_next() {
    let s = Server::start("lang-bp-order");
    s.ok(&["apps:create", "bporder"]);
    let dir = fixture_repo("bp-order-app", &[("README", "no language here\n")]);
    let root = dir.parent().unwrap();
    let first = script_buildpack(
        root,
        "First",
        "mkdir -p \"$1/first\" && echo first > \"$1/first/which.txt\"\n\
         echo 'export GREETING=\"hello from the first\"' > \"$(dirname \"$0\")/../export\"\n",
    );
    let second = script_buildpack(
        root,
        "Second",
        "mkdir -p \"$1/second\" && echo second > \"$1/second/which.txt\"\n\
         echo \"$GREETING\" > \"$1/first/greeting.txt\"\n",
    );
    script_release(
        &first,
        "  web: python3 -m http.server $PORT --directory first\n",
    );
    script_release(
        &second,
        "  web: python3 -m http.server $PORT --directory second\n  worker: sleep 1000\n",
    );
    for bp in [&first, &second] {
        s.ok(&["buildpacks:add", bp.to_str().unwrap(), "-a", "bporder"]);
    }
    let (ok, out) = s.push(&dir, "bporder");
    assert!(ok, "{out}");
    let which = s.wait_for_app("bporder", Duration::from_secs(60), "the web dyno", || {
        let r = s.get("bporder", "/which.txt");
        (r.status == 200).then_some(r.body)
    });
    assert_eq!(which, "first\n");
    let greeting = s.get("bporder", "/greeting.txt");
    assert_eq!(greeting.status, 200, "{}", greeting.body);
    assert_eq!(greeting.body, "hello from the first\n");
    // The worker type only the second declares is part of the release's types.
    let r = s.api("GET", "/apps/bporder/formation", None).json();
    let types: Vec<&str> = r
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["type"].as_str())
        .collect();
    assert!(types.contains(&"worker"), "{r}");
    let ps = s.ok(&["ps", "-a", "bporder"]);
    assert!(ps.contains("--directory first"), "{ps}");
}

#[test]
fn buildpacks_search_lists_the_built_ins_with_their_heroku_names() {
    let s = Server::start("lang-search");
    let out = s.ok(&["buildpacks:search"]);
    for name in [
        "heroku/ruby",
        "heroku/nodejs",
        "heroku/python",
        "heroku/java",
        "heroku/php",
        "heroku/go",
        "heroku/static",
        "heroku/procfile",
    ] {
        assert!(out.contains(name), "{name}: {out}");
    }
    assert!(out.contains("8 buildpacks found"), "{out}");
    let out = s.ok(&["buildpacks:search", "composer"]);
    assert!(
        out.contains("heroku/php") && out.contains("1 buildpack found"),
        "{out}"
    );
    let out = s.ok(&["buildpacks:search", "--name", "nothing-like-this"]);
    assert!(out.contains("0 buildpacks found"), "{out}");
}
