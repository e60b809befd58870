# Container image for `exactly`, the exactly-once consume-transform-produce daemon.
#
# Two ways in, one image:
#
# 1. From source, on any Docker (the default): a Rust toolchain compiles the
#    binary (and librdkafka, from source, inside rdkafka-sys).
#
#      docker build -t exactly:local .
#      docker run --rm exactly:local check --config /etc/exactly/exactly.toml
#
# 2. From a binary built on the host, where no Rust base image can be had (a
#    machine without a registry, or a CI job that has compiled already). The
#    build context then holds just that binary, stripped, and the default
#    configuration; the repository's .dockerignore keeps target/ out of a
#    context made from the checkout. scripts/containers.sh does this with
#    podman:
#
#      mkdir -p ctx/config && cp config/exactly.toml ctx/config/
#      cp LICENSE licenses/*.txt ctx/
#      strip -o ctx/exactly target/release/exactly
#      docker build -f Dockerfile --build-arg BINARY_FROM=prebuilt -t exactly:local ctx
#
# The base images are build arguments so that a mirror or a locally made
# base can stand in for Docker Hub's (BUILDER_IMAGE, RUNTIME_IMAGE). Builder
# and runtime must be the same Debian release, and so must the host in way 2:
# the binary needs a glibc at least as new as the one it was linked against.
#
# The final image is FROM scratch: the binary, the C libraries it is linked
# against (glibc and libgcc_s, taken from the runtime Debian image), the CA
# bundle, and passwd/group entries for its uid. No shell, no package manager,
# no curl/wget: nothing a process in the container could use that the daemon
# does not. About 20 MB instead of about 100 MB for debian-slim plus
# ca-certificates.
#
# Health: with no curl in the image there is no Dockerfile HEALTHCHECK.
# Orchestrators probe the daemon's own HTTP endpoint on port 9464 instead:
#   GET /healthz  liveness probe
#   GET /readyz   readiness probe
# (see deploy/kubernetes/statefulset.yaml for the probes).

# Bump the Rust version together with Cargo.lock: the highest rust-version
# among the locked dependencies is 1.88 at the time of writing, so 1.90
# leaves headroom.
ARG BUILDER_IMAGE=rust:1.90-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
# Where the binary comes from: `builder` (compiled below) or `prebuilt` (the
# file named by BINARY in the build context).
ARG BINARY_FROM=builder

###############################################################################
FROM ${BUILDER_IMAGE} AS builder

# rdkafka-sys builds librdkafka with cmake (Cargo.toml: cmake-build), and
# OpenSSL, libcurl, zstd and zlib from their vendored sources (ssl-vendored,
# curl-static, zstd, libz-static): that needs a C compiler, make, cmake and
# perl (OpenSSL's Configure). pkg-config and python3 are used by some of
# the build scripts. No -dev packages: nothing links against the system's
# libraries, so the runtime needs only glibc and CA certificates.
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
# `install -s` strips the debug symbols the release profile keeps (the image
# would be about 90 MB larger; backtraces still name functions).
COPY src ./src
RUN find src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked \
    && install -D -s -m 0755 target/release/exactly /out/exactly

# The project's license and the third-party notices for what the binary
# contains (licenses/generate.sh makes the two .txt files from Cargo.lock).
COPY LICENSE licenses/c-libraries.txt licenses/rust-crates.txt /out/doc/

###############################################################################
FROM scratch AS prebuilt

# A binary built on the host, for the same Debian release as RUNTIME_IMAGE.
ARG BINARY=exactly
COPY ${BINARY} /out/exactly
# LICENSE and the notices (licenses/*.txt), from the top of the context. A
# COPY whose every source is an unmatched pattern fails, so the binary is
# named again, so that the rootfs stage can name what is missing (and fail).
COPY ${BINARY} LICENS[E] c-libraries.tx[t] rust-crates.tx[t] /out/doc/

###############################################################################
# The binary of the chosen path; only that path's stages are built.
FROM ${BINARY_FROM} AS binary

###############################################################################
FROM ${RUNTIME_IMAGE} AS rootfs

