//! Languages beyond Python and Node.js (issue 16), each deployed with `git push` and served
//! through the router: Go.

mod common;

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
