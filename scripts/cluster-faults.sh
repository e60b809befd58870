#!/usr/bin/env bash
# The full three-broker fault run (issue 15): every fault of tests/cluster.rs
# in a release build, on a cluster of its own in network namespaces (so that
# one node can be cut off while it keeps running; needs root and `ip netns`),
# 1,000 input records/s, each killed node down for 20 s. Prints each fault's
# figures and keeps the whole output in bench/out/cluster-<date>.log.
#
#   scripts/cluster-faults.sh
#   EXACTLY_CLUSTER_FAULTS=two-down,isolate scripts/cluster-faults.sh   a part of it
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export EXACTLY_CLUSTER_FAULTS=${EXACTLY_CLUSTER_FAULTS:-all}
export EXACTLY_CLUSTER_RATE=${EXACTLY_CLUSTER_RATE:-1000}
export EXACTLY_CLUSTER_DOWN_SECS=${EXACTLY_CLUSTER_DOWN_SECS:-20}
unset EXACTLY_TEST_BOOTSTRAP

scripts/kafka.sh fetch >/dev/null
mkdir -p bench/out
log=bench/out/cluster-$(date -u +%Y%m%dT%H%M%SZ).log
echo "cluster faults: $EXACTLY_CLUSTER_FAULTS at $EXACTLY_CLUSTER_RATE records/s, log in $log"
cargo test --release --features test-faults --test cluster -- --nocapture 2>&1 | tee "$log" \
  | grep --line-buffered -E '^===|^\[|^inputs|^missing|^replicas|^longest|^output rate|^end-to-end|^during|^outputs that|^took|^  |cluster.sh|test result|panicked'
