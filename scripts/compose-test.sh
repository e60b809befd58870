#!/usr/bin/env bash
# End-to-end test of docker-compose.yml, run for real with podman-compose:
# the Kafka broker, the topics job and the processor scaled to 3 replicas,
# with every claim checked by `exactly verify` reading the output back
# read_committed.
#
#   scripts/compose-test.sh
#
#  1. set-up (scripts/containers.sh: podman, the base, Kafka and exactly images)
#  2. the stack comes up; 3 replicas ready, the 12 partitions of `orders`
#     spread over them
#  3. 100,000 records in; all of them out exactly once; the replicas'
#     /metrics add up to what the audit read
#  4. one replica killed hard (SIGKILL of its process) while input flows: the
#     restart policy brings it back, recovery time measured, still exactly once
#  5. scaled 3 -> 1 while input flows (graceful stops): exactly once
#  6. scaled 1 -> 2 while input flows: exactly once
#
# Everything it starts is torn down on exit, also on failure (after the logs
# of the project's containers are printed). Needs root (podman as root: the
# test reaches each replica's port 9464 at its address on the compose network),
# curl, python3, and target/release/exactly (`cargo build --release --locked`).
# Exit status: 0 when every check passed, 1 otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

test_started=$SECONDS
# Unique per run: other runs may share this machine's podman.
project=exactly_e2e_$$
image=localhost/exactly:e2e-$$
network=${project}_default
kafka=${project}_kafka_1
work=$(mktemp -d /tmp/compose-test.XXXXXX)
group=orders-enricher
partitions=12

# Records written in each phase.
initial_records=100000
crash_records=45000 crash_rate=3000 # 15 s of input around the kill
scale_records=20000 scale_rate=2000 # 10 s of input around each scale step

compose=(podman-compose -p "$project" -f docker-compose.yml -f deploy/compose/podman.yml)
export EXACTLY_IMAGE=$image PROCESSOR_REPLICAS=3

figures=()
failed=0

log() { printf '[compose-test %3d s] %s\n' "$((SECONDS - test_started))" "$*"; }
reason=""
fail() {
  printf '\ncompose-test: FAILED: %s\n' "$*" >&2
  failed=1 reason=$*
  exit 1
}
figure() { figures+=("$(printf '%-44s %s' "$1" "$2")"); }
now_ms() { date +%s%3N; }
seconds_since() { # START_MS -> seconds with one decimal
  local ms=$(($(now_ms) - $1))
  printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}

