//! PHP (issue 16, acceptance 2 and 3): an app with a `composer.json` and a `public/` root,
//! pushed with `git push`, built with the stack's PHP and Composer (the autoloader in
//! vendor/), and served through the router by nginx and PHP-FPM as Heroku's
//! `heroku-php-nginx` serves it: PHP files run, static files are sent by nginx, paths that are
//! no file go to the front controller, files outside `public/` are not served, and both
//! servers' logs (nginx's access lines, PHP's error_log) reach `kiln logs`. A composer.json
//! that asks for a PHP the stack lacks fails with Composer's words and Kiln's, and creates no
//! release. Packagist is out of reach of the test machine, so the apps require only PHP.

use crate::common::*;
use std::path::Path;
use std::time::Duration;

const COMPOSER_JSON: &str =
    r#"{"require": {"php": ">=8.1"}, "autoload": {"psr-4": {"App\\": "src/"}}}"#;

const GREETER: &str = r#"<?php
namespace App;

final class Greeter
{
    public static function hello(): string
    {
        return 'Hello from ' . self::class;
    }
}
"#;

/// The front controller: every path that is no file comes here.
const INDEX_PHP: &str = r#"<?php
require __DIR__ . '/../vendor/autoload.php';

$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
if ($path === '/log') {
    error_log('kiln-php-error-log-marker from ' . getenv('DYNO'));
}
header('Content-Type: text/plain');
echo App\Greeter::hello(), "\n";
echo 'sapi=', PHP_SAPI, ' dyno=', getenv('DYNO'), ' pdo=', extension_loaded('pdo') ? 'yes' : 'no', "\n";
echo 'path=', $path, ' query=', $_SERVER['QUERY_STRING'] ?? '', "\n";
"#;

fn php_stack_installed() {
    for p in ["/usr/bin/php", "/usr/bin/composer", "/usr/sbin/nginx"] {
        assert!(
            Path::new(p).exists(),
            "{p} is missing: test.sh installs php-cli, php-fpm, composer and nginx-light"
        );
    }
}

fn wait_for_hello(s: &Server, app: &str) -> String {
    s.wait_for_app(app, Duration::from_secs(60), "the PHP web dyno", || {
        let r = s.get(app, "/");
        (r.status == 200 && r.body.contains("Hello from")).then_some(r.body)
    })
}

#[test]
fn a_composer_app_is_served_from_public_by_nginx_and_php_fpm() {
    php_stack_installed();
    let s = Server::start("lang-php");
    s.ok(&["apps:create", "phphello"]);
    let dir = fixture_repo(
        "php-app",
        &[
            ("composer.json", COMPOSER_JSON),
            ("src/Greeter.php", GREETER),
            ("public/index.php", INDEX_PHP),
            ("public/hello.txt", "a static file in public\n"),
            ("public/.secret", "dotfile-secret\n"),
        ],
    );
    let (ok, out) = s.push(&dir, "phphello");
    assert!(ok, "{out}");
    assert!(out.contains("PHP app detected"), "{out}");
    assert!(
        out.contains("composer.json requires PHP >=8.1; the stack has 8."),
        "{out}"
    );
    assert!(
        out.contains("Installing dependencies with Composer"),
        "{out}"
    );
    assert!(out.contains("Generating optimized autoload files"), "{out}");

    // PHP-FPM ran the front controller, which used Composer's autoloader.
    let body = wait_for_hello(&s, "phphello");
    assert!(body.starts_with("Hello from App\\Greeter\n"), "{body}");
    assert!(body.contains("sapi=fpm-fcgi dyno=web.1 pdo=yes"), "{body}");

    // A path that is no file goes to the front controller, with its query string.
    let r = s.get("phphello", "/articles/42?sort=new");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains("path=/articles/42 query=sort=new"),
        "{}",
        r.body
    );

    // nginx sends public/'s files itself.
    let r = s.get("phphello", "/hello.txt");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "a static file in public\n");
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "{r:?}"
    );

    // Nothing outside public/ is served: composer.json is answered by the front controller.
    let r = s.get("phphello", "/composer.json");
    assert!(!r.body.contains("psr-4"), "{r:?}");
    let r = s.get("phphello", "/src/Greeter.php");
    assert!(!r.body.contains("namespace App"), "{r:?}");
    // Nor are dotfiles.
    let r = s.get("phphello", "/.secret");
    assert_eq!(r.status, 403, "{r:?}");
    assert!(!r.body.contains("dotfile-secret"), "{r:?}");

    // Both servers' logs reach `kiln logs`: nginx's access line and PHP's error_log.
    let r = s.get("phphello", "/log");
    assert_eq!(r.status, 200, "{r:?}");
    let logs = s.wait_for_app(
        "phphello",
        Duration::from_secs(20),
        "nginx's access line and PHP's error_log line in the logs",
        || {
            let l = s.logs("phphello");
            (l.contains("kiln-php-error-log-marker from web.1")
                && l.contains("\"GET /hello.txt HTTP/1."))
            .then_some(l)
        },
    );
    assert!(logs.contains("PHP-FPM with up to"), "{logs}");

    // The web process is Heroku's: heroku-php-nginx public/, on the dyno's PATH.
    let ps = s.ok(&["ps", "-a", "phphello"]);
    assert!(ps.contains("heroku-php-nginx public/"), "{ps}");
    let out = s.ok(&[
        "run",
        "-a",
        "phphello",
        "--",
        "sh",
        "-c",
        "command -v heroku-php-nginx; command -v heroku-php-apache2",
    ]);
    assert_eq!(
        out.trim(),
        "/app/.heroku/php/bin/heroku-php-nginx\n/app/.heroku/php/bin/heroku-php-apache2",
        "{out}"
    );
}

