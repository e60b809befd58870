#!/usr/bin/env bash
# A real, single-node Apache Kafka broker (KRaft) for development, tests and
# benchmarks - no Docker needed.
#
#   scripts/kafka.sh fetch                      download the pinned broker jars once (Maven)
#   scripts/kafka.sh start DIR [--secure] [--owner-pid P] [--prop k=v]...
#                                               format + start a broker on free loopback ports;
#                                               prints its bootstrap address when it serves metadata.
#                                               --secure adds SASL_SSL and mTLS listeners, ACLs,
#                                               users and certificates (see scripts/kafka/secure.sh;
#                                               summary in DIR/secure.env)
#   scripts/kafka.sh restart DIR [--hard]       stop (kill -9 with --hard) and start the same broker
#   scripts/kafka.sh kill DIR                   kill -9 the broker (an outage begins)
#   scripts/kafka.sh resume DIR                 start a killed or stopped broker again (same ports, data)
#   scripts/kafka.sh stop DIR                   stop the broker started in DIR (by pid)
#   scripts/kafka.sh topic DIR NAME PARTITIONS  create a topic
#   scripts/kafka.sh tool DIR CLASS [ARGS...]   run a Kafka tool class with the broker's classpath
#   scripts/kafka.sh acl DIR ARGS...            run Kafka's ACL tool on the PLAINTEXT (super user)
#                                               listener, e.g. --add --allow-principal User:exactly
#                                               --operation Read --topic t1
#
# The jars live outside the checkout, in $EXACTLY_KAFKA_HOME
# (default ~/.cache/exactly/kafka-<version>). Everything a broker writes
# (config, data, log, pid) lives in DIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
home=${EXACTLY_KAFKA_HOME:-$HOME/.cache/exactly/kafka-$version}

# shellcheck source=kafka/secure.sh
. "$here/kafka/secure.sh"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

