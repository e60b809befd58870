#!/usr/bin/env bash
# The main job, on a fresh machine: build exactly, start a local Apache Kafka
# broker, create topics, write sample orders, run the daemon, and show its
# output (as a read_committed consumer sees it) and its metrics.
#
#   scripts/demo.sh          keep the daemon running until Ctrl-C
#   scripts/demo.sh --once   stop everything after showing output and metrics
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

once=false
[ "${1:-}" = "--once" ] && once=true
records=${DEMO_RECORDS:-10000}
dir=$(mktemp -d "${TMPDIR:-/tmp}/exactly-demo.XXXXXX")
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building exactly (release)"
cargo build --release --quiet

say "starting a local Apache Kafka broker"
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  scripts/kafka.sh stop "$dir/kafka" || true
}
trap cleanup EXIT
bootstrap=$(scripts/kafka.sh start "$dir/kafka" --owner-pid $$)

say "creating topics orders and orders-enriched (6 partitions each)"
scripts/kafka.sh topic "$dir/kafka" orders 6
scripts/kafka.sh topic "$dir/kafka" orders-enriched 6

say "writing $records sample orders"
python3 - "$records" >"$dir/orders.txt" <<'PY'
import json, random, sys
random.seed(7)
for i in range(int(sys.argv[1])):
    customer = f"c{random.randrange(100)}"
    order = {"id": i, "customer": {"id": customer}, "price": round(random.uniform(1, 200), 2),
             "qty": random.randrange(1, 5)}
    print(f"{customer}\t{json.dumps(order)}")
PY
scripts/kafka.sh tool "$dir/kafka" org.apache.kafka.tools.ConsoleProducer \
  --bootstrap-server "$bootstrap" --topic orders \
  --property parse.key=true --property 'key.separator=	' <"$dir/orders.txt"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
say "running exactly (config/exactly.toml, metrics on http://127.0.0.1:$port/metrics)"
EXACTLY__KAFKA__BOOTSTRAP_SERVERS=$bootstrap \
EXACTLY__KAFKA__TRANSACTIONAL_ID=orders-enricher-demo-0 \
EXACTLY__HTTP__LISTEN=127.0.0.1:$port \
  target/release/exactly run --config config/exactly.toml 2>"$dir/exactly.log" &
daemon_pid=$!

metric() { curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null | awk -v m="$1" '$1==m {print $2}'; }
deadline=$((SECONDS + 120))
until [ "$(metric exactly_records_produced_total | cut -d. -f1)" = "$records" ] 2>/dev/null; do
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$dir/exactly.log"; echo "demo: exactly exited" >&2; exit 1; }
  [ $SECONDS -lt $deadline ] || { tail -20 "$dir/exactly.log"; echo "demo: timed out" >&2; exit 1; }
  sleep 0.2
done

say "first 5 records of orders-enriched, read with isolation.level=read_committed"
scripts/kafka.sh tool "$dir/kafka" org.apache.kafka.tools.consumer.ConsoleConsumer \
  --bootstrap-server "$bootstrap" --topic orders-enriched --from-beginning \
  --isolation-level read_committed --max-messages 5 --property print.key=true 2>/dev/null

say "metrics"
curl -fsS "http://127.0.0.1:$port/metrics" | grep -E '^exactly_(records|transactions_total|assigned|rebalances|consumer_lag)' | awk 'NR <= 20'
echo "readyz: $(curl -s "http://127.0.0.1:$port/readyz")"

if $once; then
  say "stopping (--once)"
  exit 0
fi
say "exactly is running (log: $dir/exactly.log). Write more records to 'orders' at $bootstrap; Ctrl-C stops everything."
wait "$daemon_pid"
