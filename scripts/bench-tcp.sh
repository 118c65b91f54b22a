#!/usr/bin/env bash
# TCP (L4) bench: Portico [[streams]] vs HAProxy `mode tcp` vs nginx `stream`, same machine,
# same run, interleaved rounds (bench/tcp/README.md).
#
# Origin: `tcp_bench serve` (answers a 1-byte handshake, then discards). Phases:
#   bulk      BULK_CONNS connections stream 64 KiB writes for DUR s: bytes/s through the proxy
#   connrate  CONC loops of connect + 1-byte round trip + close for DUR s: connections/s
#   idle      fresh proxy, RSS of its processes before/after IDLE_N idle proxied connections
# Every run reads the proxy's CPU time (utime+stime of the process and its children from
# /proc) before and after: CPU seconds per GB (bulk) and µs per connection (connrate).
# Medians (min-max) over ROUNDS go to OUT/tcp-report-DATE.md.
#
# Usage: scripts/bench-tcp.sh
# Env:   ROUNDS=3 DUR=5 BULK_CONNS=4 CONC=32 IDLE_N=5000 PORT_BASE=32000 OUT=bench-out
#        TARGETS="direct nginx haproxy portico" PHASES="bulk connrate idle" NO_INSTALL=1 SKIP_BUILD=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONF="$ROOT/bench/tcp"
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-5}
BULK_CONNS=${BULK_CONNS:-4}
CONC=${CONC:-32}
IDLE_N=${IDLE_N:-5000}
PORT_BASE=${PORT_BASE:-32000}
OUT=${OUT:-"$ROOT/bench-out"}
TARGETS=${TARGETS:-"direct nginx haproxy portico"}
PHASES=${PHASES:-"bulk connrate idle"}
ORIGIN=$((PORT_BASE + 1))
declare -A PORT=([direct]=$ORIGIN [portico]=$((PORT_BASE + 70)) [nginx]=$((PORT_BASE + 80)) [haproxy]=$((PORT_BASE + 90)))

