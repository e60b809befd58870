#!/usr/bin/env bash
# Creates the Quix Streams peer's virtualenv (once) and installs its pinned
# requirements; prints the path of the virtualenv's python.
#
#   bench/peers/quix/setup.sh            -> e.g. /root/.cache/exactly/quix-venv/bin/python
#
# Environment: PYTHON (interpreter to build the venv with, default python3.11
# if present, else python3), EXACTLY_QUIX_VENV (venv dir, default
# ~/.cache/exactly/quix-venv).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${EXACTLY_QUIX_VENV:-$HOME/.cache/exactly/quix-venv}
req="$here/requirements.txt"

log() { printf 'quix setup: %s\n' "$*" >&2; }

if [ -z "${PYTHON:-}" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

# The stamp holds a hash of requirements.txt: a changed pin reinstalls.
want=$(sha256sum "$req" | cut -d' ' -f1)
stamp="$venv/.exactly-requirements"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "$venv/bin/python"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  log "creating virtualenv $venv with $PYTHON"
  mkdir -p "$(dirname "$venv")"
  "$PYTHON" -m venv "$venv"
fi
log "installing $(grep -v '^#' "$req" | tr '\n' ' ')"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
"$venv/bin/python" -W ignore -c 'import quixstreams, confluent_kafka' \
  || { log "error: quixstreams does not import in $venv"; exit 1; }
echo "$want" >"$stamp"
echo "$venv/bin/python"
