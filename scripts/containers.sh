#!/usr/bin/env bash
# Container images on a machine without a Docker engine or an image registry
# (this project's CI machines): podman builds and runs them, podman-compose runs
# docker-compose.yml, and every base image is made from Debian's packages.
# See /work/shared/CONTAINERS.md for why each setting is needed.
#
#   scripts/containers.sh [all]     every step below, in order
#   scripts/containers.sh engine    install podman & co. (root) and pin containers.conf
#   scripts/containers.sh base      localhost/debian:bookworm-slim, made by debootstrap
#   scripts/containers.sh kafka     the Kafka broker image, tagged with the name
#                                   docker-compose.yml uses (docker.io/apache/kafka:<v>)
#   scripts/containers.sh exactly   the daemon's image from a binary built on the host
#
# Every step is idempotent: packages, the config file and the base image are
# only made when missing; the two images are rebuilt each time, from podman's
# layer cache when their inputs did not change.
#
# Environment:
#   EXACTLY_IMAGE   tag of the daemon's image (default exactly:local, the
#                   name docker-compose.yml gives it)
#   EXACTLY_BINARY  the binary to package (default target/release/exactly;
#                   build it with `cargo build --release --locked`)
#
# Each step reports its duration as `containers.sh: <step> took <n> s`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

base_image=localhost/debian:bookworm-slim
debian_mirror=http://deb.debian.org/debian
exactly_image=${EXACTLY_IMAGE:-exactly:local}
binary=${EXACTLY_BINARY:-$root/target/release/exactly}

