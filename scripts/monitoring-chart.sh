#!/usr/bin/env bash
# Draws docs/img/recovery.png: what a healthy group and a recovering one look
# like through the metrics, scraped by a real Prometheus during one scripted
# run on a local broker (issue 13, item 5). Not a test: it measures and draws.
#
#   scripts/monitoring-chart.sh [--debug]    (release build unless --debug)
#
# The run: replicas a and b share 6 input partitions under a steady, paced load
# (the benchmark's latency probe, which also measures end-to-end latency); at
# 30 s replica b is killed with SIGKILL, at 60 s it is started again with the
# same transactional id, at 90 s a third replica c joins; the load ends at
# 120 s. Prometheus scrapes every replica each second. Afterwards
# scripts/monitoring_chart.py reads the series back through Prometheus' HTTP
# API, draws the chart, prints the figures, and `exactly verify` audits the
# whole run (the chart is written only if every input is in the output once).
#
# Needs: cargo, java + mvn (scripts/kafka.sh), python3 with venv, and Debian's
# prometheus (apt-get install prometheus). Environment: CHART_RATE (records/s,
# default 2000), CHART_OUT (default docs/img/recovery.png).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile=release; dir=release
[ "${1:-}" = "--debug" ] && { profile=dev; dir=debug; }
rate=${CHART_RATE:-2000}
out=${CHART_OUT:-docs/img/recovery.png}
partitions=6
for tool in cargo java mvn python3 prometheus; do
  command -v "$tool" >/dev/null || { echo "monitoring-chart: $tool is required" >&2; exit 1; }
done

cargo build --profile "$profile" --quiet
cargo build --profile "$profile" --quiet --example latency-probe
target=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target/$dir/exactly
probe=$target/$dir/examples/latency-probe

venv=$target/chart-venv
if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r bench/requirements.txt
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/exactly-chart.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  scripts/kafka.sh stop "$work/broker" >/dev/null 2>&1 || true
}
trap cleanup EXIT
say() { printf '[chart %3d s] %s\n' "$((SECONDS - t0))" "$*"; }
t0=$SECONDS

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

scripts/kafka.sh fetch >/dev/null
mkdir -p "$work/broker"
bootstrap=$(scripts/kafka.sh start "$work/broker" --owner-pid $$)
scripts/kafka.sh topic "$work/broker" chart-in "$partitions" 2>/dev/null
scripts/kafka.sh topic "$work/broker" chart-out "$partitions" 2>/dev/null
say "broker at $bootstrap, topics chart-in and chart-out ($partitions partitions each)"

declare -A port
for r in a b c; do port[$r]=$(free_port); done
prom_port=$(free_port)
cat >"$work/exactly.toml" <<EOF
[kafka]
bootstrap_servers = "$bootstrap"
group_id = "chart"
[kafka.consumer]
"session.timeout.ms" = "6000"
[input]
topics = ["chart-in"]
[output]
topic = "chart-out"
[processing]
commit_interval_ms = 100
[[transform]]
type = "map"
name = "enrich"
expr = '.total = .price * .qty'
EOF
"$bin" check --config "$work/exactly.toml" >/dev/null

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: exactly
    static_configs:
$(for r in a b c; do printf '      - targets: ["127.0.0.1:%s"]\n        labels: {replica: "%s"}\n' "${port[$r]}" "$r"; done)
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)

declare -A pid
start_replica() { # NAME
  EXACTLY__HTTP__LISTEN="127.0.0.1:${port[$1]}" EXACTLY__KAFKA__TRANSACTIONAL_ID="chart-$1" \
    "$bin" run --config "$work/exactly.toml" >>"$work/replica-$1.log" 2>&1 &
  pid[$1]=$!
  pids+=($!)
}
wait_ready() { # NAME
  local deadline=$((SECONDS + 60))
  until curl -sf "http://127.0.0.1:${port[$1]}/readyz" >/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "replica $1 not ready in 60 s; log: $work/replica-$1.log" >&2; exit 1; }
    sleep 0.2
  done
}
until curl -sf "http://127.0.0.1:$prom_port/-/ready" >/dev/null; do sleep 0.2; done
start_replica a; start_replica b
wait_ready a; wait_ready b
say "replicas a and b ready; load: $rate records/s for 120 s"

load_start=$(date +%s.%N)
"$probe" --bootstrap "$bootstrap" --input chart-in --output chart-out --partitions "$partitions" \
  --rate "$rate" --seconds 120 --warmup-seconds 0 --drain-seconds 60 >"$work/probe.json" 2>"$work/probe.log" &
probe_pid=$!
pids+=($probe_pid)
at() { # SECONDS: waits until that many seconds after the load started
  sleep "$(awk -v s="$load_start" -v t="$1" -v now="$(date +%s.%N)" 'BEGIN { d = s + t - now; print (d > 0 ? d : 0) }')"
}
events=()
at 30; kill -9 "${pid[b]}"; events+=("$(date +%s.%N) kill -9 b"); say "replica b killed (SIGKILL)"
at 60; start_replica b; events+=("$(date +%s.%N) b restarted"); say "replica b started again"
at 90; start_replica c; events+=("$(date +%s.%N) c joins"); say "replica c started"
wait "$probe_pid" || { echo "latency probe failed: $(cat "$work/probe.log")" >&2; exit 1; }
load_end=$(date +%s.%N)
say "load ended; probe: $(cat "$work/probe.json")"
sleep 3 # three more scrapes after the last commit, so the chart shows the group idle

printf '%s\n' "${events[@]}" >"$work/events.txt"
"$bin" verify --config "$work/exactly.toml" --until end >"$work/verify.txt" 2>&1 || {
  cat "$work/verify.txt" >&2; echo "monitoring-chart: the run was not exactly once; no chart" >&2; exit 1; }
grep -E '^(total|exactly once)' "$work/verify.txt" | sed 's/^/  verify: /'

mkdir -p "$(dirname "$out")"
"$venv/bin/python" scripts/monitoring_chart.py --prometheus "http://127.0.0.1:$prom_port" \
  --start "$load_start" --end "$load_end" --events "$work/events.txt" --probe "$work/probe.json" \
  --rate "$rate" --out "$out"
say "done; work files in $work"
