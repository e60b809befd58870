#!/usr/bin/env bash
# Bills of materials for the release binary and the container image, in
# CycloneDX and SPDX JSON, into target/sbom/ (git-ignored with target/):
#
#   exactly-VERSION-TARGET.cdx.json    the `exactly` binary: every crate compiled
#                                      into it, with versions, licenses, purls,
#                                      checksums and the dependency graph
#                                      (cargo-cyclonedx, CycloneDX 1.5). The C
#                                      libraries appear as the -sys crates that
#                                      vendor them, whose versions name theirs:
#                                      rdkafka-sys 4.10.0+2.12.1 is librdkafka
#                                      2.12.1 (licenses/c-libraries.txt)
#   exactly-VERSION-TARGET.spdx.json   the same in SPDX 2.3 (syft convert)
#   exactly-image-VERSION.cdx.json     the image scripts/containers.sh builds:
#   exactly-image-VERSION.spdx.json    every file with its SHA-256 (syft scan),
#                                      the OS and the Debian packages the image
#                                      takes files from (their dpkg entries are
#                                      in /var/lib/dpkg/status.d/); the crates
#                                      are in the binary's SBOM above
#
#   scripts/sbom.sh            both; the image part needs root and podman, and
#                              builds target/release/exactly first if missing
#                              (`cargo build --release --locked`, slow)
#   scripts/sbom.sh --binary   the binary's only (no podman, no build)
#
# Environment:
#   EXACTLY_BINARY  the binary the image packages (default target/release/exactly)
#   EXACTLY_IMAGE   the image tag to build and scan (default exactly:sbom)
#
# The tools are pinned and installed when missing: cargo-cyclonedx with
# `cargo install --locked` (about two minutes), syft with `go install` through
# the Go module proxy (several minutes and about 2 GB of module cache).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

cyclonedx_version=0.5.9
syft_version=1.57.2
out=$root/target/sbom
binary=${EXACTLY_BINARY:-$root/target/release/exactly}
image=${EXACTLY_IMAGE:-exactly:sbom}

with_image=1
case "${1:-}" in
  "") ;;
  --binary) with_image=0 ;;
  *) sed -n '2,30p' "$0" >&2; exit 2 ;;
esac

log() { printf 'sbom.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Tools, the pinned versions.
# (It calls itself "cargo-cyclonedx-cyclonedx 0.5.9": only the number counts.)
have=$(cargo cyclonedx --version 2>/dev/null || true)
if [ "${have##* }" != "$cyclonedx_version" ]; then
  log "installing cargo-cyclonedx $cyclonedx_version (found: ${have:-none})"
  cargo install cargo-cyclonedx --version "$cyclonedx_version" --locked --quiet
fi
command -v go >/dev/null || die "go is needed to install syft (go install github.com/anchore/syft/cmd/syft@v$syft_version)"
syft=$(go env GOPATH)/bin/syft
if [ "$("$syft" version 2>/dev/null | sed -n 's/^Version: *//p')" != "$syft_version" ]; then
  log "installing syft $syft_version with go install"
  # A `go install` build has no version unless it is given one; the SBOMs
  # name the tool and version that wrote them.
  GOFLAGS=-buildvcs=false go install -ldflags "-X main.version=$syft_version" \
    "github.com/anchore/syft/cmd/syft@v$syft_version"
fi
# No network check for a newer syft (there is no route to it here).
export SYFT_CHECK_FOR_APP_UPDATE=false

version=$(cargo metadata --format-version 1 --no-deps --locked --offline \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "exactly"))')
target=$(rustc -vV | sed -n 's/^host: //p')
mkdir -p "$out"

# ---------------------------------------------------------------------------
# The binary. cargo-cyclonedx writes next to Cargo.toml; the file is moved
# into target/sbom/ at once (and removed if this script stops first). The
# commit's date stands in for "now", so the same commit gives the same SBOM.
if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git rev-parse --git-dir >/dev/null 2>&1; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
  export SOURCE_DATE_EPOCH
fi
trap 'rm -f "$root/exactly_bin.cdx.json"' EXIT
cargo fetch --locked --quiet
cargo cyclonedx --quiet --format json --spec-version 1.5 --describe binaries --target "$target"
bin_sbom=$out/exactly-$version-$target
mv "$root/exactly_bin.cdx.json" "$bin_sbom.cdx.json"
"$syft" convert "$bin_sbom.cdx.json" -o "spdx-json=$bin_sbom.spdx.json" 2>/dev/null \
  || die "syft could not convert $bin_sbom.cdx.json to SPDX"
written=("$bin_sbom.cdx.json" "$bin_sbom.spdx.json")

# ---------------------------------------------------------------------------
# The image: built the way CI builds it (scripts/containers.sh, from the
# binary built on the host), saved as an OCI archive, scanned by syft with
# every file catalogued (the default keeps only files a package owns, and
# this image has no package database).
if [ "$with_image" = 1 ]; then
  [ "$(id -u)" = 0 ] || die "the image SBOM needs root (podman, as scripts/containers.sh); run with --binary for the binary's only"
  if [ ! -x "$binary" ]; then
    [ -z "${EXACTLY_BINARY:-}" ] || die "EXACTLY_BINARY=$binary is not an executable"
    log "no $binary: cargo build --release --locked (librdkafka and OpenSSL from source: slow)"
    cargo build --release --locked
  fi
  EXACTLY_BINARY=$binary scripts/containers.sh engine
  EXACTLY_BINARY=$binary scripts/containers.sh base
  EXACTLY_BINARY=$binary EXACTLY_IMAGE=$image scripts/containers.sh exactly
  archive=$(mktemp -d)/image.tar
  trap 'rm -f "$root/exactly_bin.cdx.json"; rm -rf "$(dirname "$archive")"' EXIT
  podman save --quiet --format oci-archive -o "$archive" "$image"
  img_sbom=$out/exactly-image-$version
  SYFT_FILE_METADATA_SELECTION=all "$syft" scan "oci-archive:$archive" --quiet \
    --source-name exactly --source-version "$version" \
    -o "cyclonedx-json@1.5=$img_sbom.cdx.json" -o "spdx-json@2.3=$img_sbom.spdx.json"
  written+=("$img_sbom.cdx.json" "$img_sbom.spdx.json")
fi

# ---------------------------------------------------------------------------
# What was written: format, size, and what it lists.
for f in "${written[@]}"; do
  python3 - "$f" <<'PY'
import json, os, sys
path = sys.argv[1]
d = json.load(open(path))
if "bomFormat" in d:
    comps = d.get("components", [])
    kinds = {}
    for c in comps:
        kinds[c.get("type")] = kinds.get(c.get("type"), 0) + 1
    what = f"CycloneDX {d['specVersion']}, " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
else:
    what = f"{d['spdxVersion']}, {len(d.get('packages', []))} packages, {len(d.get('files', []))} files"
print(f"sbom.sh: {os.path.relpath(path)}  {os.path.getsize(path)} bytes  {what}")
PY
done
