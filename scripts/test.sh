#!/usr/bin/env bash
# The whole test suite, on a fresh machine: unit tests, and integration tests
# against a real Apache Kafka broker that this script starts (once, shared by
# every test binary) and stops.
#
#   scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in cargo java mvn python3; do
  command -v "$tool" >/dev/null || { echo "test.sh: $tool is required" >&2; exit 1; }
done

scripts/kafka.sh fetch >/dev/null
# Build first so that a compile error is not mixed with broker start-up.
cargo test --no-run --all-targets

broker_dir=$(mktemp -d "${TMPDIR:-/tmp}/exactly-test-broker.XXXXXX")
cleanup() { scripts/kafka.sh stop "$broker_dir" || true; rm -rf "$broker_dir"; }
trap cleanup EXIT
EXACTLY_TEST_BOOTSTRAP=$(scripts/kafka.sh start "$broker_dir" --owner-pid $$)
export EXACTLY_TEST_BOOTSTRAP

cargo test --all-targets "$@"
