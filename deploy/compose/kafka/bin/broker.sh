#!/usr/bin/env bash
# Entry point of the Kafka image: writes /opt/kafka/config/server.properties
# from the environment, formats the storage on first start, and replaces
# itself with the broker (so the broker is PID 1 and gets the stop signal).
#
# As in the public apache/kafka image, each variable KAFKA_<NAME> becomes the
# property <name> in lower case, with `_` read as `.`, `__` as `_` and `___`
# as `-`:
#   KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://kafka:9092  ->  advertised.listeners=...
#   KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS=0           ->  group.initial.rebalance.delay.ms=0
# The variables that hold JVM options (KAFKA_HEAP_OPTS, KAFKA_OPTS, ...) are
# not properties. log.dirs defaults to /var/lib/kafka/data. CLUSTER_ID names
# the cluster when the storage is formatted; a random id is used otherwise.
set -euo pipefail

config=/opt/kafka/config/server.properties

die() { echo "broker.sh: $*" >&2; exit 1; }

property_name() { # KAFKA_VARIABLE -> property.name
  local key=${1#KAFKA_} mark=$'\x01'
  key=${key,,}
  key=${key//___/-}
  key=${key//__/$mark}
  key=${key//_/.}
  printf '%s\n' "${key//$mark/_}"
}

write_config() {
  local entry name found=0
  {
    echo "# Written by broker.sh from the container's KAFKA_* variables."
    while IFS= read -r -d '' entry; do
      name=${entry%%=*}
      case "$name" in
        KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_GC_LOG_OPTS | \
          KAFKA_LOG4J_OPTS | KAFKA_JMX_OPTS | KAFKA_JMX_PORT | KAFKA_JMX_HOSTNAME | \
          KAFKA_LOG4J_ROOT_LOGLEVEL | KAFKA_LOG4J_LOGGERS | KAFKA_TOOLS_LOG4J_LOGLEVEL | \
          KAFKA_VERSION | KAFKA_HOME) continue ;;
        KAFKA_?*) ;;
        *) continue ;;
      esac
      printf '%s=%s\n' "$(property_name "$name")" "${entry#*=}"
      found=1
    done < <(env -0 | sort -z)
    [ "$found" = 1 ] || die "no KAFKA_* variables: set at least KAFKA_NODE_ID, KAFKA_PROCESS_ROLES, KAFKA_LISTENERS and KAFKA_CONTROLLER_QUORUM_VOTERS (see docker-compose.yml)"
  } >"$config.new"
  grep -q '^log\.dirs=' "$config.new" || echo "log.dirs=/var/lib/kafka/data" >>"$config.new"
  mv "$config.new" "$config"
}

format_storage() {
  local dirs first id
  dirs=$(sed -n 's/^log\.dirs=//p' "$config")
  first=${dirs%%,*}
  [ -f "$first/meta.properties" ] && return 0
  # A Kafka cluster id: 16 random bytes in URL-safe base64, unpadded.
  id=${CLUSTER_ID:-$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')}
  /opt/kafka/bin/kafka-storage.sh format --cluster-id="$id" --config "$config" --ignore-formatted
}

write_config
format_storage
read -ra heap <<<"${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
read -ra opts <<<"${KAFKA_OPTS:-}"
exec java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  "${opts[@]}" -cp '/opt/kafka/libs/*' kafka.Kafka "$config"
