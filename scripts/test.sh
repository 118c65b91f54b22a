#!/usr/bin/env bash
# Run every Portico test: install the third-party peers the system tests need (only what is
# missing), then fmt, clippy and the whole workspace's tests. Works from any directory.
#
#   bash scripts/test.sh              # what CI runs (.ci/run, with CI=true)
#   SKIP_INSTALL=1 bash scripts/test.sh   # do not install anything, only check and test
#   bash scripts/test.sh --install-only  # only install the peers (then run single tests with
#                                        # PORTICO_PEERS=tests/peers cargo test ...)
#
# Installs, when missing: Debian packages (nodejs npm python3-venv curl iproute2 keepalived
# nginx haproxy wrk tcpdump jq openssl ca-certificates pebble util-linux slowhttptest systemd
# (for systemd-analyze) apache2-utils libnginx-mod-stream), node
# modules in tests/peers (`npm ci`, from package-lock.json), and a Python venv at .peers/venv with
# tests/peers/requirements.txt (websockets, kosoku, h2). Exports PORTICO_PEERS and PORTICO_VENV for the tests.
# Under CI=true, a peer that cannot be installed is an error (tests would fail anyway).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CI=${CI:-false}
now_ms() { date +%s%3N; }
secs() { printf '%d.%d' $(($1 / 1000)) $((($1 % 1000) / 100)); }
T_START=$(now_ms)
TIMINGS=()
STAGE=""
STAGE_T0=0

stage() { # stage NAME: start timing a stage
  STAGE=$1
  STAGE_T0=$(now_ms)
  echo "==> $STAGE"
}
FAILED=()
stage_done() { # stage_done [RC]: record the stage's time (and failure)
  local rc=${1:-0} dt
  dt=$(secs $(($(now_ms) - STAGE_T0)))
  local verdict=ok
  [ "$rc" -eq 0 ] || { verdict="FAILED (exit $rc)"; FAILED+=("$STAGE"); }
  TIMINGS+=("$(printf '%-8s %7ss  %s' "$STAGE" "$dt" "$verdict")")
  echo "<== $STAGE: ${dt}s $verdict"
}
summary() {
  local rc=$?
  echo "---- timing"
  for t in "${TIMINGS[@]}"; do echo "  $t"; done
  [ $rc -ne 0 ] && [ ${#FAILED[@]} -eq 0 ] && echo "  (stopped during: $STAGE)"
  printf '  %-8s %7ss\n' total "$(secs $(($(now_ms) - T_START)))"
  [ $rc -eq 0 ] && echo "scripts/test.sh: all stages passed" || echo "scripts/test.sh: FAILED (exit $rc)"
}
trap summary EXIT

missing_peer() { # missing_peer MSG: fail under CI, else warn (the tests will skip)
  if [ "$CI" = true ]; then
    echo "error: $1" >&2
    exit 1
  fi
  echo "warning: $1 (system tests that need it will skip)" >&2
}

# ---------------------------------------------------------------------------- peers
# Debian packages: "package:check" where check is a command name or a `test` expression.
SYS_PYTHON=/usr/bin/python3
APT_WANT=(
  "nodejs:node" "npm:npm" "python3-venv:venv" "curl:curl" "iproute2:ip"
  "keepalived:keepalived" "nginx:nginx" "haproxy:haproxy" "wrk:wrk" "tcpdump:tcpdump"
  "jq:jq" "openssl:openssl" "ca-certificates:cacerts" "pebble:pebble" "util-linux:setpriv"
  "slowhttptest:slowhttptest" "systemd:systemd-analyze" "apache2-utils:htpasswd" "chromium:chromium"
  "etcd-server:etcd" "etcd-client:etcdctl" "protobuf-compiler:protoc" "libprotobuf-dev:protoinc"
  "libnginx-mod-stream:nginx-stream"
)
have() { # have CHECK
  case $1 in
    venv) [ -x "$SYS_PYTHON" ] && "$SYS_PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 ;;
    cacerts) [ -s /etc/ssl/certs/ca-certificates.crt ] ;;
    protoinc) [ -f /usr/include/google/protobuf/descriptor.proto ] ;; # etcd-client's build
    nginx-stream) [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
  esac
}

