#!/usr/bin/env bash
# Portico vs nginx vs HAProxy, side by side on this machine, in the same run.
#
# Starts an HTTP origin (nginx, 1 worker, `return 200 "hello"`) and a WebSocket echo origin
# (node `ws`), then three proxies in front of them on loopback ports (nginx 2 workers,
# HAProxy nbthread 2, Portico threads 2), and measures in interleaved rounds:
#   ka64     HTTP/1.1 keep-alive, wrk -t2 -c64
#   ka1000   HTTP/1.1 keep-alive, wrk -t2 -c1000
#   close    new TCP connection per request (Connection: close), wrk -t2 -c64
#   ws       WebSocket echo ping-pong, 100 connections, 32-byte messages
#   idle     idle WebSocket memory: fresh proxy process, RSS before/after N idle connections
#   tls      (optional) HTTPS keep-alive, ECDSA P-256, TLS 1.3, wrk -t2 -c64 (proxies only)
#   tlsclose (optional) HTTPS, new connection per request; wrk resumes TLS sessions (proxies only)
#   hs       (optional) full TLS 1.3 handshakes, ECDSA P-256: bench/tls-hs-client.py (never resumes),
#            HS_PROCS processes, one GET per connection; listeners with resumption off (proxies only)
#   hsrsa    (optional) the same with an RSA-2048 certificate
#   ka64limit (optional) ka64 on a route with a rate limit that never triggers (nginx limit_req,
#            Portico limit_rate; nginx and Portico only)
#   gzip4k   (optional) ka64 on a 4 KiB text response gzipped by the proxy, level 6 (nginx gzip on,
#            Portico compress; nginx and Portico only)
#   h2       (optional) HTTP/2 to the proxy over TLS (ECDSA, ALPN h2), h2load -t2 -cH2_CONNS
#            -mH2_STREAMS (100 streams in flight by default); HTTP/1.1 to the origin (proxies only)
#   big      (optional) large bodies: BIG_BYTES (1 GiB) downloaded (bigdown) and uploaded (bigup)
#            through the proxy, one transfer at a time for DUR s (at least one each), node
#            origin bench/big-origin.js; unit = MiB, CPU per MiB and MiB/s
# For every run: units/s, p50/p99, errors, CPU time of the proxy / origin / client processes
# (utime+stime from /proc) per unit, machine busy %, and the CPU share of foreign processes
# (so that runs disturbed by other workloads are visible). Writes bench-out/report-DATE.md.
#
# Usage: scripts/bench.sh            (see docs/benchmarks.md)
# Env:   ROUNDS=5 DUR=10 PHASES="ka64 ka1000 close ws idle" TARGETS="direct nginx haproxy portico"
#        (target portico runs with the admin API on, so its data-plane metrics are counted,
#        as users run it; PORTICO_ADMIN=off turns it off. TARGETS may add portico_metrics:
#        the same binary with the admin API on, to measure what the metrics cost together
#        with PORTICO_ADMIN=off)
#        IDLE_N=10000 WS_CONNS=100 WS_MSG=32 HS_PROCS=8 PORT_BASE=31000 OUT=bench-out
#        H2_CONNS=10 H2_STREAMS=10 BIG_BYTES=1073741824
#        (PORT_BASE: decimal, ports BASE+1..BASE+98 on 127.0.0.1; keep them below the ephemeral range;
#        scripts/bench-tcp.sh uses 32001/32070/32080/32090 by default: not 32000 next to it)
#        PORTICO_BIN=path (skip the build)  SKIP_BUILD=1  NO_INSTALL=1
#        QUIET_WAIT=120 (max s to wait for a quiet machine before each run)  QUIET_MAX=15 (busy %)
#        QUIET_BUDGET=1800 (max s of such waiting in the whole run)
#        FOREIGN_MAX=5 (foreign CPU % above which a run is repeated)  RETRIES=2
#        BENCH_NICE=0 (e.g. -5 as root: the bench's processes get the CPU before other workloads)
#        PORTICO_ADMIN=on (off: target portico without the admin API, i.e. without metrics)
set -euo pipefail

# the knobs given in the environment, to print the exact command in the report
GIVEN_ENV=$(for v in ROUNDS DUR PHASES TARGETS IDLE_N WS_CONNS WS_MSG HS_PROCS H2_CONNS H2_STREAMS BIG_BYTES PORT_BASE OUT QUIET_WAIT QUIET_MAX \
  QUIET_BUDGET FOREIGN_MAX RETRIES WRK_THREADS BENCH_NICE PORTICO_BIN SKIP_BUILD NO_INSTALL PORTICO_ADMIN; do
  if [[ -n ${!v+x} ]]; then printf "%s=%q " "$v" "${!v}"; fi
done)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"

