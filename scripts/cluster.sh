#!/usr/bin/env bash
# A production-shaped Apache Kafka cluster on this machine: three KRaft nodes
# (each broker and controller, one quorum of three voters), replication
# factor 3 and min.insync.replicas=2 for every topic, __consumer_offsets and
# __transaction_state included; unclean leader election off. The
# single-broker scripts/kafka.sh stays for the quick start and the fast tests.
#
#   scripts/cluster.sh start DIR [--netns] [--owner-pid P] [--prop k=v]...
#        formats and starts nodes 1-3 (DIR/b1..b3); prints the bootstrap list
#        once every node serves metadata. Loopback ports by default; with
#        --netns each node runs in its own network namespace with its own
#        address on a bridge (root and `ip` needed), so that `isolate` can cut
#        one off while it keeps running.
#   scripts/cluster.sh stop DIR                 stop every node (by pid), remove the namespaces
#   scripts/cluster.sh kill DIR N               kill -9 node N
#   scripts/cluster.sh resume DIR N             start node N again (same ports, data)
#   scripts/cluster.sh restart DIR N            controlled shutdown of node N, then start it
#                                               (one step of a rolling upgrade)
#   scripts/cluster.sh isolate DIR N            cut node N off from the other nodes and every
#                                               client (--netns clusters); it keeps running
#   scripts/cluster.sh heal DIR N               connect it again
#   scripts/cluster.sh topic DIR NAME PARTITIONS   create a topic (replication factor 3)
#   scripts/cluster.sh in-sync DIR [TIMEOUT_S]  wait until every partition has its 3 replicas in sync
#   scripts/cluster.sh txn-coordinator DIR ID   the node id of transactional id ID's coordinator
#                                               (Admin API: describeTransactions)
#   scripts/cluster.sh group-coordinator DIR G  the node id of group G's coordinator
#   scripts/cluster.sh bootstrap DIR            the bootstrap list
#
# Sizing for a 2-core, 24 GB machine that also runs three daemon replicas and
# a test: 256 MB-768 MB heap per node, two network and four I/O threads.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=kafka.sh
. "$here/kafka.sh"
log() { printf 'cluster.sh: %s\n' "$*" >&2; }

NODES=(1 2 3)

node_dir() { echo "$1/b$2"; }

# The namespaces and bridge of a --netns cluster are named after a number
# kept in DIR/net (interface names are at most 15 characters).
net_up() { # DIR
  local dir=$1 id n
  command -v ip >/dev/null || die "--netns needs iproute2 (ip)"
  id=$((RANDOM % 200 + 20))
  echo "$id" >"$dir/net"
  local br="exbr$id"
  ip link add "$br" type bridge || die "cannot create a bridge (--netns needs root)"
  ip addr add "10.$id.0.1/24" dev "$br"
  ip link set "$br" up
  for n in "${NODES[@]}"; do
    local ns="exactly-$id-$n" host="exv$id-$n"
    ip netns add "$ns"
    ip link add "$host" type veth peer name eth0 netns "$ns"
    ip link set "$host" master "$br"
    ip link set "$host" up
    ip -n "$ns" addr add "10.$id.0.1$n/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    echo "$ns" >"$(node_dir "$dir" "$n")/netns"
  done
}

net_down() { # DIR
  local dir=$1 id n
  [ -f "$dir/net" ] || return 0
  id=$(cat "$dir/net")
  for n in "${NODES[@]}"; do
    ip link del "exv$id-$n" 2>/dev/null || true
    ip netns del "exactly-$id-$n" 2>/dev/null || true
  done
  ip link del "exbr$id" 2>/dev/null || true
  rm -f "$dir/net"
}

start_cluster() {
  local dir="" owner="" netns="" props=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --netns) netns=1; shift ;;
      --owner-pid) owner=$2; shift 2 ;;
      --prop) props+=("$2"); shift 2 ;;
      *) [ -z "$dir" ] || die "unexpected argument $1"; dir=$1; shift ;;
    esac
  done
  [ -n "$dir" ] || die "usage: cluster.sh start DIR [--netns] [--owner-pid PID] [--prop key=value]..."
  fetch
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local n host=() port=() cport=() taken=()
  for n in "${NODES[@]}"; do mkdir -p "$(node_dir "$dir" "$n")/data" "$(node_dir "$dir" "$n")/logs"; done
  [ -z "$netns" ] || net_up "$dir"
  for n in "${NODES[@]}"; do
    if [ -n "$netns" ]; then
      host[n]="10.$(cat "$dir/net").0.1$n"; port[n]=9092; cport[n]=9093
    else
      host[n]=127.0.0.1
      port[n]=$(distinct_port "${taken[@]}"); taken+=("${port[n]}")
      cport[n]=$(distinct_port "${taken[@]}"); taken+=("${cport[n]}")
    fi
  done
  local voters="" bootstrap=""
  for n in "${NODES[@]}"; do
    voters+="${voters:+,}$n@${host[n]}:${cport[n]}"
    bootstrap+="${bootstrap:+,}${host[n]}:${port[n]}"
  done
  local cluster_id
  cluster_id=$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))')
  for n in "${NODES[@]}"; do
    local d
    d=$(node_dir "$dir" "$n")
    cat >"$d/server.properties" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://${host[n]}:${port[n]},CONTROLLER://${host[n]}:${cport[n]}
