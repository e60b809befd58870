#!/usr/bin/env bash
# Builds the Kafka Streams benchmark peer into one runnable jar and prints
# its path. Does nothing when the jar is newer than the pom and every source
# file, so the benchmark may call it before each run.
#
#   bench/peers/kafka-streams/build.sh      -> .../target/kafka-streams-peer.jar
#
# Needs Java 17+ and Maven (dependencies come from Maven Central, once).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
jar="$here/target/kafka-streams-peer.jar"

command -v mvn >/dev/null || { echo "build.sh: Maven (mvn) is needed" >&2; exit 1; }
command -v java >/dev/null || { echo "build.sh: Java 17+ is needed" >&2; exit 1; }

stale=1
if [ -f "$jar" ]; then
  # Any input newer than the jar means a rebuild.
  if [ -z "$(find "$here/pom.xml" "$here/src" -newer "$jar" -print -quit)" ]; then
    stale=0
  fi
fi

if [ "$stale" = 1 ]; then
  echo "build.sh: building $jar" >&2
  (cd "$here" && mvn -q -B package -DskipTests) >&2
  [ -f "$jar" ] || { echo "build.sh: Maven finished but $jar is missing" >&2; exit 1; }
  # The shaded jar keeps the timestamps of its inputs' build; make sure it
  # counts as newer than the sources it was built from.
  touch "$jar"
fi

echo "$jar"