ROUNDS=${ROUNDS:-5}
DUR=${DUR:-10}
PHASES=${PHASES:-"ka64 ka1000 close ws idle"}
TARGETS=${TARGETS:-"direct nginx haproxy portico"}
IDLE_N=${IDLE_N:-10000}
WS_CONNS=${WS_CONNS:-100}
WS_MSG=${WS_MSG:-32}
HS_PROCS=${HS_PROCS:-8} # client processes in the handshake phases (bench/tls-hs-client.py)
H2_CONNS=${H2_CONNS:-10}     # h2 phase: connections ...
H2_STREAMS=${H2_STREAMS:-10} # ... times concurrent streams on each = streams in flight
BIG_BYTES=${BIG_BYTES:-1073741824} # big phase: bytes per transfer (1 GiB)
PORT_BASE=${PORT_BASE:-31000}
# Decimal, whatever it looks like: bash arithmetic reads a leading 0 as octal (032000 is
# 13312, 08000 is an error that stopped the script at its first line of port arithmetic).
if [[ ! $PORT_BASE =~ ^[0-9]+$ ]]; then
  echo "[bench] error: PORT_BASE must be a number, got '$PORT_BASE'" >&2
  exit 1
fi
PORT_BASE=$((10#$PORT_BASE))
if ((PORT_BASE < 1024 || PORT_BASE + 98 > 65535)); then
  echo "[bench] error: PORT_BASE must be between 1024 and $((65535 - 98)) (ports BASE+1..BASE+98 are used), got $PORT_BASE" >&2
  exit 1
fi
OUT=${OUT:-"$ROOT/bench-out"}
QUIET_WAIT=${QUIET_WAIT:-120}
QUIET_MAX=${QUIET_MAX:-15}
QUIET_BUDGET=${QUIET_BUDGET:-1800} # total seconds all waits for quiet may take
QUIET_SPENT=0
FOREIGN_MAX=${FOREIGN_MAX:-5}
RETRIES=${RETRIES:-2}
WRK_THREADS=${WRK_THREADS:-2}
BENCH_NICE=${BENCH_NICE:-0} # e.g. -5: run the bench's processes ahead of other workloads (root only)
PORTICO_ADMIN=${PORTICO_ADMIN:-on} # off: target portico without the admin API (so without data-plane metrics)

ORIGIN_HTTP=$((PORT_BASE + 1))
ORIGIN_WS=$((PORT_BASE + 10))
PORTICO_HTTP=$((PORT_BASE + 70))
PORTICO_WS=$((PORT_BASE + 71))
PORTICO_TLS=$((PORT_BASE + 72))
NGINX_TLS=$((PORT_BASE + 82))
HAPROXY_TLS=$((PORT_BASE + 92))
# full-handshake listeners (session resumption off where the proxy can turn it off): ECDSA, RSA
PORTICO_TLS_FULL=$PORTICO_TLS # Portico has no switch for resumption; s_time -new never resumes
PORTICO_TLS_RSA=$((PORT_BASE + 73))
# target portico_metrics: the same Portico with the admin API on (data-plane metrics counted)
PORTICO_M_HTTP=$((PORT_BASE + 74))
PORTICO_M_WS=$((PORT_BASE + 75))
PORTICO_M_ADMIN=$((PORT_BASE + 76))
# target portico's admin API (on unless PORTICO_ADMIN=off)
PORTICO_ADMIN_PORT=$((PORT_BASE + 77))
NGINX_TLS_FULL=$((PORT_BASE + 83))
NGINX_TLS_RSA=$((PORT_BASE + 84))
HAPROXY_TLS_FULL=$((PORT_BASE + 93))
HAPROXY_TLS_RSA=$((PORT_BASE + 94))
PORTICO_TLS_OK=1
NGINX_HTTP=$((PORT_BASE + 80))
NGINX_WS=$((PORT_BASE + 81))
HAPROXY_HTTP=$((PORT_BASE + 90))
HAPROXY_WS=$((PORT_BASE + 91))
# h2 phase: Portico answers h2 on its TLS listener (ALPN h2, http/1.1 by default); nginx and
# HAProxy get their own h2 listeners so that the tls phase's listeners stay as they were
NGINX_H2=$((PORT_BASE + 85))
HAPROXY_H2=$((PORT_BASE + 95))
# big phase: its own origin and proxy ports (streaming settings apply only there)
ORIGIN_BIG=$((PORT_BASE + 12))
PORTICO_BIG=$((PORT_BASE + 78))
NGINX_BIG=$((PORT_BASE + 88))
HAPROXY_BIG=$((PORT_BASE + 98))
HAPROXY_MAXCONN=9000 # as in the anchor measurements: ~2 fds per connection under a 20000 fd limit

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
has() { [[ " $1 " == *" $2 "* ]]; }

# ---------------------------------------------------------------- tools ----------------------
install_tools() {
  local missing=()
  command -v nginx >/dev/null || missing+=(nginx)
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v ss >/dev/null || missing+=(iproute2)
  command -v python3 >/dev/null || missing+=(python3)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v h2load >/dev/null || missing+=(nghttp2-client)
  command -v curl >/dev/null || missing+=(curl)
  if ((${#missing[@]})); then
    [[ ${NO_INSTALL:-0} == 1 || $(id -u) != 0 ]] && die "missing tools: ${missing[*]} (run as root to install)"
    log "installing ${missing[*]}"
    # keep package scripts from starting system services (nginx, haproxy) on install
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    ((created_policy)) && rm -f "$policy"
  fi
  if [[ ! -f $BENCH/node_modules/ws/package.json ]]; then
    log "installing node ws (bench/package-lock.json)"
    (cd "$BENCH" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

build_portico() {
  if [[ -n ${PORTICO_BIN:-} ]]; then return; fi
  PORTICO_BIN="$ROOT/target/release/portico"
  if [[ ${SKIP_BUILD:-0} == 1 ]]; then
    [[ -x $PORTICO_BIN ]] || die "SKIP_BUILD=1 but $PORTICO_BIN does not exist"
    return
  fi
  log "building portico (cargo build --release -p portico)"
  (cd "$ROOT" && cargo build --release -p portico) || die "portico build failed"
}

# ---------------------------------------------------------------- processes ------------------
BASE=""
declare -A PID=()      # role -> main pid of a process we started
declare -a IDLE_CLIENTS=()

stop_pid() { # pid [timeout_s]: SIGTERM, wait, then SIGKILL; only pids we started
  local pid=$1 t=${2:-10} i
  [[ -n $pid ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < t * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local p role
  for p in "${IDLE_CLIENTS[@]}"; do stop_pid "$p" 2; done
  for role in portico portico_metrics haproxy nginx origin_big origin_ws origin_http; do
    [[ -n ${PID[$role]:-} ]] && stop_pid "${PID[$role]}" 10
  done
  if [[ -n $BASE && -d $BASE && ${KEEP_BASE:-0} != 1 ]]; then rm -rf "$BASE"; fi
  exit "$rc"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port pid what
  local i
  for ((i = 0; i < 200; i++)); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited during start-up (logs in $BASE/logs)"
    sleep 0.05
  done
  die "$3 did not open port $1 within 10 s"
}

fill_template() { # src dst
  sed -e "s|@BASE@|$BASE|g" -e "s|@NOFILE@|$NOFILE|g" -e "s|@NGINX_CONNS@|$((NOFILE - 1000))|g" \
    -e "s|@ORIGIN_HTTP@|$ORIGIN_HTTP|g" -e "s|@ORIGIN_WS@|$ORIGIN_WS|g" \
    -e "s|@NGINX_HTTP@|$NGINX_HTTP|g" -e "s|@NGINX_WS@|$NGINX_WS|g" \
    -e "s|@HAPROXY_HTTP@|$HAPROXY_HTTP|g" -e "s|@HAPROXY_WS@|$HAPROXY_WS|g" \
    -e "s|@HAPROXY_MAXCONN@|$HAPROXY_MAXCONN|g" \
    -e "s|@NGINX_TLS@|$NGINX_TLS|g" -e "s|@HAPROXY_TLS@|$HAPROXY_TLS|g" -e "s|@PORTICO_TLS@|$PORTICO_TLS|g" \
    -e "s|@NGINX_TLS_FULL@|$NGINX_TLS_FULL|g" -e "s|@NGINX_TLS_RSA@|$NGINX_TLS_RSA|g" \
    -e "s|@HAPROXY_TLS_FULL@|$HAPROXY_TLS_FULL|g" -e "s|@HAPROXY_TLS_RSA@|$HAPROXY_TLS_RSA|g" \
    -e "s|@PORTICO_TLS_RSA@|$PORTICO_TLS_RSA|g" \
    -e "s|@NGINX_H2@|$NGINX_H2|g" -e "s|@HAPROXY_H2@|$HAPROXY_H2|g" \
    -e "s|@ORIGIN_BIG@|$ORIGIN_BIG|g" -e "s|@PORTICO_BIG@|$PORTICO_BIG|g" \
    -e "s|@NGINX_BIG@|$NGINX_BIG|g" -e "s|@HAPROXY_BIG@|$HAPROXY_BIG|g" \
    -e "s|@PORTICO_HTTP@|$PORTICO_HTTP|g" -e "s|@PORTICO_WS@|$PORTICO_WS|g" "$1" >"$2"
}

start_origin_http() {
  nginx -c "$BASE/conf/backend-nginx.conf" -g 'daemon off;' >>"$BASE/logs/origin-http.out" 2>&1 &
  PID[origin_http]=$!
  wait_port "$ORIGIN_HTTP" "${PID[origin_http]}" "origin nginx"
}
start_origin_ws() {
  PORT=$ORIGIN_WS NODE_PATH="$BENCH/node_modules" node "$BENCH/ws-echo-server.js" >>"$BASE/logs/origin-ws.out" 2>&1 &
  PID[origin_ws]=$!
  wait_port "$ORIGIN_WS" "${PID[origin_ws]}" "ws echo origin"
}
start_origin_big() {
  PORT=$ORIGIN_BIG node "$BENCH/big-origin.js" >>"$BASE/logs/origin-big.out" 2>&1 &
  PID[origin_big]=$!
  wait_port "$ORIGIN_BIG" "${PID[origin_big]}" "big-body origin"
}
start_proxy() { # target
  case $1 in
  nginx)
    nginx -c "$BASE/conf/proxy-nginx.conf" -g 'daemon off;' >>"$BASE/logs/nginx.out" 2>&1 &
    PID[nginx]=$!
    wait_port "$NGINX_HTTP" "${PID[nginx]}" nginx
    wait_port "$NGINX_WS" "${PID[nginx]}" nginx
    ;;
  haproxy)
    haproxy -db -f "$BASE/conf/haproxy.cfg" >>"$BASE/logs/haproxy.out" 2>&1 &
    PID[haproxy]=$!
    wait_port "$HAPROXY_HTTP" "${PID[haproxy]}" haproxy
    wait_port "$HAPROXY_WS" "${PID[haproxy]}" haproxy
    ;;
  portico)
    "$PORTICO_BIN" run -c "$BASE/conf/portico.toml" >>"$BASE/logs/portico.out" 2>&1 &
    PID[portico]=$!
    wait_port "$PORTICO_HTTP" "${PID[portico]}" portico
    wait_port "$PORTICO_WS" "${PID[portico]}" portico
    ;;
  portico_metrics)
    "$PORTICO_BIN" run -c "$BASE/conf/portico-metrics.toml" >>"$BASE/logs/portico_metrics.out" 2>&1 &
    PID[portico_metrics]=$!
    wait_port "$PORTICO_M_HTTP" "${PID[portico_metrics]}" portico_metrics
    wait_port "$PORTICO_M_WS" "${PID[portico_metrics]}" portico_metrics
    ;;
  esac
  sleep 0.3 # let workers finish starting
}
# A proxy that died (crash, OOM) is started again so that the other runs still happen; the
# death is logged and counted in the report.
ensure_running() {
  [[ $1 == direct ]] && return 0
  if ! kill -0 "${PID[$1]}" 2>/dev/null; then
    log "$1 is not running (died earlier); starting it again"
    echo "{\"kind\": \"restart\", \"target\": \"$1\"}" >>"$RESULTS"
    wait "${PID[$1]}" 2>/dev/null || true
    start_proxy "$1"
  fi
}
restart_proxy() { stop_pid "${PID[$1]}" 10; unset "PID[$1]"; start_proxy "$1"; }

tree_pids() { # pid: the pid and all its descendants
  local p=$1 c
  echo "$p"
  for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree_pids "$c"; done
}

cpu_ticks() { # pids...: "TOTAL SYS": summed utime+stime, and stime alone (CPU time the
  # kernel spent on the processes' behalf), in clock ticks
  local sum=0 sys=0 p s
  for p in "$@"; do
    s=$(cat /proc/"$p"/stat 2>/dev/null) || continue
    s=${s##*) }
    read -r -a f <<<"$s"
    sum=$((sum + f[11] + f[12]))
    sys=$((sys + f[12]))
  done
  echo "$sum $sys"
}

mem_kib() { # field(VmRSS|Pss) pids...: sum in KiB
  local field=$1 sum=0 p v
  shift
  for p in "$@"; do
    if [[ $field == Pss ]]; then
      v=$(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null || true)
    else
      v=$(awk -v k="$field:" '$1 == k {print $2}' /proc/"$p"/status 2>/dev/null || true)
    fi
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

stat_cpu() { # total busy steal (ticks, all cpus)
  local _ user nice system idle iowait irq softirq steal
  read -r _ user nice system idle iowait irq softirq steal _ </proc/stat
  echo "$((user + nice + system + idle + iowait + irq + softirq + steal)) $((user + nice + system + irq + softirq + steal)) $steal"
}

proxy_pids() { # target
  case $1 in
  direct) ;;
  *) tree_pids "${PID[$1]}" ;;
  esac
}

# Wait (bounded) until nobody else is compiling and the machine is mostly idle.
wait_quiet() {
  local waited=0 a b busy rustc
  while :; do
    rustc=$(pgrep -c -x rustc 2>/dev/null || true)
    a=$(stat_cpu)
    sleep 1
    b=$(stat_cpu)
    read -r t0 b0 _ <<<"$a"
    read -r t1 b1 _ <<<"$b"
    busy=$(((b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))
    if ((${rustc:-0} == 0 && busy <= QUIET_MAX)); then return 0; fi
    if ((waited >= QUIET_WAIT || QUIET_SPENT >= QUIET_BUDGET)); then
      log "machine still busy (${busy}% busy, ${rustc:-0} rustc) after ${waited}s; measuring anyway"
      return 0
    fi
    ((waited % 30 == 0)) && log "waiting for a quiet machine (${busy}% busy, ${rustc:-0} rustc running)"
    waited=$((waited + 1))
    QUIET_SPENT=$((QUIET_SPENT + 1))
  done
}

target_url() { # target kind(http|ws|tls|hs|hsrsa)
  local port
  case $1:$2 in
  nginx:tls) port=$NGINX_TLS ;; haproxy:tls) port=$HAPROXY_TLS ;; portico:tls) port=$PORTICO_TLS ;;
  nginx:hs) port=$NGINX_TLS_FULL ;; haproxy:hs) port=$HAPROXY_TLS_FULL ;; portico:hs) port=$PORTICO_TLS_FULL ;;
  nginx:hsrsa) port=$NGINX_TLS_RSA ;; haproxy:hsrsa) port=$HAPROXY_TLS_RSA ;; portico:hsrsa) port=$PORTICO_TLS_RSA ;;
  nginx:h2) port=$NGINX_H2 ;; haproxy:h2) port=$HAPROXY_H2 ;; portico:h2) port=$PORTICO_TLS ;;
  direct:big) port=$ORIGIN_BIG ;; nginx:big) port=$NGINX_BIG ;; haproxy:big) port=$HAPROXY_BIG ;;
  portico:big) port=$PORTICO_BIG ;;
  direct:http) port=$ORIGIN_HTTP ;; direct:ws) port=$ORIGIN_WS ;;
  nginx:http) port=$NGINX_HTTP ;; nginx:ws) port=$NGINX_WS ;;
  haproxy:http) port=$HAPROXY_HTTP ;; haproxy:ws) port=$HAPROXY_WS ;;
  portico:http) port=$PORTICO_HTTP ;; portico:ws) port=$PORTICO_WS ;;
  portico_metrics:http) port=$PORTICO_M_HTTP ;; portico_metrics:ws) port=$PORTICO_M_WS ;;
  esac
  case $2 in
  ws) echo "ws://127.0.0.1:$port/" ;;
  tls | h2) echo "https://127.0.0.1:$port/" ;;
  big) echo "http://127.0.0.1:$port" ;;
  hs | hsrsa) echo "127.0.0.1:$port" ;;
  *) echo "http://127.0.0.1:$port/" ;;
  esac
}

