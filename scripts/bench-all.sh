#!/usr/bin/env bash
# Every benchmark, side by side, in one run: the cargo benches (each runs pgsub and its peer —
# the built-in subscription or pg_recvlogical — on the same data in the same run and prints its
# table of ratios), then `pgsub bench` from the user's side on one backlog (decode of a
# recording, decode live beside pg_recvlogical on the same slot position, apply into a scratch
# database, decode to JSON lines). The tables are gathered at the end into
# target/bench-all/summary.md, which is what docs/benchmarks.md quotes.
#
#   scripts/bench-all.sh                 # about 10 minutes on the 2-core CI machine
#   PGSUB_BENCH_ALL_CUTS=1 scripts/bench-all.sh   # also through_cuts (up to 6 minutes more)
#   PGSUB_BENCH_ALL_ROWS=1000000         # the backlog of the `pgsub bench` part (default)
#   PGSUB_BENCH_ALL_BENCHES="far_destination"   # only these cargo benches ("" for none)
#
# Needs the PostgreSQL server binaries (PGSUB_PGBIN, PATH or pg_config, as the tests) and
# pg_recvlogical beside them; pgcopydb for the clone row of sync_vs_native (installed here with
# apt-get when missing and running as root; without it the row says so). sync_vs_native also
# copies one large table (PGSUB_BENCH_LARGE_ROWS, in chunks of PGSUB_BENCH_CHUNK_MB).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pgcopydb >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "bench-all: pgcopydb not found; running: apt-get install -y pgcopydb" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgcopydb >/dev/null || echo "bench-all: pgcopydb could not be installed; its row is left out" >&2
fi

out=target/bench-all
mkdir -p "$out"
summary="$out/summary.md"
: > "$summary"
echo "# bench-all, $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?')" >> "$summary"

read -r -a benches <<< "${PGSUB_BENCH_ALL_BENCHES-decode live_stream sync_vs_native far_destination}"
if [ "${PGSUB_BENCH_ALL_CUTS:-0}" = 1 ]; then benches+=(through_cuts); fi

for b in "${benches[@]+"${benches[@]}"}"; do
  echo "== cargo bench --bench $b" >&2
  cargo bench --locked --bench "$b" 2>&1 | tee "$out/$b.log" >&2
  {
    echo; echo "## $b"
    if [ "$b" = decode ]; then
      # divan's tree of timings and throughputs, as it prints it
      echo '```'; sed -n '/^decode/,$p' "$out/$b.log" | grep -E '[│├╰]|^decode' | grep -v 'Running'; echo '```'
    else
      grep -E '^\|' "$out/$b.log" || echo "(no table: see $out/$b.log)"
    fi
  } >> "$summary"
done

# --- pgsub bench, on one throwaway server ------------------------------------------------
cargo build --locked --release --bin pgsub >&2
pgsub=target/release/pgsub
bin=${PGSUB_PGBIN:-$(dirname "$(command -v initdb 2>/dev/null || echo "$(pg_config --bindir)/initdb")")}
rows=${PGSUB_BENCH_ALL_ROWS:-1000000}
dir=$(mktemp -d /tmp/pgsub-bench-all.XXXXXX)
port=$((20000 + RANDOM % 20000))
as=()
if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir"; as=(runuser -u postgres --); fi
"${as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
cat >> "$dir/data/postgresql.conf" <<EOF
wal_level = logical
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_wal_size = 4GB
EOF
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
trap '"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$dir"' EXIT
psql=(psql -h 127.0.0.1 -p "$port" -U postgres -qAt -v ON_ERROR_STOP=1)
src="host=127.0.0.1 port=$port user=postgres dbname=src"
"${psql[@]}" -c "CREATE DATABASE src"
"${psql[@]}" -d src -c "CREATE TABLE bench (id bigint PRIMARY KEY, n int, payload text)" \
  -c "CREATE PUBLICATION p FOR TABLE bench" \
  -c "SELECT 1 FROM pg_create_logical_replication_slot('b', 'pgoutput')" \
  -c "SELECT 1 FROM pg_create_logical_replication_slot('r', 'pgoutput')"
for ((i = 0; i < rows; i += 100000)); do
  "${psql[@]}" -d src -c "INSERT INTO bench SELECT g, g, repeat('x', 80) FROM generate_series($i + 1, least($i + 100000, $rows)) g"
done
"${psql[@]}" -d src -c "UPDATE bench SET n = n + 1 WHERE id % 2 = 0" -c "DELETE FROM bench WHERE id % 4 = 1"
end=$("${psql[@]}" -d src -c "SELECT pg_current_wal_lsn()")
rec="$dir/backlog.pgrec"
"$pgsub" -q record --source "$src" --publication p --slot b --until caught-up --no-ack -o "$rec"

seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > /dev/null || { echo "failed: $*" >&2; return 1; }
  t1=$(date +%s.%N)
  printf '%.2f' "$(echo "$t1 - $t0" | bc)"
}
json() { "$pgsub" --format json "$@"; }
# A field of a JSON report, numbers rounded.
field() {
  python3 -c "import json,sys; v=json.loads(sys.stdin.read())$1; print(f'{v:.2f}' if isinstance(v, float) else v)"
}
recvlogical=$(command -v pg_recvlogical || echo "$bin/pg_recvlogical")

offline=$(json bench decode --input "$rec")
live=$(json bench decode --source "$src" --publication p --slot b)
recv=$(seconds "$recvlogical" -h 127.0.0.1 -p "$port" -U postgres -d src --slot r --start \
  --endpos "$end" --no-loop -o proto_version=1 -o publication_names=p -f /dev/null)
apply=$(json bench apply --input "$rec" --dest "host=127.0.0.1 port=$port user=postgres dbname=postgres")
jsonl=$(seconds "$pgsub" -q decode --input "$rec")
size=$(stat -c %s "$rec")
{
  echo
  echo "## pgsub bench ($rows inserts, $((rows / 2)) updates, $((rows / 4)) deletes; recording $((size / 1000000)) MB)"
  echo "| what | seconds | rate | vs peer |"
  echo "|---|---|---|---|"
  echo "| bench decode --input (decode alone) | $(field "['seconds']" <<< "$offline") | $(field "['megabytes_per_second']" <<< "$offline") MB/s | |"
  lsec=$(field "['process_seconds']" <<< "$live")
  echo "| bench decode live (process start to end) | $lsec | $(field "['megabytes_per_second']" <<< "$live") MB/s, CPU $(field "['cpu_seconds']" <<< "$live") s | pg_recvlogical $recv s: pgsub at $(echo "scale=2; $recv / $lsec" | bc)× its speed |"
  echo "| bench apply (scratch database) | $(field "['seconds']" <<< "$apply") | $(field "['applied']['rows_per_second']" <<< "$apply") rows/s | see sync_vs_native |"
  echo "| decode --input to JSON lines | $jsonl | $(echo "scale=1; $size / 1000000 / $jsonl" | bc) MB/s of recording | |"
} >> "$summary"

cat "$summary"