# Only CA certificates: librdkafka, OpenSSL, libcurl, zstd and zlib are
# linked statically, so glibc (already in the base image) is the one shared
# library needed. librdkafka verifies brokers' TLS certificates against the
# system's CA bundle unless `ssl.ca.location` names another.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY --from=binary /out/exactly /rootfs/usr/local/bin/exactly
COPY --from=binary /out/doc/ /out/doc/

# The root file system of the final image, in /rootfs:
# - the shared libraries the binary needs, as ldd lists them, including the
#   dynamic loader at the path compiled into the binary (glibc >= 2.34 has
#   the `files` and `dns` name services built in, so no libnss_* modules);
# - the copyright notices of the Debian packages they come from (where the
#   base image has them: slim images drop doc directories that are links),
#   and those packages' dpkg status entries in /var/lib/dpkg/status.d/ (one
#   file a package, as distroless images keep them) with /etc/os-release,
#   so that SBOM scanners (scripts/sbom.sh) name them, their versions and
#   their distribution;
# - exactly's LICENSE and the notices of the C libraries and Rust crates
#   compiled into it, in /usr/share/doc/exactly/;
# - the CA bundle; passwd and group with a fixed, non-root uid/gid (10001),
#   so Kubernetes can check runAsNonRoot against a numeric USER and volume
#   permissions are predictable; a /tmp.
# The daemon runs once here, which fails the build if a library is missing.
RUN set -eu; \
    needed=$(ldd /rootfs/usr/local/bin/exactly); \
    for lib in $needed; do \
        case "$lib" in /*) ;; *) continue ;; esac; \
        cp -L --parents "$lib" /rootfs; \
        owner=$(dpkg -S "$lib"); \
        pkg=${owner%%:*}; \
        notice="/usr/share/doc/$pkg/copyright"; \
        if [ -e "$notice" ]; then cp -L --parents "$notice" /rootfs; fi; \
        mkdir -p /rootfs/var/lib/dpkg/status.d; \
        dpkg-query -s "$pkg" > "/rootfs/var/lib/dpkg/status.d/$pkg"; \
    done; \
    cp --parents /usr/share/doc/ca-certificates/copyright /rootfs; \
    dpkg-query -s ca-certificates > /rootfs/var/lib/dpkg/status.d/ca-certificates; \
    cp -L --parents /etc/os-release /rootfs; \
    for doc in LICENSE c-libraries.txt rust-crates.txt; do \
        if [ -e "/out/doc/$doc" ]; then \
            install -D -m 0644 "/out/doc/$doc" "/rootfs/usr/share/doc/exactly/$doc"; \
        else \
            echo "error: $doc is not in the build context: an image must carry it" >&2; \
            exit 1; \
        fi; \
    done; \
    cp --parents /etc/ssl/certs/ca-certificates.crt /rootfs; \
    printf '%s\n' 'root:x:0:0:root:/root:/usr/sbin/nologin' \
        'exactly:x:10001:10001:exactly:/nonexistent:/usr/sbin/nologin' > /rootfs/etc/passwd; \
    printf '%s\n' 'root:x:0:' 'exactly:x:10001:' > /rootfs/etc/group; \
    printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' > /rootfs/etc/nsswitch.conf; \
    mkdir -m 1777 /rootfs/tmp; \
    chroot /rootfs /usr/local/bin/exactly --version

###############################################################################
FROM scratch AS runtime

COPY --from=rootfs /rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
# Default configuration; deployments override single keys with
# EXACTLY__<SECTION>__<KEY> variables or mount their own file over it.
COPY config/exactly.toml /etc/exactly/exactly.toml

USER 10001:10001

# Prometheus /metrics plus the /healthz and /readyz probes.
EXPOSE 9464

# The binary is PID 1 and handles SIGTERM itself: it finishes (or aborts) the
# open transaction within processing.shutdown_timeout_ms (8 s by default),
# leaves the consumer group and exits, so no init shim is needed. Give it
# more than that before SIGKILL.
STOPSIGNAL SIGTERM
ENTRYPOINT ["exactly"]
CMD ["run", "--config", "/etc/exactly/exactly.toml"]