log() { printf 'containers.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

timed() { # STEP: runs step_STEP and reports how long it took
  local started=$SECONDS
  "step_$1"
  log "$1 took $((SECONDS - started)) s"
}

as_root() {
  [ "$(id -u)" = 0 ] || die "$* needs root (this script installs packages and writes /etc/containers)"
}

# ---------------------------------------------------------------------------
step_engine() {
  local packages=(podman buildah runc slirp4netns uidmap debootstrap podman-compose)
  local missing=() p
  for p in "${packages[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    as_root "installing ${missing[*]}"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Another job on the machine may hold the dpkg lock for a while.
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
  fi

  # The VM allows no more open files than the current hard limit, and its
  # hybrid cgroups defeat crun: pin both limits, and run runc with cgroupfs.
  # Events go to a file because there is no journald.
  local want
  want=$(cat <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
)
  if [ "$(cat /etc/containers/containers.conf 2>/dev/null)" != "$want" ]; then
    as_root "writing /etc/containers/containers.conf"
    log "writing /etc/containers/containers.conf"
    mkdir -p /etc/containers
    printf '%s\n' "$want" >/etc/containers/containers.conf
  fi
  podman info >/dev/null || die "podman does not work; see /work/shared/CONTAINERS.md"
}

# ---------------------------------------------------------------------------
# The equivalent of the official debian:bookworm-slim image, without a
# registry: a minbase debootstrap with the documentation, man pages, locales
# and apt's caches removed, and dpkg told to leave them out of every package
# installed later (as the slim image does).
step_base() {
  if podman image exists "$base_image"; then
    log "$base_image exists"
    return 0
  fi
  as_root "debootstrap"
  local dir
  dir=$(mktemp -d /var/tmp/exactly-rootfs.XXXXXX)
  # shellcheck disable=SC2064 # expand now: $dir is local
  trap "rm -rf '$dir'" EXIT
  log "debootstrap bookworm (minbase) into $dir"
  debootstrap --variant=minbase bookworm "$dir" "$debian_mirror" >"$dir.log" 2>&1 \
    || { tail -20 "$dir.log" >&2; rm -f "$dir.log"; die "debootstrap failed"; }
  rm -f "$dir.log"

  cat >"$dir/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
# As in Debian's slim images: no documentation except copyright notices,
# no man pages, no translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
  cat >"$dir/etc/apt/apt.conf.d/slim" <<'EOF'
# No cache of downloaded packages inside images.
APT::Keep-Downloaded-Packages "false";
Acquire::Languages "none";
EOF
  # The same suites as the official image, so that images built on it get
  # security updates.
  rm -f "$dir/etc/apt/sources.list"
  cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $debian_mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  find "$dir/usr/share/doc" -mindepth 1 -type f ! -name copyright -delete
  find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$dir"/usr/share/{man,groff,info,locale,lintian,linda}/* \
    "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
    "$dir"/var/lib/apt/lists/* "$dir"/var/log/* "$dir"/tmp/* "$dir"/root/.??*
  tar -C "$dir" --numeric-owner -c . | podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    - "$base_image" >/dev/null
  rm -rf "$dir"
  trap - EXIT
  podman run --rm "$base_image" true || die "the new $base_image does not run"
}

# ---------------------------------------------------------------------------
# The name of the Kafka image docker-compose.yml runs, fully qualified the way
# Docker resolves it, so the local tag stands in for the public image.
compose_kafka_image() {
  local name version
  name=$(sed -n 's/^ *image: *\(apache\/kafka:[^ ]*\) *$/\1/p' "$root/docker-compose.yml" | sort -u)
  if [ -z "$name" ] || [ "$(printf '%s\n' "$name" | wc -l)" != 1 ]; then
    die "docker-compose.yml should run exactly one apache/kafka:<version> image, found: ${name:-none}"
  fi
  version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$root/scripts/kafka/pom.xml")
  [ "${name#apache/kafka:}" = "$version" ] \
    || die "docker-compose.yml runs $name but scripts/kafka/pom.xml fetches Kafka $version; make them agree"
  printf 'docker.io/%s\n' "$name"
}

# build CONTEXT ARGS...: podman build, never pulling (there is no registry);
# its output is shown only when it fails.
build() {
  local ctx=$1 out
  shift
  if ! out=$(podman build --pull=never "$@" "$ctx" 2>&1); then
    printf '%s\n' "$out" | tail -40 >&2
    die "podman build $* failed"
  fi
}

# Packs a build context in a temporary directory (hard links where possible,
# copies across file systems).
link_or_copy() { cp -al "$@" 2>/dev/null || cp -a "$@"; }

step_kafka() {
  local image jars ctx
  image=$(compose_kafka_image)
  podman image exists "$base_image" || die "$base_image is missing: run scripts/containers.sh base"
  jars=$("$root/scripts/kafka.sh" fetch)
  ctx=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" EXIT
  mkdir "$ctx/libs"
  link_or_copy "$jars"/*.jar "$ctx/libs/"
  cp -a "$root/deploy/compose/kafka/." "$ctx/"
  log "building $image from $(basename "$jars") and $base_image"
  build "$ctx" --build-arg BASE_IMAGE="$base_image" \
    -f "$root/deploy/compose/kafka.Dockerfile" -t "$image"
  rm -rf "$ctx"
  trap - EXIT
}

# ---------------------------------------------------------------------------
# The Dockerfile's `prebuilt` path: the context holds the stripped binary and
# the default configuration, nothing else (the repository's .dockerignore
# keeps target/ out of a context made from the checkout, on purpose).
step_exactly() {
  [ -x "$binary" ] || die "$binary not found: build it first with \`cargo build --release --locked\`"
  podman image exists "$base_image" || die "$base_image is missing: run scripts/containers.sh base"
  local ctx
  ctx=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" EXIT
  mkdir "$ctx/config"
  # The release profile keeps debug symbols (about 107 MB); the image needs
  # none of them (about 16 MB).
  strip -o "$ctx/exactly" "$binary"
  cp "$root/config/exactly.toml" "$ctx/config/"
  # The notices the image carries in /usr/share/doc/exactly/.
  cp "$root/LICENSE" "$root/licenses/c-libraries.txt" "$root/licenses/rust-crates.txt" "$ctx/"
  log "building $exactly_image from $binary"
  build "$ctx" --build-arg BINARY_FROM=prebuilt --build-arg RUNTIME_IMAGE="$base_image" \
    -f "$root/Dockerfile" -t "$exactly_image"
  rm -rf "$ctx"
  trap - EXIT
}

# ---------------------------------------------------------------------------
cmd=${1:-all}
case "$cmd" in
  engine | base | kafka | exactly) timed "$cmd" ;;
  all) for s in engine base kafka exactly; do timed "$s"; done ;;
  *) sed -n '2,25p' "$0" >&2; exit 2 ;;
esac