# ---------------------------------------------------------------- one measured run ----------
# run_load round target phase: runs the load once (with repeats when disturbed), appends a
# JSON line to $RESULTS.
run_load() {
  local round=$1 target=$2 phase=$3 attempt kind cmd=() out
  if [[ $phase == tls* || $phase == hs* || $phase == h2 ]]; then
    [[ $target == direct ]] && return 0 # the origin speaks plain HTTP only
    if [[ $target == portico && $PORTICO_TLS_OK != 1 ]]; then return 0; fi
    [[ $target == portico_metrics ]] && return 0 # compared on plain HTTP and WebSockets only
  fi
  case $phase in
  ka64) kind=wrk; cmd=(wrk -t"$WRK_THREADS" -c64 -d"${DUR}s" --latency "$(target_url "$target" http)") ;;
  ka1000) kind=wrk; cmd=(wrk -t"$WRK_THREADS" -c1000 -d"${DUR}s" --latency "$(target_url "$target" http)") ;;
  close) kind=wrk; cmd=(wrk -t"$WRK_THREADS" -c64 -d"${DUR}s" --latency -H 'Connection: close' "$(target_url "$target" http)") ;;
  tls) kind=wrk; cmd=(wrk -t"$WRK_THREADS" -c64 -d"${DUR}s" --latency "$(target_url "$target" tls)") ;;
  tlsclose) kind=wrk; cmd=(wrk -t"$WRK_THREADS" -c64 -d"${DUR}s" --latency -H 'Connection: close' "$(target_url "$target" tls)") ;;
  hs | hsrsa)
    # HS_PROCS client processes, each a loop of new connections (full handshakes: no session
    # is ever offered for resumption), one GET / with Host per connection, answers checked
    # for 200. SNI: the RSA site is chosen by name on Portico (its certificates are picked
    # by SNI across listeners), the ECDSA one is the default.
    kind=hs
    local sni=localhost
    [[ $phase == hsrsa ]] && sni=rsa.bench.test
    local hp
    hp=$(target_url "$target" "$phase")
    cmd=(python3 "$BENCH/tls-hs-client.py" "${hp%:*}" "${hp##*:}" "$sni" "$DUR" "$HS_PROCS")
    ;;
  h2)
    # h2load: H2_CONNS connections x H2_STREAMS concurrent streams, for DUR s (-D); ALPN h2
    kind=h2load
    cmd=(h2load -t"$WRK_THREADS" -c"$H2_CONNS" -m"$H2_STREAMS" -D"$DUR" "$(target_url "$target" h2)")
    ;;
  bigdown | bigup)
    [[ $target == portico_metrics ]] && return 0 # compared on plain HTTP and WebSockets only
    kind=big
    if [[ $phase == bigdown ]]; then
      cmd=(bash "$BENCH/big-client.sh" down "$(target_url "$target" big)/big" "$BIG_BYTES" "$DUR")
    else
      cmd=(bash "$BENCH/big-client.sh" up "$(target_url "$target" big)/up" "$BIG_BYTES" "$DUR" "$BASE/big.bin")
    fi
    ;;
  ws) kind=ws; cmd=(env NODE_PATH="$BENCH/node_modules" node "$BENCH/ws-bench-client.js" "$(target_url "$target" ws)" "$WS_CONNS" "$DUR" "$WS_MSG") ;;
  ka64limit | gzip4k)
    # traffic policy phases: nginx and Portico only (HAProxy's equivalents are not set up;
    # the origin does neither)
    [[ $target == nginx || $target == portico* ]] || return 0
    kind=wrk
    local path=limited/ hdr=()
    [[ $phase == gzip4k ]] && { path=gz/4k.txt; hdr=(-H 'Accept-Encoding: gzip'); }
    cmd=(wrk -t"$WRK_THREADS" -c64 -d"${DUR}s" --latency "${hdr[@]}" "$(target_url "$target" http)$path")
    ;;
  esac
  ensure_running "$target"
  local origin_pids
  case $phase in
  ws) origin_pids=$(tree_pids "${PID[origin_ws]}") ;;
  big*) origin_pids=$(tree_pids "${PID[origin_big]}") ;;
  *) origin_pids=$(tree_pids "${PID[origin_http]}") ;;
  esac
  # shellcheck disable=SC2206 # word splitting of pid lists is intended
  local opids=($origin_pids) ppids=($(proxy_pids "$target"))
  for ((attempt = 1; attempt <= RETRIES + 1; attempt++)); do
    wait_quiet
    out="$RUNDIR/r${round}-${target}-${phase}-a${attempt}"
    local s0 p0 k0 o0 s1 p1 k1 o1 rc=0
    python3 "$BENCH/benchstat.py" sampler --exclude $$ --out "$out.foreign" &
    local sampler=$!
    sleep 0.2
    s0=$(stat_cpu); read -r p0 k0 <<<"$(cpu_ticks "${ppids[@]}")"; read -r o0 _ <<<"$(cpu_ticks "${opids[@]}")"
    # the subshell's cutime/cstime after waiting for the client = the client's CPU time
    (
      rc=0
      "${cmd[@]}" >"$out.txt" 2>"$out.err" || rc=$?
      read -r s </proc/"$BASHPID"/stat; s=${s##*) }; read -r -a f <<<"$s"
      echo "$((f[13] + f[14]))" >"$out.client"
      exit "$rc"
    ) || rc=$?
    s1=$(stat_cpu); read -r p1 k1 <<<"$(cpu_ticks "${ppids[@]}")"; read -r o1 _ <<<"$(cpu_ticks "${opids[@]}")"
    kill -TERM "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    local died=0
    if ((${#ppids[@]})) && ! kill -0 "${ppids[0]}" 2>/dev/null; then
      log "$target died during $phase (round $round); see $BASE/logs"
      died=1
    fi
    local verdict
    verdict=$(python3 "$BENCH/benchstat.py" record --kind "$kind" --file "$out.txt" --rc "$rc" \
      --round "$round" --target "$target" --phase "$phase" --attempt "$attempt" --died "$died" \
      --stat0 "$s0" --stat1 "$s1" --proxy "$p0" "$p1" --proxy-sys "$k0" "$k1" --origin "$o0" "$o1" \
      --client "$(cat "$out.client" 2>/dev/null || echo 0)" --clk "$CLK" \
      --foreign-file "$out.foreign" --foreign-max "$FOREIGN_MAX" --last "$((attempt == RETRIES + 1 ? 1 : 0))" --results "$RESULTS")
    log "round $round $target $phase: $verdict"
    [[ $verdict == *contaminated* ]] || break
  done
}

# ---------------------------------------------------------------- idle WebSocket memory -----
wait_all_open() { # file pid timeout_s
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q all_open "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

run_idle() { # round target
  local round=$1 target=$2 n half port url
  [[ $target == direct ]] && return 0
  n=$IDLE_N
  # ~2 fds per proxied connection in one process: keep under the fd limit like HAProxy did
  if [[ $target != nginx ]] && ((2 * n + 1000 > NOFILE)); then n=$(((NOFILE - 1000) / 2 / 1000 * 1000)); fi
  if [[ $target == haproxy ]] && ((n > HAPROXY_MAXCONN)); then n=$HAPROXY_MAXCONN; fi
  half=$((n / 2))
  url=$(target_url "$target" ws)
  port=${url##*:}; port=${port%/}
  wait_quiet
  ensure_running "$target"
  restart_proxy "$target"
  sleep 1
  local pids r0 q0 r1 q1 r2 q2 est out="$RUNDIR/r${round}-${target}-idle"
  # shellcheck disable=SC2207
  pids=($(proxy_pids "$target"))
  r0=$(mem_kib VmRSS "${pids[@]}"); q0=$(mem_kib Pss "${pids[@]}")
  NODE_PATH="$BENCH/node_modules" node "$BENCH/ws-idle-client.js" "$url" "$half" 600 200 >"$out-a.txt" 2>"$out-a.err" </dev/null &
  IDLE_CLIENTS+=($!)
  wait_all_open "$out-a.txt" "${IDLE_CLIENTS[-1]}" 120 || log "idle client A did not report all_open"
  sleep 2
  r1=$(mem_kib VmRSS "${pids[@]}"); q1=$(mem_kib Pss "${pids[@]}")
  NODE_PATH="$BENCH/node_modules" node "$BENCH/ws-idle-client.js" "$url" "$((n - half))" 600 200 >"$out-b.txt" 2>"$out-b.err" </dev/null &
  IDLE_CLIENTS+=($!)
  wait_all_open "$out-b.txt" "${IDLE_CLIENTS[-1]}" 120 || log "idle client B did not report all_open"
  sleep 2
  r2=$(mem_kib VmRSS "${pids[@]}"); q2=$(mem_kib Pss "${pids[@]}")
  est=$(ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l)
  local p
  for p in "${IDLE_CLIENTS[@]}"; do stop_pid "$p" 5; done
  IDLE_CLIENTS=()
  local v
  v=$(python3 "$BENCH/benchstat.py" idle --round "$round" --target "$target" --requested "$n" \
    --files "$out-a.txt" "$out-b.txt" --established "$est" \
    --rss "$r0" "$r1" "$r2" --pss "$q0" "$q1" "$q2" --results "$RESULTS")
  log "round $round $target idle: $v"
  sleep 2 # let the proxy close the dropped connections before the next run
}

# ---------------------------------------------------------------- main -----------------------
main() {
  install_tools
  if has "$TARGETS" portico || has "$TARGETS" portico_metrics; then build_portico; fi
  if ((BENCH_NICE != 0)); then renice -n "$BENCH_NICE" -p $$ >/dev/null || die "renice $BENCH_NICE failed"; fi
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  NOFILE=$(ulimit -n)
  CLK=$(getconf CLK_TCK)
  local port eph_lo eph_hi
  read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { eph_lo=32768; eph_hi=60999; }
  if ((PORT_BASE + 98 >= eph_lo && PORT_BASE <= eph_hi)); then
    log "warning: PORT_BASE=$PORT_BASE overlaps the ephemeral port range $eph_lo-$eph_hi: outgoing connections (the load clients', the proxies' upstream ones) can take a listening port; prefer a PORT_BASE below $((eph_lo - 94))"
  fi
  for port in "$ORIGIN_HTTP" "$ORIGIN_WS" "$NGINX_HTTP" "$NGINX_WS" "$NGINX_TLS" "$HAPROXY_HTTP" "$HAPROXY_WS" \
    "$HAPROXY_TLS" "$PORTICO_HTTP" "$PORTICO_WS" "$PORTICO_TLS" "$PORTICO_TLS_RSA" "$NGINX_TLS_FULL" \
    "$NGINX_TLS_RSA" "$HAPROXY_TLS_FULL" "$HAPROXY_TLS_RSA" "$NGINX_H2" "$HAPROXY_H2" "$ORIGIN_BIG" "$PORTICO_BIG" \
    "$NGINX_BIG" "$HAPROXY_BIG"; do
    if port_open "$port"; then
      die "port $port is already in use (PORT_BASE=$PORT_BASE; choose another): $(ss -Hltnp "( sport = :$port )" 2>/dev/null | awk '{print $NF}' | head -1)"
    fi
  done

  BASE=$(mktemp -d /tmp/portico-bench.XXXXXX)
  trap cleanup EXIT INT TERM
  chmod 755 "$BASE"
  mkdir -p "$BASE"/{conf,run,logs}
  local f
  for f in backend-nginx.conf proxy-nginx.conf haproxy.cfg portico.toml; do
    fill_template "$BENCH/conf/$f" "$BASE/conf/$f"
  done
  # portico_metrics: the same config on its own ports, with the admin API (and so the
  # data-plane metrics) on; the TLS site is not added to it.
  sed -e "s|127.0.0.1:$PORTICO_HTTP\"|127.0.0.1:$PORTICO_M_HTTP\"|" -e "s|127.0.0.1:$PORTICO_WS\"|127.0.0.1:$PORTICO_M_WS\"|" \
    -e "s|^listen = \"off\"|listen = \"127.0.0.1:$PORTICO_M_ADMIN\"|" -e "s|portico-data|portico-metrics-data|" \
    "$BASE/conf/portico.toml" >"$BASE/conf/portico-metrics.toml"
  # target portico: the admin API and so the data-plane metrics on, as users run it
  if [[ $PORTICO_ADMIN != off ]]; then
    sed -i -e "s|^listen = \"off\"|listen = \"127.0.0.1:$PORTICO_ADMIN_PORT\"|" "$BASE/conf/portico.toml"
  fi
  make_certs
  # gzip4k phase: the origin's 4 KiB text file (64-byte lines)
  mkdir -p "$BASE/www/gz"
  for ((i = 0; i < 64; i++)); do printf 'line %02d of the gzip phase text, varied a little: %08d .....\n' "$i" "$((i * 7919))"; done >"$BASE/www/gz/4k.txt"
  chmod -R a+rX "$BASE/www"
  if [[ $PHASES == *tls* || $PHASES == *hs* || $PHASES == *h2* ]] && has "$TARGETS" portico; then
    fill_template "$BENCH/conf/portico-tls.toml" "$BASE/conf/portico-tls.part"
    cat "$BASE/conf/portico.toml" "$BASE/conf/portico-tls.part" >"$BASE/conf/portico-with-tls.toml"
    if "$PORTICO_BIN" check -c "$BASE/conf/portico-with-tls.toml" >"$BASE/logs/portico-check.out" 2>&1; then
      mv "$BASE/conf/portico-with-tls.toml" "$BASE/conf/portico.toml"
    else
      PORTICO_TLS_OK=0
      log "portico does not accept the TLS site, TLS phases skip portico: $(head -3 "$BASE/logs/portico-check.out" | tr '\n' ' ')"
    fi
  fi

  if [[ $PHASES == *big* ]] && has "$TARGETS" portico; then
    fill_template "$BENCH/conf/portico-big.toml" "$BASE/conf/portico-big.part"
    cat "$BASE/conf/portico-big.part" >>"$BASE/conf/portico.toml"
  fi

  local stamp
  stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
  mkdir -p "$OUT"
  RUNDIR="$OUT/run-$stamp"
  mkdir -p "$RUNDIR"
  RESULTS="$RUNDIR/results.jsonl"
  : >"$RESULTS"
  cp "$BASE/conf/"* "$RUNDIR/"
  write_meta "$RUNDIR/meta.txt"

  start_origin_http
  start_origin_ws
  if [[ $PHASES == *big* ]]; then
    start_origin_big
    truncate -s "$BIG_BYTES" "$BASE/big.bin" # the upload's body: a sparse file, cheap to read
  fi
  local t
  for t in $TARGETS; do [[ $t == direct ]] || start_proxy "$t"; done
  log "started: $(for r in "${!PID[@]}"; do printf '%s=%s ' "$r" "${PID[$r]}"; done)"
  # warm-up: one short keep-alive run per target (not recorded)
  for t in $TARGETS; do wrk -t1 -c16 -d1s "$(target_url "$t" http)" >/dev/null 2>&1 || true; done

  local round ph
  for ((round = 1; round <= ROUNDS; round++)); do
    for t in $TARGETS; do
      for ph in $PHASES; do
        case $ph in
        idle) run_idle "$round" "$t" ;;
        ka64 | ka1000 | close | ws | tls | tlsclose | hs | hsrsa | ka64limit | gzip4k | h2 | bigdown | bigup) run_load "$round" "$t" "$ph" ;;
        big) run_load "$round" "$t" bigdown; run_load "$round" "$t" bigup ;;
        *) die "unknown phase $ph" ;;
        esac
      done
    done
  done

  local report="$OUT/report-$stamp.md"
  python3 "$BENCH/benchstat.py" report --results "$RESULTS" --meta "$RUNDIR/meta.txt" >"$report"
  cat "$report"
  log "report: $report (raw runs in $RUNDIR)"
}

make_certs() { # self-signed ECDSA P-256 and RSA-2048 certificates for 127.0.0.1/localhost
  mkdir -p "$BASE/certs"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$BASE/certs/ec.key" -out "$BASE/certs/ec.crt" >/dev/null 2>&1 || die "openssl failed"
  cat "$BASE/certs/ec.crt" "$BASE/certs/ec.key" >"$BASE/certs/ec.pem"
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$BASE/certs/rsa.key" -out "$BASE/certs/rsa.crt" >/dev/null 2>&1 || die "openssl failed"
  cat "$BASE/certs/rsa.crt" "$BASE/certs/rsa.key" >"$BASE/certs/rsa.pem"
}

write_meta() {
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%S+00:00)"
    echo "kernel: $(uname -r)"
    echo "cpus: $(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "nginx version: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "HAProxy version: $(haproxy -v 2>&1 | head -1 | sed 's/^HAProxy version //')"
    echo "wrk: $(wrk --version 2>&1 | head -1)"
    echo "$(openssl version)"
    if [[ $PHASES == *h2* ]]; then echo "$(h2load --version 2>&1 | head -1)"; fi
    if [[ $PHASES == *big* ]]; then echo "$(curl --version 2>&1 | head -1)"; fi
    echo "node $(node -v), ws $(node -p "require('$BENCH/node_modules/ws/package.json').version")"
    if has "$TARGETS" portico; then
      echo "portico: $("$PORTICO_BIN" version 2>&1 | head -1), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || echo ' (+ uncommitted changes in crates/)')"
      echo "portico admin API (data-plane metrics counted): $PORTICO_ADMIN"
    fi
    echo "ulimit -n $NOFILE; nice $(nice); memory $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "at start: load average $(cut -d' ' -f1-3 /proc/loadavg), $(pgrep -c -x rustc || true) rustc processes running"
    echo "ROUNDS=$ROUNDS DUR=$DUR PHASES=\"$PHASES\" TARGETS=\"$TARGETS\" IDLE_N=$IDLE_N WS_CONNS=$WS_CONNS WS_MSG=$WS_MSG HS_PROCS=$HS_PROCS H2_CONNS=$H2_CONNS H2_STREAMS=$H2_STREAMS BIG_BYTES=$BIG_BYTES"
    echo "command: ${GIVEN_ENV}scripts/bench.sh"
  } >"$1"
}

main "$@"