# ---------------------------------------------------------------------------
# Tear-down: on every exit. On failure, the logs of the project's containers
# come first.
print_logs() {
  local c status restarts
  printf '\n==== containers of %s\n' "$project" >&2
  podman ps -a --filter "label=io.podman.compose.project=$project" \
    --format '{{.Names}}  {{.Status}}' >&2 || true
  for c in $(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'); do
    status=$(podman inspect "$c" --format '{{.State.Status}} exit={{.State.ExitCode}}' 2>/dev/null || true)
    restarts=$(podman inspect "$c" --format '{{.RestartCount}}' 2>/dev/null || echo '?')
    printf '\n==== logs of %s (%s, restarts=%s), last 60 lines\n' "$c" "$status" "$restarts" >&2
    podman logs --tail 60 "$c" >&2 2>&1 || true
  done
  printf '\n==== podman-compose output (%s), last 30 lines\n' "$work/podman-compose.log" >&2
  tail -n 30 "$work/podman-compose.log" >&2 2>/dev/null || true
}

teardown() {
  local status=$?
  trap - EXIT INT TERM
  [ "$status" = 0 ] || failed=1
  # Producers still running in the background belong to this script.
  local job
  for job in $(jobs -p); do kill "$job" 2>/dev/null || true; done
  if [ "$failed" = 1 ]; then print_logs; fi
  log "tearing down $project"
  local down_started=$SECONDS
  "${compose[@]}" down -t 1 >>"$work/podman-compose.log" 2>&1 || true
  # podman-compose 1.0 only removes the containers its current replica count
  # names, and leaves the network.
  podman ps -aq --filter "label=io.podman.compose.project=$project" | xargs -r podman rm -f -t 1 >/dev/null 2>&1 || true
  podman network rm -f "$network" >/dev/null 2>&1 || true
  podman rmi "$image" >/dev/null 2>&1 || true
  figure "tear-down" "$((SECONDS - down_started)) s"
  figure "compose test, total" "$((SECONDS - test_started)) s"
  printf '\n== compose test figures\n'
  printf '  %s\n' "${figures[@]}"
  if [ "$failed" = 1 ]; then
    printf '\ncompose-test: FAILED: %s (work files kept in %s)\n' "${reason:-exit status $status}" "$work" >&2
    exit 1
  fi
  rm -rf "$work"
  printf '\ncompose-test: all checks passed\n'
}
trap teardown EXIT
trap 'fail "interrupted"' INT TERM

pc() { # podman-compose ARGS...: output to the log, shown on failure
  if ! "${compose[@]}" "$@" >>"$work/podman-compose.log" 2>&1; then
    fail "podman-compose $* failed (output in $work/podman-compose.log)"
  fi
}

# wait_until TIMEOUT_S WHAT CMD...: polls CMD until it succeeds.
wait_until() {
  local timeout=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@"; do
    [ $SECONDS -lt "$deadline" ] || fail "$what: not within $timeout s"
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------
# The replicas, their addresses and their endpoints.

replica() { printf '%s_processor_%s\n' "$project" "$1"; }

replica_numbers() { # the numbers of the processor containers that exist
  podman ps -a --filter "label=io.podman.compose.project=$project" \
    --filter label=com.docker.compose.service=processor \
    --format '{{index .Labels "com.docker.compose.container-number"}}' | sort -n
}

address() { podman inspect "$1" --format "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}"; }

# The replicas' HTTP endpoints, from this host: as root, podman's bridge
# puts the host on the compose network.
http_get() { curl -fsS --max-time 2 "$1" 2>/dev/null; }

ready() { local ip; ip=$(address "$1") && [ -n "$ip" ] && http_get "http://$ip:9464/readyz" >/dev/null; }

scrape() { # CONTAINER: its /metrics
  local ip
  ip=$(address "$1") && [ -n "$ip" ] && http_get "http://$ip:9464/metrics"
}

series() { # METRICS SERIES: the value of one series (0 when absent), e.g.
  #          series "$body" 'exactly_transactions_total{outcome="committed"}'
  awk -v s="$2" '$1 == s { v = $2 } END { printf "%d\n", v + 0 }' <<<"$1"
}

metric() { local body; body=$(scrape "$1") && series "$body" "$2"; } # CONTAINER SERIES

above() { # CONTAINER SERIES N: the series is above N (false while unreachable)
  local v
  v=$(metric "$1" "$2") && [ "$v" -gt "$3" ]
}

sum_metric() { # SERIES: over all replicas that exist
  local n total=0 v
  for n in $(replica_numbers); do
    v=$(metric "$(replica "$n")" "$1") || return 1
    total=$((total + v))
  done
  echo "$total"
}

all_ready_and_assigned() { # N: N replicas, each ready and holding partitions,
  #                           all partitions assigned
  local n count=0 total=0 held
  for n in $(replica_numbers); do
    ready "$(replica "$n")" || return 1
    held=$(metric "$(replica "$n")" exactly_assigned_partitions) && [ "$held" -gt 0 ] || return 1
    count=$((count + 1)) total=$((total + held))
  done
  [ "$count" = "$1" ] && [ "$total" = "$partitions" ]
}

restarts() { podman inspect "$1" --format '{{.RestartCount}}'; }

# ---------------------------------------------------------------------------
# Input, and the audit.

produce() { # COUNT RATE LOGFILE: writes COUNT records to `orders` (RATE/s, -1: unthrottled)
  podman exec "$kafka" kafka-producer-perf-test.sh --topic orders \
    --num-records "$1" --throughput "$2" --record-size 100 \
    --producer-props bootstrap.servers=kafka:9092 acks=all >"$3" 2>&1
}

# start_input COUNT RATE LOGFILE: produce in the background; $producer is its
# pid. The producer never sends faster than RATE, so until COUNT/RATE seconds
# after its start some of the input is still to come.
start_input() {
  input_started=$(now_ms) input_lasts_ms=$(($1 * 1000 / $2))
  produce "$@" &
  producer=$!
}

input_flowing() {
  kill -0 "$producer" 2>/dev/null && [ $(($(now_ms) - input_started)) -lt "$input_lasts_ms" ]
}

check_produced() { # COUNT LOGFILE
  grep -q "^$1 records sent" "$2" || { cat "$2" >&2; fail "the input producer did not report $1 records sent"; }
}

# verify UNTIL: runs `exactly verify` on the compose network (the broker
# advertises kafka:9092, a name only that network resolves); the JSON
# report goes to $work/verify.json. Exit status as verify's: 0 clean,
# 1 violations, 2 error.
verify() {
  podman run --rm --network "$network" "$image" verify \
    --bootstrap-servers kafka:9092 --input orders --output orders-enriched \
    --group "$group" --until "$1" --json >"$work/verify.json" 2>"$work/verify.err"
}

report() { # FIELD...: numbers from the last report, on one line
  # (`partitions`: how many input partitions it covers)
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["report"]
print(*(len(r[f]) if f == "partitions" else r[f] for f in sys.argv[2:]))' "$work/verify.json" "$@"
}

# The committed range is audited every time it is read: an input below the
# group's committed offsets without its output, or with two, is a violation
# at any moment, not only at the end.
committed_reached() { # EXPECTED
  local rc=0
  verify committed || rc=$?
  case "$rc" in
    0) [ "$(report inputs)" -ge "$1" ] ;;
    1) show_violations; fail "exactly-once violated in the committed range (see above)" ;;
    *) return 1 ;; # no answer yet (the group's offsets, a broker busy): ask again
  esac
}

