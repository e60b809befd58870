#!/usr/bin/env bash
# The main job, on a fresh machine: build exactly, start a local Apache Kafka
# broker, create topics, and show the promise - every order exactly once, even
# when the daemon is killed mid-stream:
#
#   1. run the daemon while sample orders stream into `orders`;
#   2. kill -9 it mid-stream, with a transaction open, and show what it had committed;
#   3. restart it with the same transactional id and time how long it takes to commit again
#      and to catch up;
#   4. show its output (as a read_committed consumer sees it) and its metrics;
#   5. audit both topics with `exactly verify`; the demo fails unless every order is
#      in the output exactly once.
#
#   scripts/demo.sh          keep the daemon running until Ctrl-C
#   scripts/demo.sh --once   stop everything after the audit
#
# DEMO_RECORDS (default 10000) orders are written in two parts: the first 30% at once, the
# rest as a stream over DEMO_WRITE_SECS (default 12) seconds. The kill lands once 40% are
# committed, at a moment the daemon holds orders read but not committed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

once=false
[ "${1:-}" = "--once" ] && once=true
records=${DEMO_RECORDS:-10000}
write_secs=${DEMO_WRITE_SECS:-12}
burst=$((records * 3 / 10))
kill_at=$((records * 4 / 10))
in_flight=$((records / 1000 > 0 ? records / 1000 : 1))
limit=$((write_secs + 60))           # deadline of each wait, in seconds
group=orders-enricher                # kafka.group_id of config/exactly.toml
txn_id=orders-enricher-demo-0        # the restarted daemon must reuse it
dir=$(mktemp -d "${TMPDIR:-/tmp}/exactly-demo.XXXXXX")
log=$dir/exactly.log

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# Phase timing: `lap NAME` records the time since the previous lap.
timings=()
lap_start=$EPOCHREALTIME
secs_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# wait_exit PID SECONDS: waits for a background process to end, with a deadline, and
# returns its exit status.
wait_exit() {
  local deadline=$((SECONDS + $2))
  while kill -0 "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { kill_tree "$1"; return 124; }
    sleep 0.1
  done
  wait "$1"
}
lap() {
  timings+=("$(printf '%-42s %6s s' "$1" "$(secs_since "$lap_start")")")
  lap_start=$EPOCHREALTIME
}

say "building exactly (release)"
cargo build --release --locked --quiet
lap "build"

say "starting a local Apache Kafka broker"
daemon_pid=""
writer_pid=""
reader_pid=""
kill_tree() { # PID: the process and its descendants (the writer is a pipeline of several)
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
  kill -TERM "$1" 2>/dev/null || true
}
cleanup() {
  [ -n "$writer_pid" ] && kill_tree "$writer_pid"
  [ -n "$reader_pid" ] && kill_tree "$reader_pid"
  if [ -n "$daemon_pid" ]; then
    # Ctrl-C reached the daemon too, and a second signal would make it exit at once:
    # let it finish its transaction first.
    if $interrupted; then wait_exit "$daemon_pid" 15 2>/dev/null || true; fi
    if kill -TERM "$daemon_pid" 2>/dev/null; then wait "$daemon_pid" 2>/dev/null || true; fi
  fi
  scripts/kafka.sh stop "$dir/kafka" || true
}
interrupted=false
trap cleanup EXIT
trap 'interrupted=true; exit 130' INT
bootstrap=$(scripts/kafka.sh start "$dir/kafka" --owner-pid $$)
lap "broker start"
demo_start=$EPOCHREALTIME

say "creating topics orders and orders-enriched (6 partitions each)"
for topic in orders orders-enriched; do
  scripts/kafka.sh topic "$dir/kafka" "$topic" 6 2>"$dir/topic-$topic.log" &
  echo $! >"$dir/topic-$topic.pid"
done
for topic in orders orders-enriched; do
  wait_exit "$(cat "$dir/topic-$topic.pid")" 60 || die "could not create topic $topic: $(tail -5 "$dir/topic-$topic.log")"
done
lap "create topics"

