# Container image for `exactly`, the exactly-once consume-transform-produce daemon.
#
#   docker build -t exactly:local .
#   docker run --rm exactly:local check --config /etc/exactly/exactly.toml
#
# Two stages: a full Rust toolchain builds the binary (and librdkafka, from
# source, inside rdkafka-sys), and only that binary ships, on a slim Debian of
# the same release, so glibc matches what the binary was linked against.
#
# Health: the runtime image has no curl/wget on purpose (smaller attack
# surface), so there is no Dockerfile HEALTHCHECK. Orchestrators probe the
# daemon's own HTTP endpoint on port 9464 instead:
#   GET /healthz  liveness probe
#   GET /readyz   readiness probe
# (see deploy/kubernetes/statefulset.yaml for the probes).

# Bump together with Cargo.lock: the highest rust-version among the locked
# dependencies is 1.88 at the time of writing, so 1.90 leaves headroom.
ARG RUST_VERSION=1.90
ARG DEBIAN_RELEASE=bookworm

###############################################################################
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder

# rdkafka-sys builds librdkafka with cmake (Cargo.toml: cmake-build), and
# OpenSSL, libcurl, zstd and zlib from their vendored sources (ssl-vendored,
# curl-static, zstd, libz-static): that needs a C compiler, make, cmake and
# perl (OpenSSL's Configure). pkg-config and python3 are used by some of
# the build scripts. No -dev packages: nothing links against the system's
# libraries, so the runtime image needs only glibc and CA certificates.
# Versions are not pinned: the Debian release is the pin, and exact package
# versions disappear from the mirrors with every point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential \
        cmake \
        perl \
        pkg-config \
        python3 \
    && rm -rf /var/lib/apt/lists/*

# Build zlib from the copy vendored in libz-sys and link it statically, so the
# binary needs nothing beyond glibc at run time.
ENV LIBZ_SYS_STATIC=1 \
    CARGO_TERM_COLOR=never

WORKDIR /build

# Dependency layer: with only the manifests and a stub crate, this layer (the
# slow part: every crate plus librdkafka's C sources) is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit. The package has
# both a library (src/lib.rs) and a binary (src/main.rs), so stub both.
# If Cargo.toml ever gains a build script or explicitly-pathed targets
# (benches, examples), stub or copy those here too.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src \
        target/release/exactly \
        target/release/deps/exactly-* \
        target/release/deps/libexactly-* \
        target/release/.fingerprint/exactly-*

# Real sources. COPY keeps the files' original mtimes, which can be older than
# the stub build above; the fingerprints of the `exactly` crate were removed,
# and the touch makes doubly sure cargo recompiles it instead of shipping the stub.
COPY src ./src
RUN find src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked \
    && install -D -m 0755 target/release/exactly /out/exactly

###############################################################################
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# Only CA certificates: librdkafka, OpenSSL, libcurl, zstd and zlib are
# linked statically, so glibc (already in the base image) is the one shared
# library needed. librdkafka verifies brokers' TLS certificates against the
# system's CA bundle unless `ssl.ca.location` names another.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed, non-root uid/gid (10001) so Kubernetes can check runAsNonRoot
# against a numeric USER and volume permissions are predictable.
RUN groupadd --system --gid 10001 exactly \
    && useradd --system --uid 10001 --gid exactly \
        --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin exactly

COPY --from=builder /out/exactly /usr/local/bin/exactly
# Default configuration; deployments override single keys with
# EXACTLY__<SECTION>__<KEY> variables or mount their own file over it.
COPY config/exactly.toml /etc/exactly/exactly.toml

USER 10001:10001

# Prometheus /metrics plus the /healthz and /readyz probes.
EXPOSE 9464

# The binary is PID 1 and handles SIGTERM itself: it finishes (or aborts) the
# open transaction, leaves the consumer group and exits, so no init shim is
# needed. Give it more than its shutdown timeout before SIGKILL.
STOPSIGNAL SIGTERM
ENTRYPOINT ["exactly"]
CMD ["run", "--config", "/etc/exactly/exactly.toml"]