show_violations() {
  python3 - "$work/verify.json" >&2 <<'PY' || cat "$work/verify.json" "$work/verify.err" >&2
import json, sys
d = json.load(open(sys.argv[1]))
r = d["report"]
print({k: v for k, v in r.items() if k != "partitions"})
for p in r["partitions"]:
    bad = {k: p[k] for k in ("without_outputs", "incomplete", "duplicates", "order_violations") if p[k]}
    if bad:
        print(f"  {p['topic']}[{p['partition']}] {p['from']}..{p['to']}: {bad} first missing {p['first_missing'][:5]}")
for n in d.get("notes", []):
    print("  note:", n)
PY
}

# audit WHAT EXPECTED: waits until the group has committed all EXPECTED
# inputs, then audits every input up to the end of `orders`.
audit() {
  local what=$1 expected=$2 started=$SECONDS
  wait_until 240 "$what: the group committing all $expected inputs" committed_reached "$expected"
  local rc=0
  verify end || rc=$?
  [ "$rc" = 0 ] || { show_violations; cat "$work/verify.err" >&2; fail "$what: exactly verify --until end exited $rc"; }
  local inputs outputs missing duplicates covered
  read -r inputs outputs missing duplicates covered < <(report inputs outputs_read missing duplicates partitions)
  [ "$covered" = "$partitions" ] || fail "$what: the audit covered $covered partitions of orders, not $partitions"
  [ "$inputs" = "$expected" ] || fail "$what: $inputs inputs in orders, $expected written"
  [ "$outputs" = "$expected" ] || fail "$what: $outputs outputs read back for $expected inputs"
  if [ "$missing" != 0 ] || [ "$duplicates" != 0 ]; then
    fail "$what: $missing missing, $duplicates duplicated"
  fi
  log "$what: exactly once: $inputs inputs, $outputs outputs read_committed, 0 missing, 0 duplicates ($((SECONDS - started)) s)"
}

# ---------------------------------------------------------------------------
# A run that was killed outright (its CI job cancelled) could not tear down;
# its replicas would restart forever. Remove what such runs left.
reap_stale_runs() {
  local p pid
  for p in $(podman ps -a --filter label=io.podman.compose.project --format '{{index .Labels "io.podman.compose.project"}}' | sort -u); do
    case "$p" in exactly_e2e_[0-9]*) pid=${p#exactly_e2e_} ;; *) continue ;; esac
    if [ "$pid" = $$ ] || kill -0 "$pid" 2>/dev/null; then continue; fi
    log "removing the containers of $p, left by a run that no longer exists"
    podman ps -aq --filter "label=io.podman.compose.project=$p" | xargs -r podman rm -f -t 1 >/dev/null 2>&1 || true
    podman network rm -f "${p}_default" >/dev/null 2>&1 || true
    podman rmi "localhost/exactly:e2e-$pid" >/dev/null 2>&1 || true
  done
}

for tool in curl python3; do
  command -v "$tool" >/dev/null || fail "$tool is needed (apt-get install $tool)"
done
log "set-up (scripts/containers.sh)"
setup_started=$SECONDS
scripts/containers.sh all 2>&1 | tee "$work/setup.log"
while read -r step secs; do
  figure "set-up: $step" "$secs s"
