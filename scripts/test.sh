#!/usr/bin/env bash
# The whole test suite, on a fresh machine: unit tests, and integration tests
# against real Apache Kafka brokers that this script starts (once, shared by
# every test binary) and stops: a plain one, and a secured one (SASL_SSL,
# mTLS, ACLs; scripts/kafka.sh start --secure) for tests/security.rs.
# tests/cluster.rs starts a three-broker cluster of its own
# (scripts/cluster.sh) for its reduced fault run: a transaction
# coordinator killed, a rolling restart; tests/chaos.rs a broker of its own.
#
#   scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# cmake builds librdkafka; openssl makes the secured broker's certificates;
# tests/prometheus_live.rs runs a real Prometheus (Debian: apt-get install
# prometheus; .ci/run installs it).
for tool in cargo java mvn python3 cmake openssl prometheus; do
  command -v "$tool" >/dev/null || { echo "test.sh: $tool is required" >&2; exit 1; }
done

scripts/kafka.sh fetch >/dev/null
# Build first so that a compile error is not mixed with broker start-up.
cargo test --no-run --all-targets --features test-faults

broker_dir=$(mktemp -d "${TMPDIR:-/tmp}/exactly-test-broker.XXXXXX")
secure_dir=$(mktemp -d "${TMPDIR:-/tmp}/exactly-test-secure.XXXXXX")
cleanup() {
  scripts/kafka.sh stop "$broker_dir" || true
  scripts/kafka.sh stop "$secure_dir" || true
  rm -rf "$broker_dir" "$secure_dir"
}
trap cleanup EXIT
EXACTLY_TEST_BOOTSTRAP=$(scripts/kafka.sh start "$broker_dir" --owner-pid $$)
export EXACTLY_TEST_BOOTSTRAP
scripts/kafka.sh start "$secure_dir" --secure --owner-pid $$ >/dev/null
export EXACTLY_TEST_SECURE_DIR=$secure_dir

cargo test --all-targets --features test-faults "$@"
