#!/usr/bin/env bash
# The side-by-side benchmark (issue 5): builds exactly (release) and the
# peers, then runs bench/harness.py with the Quix venv's Python (it has
# confluent-kafka).
#
#   bench/run.sh            full mode: 1,000,000 records, 100 B and 1 KB, 3 runs each
#   bench/run.sh --quick    a small input and one run, to keep the harness working
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet
scripts/kafka.sh fetch >/dev/null
jar=$(bench/peers/kafka-streams/build.sh)
python=$(bench/peers/quix/setup.sh)
exec "$python" bench/harness.py --kstreams-jar "$jar" --quix-python "$python" "$@"