done < <(sed -n 's/^containers.sh: \([a-z]*\) took \([0-9]*\) s$/\1 \2/p' "$work/setup.log")
figure "set-up, total" "$((SECONDS - setup_started)) s"
reap_stale_runs
kafka_image=$(sed -n 's/^ *image: *\(apache\/kafka:[^ ]*\) *$/\1/p' docker-compose.yml | head -n 1)
for i in "$image" "docker.io/$kafka_image" localhost/debian:bookworm-slim; do
  figure "image size: ${i%%:e2e-*}" "$(podman image inspect "$i" --format '{{.Size}}' | awk '{ printf "%.1f MB", $1 / 1e6 }')"
done

# ---------------------------------------------------------------------------
log "stack $project: kafka"
up_started=$SECONDS
pc up -d --no-build kafka
# The compose file's own healthcheck, run on demand: podman has no timers
# here to run it on its own (so depends_on: service_healthy cannot wait).
kafka_healthy() { podman healthcheck run "$kafka" >/dev/null 2>&1; }
wait_until 180 "kafka healthy" kafka_healthy
log "kafka healthy; topics job"
pc up -d --no-build topics
code=$(timeout 180 podman wait "${project}_topics_1") || fail "the topics job did not finish"
[ "$code" = 0 ] || fail "the topics job exited $code"
log "topics created; processor x3"
# podman-compose starts the services `processor` depends on again: kafka is
# running already, the topics job runs once more (--if-not-exists).
pc up -d --no-build processor
wait_until 180 "3 replicas ready with all $partitions partitions assigned" all_ready_and_assigned 3
figure "stack up (kafka, topics, 3 replicas ready)" "$((SECONDS - up_started)) s"
log "3 replicas ready, $partitions partitions assigned"

# ---------------------------------------------------------------------------
phase_started=$SECONDS
total=$initial_records
log "phase 1: $initial_records records into orders"
produce "$initial_records" -1 "$work/produce-1.log" || { cat "$work/produce-1.log" >&2; fail "writing the input failed"; }
check_produced "$initial_records" "$work/produce-1.log"
audit "phase 1 (3 replicas)" "$total"

# Every committed output was counted by exactly one live process: no replica
# restarted, so the three counters must add up to what was read back.
printf '  %-28s %10s %10s %12s %9s %8s\n' replica consumed produced transactions aborted assigned
produced=0 per_topic=0 consumed=0
for n in $(replica_numbers); do
  c=$(replica "$n")
  [ "$(restarts "$c")" = 0 ] || fail "$c restarted during phase 1"
  body=$(scrape "$c") || fail "cannot read /metrics of $c"
  committed=$(series "$body" 'exactly_transactions_total{outcome="committed"}')
  printf '  %-28s %10s %10s %12s %9s %8s\n' "$c" \
    "$(series "$body" exactly_records_consumed_total)" "$(series "$body" exactly_records_produced_total)" \
    "$committed" "$(series "$body" 'exactly_transactions_total{outcome="aborted"}')" \
    "$(series "$body" exactly_assigned_partitions)"
  [ "$committed" -gt 0 ] || fail "$c committed no transaction although it holds partitions"
  produced=$((produced + $(series "$body" exactly_records_produced_total)))
  per_topic=$((per_topic + $(series "$body" 'exactly_output_records_total{topic="orders-enriched"}')))
  consumed=$((consumed + $(series "$body" exactly_records_consumed_total)))
done
[ "$produced" = "$total" ] || fail "the replicas' exactly_records_produced_total add up to $produced, the audit read $total"
[ "$per_topic" = "$total" ] || fail "the replicas' exactly_output_records_total{topic=orders-enriched} add up to $per_topic, not $total"
[ "$consumed" -ge "$total" ] || fail "the replicas consumed $consumed records, fewer than the $total they committed"
log "phase 1: /metrics add up: produced $produced, output_records $per_topic, consumed $consumed"
figure "phase 1: 100,000 records, 3 replicas" "$((SECONDS - phase_started)) s"

