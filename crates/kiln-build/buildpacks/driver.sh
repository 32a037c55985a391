#!/usr/bin/env bash
# Kiln's build driver: runs inside the build dyno and drives classic buildpacks
# (bin/detect, bin/compile BUILD_DIR CACHE_DIR ENV_DIR, bin/release) exactly as Heroku's slug
# compiler does. Results for the server go to $OUT_DIR: the names of the buildpacks used and
# each bin/release output.
set -uo pipefail

bps=()
for d in "$BUILDPACKS_DIR"/[0-9]*; do [ -d "$d" ] && bps+=("$d"); done

if [ "${KILN_DETECT:-0}" = 1 ]; then
  echo "-----> Determining which buildpack to use for this app"
  chosen=""
  for bp in "${bps[@]}"; do
    if [ -x "$bp/bin/detect" ] && "$bp/bin/detect" "$BUILD_DIR" > "$OUT_DIR/detect-name" 2>/dev/null; then
      chosen=$bp
      break
    fi
  done
  if [ -z "$chosen" ]; then
    echo " !     No default language could be detected for this app."
    echo "       HINT: Kiln detects Ruby (Gemfile), Node.js (package.json), Python (requirements.txt,"
    echo "       pyproject.toml, setup.py, Pipfile), Java (pom.xml), PHP (composer.json, index.php),"
    echo "       Go (go.mod), static sites (static.json, or a public/ directory) and Procfile-only apps."
    echo "       Add one of those files, or choose a buildpack with \`kiln buildpacks:set URL\` or the"
    echo "       BUILDPACK_URL config var (\`kiln buildpacks:search\` lists the built-in ones)."
    exit 1
  fi
  bps=("$chosen")
fi

i=0
for bp in "${bps[@]}"; do
  i=$((i + 1))
  if [ ! -x "$bp/bin/compile" ]; then
    echo " !     Buildpack $(cat "$bp/.kiln-url" 2>/dev/null || basename "$bp") has no executable bin/compile"
    exit 1
  fi
  name=""
  if [ -x "$bp/bin/detect" ]; then
    name=$("$bp/bin/detect" "$BUILD_DIR" 2>/dev/null | head -n 1) || true
  fi
  if [ -z "$name" ]; then
    if [ "${#bps[@]}" -gt 1 ] || [ "${KILN_DETECT:-0}" != 1 ]; then
      name=$(cat "$bp/.kiln-url" 2>/dev/null || basename "$bp")
    fi
  fi
  echo "-----> ${name} app detected"
  echo "$name" >> "$OUT_DIR/detected"
  # Buildpacks export environment for the ones after them (multi-buildpack convention).
  for prev in "${bps[@]:0:$((i - 1))}"; do
    if [ -f "$prev/export" ]; then . "$prev/export"; fi
  done
  if ! "$bp/bin/compile" "$BUILD_DIR" "$CACHE_DIR" "$ENV_DIR"; then
    echo " !     Push rejected, failed to compile ${name} app."
    exit 1
  fi
  if [ -x "$bp/bin/release" ]; then
    if ! "$bp/bin/release" "$BUILD_DIR" > "$OUT_DIR/release-$i.yml"; then
      echo " !     bin/release of ${name} failed."
      exit 1
    fi
  fi
done
