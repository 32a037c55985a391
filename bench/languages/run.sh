#!/usr/bin/env bash
# Push → live for each built-in buildpack's sample app (issue 16), beside the same app's own
# build steps run by hand. For each language, ROUNDS times (default 5):
#   kiln:    a commit that changes the app's `marker` file is pushed to a Kiln server; the clock
#            runs from `git push` until the router serves the new marker (build in a container,
#            slug, release, a new web dyno booted and routed). The app was pushed once before,
#            so the build cache is warm, as for any redeploy.
#   by hand: in a copy of the same source, the language's own build commands with warm caches
#            (bundle install, pip install, npm ci, go build, composer install, mvn package),
#            then the app's own start command, until it serves the marker on its port.
# The difference is what Kiln adds. Issue 16's target: a Rack app (Sinatra on Thin) within 1 s
# of bundle install + thin start by hand.
# Run as root on the machine you want numbers for: sudo bench/languages/run.sh [LANG...]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
LANGS=("$@")
[ ${#LANGS[@]} -gt 0 ] || LANGS=(ruby python nodejs go php java static)

source bench/lib.sh
start_kiln languages
ms() { python3 -c "print(round(($2 - $1) * 1000))"; }
# Whole milliseconds: the table below does integer arithmetic on them.
median() { python3 -c 'import sys,statistics; print(round(statistics.median(float(x) for x in sys.argv[1:])))' "$@"; }
# Polls URL (with an optional Host header) until its body is exactly $3.
wait_body() { until [ "$(curl -s -m 2 ${2:+-H "Host: $2"} "$1" 2>/dev/null)" = "$3" ]; do sleep 0.01; done; }

# ---- the sample apps: each serves the content of its `marker` file at /marker ----
write_app() { # lang dir
  local d=$2
  mkdir -p "$d"
  case $1 in
  ruby)
    printf 'source "https://rubygems.org"\ngem "sinatra"\ngem "thin"\n' > "$d/Gemfile"
    printf 'require "./app"\nrun Sinatra::Application\n' > "$d/config.ru"
    printf 'require "sinatra"\nget("/marker") { File.read("marker") }\n' > "$d/app.rb"
    (cd "$d" && bundle lock --local >/dev/null) ;;
  python)
    printf '\n' > "$d/requirements.txt"
    printf 'web: python3 app.py\n' > "$d/Procfile"
    cat > "$d/app.py" <<'EOF'
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = open("marker", "rb").read(); self.send_response(200)
        self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
EOF
    ;;
  nodejs)
    printf '{"name":"b","version":"1.0.0","scripts":{"start":"node server.js"}}\n' > "$d/package.json"
    printf 'require("http").createServer((q,s)=>s.end(require("fs").readFileSync("marker"))).listen(process.env.PORT)\n' > "$d/server.js" ;;
  go)
    printf 'module example.com/benchgo\n\ngo 1.18\n' > "$d/go.mod"
    cat > "$d/main.go" <<'EOF'
package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/marker", func(w http.ResponseWriter, r *http.Request) {
		b, _ := os.ReadFile("marker")
		w.Write(b)
	})
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
EOF
    ;;
  php)
    printf '{"require": {"php": ">=8.1"}}\n' > "$d/composer.json"
    mkdir -p "$d/public"; printf '<?php readfile(__DIR__ . "/../marker");\n' > "$d/public/index.php" ;;
  java)
    mkdir -p "$d/src/main/java/bench"
    cat > "$d/pom.xml" <<'EOF'
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
  <groupId>bench</groupId><artifactId>app</artifactId><version>1.0</version>
  <properties><maven.compiler.release>17</maven.compiler.release><project.build.sourceEncoding>UTF-8</project.build.sourceEncoding></properties>
  <build><finalName>app</finalName><plugins><plugin><groupId>org.apache.maven.plugins</groupId><artifactId>maven-jar-plugin</artifactId><version>3.3.0</version>
  <configuration><archive><manifest><mainClass>bench.Main</mainClass></manifest></archive></configuration></plugin></plugins></build>
</project>
EOF
    # Maven Central may be out of reach: Debian's own repository of plugins stands in for it.
    printf '<settings><mirrors><mirror><id>debian</id><mirrorOf>*</mirrorOf><url>file:///usr/share/maven-repo</url></mirror></mirrors></settings>\n' > "$d/settings.xml"
    cat > "$d/src/main/java/bench/Main.java" <<'EOF'
package bench;
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.nio.file.*;
public class Main {
  public static void main(String[] a) throws Exception {
    HttpServer s = HttpServer.create(new InetSocketAddress(Integer.parseInt(System.getenv("PORT"))), 64);
    s.createContext("/marker", x -> { byte[] b = Files.readAllBytes(Path.of("marker")); x.sendResponseHeaders(200, b.length); x.getResponseBody().write(b); x.close(); });
    s.start();
  }
}
EOF
    printf 'web: java -jar target/app.jar\n' > "$d/Procfile" ;;
  static)
    mkdir -p "$d/public"; printf '{"root": "public/"}\n' > "$d/static.json"; ln -s ../marker "$d/public/marker" ;;
  esac
}

