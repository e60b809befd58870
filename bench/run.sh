#!/usr/bin/env bash
# The side-by-side benchmark (issue 5): builds exactly (release), its
# latency probe and the peers, runs bench/harness.py with the Quix venv's
# Python (it has confluent-kafka), then bench/report.py.
#
#   bench/run.sh            full mode: 1,000,000 records, 100 B and 1 KB, 3 runs each
#                           -> bench/RESULTS.md and bench/results.png
#   bench/run.sh --quick    a small input and one run, to keep the harness working
#                           -> bench/out/RESULTS-quick.md (figures meaningless)
# Other arguments go to bench/harness.py (see its --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet
# The latency runs' generator and read_committed probe (bench/latency/main.rs).
cargo build --release --quiet --example latency-probe
scripts/kafka.sh fetch >/dev/null
jar=$(bench/peers/kafka-streams/build.sh)
python=$(bench/peers/quix/setup.sh)
if ! "$python" -c 'import matplotlib' 2>/dev/null; then
  "$python" -m pip install -q --disable-pip-version-check -r bench/requirements.txt >&2
fi
"$python" bench/harness.py --kstreams-jar "$jar" --quix-python "$python" "$@"
if [[ " $* " == *" --quick "* ]]; then
  "$python" bench/report.py bench/out/results.json --md bench/out/RESULTS-quick.md --png bench/out/results-quick.png
else
  "$python" bench/report.py bench/out/results.json
fi