install_apt() {
  local missing=() item
  for item in "${APT_WANT[@]}"; do
    have "${item#*:}" || missing+=("${item%%:*}")
  done
  # NodeSource's nodejs bundles npm and conflicts with Debian's npm package.
  if [[ " ${missing[*]} " == *" npm "* ]] && have node &&
    dpkg -s nodejs 2>/dev/null | grep -q '^Version:.*nodesource'; then
    missing=("${missing[@]/npm/}")
    missing_peer "npm missing beside NodeSource's nodejs (its own npm); not mixing in Debian's npm"
  fi
  local m=()
  for item in "${missing[@]}"; do [ -n "$item" ] && m+=("$item"); done
  missing=("${m[@]}")
  [ ${#missing[@]} -eq 0 ] && { echo "apt: nothing missing"; return 0; }
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    missing_peer "missing Debian packages: ${missing[*]} (not root or no apt-get: cannot install)"
    return 0
  fi
  echo "apt: installing ${missing[*]}"
  # Do not let package scripts start system services (nginx on :80, keepalived...).
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' >$policy && chmod +x $policy && made_policy=1
  fi
  local rc=0
  {
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  } >.peers/apt.log 2>&1 || rc=$?
  [ $made_policy = 1 ] && rm -f $policy
  if [ $rc -ne 0 ]; then
    tail -20 .peers/apt.log >&2
    missing_peer "apt-get install ${missing[*]} failed (log: .peers/apt.log)"
  fi
}

install_node_modules() {
  local dir=tests/peers stamp=tests/peers/node_modules/.portico-lock-sha
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    missing_peer "node/npm not available: cannot install ws and wscat"
    return 0
  fi
  local want
  want=$(sha256sum $dir/package-lock.json | cut -d' ' -f1)
  if [ -f $stamp ] && [ "$(cat $stamp)" = "$want" ] && [ -x $dir/node_modules/.bin/wscat ]; then
    echo "npm: node_modules up to date"
    return 0
  fi
  echo "npm: npm ci in $dir"
  if (cd $dir && npm ci --no-audit --no-fund --loglevel=error) >.peers/npm.log 2>&1; then
    echo "$want" >$stamp
  else
    tail -20 .peers/npm.log >&2
    missing_peer "npm ci in $dir failed (log: .peers/npm.log)"
  fi
}

install_venv() {
  local venv=.peers/venv req=tests/peers/requirements.txt
  local stamp=$venv/.portico-req-sha want py=$SYS_PYTHON
  [ -x "$py" ] || py=$(command -v python3 || true)
  if [ -z "$py" ]; then
    missing_peer "no python3: cannot make $venv"
    return 0
  fi
  want=$(sha256sum $req | cut -d' ' -f1)
  if [ -f $stamp ] && [ "$(cat $stamp)" = "$want" ] && "$venv/bin/python" -c 'import websockets, h2' 2>/dev/null; then
    echo "venv: $venv up to date"
    return 0
  fi
  if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf $venv
    "$py" -m venv $venv >.peers/venv.log 2>&1 || {
      cat .peers/venv.log >&2
      missing_peer "python3 -m venv $venv failed"
      return 0
    }
  fi
  echo "venv: pip install -r $req"
  if "$venv/bin/python" -m pip install -q --disable-pip-version-check -r $req >>.peers/venv.log 2>&1; then
    echo "$want" >$stamp
  else
    tail -20 .peers/venv.log >&2
    missing_peer "pip install -r $req failed (log: .peers/venv.log)"
  fi
}

ensure_rust_components() {
  local c
  for c in fmt clippy; do
    cargo $c --version >/dev/null 2>&1 && continue
    local comp=$c
    [ $c = fmt ] && comp=rustfmt
    echo "rustup: adding $comp"
    rustup component add $comp >/dev/null 2>&1 || {
      echo "error: cargo $c unavailable and rustup could not add $comp" >&2
      exit 1
    }
  done
}

mkdir -p .peers
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  stage install
  install_apt
  install_node_modules
  install_venv
  ensure_rust_components
  stage_done
fi
[ "${1:-}" = --install-only ] && exit 0

export PORTICO_PEERS="$ROOT/tests/peers"
export PORTICO_VENV="$ROOT/.peers/venv"
export CI
# A CI build is built once: incremental caches only cost disk and time there, and
# line tables are enough for test backtraces (the full debug info doubles the target dir).
if [ "$CI" = true ]; then
  export CARGO_INCREMENTAL=0
  export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}
fi

# ---------------------------------------------------------------------------- checks
# Every stage runs even if an earlier one failed (one CI log shows every problem); the
# script exits non-zero if any failed.
run_stage() { # run_stage NAME CMD...
  stage "$1"
  shift
  local rc=0
  "$@" || rc=$?
  stage_done $rc
}
# Fuzz every parser we own briefly (longer by hand: FUZZ_SECONDS=600 scripts/test.sh).
# cargo-fuzz needs the nightly toolchain (shipped with the machine image); cargo-fuzz itself
# is installed from crates.io when missing.
fuzz_all() {
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    missing_peer "no nightly toolchain: cannot run the fuzz targets"
    return 0
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo install cargo-fuzz"
    cargo install --locked --quiet cargo-fuzz || { missing_peer "cannot install cargo-fuzz"; return 0; }
  fi
  local t targets secs=${FUZZ_SECONDS:-10}
  mkdir -p fuzz/corpus/config_parse
  cp examples/*.toml fuzz/corpus/config_parse/
  # Every target of fuzz/Cargo.toml (a new one is fuzzed without editing this script), all
  # built by one cargo run (shared dependencies, links in parallel); `fuzz run` then finds
  # each binary fresh (same flags) and only runs it.
  targets=$(cd fuzz && cargo +nightly fuzz list) || return 1
  [ -n "$targets" ] || { echo "error: no fuzz targets" >&2; return 1; }
  echo "fuzz: building $(echo $targets)"
  (cd fuzz && cargo +nightly fuzz build >../.peers/fuzz-build.log 2>&1) ||
    { tail -30 .peers/fuzz-build.log >&2; return 1; }
  for t in $targets; do
    echo "fuzz $t for ${secs}s"
    (cd fuzz && cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
      >"../.peers/fuzz-$t.log" 2>&1) || { tail -30 ".peers/fuzz-$t.log" >&2; return 1; }
    grep -E '^Done [0-9]+ runs' ".peers/fuzz-$t.log" || true
  done
}

run_stage fmt cargo fmt --all -- --check
run_stage clippy cargo clippy --workspace --all-targets --quiet -- -D warnings
run_stage test cargo test --workspace --no-fail-fast
run_stage fuzz fuzz_all

if [ ${#FAILED[@]} -ne 0 ]; then
  echo "failed stages: ${FAILED[*]}" >&2
  exit 1
fi
