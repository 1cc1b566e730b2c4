#!/usr/bin/env bash
# Runs every fuzz target for a given time and prints, per target, the executions, the
# coverage reached and whether it crashed, then the total; exits 1 if any target crashed
# (its input is in fuzz/artifacts/<target>/).
#
# Usage: fuzz/run-all.sh [SECONDS_PER_TARGET] [PARALLEL]      (defaults: 60, nproc)
#   FUZZ_SANITIZER=address  to run under AddressSanitizer (default: none; pgsub is safe
#                           Rust, and what the targets look for are panics, overflows
#                           and broken properties, which debug assertions catch either
#                           way at several times the speed)
#   FUZZ_TARGETS="a b"      to run only these
#   FUZZ_LOG_DIR=DIR        where the logs go (default: fuzz/logs/<date>)
# Needs cargo-fuzz and a nightly toolchain (see fuzz/README.md). Seeds the corpora first
# when fuzz/corpus is missing.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-60}
parallel=${2:-$(nproc)}
sanitizer=${FUZZ_SANITIZER:-none}
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
logs=${FUZZ_LOG_DIR:-logs/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$logs"

[ -d corpus ] || ./seed.sh
for t in $targets; do
    cargo +nightly fuzz build --sanitizer "$sanitizer" "$t" >>"$logs/build.log" 2>&1 ||
        { cat "$logs/build.log"; exit 2; }
done

run_one() {
    local t=$1
    mkdir -p "corpus/$t"
    cargo +nightly fuzz run --sanitizer "$sanitizer" "$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=4096 \
        >"$logs/$t.log" 2>&1 && echo ok >"$logs/$t.status" || echo crash >"$logs/$t.status"
}
export -f run_one
export secs sanitizer logs
printf '%s\n' $targets | xargs -P "$parallel" -I{} bash -c 'run_one {}'

total=0
failed=0
printf '%-18s %14s %8s %9s  %s\n' target executions exec/s coverage result
for t in $targets; do
    n=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$logs/$t.log" | awk '{s+=$2} END {print s+0}')
    cov=$(grep -oE 'cov: [0-9]+' "$logs/$t.log" | tail -1 | awk '{print $2}')
    status=$(cat "$logs/$t.status")
    [ "$status" = ok ] || failed=1
    printf '%-18s %14s %8s %9s  %s\n' "$t" "$n" $((n / secs)) "${cov:-?}" "$status"
    total=$((total + n))
done
printf '%-18s %14s\n' total "$total"
echo "logs: fuzz/$logs"
exit $failed
