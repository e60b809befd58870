# A stand-in for the public apache/kafka image, for machines that cannot pull
# it (no registry): Debian's Java 17 and the Kafka jars that Maven fetched for
# scripts/kafka.sh. scripts/containers.sh builds it and tags it with the name
# docker-compose.yml uses, so the same compose file runs here and on Docker.
# It behaves like the public image as far as that file relies on it:
# server.properties comes from KAFKA_* environment variables, the storage is
# formatted on first start, and /opt/kafka/bin has the usual tool scripts.
#
# Build context (scripts/containers.sh assembles it in a temporary directory):
#   libs/     the jars of ~/.cache/exactly/kafka-<version>
#   bin/      deploy/compose/kafka/bin
#   config/   deploy/compose/kafka/config
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# The JRE only; Kafka 4.x needs Java 17 or newer for the broker. Its
# post-install script links a man page into /usr/share/man/man1, which a slim
# image does not have.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*

# The public image runs as a non-root user with uid 1000 and keeps its data in
# the container unless a volume is mounted.
RUN groupadd --system --gid 1000 kafka \
    && useradd --system --uid 1000 --gid kafka --home-dir /opt/kafka --shell /usr/sbin/nologin kafka \
    && install -d -o kafka -g kafka /var/lib/kafka/data /opt/kafka/config

COPY libs/ /opt/kafka/libs/
COPY config/ /opt/kafka/config/
COPY bin/ /opt/kafka/bin/

# One dispatcher script behind every tool name (see bin/kafka-run-class.sh).
RUN for tool in kafka-topics kafka-console-producer kafka-console-consumer \
            kafka-consumer-groups kafka-producer-perf-test kafka-storage \
            kafka-transactions kafka-get-offsets; do \
        ln -s kafka-run-class.sh "/opt/kafka/bin/$tool.sh"; \
    done

ENV PATH=/opt/kafka/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 1000:1000
WORKDIR /opt/kafka
EXPOSE 9092
ENTRYPOINT ["/opt/kafka/bin/broker.sh"]
