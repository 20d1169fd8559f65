#!/usr/bin/env bash
# Set up, then run OpenPEX on its embedded default: `openpex serve` on a SQLite store in ./var
# with 4 simulated libvirt hosts, at http://127.0.0.1:8080/OpenPEX. Arguments go to `openpex`
# (e.g. `./scripts/run.sh serve --port 9000`, `./scripts/run.sh demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >&2
if [ "$#" -eq 0 ]; then
  set -- serve
fi
exec .venv/bin/openpex "$@"