# ---------------------------------------------------------------------------
phase_started=$SECONDS
victim=$(replica 2)
log "phase 2: $crash_records records at $crash_rate/s; $victim killed hard while they flow"
before=$(metric "$victim" exactly_records_produced_total) || fail "cannot read /metrics of $victim"
start_input "$crash_records" "$crash_rate" "$work/produce-2.log"
wait_until 60 "$victim committing new input" above "$victim" exactly_records_produced_total "$before"
input_flowing || fail "the input may have ended before the kill; raise crash_records"
old_pid=$(podman inspect "$victim" --format '{{.State.Pid}}')
old_restarts=$(restarts "$victim")
killed_at=$(now_ms)
kill -KILL "$old_pid"
# The restart policy (unless-stopped) must bring the same container back: a
# new process, one more restart.
restarted() {
  [ "$(podman inspect "$victim" --format '{{.State.Status}} {{.RestartCount}}')" = "running $((old_restarts + 1))" ] &&
    [ "$(podman inspect "$victim" --format '{{.State.Pid}}')" != "$old_pid" ]
}
wait_until 60 "podman restarting $victim after SIGKILL (restart: unless-stopped)" restarted
t_restart=$(seconds_since "$killed_at")
wait_until 60 "$victim ready again" ready "$victim"
t_ready=$(seconds_since "$killed_at")
# The new process's counters start at zero.
wait_until 60 "the restarted $victim committing a transaction" \
  above "$victim" 'exactly_transactions_total{outcome="committed"}' 0
t_commit=$(seconds_since "$killed_at")
log "phase 2: SIGKILL -> running again ${t_restart} s, ready ${t_ready} s, first committed transaction ${t_commit} s"
figure "recovery: SIGKILL -> container running" "$t_restart s"
figure "recovery: SIGKILL -> /readyz 200" "$t_ready s"
figure "recovery: SIGKILL -> first committed txn" "$t_commit s"
wait "$producer" || { cat "$work/produce-2.log" >&2; fail "writing the input failed"; }
check_produced "$crash_records" "$work/produce-2.log"
total=$((total + crash_records))
audit "phase 2 (kill -9 of one replica)" "$total"
[ "$(restarts "$victim")" = "$((old_restarts + 1))" ] || fail "$victim restarted more than once"
for n in 1 3; do
  [ "$(restarts "$(replica "$n")")" = 0 ] || fail "$(replica "$n") restarted"
done
figure "phase 2: kill -9 under load" "$((SECONDS - phase_started)) s"

# ---------------------------------------------------------------------------
# Scale-in as `docker compose up --scale processor=N` does it: the
# highest-numbered replicas get SIGTERM, then SIGKILL after
# stop_grace_period. podman-compose 1.0 ignores --scale, so this is done here.
scale_in() { # N
  local grace n c code victims=()
  grace=$(sed -n 's/^ *stop_grace_period: *\([0-9]*\)s *$/\1/p' docker-compose.yml)
  [ -n "$grace" ] || fail "no stop_grace_period (in seconds) in docker-compose.yml"
  for n in $(replica_numbers); do [ "$n" -le "$1" ] || victims+=("$(replica "$n")"); done
  podman stop -t "$grace" "${victims[@]}" >/dev/null
  for c in "${victims[@]}"; do
    code=$(podman inspect "$c" --format '{{.State.ExitCode}}')
    [ "$code" = 0 ] || fail "$c exited $code on SIGTERM, not 0: it did not stop cleanly within stop_grace_period ($grace s)"
  done
  podman rm "${victims[@]}" >/dev/null
}

scale_step() { # FROM TO
  local from=$1 to=$2 started=$SECONDS before
  log "scale $from -> $to: $scale_records records at $scale_rate/s"
  before=$(sum_metric exactly_records_produced_total) || fail "cannot read /metrics"
  start_input "$scale_records" "$scale_rate" "$work/produce-$to.log"
  progress() { local v; v=$(sum_metric exactly_records_produced_total) && [ "$v" -gt "$before" ]; }
  wait_until 60 "the replicas committing new input" progress
  input_flowing || fail "the input may have ended before scaling; raise scale_records"
  local stop_started=$SECONDS
  if [ "$to" -lt "$from" ]; then
    scale_in "$to"
    log "scale $from -> $to: replicas above $to stopped cleanly in $((SECONDS - stop_started)) s"
  else
    PROCESSOR_REPLICAS=$to pc up -d --no-build processor
  fi
  wait_until 120 "$to replicas ready with all $partitions partitions assigned" all_ready_and_assigned "$to"
  wait "$producer" || { cat "$work/produce-$to.log" >&2; fail "writing the input failed"; }
  check_produced "$scale_records" "$work/produce-$to.log"
  total=$((total + scale_records))
  audit "scaled $from -> $to" "$total"
  figure "scale $from -> $to under load" "$((SECONDS - started)) s"
}

scale_step 3 1
scale_step 1 2
