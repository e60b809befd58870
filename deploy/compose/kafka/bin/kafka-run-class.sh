#!/usr/bin/env bash
# The command-line tools of a Kafka distribution, in one script. Every
# /opt/kafka/bin/kafka-<tool>.sh is a link to this file and runs that tool's
# main class; under its own name it runs any class:
#
#   kafka-run-class.sh CLASS [ARGS...]
#
# KAFKA_HEAP_OPTS and KAFKA_OPTS add JVM options, as in Kafka's own scripts.
set -euo pipefail

case "$(basename "$0")" in
  kafka-topics.sh) class=org.apache.kafka.tools.TopicCommand ;;
  kafka-console-producer.sh) class=org.apache.kafka.tools.ConsoleProducer ;;
  kafka-console-consumer.sh) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
  kafka-consumer-groups.sh) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  kafka-producer-perf-test.sh) class=org.apache.kafka.tools.ProducerPerformance ;;
  kafka-transactions.sh) class=org.apache.kafka.tools.TransactionsCommand ;;
  kafka-get-offsets.sh) class=org.apache.kafka.tools.GetOffsetShell ;;
  kafka-storage.sh) class=kafka.tools.StorageTool ;;
  kafka-run-class.sh)
    [ $# -gt 0 ] || { echo "usage: kafka-run-class.sh CLASS [ARGS...]" >&2; exit 2; }
    class=$1
    shift
    ;;
  *) echo "$(basename "$0"): not a tool this image knows" >&2; exit 2 ;;
esac

read -ra heap <<<"${KAFKA_HEAP_OPTS:--Xmx256m}"
read -ra opts <<<"${KAFKA_OPTS:-}"
# Tools are short-lived: the client compiler alone and the serial collector
# start them noticeably faster than the JVM's defaults on a small machine.
exec java "${heap[@]}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties \
  "${opts[@]}" -cp '/opt/kafka/libs/*' "$class" "$@"