# The daemon, the audit and this script agree on brokers, group and transactional id.
export EXACTLY__KAFKA__BOOTSTRAP_SERVERS=$bootstrap
export EXACTLY__KAFKA__GROUP_ID=$group
export EXACTLY__KAFKA__TRANSACTIONAL_ID=$txn_id
port=""
start_daemon() { # the daemon in the background, its metrics on a fresh port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  EXACTLY__HTTP__LISTEN=127.0.0.1:$port \
    target/release/exactly run --config config/exactly.toml 2>>"$log" &
  daemon_pid=$!
}
metrics() { { curl -fsS --max-time 2 "http://127.0.0.1:$port/metrics" 2>/dev/null || true; }; }
metric() { # SERIES [METRICS_TEXT] -> its value on the running daemon (0 before it reports one)
  local text=${2-$(metrics)}
  awk -v m="$1" '$1 == m { v = $2 } END { print v + 0 }' <<<"$text"
}
produced() { metric exactly_records_produced_total; }
# wait_for WHAT SECONDS COMMAND...: polls COMMAND until it succeeds; fails the demo
# if the daemon exits or the deadline passes first.
wait_for() {
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@"; do
    kill -0 "$daemon_pid" 2>/dev/null || { tail -20 "$log"; die "exactly exited while waiting for $what"; }
    [ $SECONDS -lt $deadline ] || { tail -20 "$log" "$dir/writer.log"; die "timed out waiting for $what"; }
    sleep 0.1
  done
}

say "writing $records sample orders to 'orders': $burst at once, the rest over ~${write_secs}s"
write_orders() {
  python3 - "$records" "$burst" "$write_secs" <<'PY' |
import json, random, sys, time
random.seed(7)
n, burst, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
chunk = 50
for i in range(n):
    customer = f"c{random.randrange(100)}"
    order = {"id": i, "customer": {"id": customer}, "price": round(random.uniform(1, 200), 2),
             "qty": random.randrange(1, 5)}
    print(f"{customer}\t{json.dumps(order)}")
    if i >= burst and i % chunk == 0:
        sys.stdout.flush()
        time.sleep(secs * chunk / (n - burst))  # the pace of the stream, not a wait for anything
PY
    scripts/kafka.sh tool "$dir/kafka" org.apache.kafka.tools.ConsoleProducer \
      --bootstrap-server "$bootstrap" --topic orders \
      --property parse.key=true --property 'key.separator=	'
}
write_orders >"$dir/writer.log" 2>&1 &
writer_pid=$!
# A read_committed consumer of the output, in the background: its first 5 records are shown later.
scripts/kafka.sh tool "$dir/kafka" org.apache.kafka.tools.consumer.ConsoleConsumer \
  --bootstrap-server "$bootstrap" --topic orders-enriched --from-beginning \
  --isolation-level read_committed --max-messages 5 --timeout-ms 60000 \
  --property print.key=true >"$dir/first5.txt" 2>"$dir/reader.log" &
reader_pid=$!

say "running exactly (config/exactly.toml, transactional id $txn_id)"
start_daemon
assigned() { [ "$(metric exactly_assigned_partitions)" = 6 ]; }
wait_for "the daemon to be assigned the 6 partitions of 'orders'" 60 assigned
note "metrics on http://127.0.0.1:$port/metrics, log in $log"
lap "daemon start (until assigned)"

# The kill lands right after a scrape that shows orders read but not committed (a few:
# records/1000, at least 1): a transaction with records in it is open.
snapshot=""
kill_point() {
  snapshot=$(metrics)
  local read committed
  read=$(metric exactly_records_consumed_total "$snapshot")
  committed=$(metric exactly_records_produced_total "$snapshot")
  [ "$committed" -ge "$kill_at" ] && [ $((read - committed)) -ge "$in_flight" ]
}
wait_for "the daemon to commit $kill_at orders" "$limit" kill_point
{ kill -9 "$daemon_pid"; wait "$daemon_pid" || true; } 2>/dev/null
daemon_pid=""
killed_at=$EPOCHREALTIME
lap "stream until the kill"
read_before=$(metric exactly_records_consumed_total "$snapshot")
committed_before=$(metric exactly_records_produced_total "$snapshot")

