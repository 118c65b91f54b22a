#!/usr/bin/env bash
# Client of the `big` phase of scripts/bench.sh: large-body transfers through a proxy, one at
# a time, repeated until DUR seconds have passed (at least one transfer).
#   big-client.sh down URL BYTES DUR        GET URL?bytes=BYTES, the body is counted and dropped
#   big-client.sh up URL BYTES DUR FILE     PUT FILE (BYTES long, Content-Length, no Expect)
# Every transfer must be complete: a 200 and BYTES bytes (down), or a 200 whose body is the
# byte count the origin received (up); anything else counts as an error.
# Prints one JSON line: {"bytes": moved, "transfers": n, "secs": wall time, "errors": n}.
set -uo pipefail
mode=$1 url=$2 bytes=$3 dur=$4 file=${5:-}
moved=0 transfers=0 errors=0
start=$(date +%s.%N)
deadline=$(awk -v s="$start" -v d="$dur" 'BEGIN { printf "%.3f", s + d }')
while :; do
  if [[ $mode == down ]]; then
    out=$(curl -sS -o /dev/null -w '%{http_code} %{size_download}' "$url?bytes=$bytes") || out="000 0"
    read -r code got <<<"$out"
    if [[ $code == 200 && $got == "$bytes" ]]; then moved=$((moved + got)); else errors=$((errors + 1)); fi
  else
    out=$(curl -sS -H 'Expect:' -T "$file" -w ' %{http_code}' "$url") || out="0 000"
    read -r got code <<<"$out"
    if [[ $code == 200 && $got == "$bytes" ]]; then moved=$((moved + bytes)); else errors=$((errors + 1)); fi
  fi
  transfers=$((transfers + 1))
  now=$(date +%s.%N)
  awk -v n="$now" -v d="$deadline" 'BEGIN { exit !(n < d) }' || break
  ((errors > 3)) && break
done
end=$(date +%s.%N)
secs=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }')
echo "{\"bytes\": $moved, \"transfers\": $transfers, \"secs\": $secs, \"errors\": $errors}"