fetch() {
  if [ -f "$home/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to download Apache Kafka $version"
  command -v java >/dev/null || die "Java 17+ is needed to run Apache Kafka $version"
  log "downloading Apache Kafka $version from Maven Central into $home (once)"
  local tmp="$home.partial.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  (cd "$here/kafka" && mvn -q -B \
    org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
    -DoutputDirectory="$tmp" -DincludeScope=runtime) >&2 \
    || { rm -rf "$tmp"; die "Maven could not download Apache Kafka $version"; }
  touch "$tmp/.complete"
  rm -rf "$home"
  mv "$tmp" "$home"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

distinct_port() { # TAKEN_PORT... -> a free port that is none of them
  local p taken
  while :; do
    p=$(free_port)
    for taken in "$@"; do [ "$p" != "$taken" ] || continue 2; done
    echo "$p"
    return
  done
}

run_java() { # CLASS ARGS... (foreground)
  java -Xms64m -Xmx512m -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
    -Dkafka.logs.dir="${KAFKA_LOG_DIR:-/tmp}" -cp "$home/*" "$@"
}

# Starts the JVM of the broker configured in $1/server.properties, and
# returns at once. A cluster node's directory may hold `heap` (JVM memory
# options) and `netns` (the network namespace it runs in;
# scripts/cluster.sh writes both).
spawn() {
  local dir=$1 heap=(-Xms256m -Xmx1g) prefix=()
  : >"$dir/logs/server.log"
  [ -f "$dir/heap" ] && read -r -a heap <"$dir/heap"
  [ -f "$dir/netns" ] && prefix=(ip netns exec "$(cat "$dir/netns")")
  # setsid: the broker must not die with the shell that started it, and must
  # not receive the terminal's signals; we stop it by pid. (setsid and
  # `ip netns exec` both exec, so $! is the JVM's pid.)
  # GC pauses go to logs/gc.log: a broker that stalls for seconds (a
  # session timing out, the controller fencing its own broker) is told apart
  # from a long collection there.
  setsid "${prefix[@]}" java "${heap[@]}" -XX:+UseG1GC \
    -Xlog:gc:file="$dir/logs/gc.log":time,uptime,level,tags \
    -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$dir/logs" \
    -cp "$home/*" kafka.Kafka "$dir/server.properties" \
    >"$dir/logs/stdout.log" 2>&1 </dev/null &
  echo "$!" >"$dir/pid"
}

# Waits until the broker in $1 answers a metadata request.
await_ready() {
  local dir=$1 pid bootstrap
  pid=$(cat "$dir/pid")
  bootstrap=$(cat "$dir/bootstrap")
  local deadline=$((SECONDS + ${EXACTLY_KAFKA_START_TIMEOUT:-120}))
  # The port opens before the broker can serve metadata: wait for the
  # broker's own "started" line, then for a real metadata request.
  until grep -q "Kafka Server started" "$dir/logs/server.log" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { tail -30 "$dir/logs/stdout.log" "$dir/logs/server.log" >&2; die "broker exited during start-up (logs in $dir/logs)"; }
    [ $SECONDS -lt "$deadline" ] || die "broker did not start within the time limit (logs in $dir/logs)"
    sleep 0.2
  done
  until KAFKA_LOG_DIR="$dir/logs" run_java org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "$bootstrap" --list >/dev/null 2>&1; do
    [ $SECONDS -lt "$deadline" ] || die "broker does not answer metadata requests (logs in $dir/logs)"
    sleep 0.5
  done
}

# Starts the broker configured in $1 and waits until it serves metadata.
launch() {
  spawn "$1"
  await_ready "$1"
}

start() {
  local dir="" owner="" secure="" props=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --secure) secure=1; shift ;;
      --owner-pid) owner=$2; shift 2 ;;
      --prop) props+=("$2"); shift 2 ;;
      *) [ -z "$dir" ] || die "unexpected argument $1"; dir=$1; shift ;;
    esac
  done
  [ -n "$dir" ] || die "usage: kafka.sh start DIR [--secure] [--owner-pid PID] [--prop key=value]..."
  fetch
  mkdir -p "$dir/data" "$dir/logs"
  dir=$(cd "$dir" && pwd)
  local port cport sport="" tport=""
  port=$(free_port)
  cport=$(distinct_port "$port")
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
  local advertised="PLAINTEXT://127.0.0.1:$port"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [ -n "$secure" ]; then
    sport=$(distinct_port "$port" "$cport")
    tport=$(distinct_port "$port" "$cport" "$sport")
    listeners+=",SASL_SSL://127.0.0.1:$sport,SSL://127.0.0.1:$tport"
    advertised+=",SASL_SSL://127.0.0.1:$sport,SSL://127.0.0.1:$tport"
    protocols+=",SASL_SSL:SASL_SSL,SSL:SSL"
  fi
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
auto.create.topics.enable=false
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
group.initial.rebalance.delay.ms=0
EOF
  # SCRAM credentials go into the cluster metadata when the storage is formatted.
  local format_args=()
  if [ -n "$secure" ]; then
    secure_setup "$dir" "$port" "$sport" "$tport"
    mapfile -t format_args < <(secure_scram_args "$dir")
  fi
  local p
  for p in "${props[@]}"; do echo "$p" >>"$dir/server.properties"; done
  echo "127.0.0.1:$port" >"$dir/bootstrap"
  local cluster_id
  cluster_id=$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))')
  KAFKA_LOG_DIR="$dir/logs" run_java kafka.tools.StorageTool format --cluster-id="$cluster_id" \
    -c "$dir/server.properties" "${format_args[@]}" >"$dir/logs/format.log" 2>&1 \
    || { cat "$dir/logs/format.log" >&2; die "formatting the broker's storage failed"; }
  launch "$dir"
  if [ -n "$owner" ]; then
    # Stop the broker when its owner (a test process) goes away, however it ends.
    (setsid bash -c "while kill -0 $owner 2>/dev/null; do sleep 1; done; \"$here/kafka.sh\" stop \"$dir\"" \
      >/dev/null 2>&1 </dev/null &)
  fi
  log "broker up at $(cat "$dir/bootstrap") (pid $(cat "$dir/pid"), logs in $dir/logs)"
  cat "$dir/bootstrap"
}

stop_pid() { # PID SIGNAL
  local pid=$1 sig=$2
  kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge "$deadline" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    sleep 0.1
  done
}

stop() {
  local dir=${1:?usage: kafka.sh stop DIR}
  [ -f "$dir/pid" ] || return 0
  stop_pid "$(cat "$dir/pid")" TERM
  rm -f "$dir/pid"
}

restart() {
  local dir=${1:?usage: kafka.sh restart DIR [--hard]} sig=TERM
  [ "${2:-}" = "--hard" ] && sig=KILL
  [ -f "$dir/pid" ] && stop_pid "$(cat "$dir/pid")" "$sig"
  launch "$dir"
  log "broker restarted at $(cat "$dir/bootstrap")"
}

kill_hard() {
  local dir=${1:?usage: kafka.sh kill DIR}
  [ -f "$dir/pid" ] && stop_pid "$(cat "$dir/pid")" KILL
  rm -f "$dir/pid"
}

resume() {
  local dir=${1:?usage: kafka.sh resume DIR}
  [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null && die "the broker in $dir is running"
  launch "$dir"
  log "broker back at $(cat "$dir/bootstrap")"
}

topic() {
  local dir=${1:?usage: kafka.sh topic DIR NAME PARTITIONS} name=${2:?topic name} parts=${3:-1}
  KAFKA_LOG_DIR="$dir/logs" run_java org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$(cat "$dir/bootstrap")" --create --if-not-exists \
    --topic "$name" --partitions "$parts" --replication-factor 1 >&2
}

acl() {
  local dir=${1:?usage: kafka.sh acl DIR ARGS...}
  shift
  KAFKA_LOG_DIR="$dir/logs" run_java org.apache.kafka.tools.AclCommand \
    --bootstrap-server "$(cat "$dir/bootstrap")" "$@"
}

tool() {
  local dir=${1:?usage: kafka.sh tool DIR CLASS [ARGS...]}
  shift
  fetch
  KAFKA_LOG_DIR="$dir/logs" run_java "$@"
}

# scripts/cluster.sh sources this file for its functions.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  fetch) fetch; echo "$home" ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  restart) restart "$@" ;;
  kill) kill_hard "$@" ;;
  resume) resume "$@" ;;
  topic) topic "$@" ;;
  tool) tool "$@" ;;
  acl) acl "$@" ;;
  *) sed -n '2,24p' "$0" >&2; exit 2 ;;
esac