#[test]
fn a_composer_json_that_needs_another_php_fails_saying_so_and_keeps_the_release() {
    php_stack_installed();
    let s = Server::start("lang-php-version");
    s.ok(&["apps:create", "phpver"]);
    let dir = fixture_repo(
        "php-app-version",
        &[
            ("composer.json", COMPOSER_JSON),
            ("src/Greeter.php", GREETER),
            ("public/index.php", INDEX_PHP),
        ],
    );
    let (ok, out) = s.push(&dir, "phpver");
    assert!(ok, "{out}");
    wait_for_hello(&s, "phpver");
    let releases = s.release_versions("phpver");

    std::fs::write(
        dir.join("composer.json"),
        COMPOSER_JSON.replace(">=8.1", ">=99.0"),
    )
    .unwrap();
    commit_all(&dir, "ask for PHP 99");
    let (ok, out) = s.push(&dir, "phpver");
    assert!(!ok, "{out}");
    // Composer's words, then Kiln's.
    assert!(
        out.contains("Root composer.json requires php >=99.0 but your php version (8."),
        "{out}"
    );
    assert!(
        out.contains("This app requires PHP >=99.0 (composer.json), and this stack has PHP 8."),
        "{out}"
    );
    assert_eq!(s.release_versions("phpver"), releases);
    // The running version keeps serving.
    let r = s.get("phpver", "/");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("Hello from App\\Greeter"), "{}", r.body);
}

#[test]
fn a_procfile_for_herokus_apache_script_is_served_by_nginx_without_composer() {
    php_stack_installed();
    let s = Server::start("lang-php-apache");
    s.ok(&["apps:create", "phpplain"]);
    let dir = fixture_repo(
        "php-app-plain",
        &[
            ("Procfile", "web: heroku-php-apache2\n"),
            (
                "index.php",
                "<?php echo 'plain php at ', $_SERVER['REQUEST_URI'], \"\\n\";\n",
            ),
        ],
    );
    let (ok, out) = s.push(&dir, "phpplain");
    assert!(ok, "{out}");
    assert!(
        out.contains("No composer.json; nothing to install"),
        "{out}"
    );
    let body = s.wait_for_app(
        "phpplain",
        Duration::from_secs(60),
        "the PHP web dyno",
        || {
            let r = s.get("phpplain", "/some/where");
            (r.status == 200).then_some(r.body)
        },
    );
    assert_eq!(body, "plain php at /some/where\n");
    // With the app root as the document root, the Procfile is not a page.
    let r = s.get("phpplain", "/Procfile");
    assert!(!r.body.contains("heroku-php-apache2"), "{r:?}");
    let logs = s.wait_for_app(
        "phpplain",
        Duration::from_secs(20),
        "the note that nginx serves the app",
        || {
            let l = s.logs("phpplain");
            l.contains("Apache httpd is not on this stack: serving with nginx")
                .then_some(l)
        },
    );
    assert!(logs.contains("heroku-php-apache2"), "{logs}");
}
