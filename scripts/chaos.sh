#!/usr/bin/env bash
# The full chaos run (issue: 1,000,000 records, 20 kills, 2 broker bounces,
# 3 zombies, 2 scale-out/in), release build, its own broker. Prints the
# figures for exactly_once and for at_least_once under the same schedule,
# and keeps the whole output in bench/out/chaos-<date>.log.
#
#   scripts/chaos.sh            the full schedule
#   EXACTLY_CHAOS_RECORDS=200000 scripts/chaos.sh   any part of it can be changed
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export EXACTLY_CHAOS_RECORDS=${EXACTLY_CHAOS_RECORDS:-1000000}
export EXACTLY_CHAOS_RATE=${EXACTLY_CHAOS_RATE:-4000}
export EXACTLY_CHAOS_KILLS=${EXACTLY_CHAOS_KILLS:-20}
export EXACTLY_CHAOS_BOUNCES=${EXACTLY_CHAOS_BOUNCES:-2}
export EXACTLY_CHAOS_ZOMBIES=${EXACTLY_CHAOS_ZOMBIES:-3}
export EXACTLY_CHAOS_SCALES=${EXACTLY_CHAOS_SCALES:-2}
export EXACTLY_CHAOS_SEED=${EXACTLY_CHAOS_SEED:-7}
unset EXACTLY_TEST_BOOTSTRAP

scripts/kafka.sh fetch >/dev/null
mkdir -p bench/out
log=bench/out/chaos-$(date -u +%Y%m%dT%H%M%SZ).log
echo "chaos: full run, log in $log"
cargo test --release --test chaos -- --nocapture 2>&1 | tee "$log" \
  | grep --line-buffered -E '^\[|===|inputs audited|missing:|faults:|kill -9|scale-out|stall|exited|test result|panicked'
