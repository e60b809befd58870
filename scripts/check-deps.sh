#!/usr/bin/env bash
# Dependency check: cargo-deny against deny.toml, without the network.
#
#   advisories   RustSec advisories for every crate in Cargo.lock, from a
#                snapshot of the advisory database (GitHub, where the
#                database lives, is out of reach on these machines)
#   licenses     every crate's license is on deny.toml's allow-list
#   bans         banned crates, duplicate versions where they matter
#   sources      every crate comes from crates.io
#   notices      licenses/*.txt (the notices the image ships) were made from
#                this Cargo.lock by licenses/generate.sh
#
# The snapshot is a .tar.gz of a shallow clone of RustSec's advisory-db.
# Its commit and age are printed first: "advisories ok" means "no advisory
# known on that date", nothing newer.
#
# Usage: scripts/check-deps.sh
#   EXACTLY_ADVISORY_DB  the snapshot (default: shared/advisory-db.tar.gz
#                        beside the repository, as on CI's machines)
# cargo-deny is installed with `cargo install --locked` when the pinned
# version is missing (about two minutes).
# Exit status: 0 if every check passed, 1 otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# Pinned: the version shared/SUPPLY-CHAIN.md was tried with. A newer one may
# change defaults or the database directory's name below.
deny_version=0.20.2
snapshot=${EXACTLY_ADVISORY_DB:-$(dirname "$root")/shared/advisory-db.tar.gz}
# Older than this, the snapshot is still used, with a warning in the output.
stale_days=90

log() { printf 'check-deps.sh: %s\n' "$*"; }
die() { printf 'check-deps.sh: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# cargo-deny, the pinned version.
have=$(cargo deny --version 2>/dev/null || true)
if [ "$have" != "cargo-deny $deny_version" ]; then
  log "installing cargo-deny $deny_version (found: ${have:-none})"
  cargo install cargo-deny --version "$deny_version" --locked --quiet
fi
log "$(cargo deny --version)"

# ---------------------------------------------------------------------------
# The advisory snapshot, unpacked where cargo-deny looks for the default
# database (the directory's name is derived from the database's URL, so
# deny.toml keeps the default db-urls). Unpacked on every run: the check uses
# exactly the snapshot it reports, not whatever an earlier run left there.
[ -f "$snapshot" ] || die "no advisory snapshot at $snapshot
  The advisory check needs RustSec's database offline: a .tar.gz of a clone of
  advisory-db (shared/advisory-db.tar.gz beside the repository on CI's machines).
  Set EXACTLY_ADVISORY_DB=/path/to/advisory-db.tar.gz to use another one."
command -v git >/dev/null || die "git is needed to read the snapshot's commit"
db="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691"
rm -rf "$db"
mkdir -p "$db"
tar xzf "$snapshot" -C "$db" || die "cannot unpack $snapshot"
commit=$(git -C "$db" log -1 --format=%H 2>/dev/null) \
  || die "$snapshot holds no git repository (expected a clone of RustSec's advisory-db)"
committed=$(git -C "$db" log -1 --format=%cI)
age_days=$((($(date +%s) - $(git -C "$db" log -1 --format=%ct)) / 86400))
log "advisory snapshot: commit $commit of $committed, $age_days days old ($snapshot)"
if [ "$age_days" -gt "$stale_days" ]; then
  log "warning: the snapshot is more than $stale_days days old: advisories published since $committed are not checked"
fi

# ---------------------------------------------------------------------------
# Every crate's source must be on disk for --offline (cargo metadata reads
# each manifest). Nothing is downloaded when a build already fetched them;
# --locked fails if Cargo.lock does not match Cargo.toml.
cargo fetch --locked --quiet

# The licenses in the graph, for the log. A crate offered under `A OR B`
# counts under both, and passes when one of them is allowed.
log "licenses offered by the crates in the graph (\`A OR B\` counts under both):"
cargo deny --offline --locked list --layout license 2>/dev/null \
  | sed -E 's/^([^:]+) \(([0-9]+)\):.*/  \2\t\1/'

# Advisories, bans, licenses and sources; warnings (duplicate versions) are
# shown but do not fail.
failed=0
cargo deny --offline --locked check || failed=1

# The notices the image ships (licenses/*.txt) must describe this Cargo.lock:
# each names the sha256 of the one it was made from.
lock_sha=$(sha256sum Cargo.lock | cut -d' ' -f1)
for notices in licenses/c-libraries.txt licenses/rust-crates.txt; do
  if ! grep -q "from Cargo.lock (sha256 $lock_sha)" "$notices" 2>/dev/null; then
    printf 'check-deps.sh: %s was not made from this Cargo.lock: run licenses/generate.sh and commit licenses/\n' \
      "$notices" >&2
    failed=1
  fi
done

[ "$failed" = 0 ] \
  || die "dependency check failed (above); deny.toml and docs/supply-chain.md say what each check allows"
log "ok (advisories as of $committed; notices match Cargo.lock)"
