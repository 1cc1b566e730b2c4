#!/usr/bin/env bash
# Builds the seed corpora in fuzz/corpus/<target>/ from the recordings in
# proto-fixtures/ and from hand-written samples (see examples/seed.rs).
# Usage: fuzz/seed.sh [--fixtures DIR] [--out DIR]   (from anywhere)
set -euo pipefail
cd "$(dirname "$0")"
exec cargo run --quiet --example seed -- "$@"
