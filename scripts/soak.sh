#!/usr/bin/env bash
# The soak with faults (crates/portico/tests/system/soak.rs) for SOAK_SECONDS (default 600):
# HTTP load, 200 WebSockets echoing, TCP streams, a backend killed and restarted every 8 s,
# a reload every 3 s, a certificate swap every 15 s and a slow-read attacker, against one
# `portico run`. Prints the report line (requests sent/failed, WebSockets alive, Portico's
# RSS and descriptors at start and end). Peers: slowhttptest and curl
# (`scripts/test.sh --install-only`). CI runs the same test for 75 s.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_SECONDS=${SOAK_SECONDS:-600}
echo "soak: ${SOAK_SECONDS}s"
mkdir -p .peers
rc=0
cargo test -p portico --test system soak::soak_with_faults -- --exact --nocapture \
  >.peers/soak.log 2>&1 || rc=$?
grep -E '^soak |test result|panicked' .peers/soak.log || tail -30 .peers/soak.log
exit $rc