say "kill -9 exactly, mid-stream"
note "Its last metrics: $read_before orders read, $committed_before committed. Then kill -9: no chance to commit or abort."
kill -0 "$writer_pid" 2>/dev/null && note "Orders keep arriving while the daemon is down."
# Committed offsets as the broker holds them (an open transaction's offsets are not among them).
offsets=$(scripts/kafka.sh tool "$dir/kafka" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
  --bootstrap-server "$bootstrap" --describe --group "$group" 2>"$dir/describe.log") \
  || die "could not read the group's committed offsets: $(tail -5 "$dir/describe.log")"
read -r committed_at_kill written_so_far < <(
  awk '$2 == "orders" { c += ($4 == "-" ? 0 : $4); e += $5 } END { print c + 0, e + 0 }' <<<"$offsets")
[ "$written_so_far" -gt 0 ] || die "no committed offsets for group $group in: $offsets"
backlog=$((written_so_far - committed_at_kill))
note "The group's committed offsets on 'orders': $committed_at_kill of the $written_so_far orders written so far."
unfinished=$((read_before - committed_at_kill))
if [ "$unfinished" -gt 0 ]; then
  note "The $unfinished or more orders it had read beyond those were in its open transaction:"
else
  note "Whatever it had read beyond those was in its open transaction:"
fi
note "read_committed consumers never see the outputs it wrote for them."
lap "read the committed offsets"

say "restarting exactly with the same transactional id ($txn_id)"
note "It fences the killed producer, aborts its open transaction, and resumes from the committed offsets."
restarted_at=$EPOCHREALTIME
start_daemon
first=0
first_commit() { first=$(produced); [ "$first" -ge 1 ]; }
wait_for "the restarted daemon's first commit" 60 first_commit
note "First commit $(secs_since "$restarted_at") s after the restart ($(secs_since "$killed_at") s after the kill): $first orders."
lap "recovery (restart until first commit)"
backlog_committed() { [ "$(produced)" -ge "$backlog" ]; }
wait_for "the restarted daemon to commit the $backlog orders that piled up" "$limit" backlog_committed
note "Caught up $(secs_since "$restarted_at") s after the restart: the $backlog orders waiting when it restarted are committed."
lap "catch-up (until the backlog is committed)"
all_committed() { [ $((committed_at_kill + $(produced))) -ge "$records" ]; }
wait_for "the restarted daemon to commit the rest of the $records orders" "$limit" all_committed
after=$(produced)
note "All $records committed $(secs_since "$restarted_at") s after the restart: $committed_at_kill before the kill + $after after."
wait_exit "$writer_pid" 30 || die "writing the orders failed: $(tail -5 "$dir/writer.log")"
writer_pid=""
lap "rest of the stream (until all committed)"

say "first 5 records of orders-enriched, read with isolation.level=read_committed"
wait_exit "$reader_pid" 60 || die "reading orders-enriched failed: $(tail -5 "$dir/reader.log")"
reader_pid=""
cat "$dir/first5.txt"

say "metrics of the restarted daemon"
metrics | grep -E '^exactly_(records|transactions_total|assigned|rebalances|consumer_lag)' | awk 'NR <= 20'
echo "readyz: $(curl -s "http://127.0.0.1:$port/readyz")"
lap "show output and metrics"

say "exactly verify: is every order in 'orders' in 'orders-enriched' exactly once?"
verify_rc=0
target/release/exactly verify --config config/exactly.toml --until end >"$dir/verify.txt" 2>&1 || verify_rc=$?
cat "$dir/verify.txt"
lap "verify"
if [ "$verify_rc" != 0 ] || ! grep -q "^total: $records inputs" "$dir/verify.txt" \
    || ! grep -q '^exactly once:' "$dir/verify.txt"; then
  die "exactly verify did not find all $records orders exactly once (exit $verify_rc)"
fi

say "phase times"
printf '   %s\n' "${timings[@]}"
printf '   %-42s %6s s\n' "total after build and broker start" "$(secs_since "$demo_start")"

if $once; then
  say "stopping (--once)"
  exit 0
fi
say "exactly is running (log: $log). Write more records to 'orders' at $bootstrap; Ctrl-C stops everything."
wait "$daemon_pid"
