#!/usr/bin/env bash
# Set up, then run every test. Tests that need PostgreSQL start their own private server
# (tests/support/postgres.py), those that need QEMU start libvirtd if none answers
# (tests/support/libvirtd.py) and boot the guest setup built (scripts/build-guest.sh);
# nothing is skipped for want of a service.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --tests
status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "test: pytest collected no tests; that is a failure, not a pass" >&2
  exit 1
fi
exit "$status"