mkdir -p "$OUT"
RUN=$(mktemp -d "${TMPDIR:-/tmp}/bench-tcp.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap cleanup EXIT
ulimit -n 40000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ -z "${NO_INSTALL:-}" ]]; then
  need=()
  command -v nginx >/dev/null || need+=(nginx)
  [[ -f /usr/lib/nginx/modules/ngx_stream_module.so ]] || need+=(libnginx-mod-stream)
  command -v haproxy >/dev/null || need+=(haproxy)
  if ((${#need[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
if [[ -z "${SKIP_BUILD:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p portico-stream --examples)
fi
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BENCH_BIN="$TARGET_DIR/release/examples/tcp_bench"
NODE_BIN="$TARGET_DIR/release/examples/stream_node"

render() { # template port -> file
  sed -e "s|@BASE@|$RUN|g" -e "s|@PORT@|$2|g" -e "s|@ORIGIN@|$ORIGIN|g" "$1" >"$3"
}
render "$CONF/nginx-stream.conf" "${PORT[nginx]}" "$RUN/nginx.conf"
render "$CONF/haproxy-tcp.cfg" "${PORT[haproxy]}" "$RUN/haproxy.cfg"
render "$CONF/portico-stream.toml" "${PORT[portico]}" "$RUN/portico.toml"

wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 never listened" >&2
  return 1
}

PROXY_PID=""
start_proxy() { # target
  case $1 in
    direct) PROXY_PID="" ; return ;;
    nginx) nginx -c "$RUN/nginx.conf" -p "$RUN" -e "$RUN/nginx-error.log" & ;;
    haproxy) haproxy -f "$RUN/haproxy.cfg" -db & ;;
    portico) STREAM_NODE_SECS=100000 "$NODE_BIN" "$RUN/portico.toml" >/dev/null & ;;
  esac
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  wait_port "${PORT[$1]}"
}
stop_proxy() {
  [[ -n "$PROXY_PID" ]] || return 0
  kill "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
  PROXY_PID=""
}
tree() { echo "$1"; ps -o pid= --ppid "$1" 2>/dev/null || true; }
cpu_ticks() { # total utime+stime of a process and its children
  [[ -n "$1" ]] || { echo 0; return; }
  local t=0 p
  for p in $(tree "$1"); do
    [[ -r /proc/$p/stat ]] || continue
    t=$((t + $(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
  done
  echo "$t"
}
rss_kib() {
  [[ -n "$1" ]] || { echo 0; return; }
  local t=0 p
  for p in $(tree "$1"); do
    [[ -r /proc/$p/status ]] && t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status")))
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)

"$BENCH_BIN" serve "127.0.0.1:$ORIGIN" &
PIDS+=($!)
wait_port "$ORIGIN"

RESULTS="$RUN/results.tsv"
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    for phase in $PHASES; do
      [[ $phase == idle && $target == direct ]] && continue
      start_proxy "$target"
      addr="127.0.0.1:${PORT[$target]}"
      case $phase in
        bulk)
          c0=$(cpu_ticks "$PROXY_PID")
          read -r _ rate bytes secs < <("$BENCH_BIN" bulk "$addr" "$BULK_CONNS" "$DUR")
          c1=$(cpu_ticks "$PROXY_PID")
          cpu=$(python3 -c "print(($c1-$c0)/$HZ/($bytes/1e9))")
          printf '%s\t%s\t%s\t%s\t%s\n' "$phase" "$target" "$round" "$rate" "$cpu" >>"$RESULTS"
          echo "round $round $target bulk: $((${rate%.*} / 1000000)) MB/s, proxy CPU $cpu s/GB" ;;
        connrate)
          c0=$(cpu_ticks "$PROXY_PID")
          read -r _ rate n secs errs < <("$BENCH_BIN" connrate "$addr" "$CONC" "$DUR")
          c1=$(cpu_ticks "$PROXY_PID")
          cpu=$(python3 -c "print(($c1-$c0)/$HZ*1e6/max($n,1))")
          printf '%s\t%s\t%s\t%s\t%s\n' "$phase" "$target" "$round" "$rate" "$cpu" >>"$RESULTS"
          echo "round $round $target connrate: $rate conn/s ($errs errors), proxy CPU $cpu µs/conn" ;;
        idle)
          r0=$(rss_kib "$PROXY_PID")
          fifo="$RUN/idle.fifo"; rm -f "$fifo"; mkfifo "$fifo"
          "$BENCH_BIN" idle "$addr" "$IDLE_N" 30 >"$fifo" &
          ipid=$!; PIDS+=("$ipid")
          read -r _ n <"$fifo"
          sleep 1
          r1=$(rss_kib "$PROXY_PID")
          kill "$ipid" 2>/dev/null || true; wait "$ipid" 2>/dev/null || true
          per=$(python3 -c "print(($r1-$r0)/$n)")
          printf '%s\t%s\t%s\t%s\t%s\n' "$phase" "$target" "$round" "$per" "0" >>"$RESULTS"
          echo "round $round $target idle: $n connections, RSS $r0 -> $r1 KiB, $per KiB/conn" ;;
      esac
      stop_proxy
    done
  done
done

REPORT="$OUT/tcp-report-$(date -u +%Y%m%d-%H%M%S).md"
python3 - "$RESULTS" "$REPORT" "$ROUNDS" "$DUR" "$BULK_CONNS" "$CONC" "$IDLE_N" <<'PY'
import sys, statistics, collections, datetime
path, report, rounds, dur, bulk_conns, conc, idle_n = sys.argv[1:]
rows = collections.defaultdict(list)
for line in open(path):
    phase, target, rnd, value, cpu = line.split("\t")
    rows[(phase, target)].append((float(value), float(cpu)))
def med(xs):
    return f"{statistics.median(xs):.4g} ({min(xs):.4g}-{max(xs):.4g})"
out = [f"# TCP bench {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
       "", f"{rounds} interleaved rounds, {dur} s runs; bulk {bulk_conns} connections, connrate {conc} loops, idle {idle_n} connections. Median (min-max).", "",
       "| phase | target | value | proxy CPU |", "|---|---|---|---|"]
units = {"bulk": ("MB/s", "s/GB"), "connrate": ("conn/s", "µs/conn"), "idle": ("KiB/conn", "")}
for (phase, target), vals in sorted(rows.items()):
    v = [x[0] / (1e6 if phase == "bulk" else 1) for x in vals]
    c = [x[1] for x in vals]
    u, cu = units[phase]
    out.append(f"| {phase} | {target} | {med(v)} {u} | {med(c) + ' ' + cu if cu and target != 'direct' else '-'} |")
open(report, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
echo "report: $REPORT"
