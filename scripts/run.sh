#!/usr/bin/env bash
# Set up, then run OpenPEX on its embedded default (SQLite). With no arguments: `openpex demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >&2
if [ "$#" -eq 0 ]; then
  set -- demo --data-dir var/demo
fi
exec .venv/bin/openpex "$@"