# By hand: the language's build steps in $1 with caches in $2, then its start command on port
# $3 (in the background; the caller kills it).
by_hand_build() { # lang dir cache
  local d=$2 c=$3
  export BUNDLE_SILENCE_ROOT_WARNING=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
  case $1 in
  ruby) (cd "$d" && GEM_HOME=$d/vendor/bundle BUNDLE_FROZEN=true bundle install --quiet) ;;
  python) (cd "$d" && PIP_CACHE_DIR=$c/pip /usr/bin/python3 -m pip install -q --target .heroku/python -r requirements.txt) ;;
  nodejs) (cd "$d" && npm install --cache "$c/npm" --no-audit --no-fund --silent) ;;
  go) (cd "$d" && GOCACHE=$c/gobuild GOMODCACHE=$c/gomod GOBIN=$d/bin go install .) ;;
  php) (cd "$d" && COMPOSER_HOME=$c/composer composer install -q --no-dev --no-interaction --optimize-autoloader) ;;
  java) (cd "$d" && mvn -q -B -s settings.xml -Dmaven.repo.local=$c/m2 -DskipTests package) ;;
  static) : ;;
  esac
}
by_hand_start() { # lang dir port
  local d=$2 p=$3
  cd "$d"
  case $1 in
  ruby) GEM_HOME=$d/vendor/bundle PORT=$p exec bundle exec thin start -R config.ru -e production -p "$p" -q ;;
  python) PORT=$p exec /usr/bin/python3 app.py ;;
  nodejs) PORT=$p exec node server.js ;;
  go) PORT=$p exec ./bin/benchgo ;;
  php) # PHP-FPM behind nginx, the smallest configuration that serves public/index.php.
    mkdir -p "$d/run"
    printf '[global]\nerror_log = /proc/self/fd/2\ndaemonize = no\n[www]\nlisten = %s/run/fpm.sock\nlisten.mode = 0666\npm = static\npm.max_children = 2\n' "$d" > "$d/run/fpm.conf"
    printf 'daemon off; pid %s/run/pid; error_log stderr; events {} http { access_log off; client_body_temp_path %s/run; server { listen %s; root %s/public; location / { include /etc/nginx/fastcgi_params; fastcgi_param SCRIPT_FILENAME $document_root/index.php; fastcgi_pass unix:%s/run/fpm.sock; } } }\n' "$d" "$d" "$p" "$d" "$d" > "$d/run/nginx.conf"
    "$(ls /usr/sbin/php-fpm* | head -1)" -R -F -y "$d/run/fpm.conf" &
    exec /usr/sbin/nginx -c "$d/run/nginx.conf" ;;
  java) PORT=$p exec java -jar target/app.jar ;;
  static) # nginx serving the same directory: what the static buildpack runs, minus static.json.
    mkdir -p "$d/run"
    printf 'daemon off; pid %s/run/pid; error_log stderr; events {} http { access_log off; client_body_temp_path %s/run; server { listen %s; root %s/public; } }\n' "$d" "$d" "$p" "$d" > "$d/run/nginx.conf"
    exec /usr/sbin/nginx -c "$d/run/nginx.conf" ;;
  esac
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; commit $(git rev-parse --short HEAD); load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '\n%-8s %10s %10s %10s %8s\n' language "kiln ms" "hand ms" "diff ms" ratio
for lang in "${LANGS[@]}"; do
  app="bench-$lang"
  src=$WORK/src/$lang
  write_app "$lang" "$src"
  echo 0 > "$src/marker"
  (cd "$src" && git init -q -b main && git add -A && git -c user.name=b -c user.email=b@b commit -qm 0)
  api POST /apps "{\"name\":\"$app\"}" >/dev/null
  remote="http://kiln:$KEY@127.0.0.1:$API/$app.git"
  (cd "$src" && git push -q "$remote" main 2>/dev/null >/dev/null)
  wait_body "http://127.0.0.1:$ROUTER/marker" "$app.localhost" 0
  kiln=() hand=()
  for r in $(seq "$ROUNDS"); do
    echo "$r" > "$src/marker"
    (cd "$src" && git -c user.name=b -c user.email=b@b commit -qam "$r")
    t0=$(now)
    (cd "$src" && git push -q "$remote" main 2>/dev/null >/dev/null)
    wait_body "http://127.0.0.1:$ROUTER/marker" "$app.localhost" "$r"
    t1=$(now); kiln+=("$(ms "$t0" "$t1")")

    # By hand, in a fresh copy of the same commit; the caches were warmed by round 0's copy.
    copy=$WORK/hand/$lang.$r cache=$WORK/hand/cache-$lang
    mkdir -p "$cache"
    if [ "$r" = 1 ]; then
      rm -rf "$WORK/hand/$lang.0"; git clone -q "$src" "$WORK/hand/$lang.0"
      by_hand_build "$lang" "$WORK/hand/$lang.0" "$cache" >/dev/null 2>&1
    fi
    git clone -q "$src" "$copy"
    p=$(port)
    t0=$(now)
    by_hand_build "$lang" "$copy" "$cache" >/dev/null
    (by_hand_start "$lang" "$copy" "$p" >/dev/null 2>&1) &
    starter=$!
    wait_body "http://127.0.0.1:$p/marker" "" "$r"
    t1=$(now); hand+=("$(ms "$t0" "$t1")")
    pkill -TERM -P "$starter" 2>/dev/null || true; kill "$starter" 2>/dev/null || true; wait "$starter" 2>/dev/null || true
    # heroku-php-nginx and nginx leave their own process groups; make sure none survives.
    pkill -f "$copy" 2>/dev/null || true
  done
  k=$(median "${kiln[@]}") h=$(median "${hand[@]}")
  printf '%-8s %10s %10s %10s %8s   (kiln: %s; by hand: %s)\n' "$lang" "$k" "$h" "$((k - h))" "$(python3 -c "print(round($k / $h, 2))")" "${kiln[*]}" "${hand[*]}"
done