advertised.listeners=PLAINTEXT://${host[n]}:${port[n]}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$d/data
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=5
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.replica.fetchers=1
background.threads=4
EOF
    for p in "${props[@]}"; do echo "$p" >>"$d/server.properties"; done
    echo "${host[n]}:${port[n]}" >"$d/bootstrap"
    echo "-Xms256m -Xmx768m" >"$d/heap"
    KAFKA_LOG_DIR="$d/logs" run_java kafka.tools.StorageTool format --cluster-id="$cluster_id" \
      -c "$d/server.properties" >"$d/logs/format.log" 2>&1 \
      || { cat "$d/logs/format.log" >&2; die "formatting node $n's storage failed"; }
  done
  echo "$bootstrap" >"$dir/bootstrap"
  # The quorum needs a majority of its voters before any node can finish
  # starting: start all three, then wait for each.
  for n in "${NODES[@]}"; do spawn "$(node_dir "$dir" "$n")"; done
  for n in "${NODES[@]}"; do await_ready "$(node_dir "$dir" "$n")"; done
  if [ -n "$owner" ]; then
    # Stop the cluster when its owner (a test process) goes away, however it ends.
    (setsid bash -c "while kill -0 $owner 2>/dev/null; do sleep 1; done; \"$here/cluster.sh\" stop \"$dir\"" \
      >/dev/null 2>&1 </dev/null &)
  fi
  log "3 nodes up at $bootstrap (logs in $dir/b*/logs)"
  echo "$bootstrap"
}

stop_cluster() {
  local dir=${1:?usage: cluster.sh stop DIR} n
  for n in "${NODES[@]}"; do
    local d
    d=$(node_dir "$dir" "$n")
    [ -f "$d/pid" ] || continue
    # All three at once: a node stopped alone would wait for a controlled
    # shutdown that the others, stopping too, may never grant.
    kill -TERM "$(cat "$d/pid")" 2>/dev/null || true
  done
  for n in "${NODES[@]}"; do
    local d
    d=$(node_dir "$dir" "$n")
    [ -f "$d/pid" ] || continue
    stop_pid "$(cat "$d/pid")" TERM
    rm -f "$d/pid"
  done
  net_down "$dir"
}

node_arg() { # DIR N -> the node's directory, checked
  local d
  d=$(node_dir "${1:?DIR}" "${2:?node number 1-3}")
  [ -f "$d/server.properties" ] || die "no node $2 in $1"
  echo "$d"
}

isolate() { # DIR N UP|DOWN
  local dir=$1 n=$2 state=$3
  [ -f "$dir/net" ] || die "isolate needs a cluster started with --netns"
  node_arg "$dir" "$n" >/dev/null
  ip link set "exv$(cat "$dir/net")-$n" "$state"
}

admin_tool() { # DIR CLASS ARGS... (the bootstrap list goes before ARGS: a
  # subcommand such as TransactionsCommand's `describe` must come after it)
  local dir=$1 class=$2
  shift 2
  KAFKA_LOG_DIR="$dir/b1/logs" run_java "$class" --bootstrap-server "$(cat "$dir/bootstrap")" "$@"
}

txn_coordinator() {
  local dir=${1:?usage: cluster.sh txn-coordinator DIR TRANSACTIONAL_ID} id=${2:?transactional id}
  # Columns: CoordinatorId TransactionalId ProducerId ...
  admin_tool "$dir" org.apache.kafka.tools.TransactionsCommand describe --transactional-id "$id" 2>/dev/null \
    | awk -v id="$id" '$2 == id { print $1; found = 1 } END { exit !found }' \
    || die "no coordinator found for transactional id $id"
}

group_coordinator() {
  local dir=${1:?usage: cluster.sh group-coordinator DIR GROUP} group=${2:?group}
  # GROUP  COORDINATOR (ID)  ASSIGNMENT-STRATEGY  STATE  #MEMBERS
  admin_tool "$dir" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
      --describe --state --group "$group" 2>/dev/null \
    | awk -v g="$group" '$1 == g { if (match($0, /\(([0-9]+)\)/)) { print substr($0, RSTART + 1, RLENGTH - 2); found = 1 } } END { exit !found }' \
    || die "no coordinator found for group $group"
}

in_sync() { # DIR [TIMEOUT_S]: every partition, internal ones too, with 3 replicas in sync
  local dir=${1:?usage: cluster.sh in-sync DIR [TIMEOUT_S]} deadline=$((SECONDS + ${2:-180}))
  until [ -z "$(admin_tool "$dir" org.apache.kafka.tools.TopicCommand --describe \
      --under-replicated-partitions 2>/dev/null)" ] \
    && admin_tool "$dir" org.apache.kafka.tools.TopicCommand --list >/dev/null 2>&1; do
    [ $SECONDS -lt "$deadline" ] || die "partitions still under-replicated after ${2:-180} s"
    sleep 1
  done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  start) start_cluster "$@" ;;
  stop) stop_cluster "$@" ;;
  kill) kill_hard "$(node_arg "$@")" ;;
  resume) resume "$(node_arg "$@")" ;;
  restart) restart "$(node_arg "$@")" ;;
  isolate) isolate "${1:?DIR}" "${2:?N}" down ;;
  heal) isolate "${1:?DIR}" "${2:?N}" up ;;
  topic)
    admin_tool "${1:?DIR}" org.apache.kafka.tools.TopicCommand --create --if-not-exists \
      --topic "${2:?topic name}" --partitions "${3:-1}" --replication-factor 3 >&2 ;;
  in-sync) in_sync "$@" ;;
  txn-coordinator) txn_coordinator "$@" ;;
  group-coordinator) group_coordinator "$@" ;;
  bootstrap) cat "${1:?DIR}/bootstrap" ;;
  *) sed -n '2,31p' "$0" >&2; exit 2 ;;
esac
