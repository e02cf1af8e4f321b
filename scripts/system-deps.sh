#!/usr/bin/env bash
# Installs the real services the test suite starts by itself, when they are missing:
# PostgreSQL server binaries (initdb, pg_ctl), Chromium (/usr/bin/chromium, driven by
# Playwright to look at the HTML quality reports) and a Java runtime for Spark (pyspark
# starts Spark in local mode in the tests' process). Debian packages, installed as root.
set -euo pipefail

have_postgres() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

have_chromium() {
  [ -x /usr/bin/chromium ]
}

have_java() {
  command -v java >/dev/null 2>&1
}

missing=()
have_postgres || missing+=(postgresql)
have_chromium || missing+=(chromium)
have_java || missing+=(openjdk-17-jre-headless)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi

echo "installing ${missing[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
