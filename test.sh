#!/usr/bin/env bash
# Runs Kiln's whole test suite: unit tests of every crate and the end-to-end suite, which
# starts real servers, pushes real apps with git and talks to them through the router.
#
# On Debian it first installs what the tests need and the machine lacks (git, Python with pip,
# Node.js with npm, Go, Ruby, PHP, a JDK with Maven and nginx: the stack the built-in
# buildpacks use; pebble, an ACME test CA; PostgreSQL,
# Redis and memcached, which add-ons run; Heroku's own CLI from npm, for the compatibility
# tests; Chromium and playwright-core, for the dashboard's browser tests). Run it as
# root so dynos run as real containers; as another user, with sudo available for the install step.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v git >/dev/null 2>&1 || need+=(git)
# Dynos see the system's /usr, so the stack's Python is /usr/bin/python3, with pip.
[ -x /usr/bin/python3 ] || need+=(python3)
/usr/bin/python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
[ -x /usr/bin/node ] || need+=(nodejs)
# The Go buildpack builds with the stack's Go.
[ -x /usr/bin/go ] || need+=(golang-go)
# Ruby with Bundler, and the gems the Ruby tests' apps use (Sinatra on Thin, Puma, Rails with
# pg): rubygems.org is out of reach here, so Bundler must find them installed.
[ -x /usr/bin/ruby ] || need+=(ruby)
command -v bundle >/dev/null 2>&1 || need+=(bundler)
for pkg in thin puma ruby-sinatra ruby-rails ruby-pg; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# PHP with FPM and Composer behind nginx, which also serves static sites.
[ -x /usr/bin/php ] || need+=(php-cli)
ls /usr/sbin/php-fpm* >/dev/null 2>&1 || need+=(php-fpm)
command -v composer >/dev/null 2>&1 || need+=(composer)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
# A JDK and Maven. Maven Central is out of reach here, so the Java tests' apps point Maven at
# Debian's own repository of plugins (/usr/share/maven-repo), which these packages fill.
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
for pkg in libmaven-compiler-plugin-java libmaven-jar-plugin-java libmaven-resources-plugin-java \
  libmaven-install-plugin-java libsurefire-java; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
# The ACME tests run Let's Encrypt's test CA (pebble, with pebble-challtestsrv as its DNS)
# and fetch its root with curl.
command -v pebble >/dev/null 2>&1 || need+=(pebble)
command -v curl >/dev/null 2>&1 || need+=(curl)
# Add-ons run the machine's PostgreSQL server (its programs live in /usr/lib/postgresql/N/bin)
# and redis-server; psql is both Kiln's admin tool and the tests' client.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# Dynos get network namespaces of their own: nftables for their firewall and NAT, iproute2
# for the tests' own namespaces.
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# The log drain tests receive with a real rsyslog (plain TCP and TLS through OpenSSL); Kiln
# never starts the system's rsyslog.
[ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
ls /usr/lib/*/rsyslog/lmnsd_ossl.so >/dev/null 2>&1 || need+=(rsyslog-openssl)
# memcached with SASL: the server, and saslpasswd2 for its password databases.
command -v memcached >/dev/null 2>&1 || need+=(memcached)
command -v saslpasswd2 >/dev/null 2>&1 || need+=(sasl2-bin)
# The dashboard's browser tests (crates/kiln/tests/dashboard.rs) run Debian's Chromium.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -e /usr/lib/x86_64-linux-gnu/sasl2/libsasldb.so ] || ls /usr/lib/*/sasl2/libsasldb.so >/dev/null 2>&1 || need+=(libsasl2-modules-db)

if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing missing packages: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# Heroku's own CLI, for the compatibility tests (crates/kiln/tests/heroku_cli.rs): the version
# Kiln is checked against, installed once under target/.
HEROKU_CLI_VERSION=11.10.0
if ! grep -qs "\"version\": \"$HEROKU_CLI_VERSION\"" target/heroku-cli/node_modules/heroku/package.json; then
  echo "test.sh: installing Heroku's CLI $HEROKU_CLI_VERSION (npm) into target/heroku-cli"
  mkdir -p target/heroku-cli
  npm install --prefix target/heroku-cli --no-audit --no-fund --loglevel=error "heroku@$HEROKU_CLI_VERSION"
fi

# Playwright's driver library (no browsers of its own: it drives Debian's Chromium), for the
# dashboard's browser tests, installed once under target/.
PLAYWRIGHT_VERSION=1.64.1
if ! grep -qs "\"version\": \"$PLAYWRIGHT_VERSION\"" target/browser/node_modules/playwright-core/package.json; then
  echo "test.sh: installing playwright-core $PLAYWRIGHT_VERSION (npm) into target/browser"
  mkdir -p target/browser
  npm install --prefix target/browser --no-audit --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION"
fi

exec cargo test --workspace --locked "$@"
