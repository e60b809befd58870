#!/usr/bin/env bash
# The side-by-side benchmark (issue 5): builds exactly (release), its
# latency probe and the peers, runs bench/harness.py with the Quix venv's
# Python (it has confluent-kafka), then bench/report.py.
#
#   bench/run.sh            full mode: 1,000,000 records, 100 B and 1 KB, 3 runs each
#                           -> bench/RESULTS.md and bench/results.png
#   bench/run.sh --quick    a small input and one run, debug build, to keep the harness
#                           working -> bench/out/RESULTS-quick.md (figures meaningless)
#   bench/run.sh --out DIR  results.json and the report go to DIR instead
#   bench/run.sh --sweep    the commit policy's latency sweep (bench/latency_sweep.py):
#                           -> bench/out/SWEEP.md and sweep.json (about 30 minutes)
# Other arguments go to bench/harness.py (see its --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Quick mode uses the tests' debug build: its figures mean nothing anyway, and
# CI then compiles the crates once, not twice. The full mode measures release.
profile=release; dir=release
if [[ " $* " == *" --quick "* ]]; then profile=dev; dir=debug; fi
cargo build --profile "$profile" --quiet
# The latency runs' generator and read_committed probe (bench/latency/main.rs).
cargo build --profile "$profile" --quiet --example latency-probe
export EXACTLY_BIN="${EXACTLY_BIN:-$PWD/target/$dir/exactly}"
export EXACTLY_LATENCY_PROBE="${EXACTLY_LATENCY_PROBE:-$PWD/target/$dir/examples/latency-probe}"
scripts/kafka.sh fetch >/dev/null
jar=$(bench/peers/kafka-streams/build.sh)
python=$(bench/peers/quix/setup.sh)
if ! "$python" -c 'import matplotlib' 2>/dev/null; then
  "$python" -m pip install -q --disable-pip-version-check -r bench/requirements.txt >&2
fi
# The harness writes results.json into --out DIR (bench/out by default); the
# report is read from there, and written there too when --out was given.
out=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --out) out=${args[i + 1]:-} ;;
    --out=*) out=${args[i]#--out=} ;;
  esac
done
if [[ " $* " == *" --sweep "* ]]; then
  # The commit policy's latency sweep (issue 14): its own tables, no chart.
  rest=()
  for a in "$@"; do [ "$a" = --sweep ] || rest+=("$a"); done
  exec "$python" bench/latency_sweep.py --kstreams-jar "$jar" --quix-python "$python" "${rest[@]}"
fi
"$python" bench/harness.py --kstreams-jar "$jar" --quix-python "$python" "$@"
results=${out:-bench/out}/results.json
if [[ " $* " == *" --quick "* ]]; then
  "$python" bench/report.py "$results" --md "${out:-bench/out}/RESULTS-quick.md" --png "${out:-bench/out}/results-quick.png"
elif [ -n "$out" ]; then
  "$python" bench/report.py "$results" --md "$out/RESULTS.md" --png "$out/results.png"
else
  "$python" bench/report.py "$results"
fi
