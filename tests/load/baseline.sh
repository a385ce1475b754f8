#!/usr/bin/env bash
# The BENCHMARKS.md figures, in one run: berth (release) with the floor
# (`policies: []`) and the embedded default policy, loaded by berth-load and
# cross-checked with h2load, on the Pulsar bookie-0 Pod.
#
#   cargo build --release -p berth -p berth-load
#   bash tests/load/baseline.sh [out-dir]      # about 4 minutes
#   ONLY=open bash tests/load/baseline.sh      # only the rows named *open*
#
# Needs jq, curl, python3 and h2load (Debian: nghttp2-client). Prints one
# markdown table row per measurement; the raw reports stay in out-dir.
set -euo pipefail

cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/berth-bench}
BERTH=${BERTH:-target/release/berth}
LOAD=${LOAD:-target/release/berth-load}
DURATION=${DURATION:-10}
BOOKIE=tests/fixtures/pulsar/reviews/005-pod-pulsar-bookie-0.json
rm -rf "$OUT" && mkdir -p "$OUT"

# The bookie as /validate sees it after /mutate: the default policy's patch
# applied to the object.
"$BERTH" eval --apply "$BOOKIE" >"$OUT/bookie-object.json"
jq --slurpfile o "$OUT/bookie-object.json" '.request.object = $o[0]' "$BOOKIE" >"$OUT/bookie-mutated.json"
printf 'policies: []\n' >"$OUT/floor.yaml"
# The bookie as kube-apiserver sends it: Go's encoding/json writes no
# whitespace, so the same review is 8.9 KB instead of the fixture's 17 KB.
jq -c . "$BOOKIE" >"$OUT/bookie-compact.json"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# cpu PID: the process's user+system CPU so far, in clock ticks.
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# VmRSS in KiB, read by the shell itself: the sampler below runs five times
# a second during every row, and a `ps` each time was CPU taken from the
# server on these 2 cores (it showed in the open loop's p99).
rss() {
  local key value _
  while read -r key value _; do
    if [ "$key" = VmRSS: ]; then echo "$value"; return; fi
  done <"/proc/$1/status"
}
now_ms() { date +%s%3N; }

# start NAME PORT CACHE [serve args...]: start berth, wait for "ready";
# sets PID and READY_MS (start to ready).
start() {
  local name=$1 port=$2 cache=$3; shift 3
  local t0; t0=$(now_ms)
  "$BERTH" --log-format json serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$((port + 1000))" \
    --tls-dir "$OUT/tls-$name" --audit-log "$OUT/audit-$name.log" --cache-dir "$cache" "$@" \
    2>"$OUT/berth-$name.log" >/dev/null &
  PID=$!
  pids+=("$PID")
  until grep -q '"message":"ready"' "$OUT/berth-$name.log" 2>/dev/null; do
    kill -0 "$PID" 2>/dev/null || { cat "$OUT/berth-$name.log"; exit 1; }
    sleep 0.005
  done
  READY_MS=$(($(now_ms) - t0))
}

# Start to ready, cold (empty artifact cache) then with the cache it wrote.
start cold 8440 "$OUT/cache"; kill "$PID"; wait "$PID" 2>/dev/null || true
echo "| start to ready, cold (empty artifact cache) | ${READY_MS} ms |"
start warm 8440 "$OUT/cache"; kill "$PID"; wait "$PID" 2>/dev/null || true
echo "| start to ready, with the artifact cache | ${READY_MS} ms |"

start floor 8444 "$OUT/cache" --config "$OUT/floor.yaml"; FLOOR=$PID
start default 8443 "$OUT/cache"; DEFAULT=$PID
sleep 1
echo "| RSS idle, default policy | $(rss "$DEFAULT") KiB |"
echo "| RSS idle, floor | $(rss "$FLOOR") KiB |"

# ONLY=open runs only the rows whose name holds "open" (and the starts).
only() { [ -z "${ONLY:-}" ] || [[ $1 == *"$ONLY"* ]]; }

# load NAME SERVER PATH REVIEW [berth-load args...]: one berth-load row on
# the floor or default server, with the server's CPU per good answer and
# its peak RSS during the run.
load() {
  local name=$1 server=$2 path=$3 review=$4; shift 4
  only "$name" || return 0
  local pid port
  if [ "$server" = floor ]; then pid=$FLOOR port=8444; else pid=$DEFAULT port=8443; fi
  local args=(--url "https://127.0.0.1:$port$path" --ca "$OUT/tls-$server/ca.crt" "$@" "$review")
  # Warm the server's pool and the connections; not measured.
  "$LOAD" "${args[@]}" -d 1s --warmup 0s >/dev/null || true
  ( peak=0; while [ ! -e "$OUT/$name.done" ]; do r=$(rss "$pid"); [ "$r" -gt "$peak" ] && peak=$r; echo "$peak" >"$OUT/$name.rss"; sleep 0.2; done ) &
  local sampler=$!
  local before; before=$(cpu "$pid")
  "$LOAD" "${args[@]}" -d "${DURATION}s" --warmup "${WARMUP:-0s}" --json "$OUT/$name.json" >"$OUT/$name.txt" || true
  local after; after=$(cpu "$pid")
  touch "$OUT/$name.done"; wait "$sampler"
  # The CPU counted covers the warm-up too: an open loop's warm-up is its
  # rate times its length in reviews, counted in with the measured ones.
  local rate=0 prev=
  for arg in "$@"; do [ "$prev" = --rate ] && rate=$arg; prev=$arg; done
  local seconds=${WARMUP:-0s}
  local warm=$(( rate * ${seconds%s} ))
  jq -r --arg name "$name" --arg cmd "berth-load ${args[*]} -d ${DURATION}s --warmup ${WARMUP:-0s}" \
    --argjson cpu "$(( after - before ))" --argjson hz "$(getconf CLK_TCK)" --arg rss "$(cat "$OUT/$name.rss")" \
    --argjson warm "$warm" \
    '"| \($name) | `\($cmd)` | \(.throughput | floor) | \(.latency_ms.p50) | \(.latency_ms.p99) | \(.latency_ms.max) | \(if .ok > 0 then ($cpu / $hz * 1000 / (.ok + $warm) * 1000 | floor / 1000) else "-" end) | \(.failed) | \($rss) |"' \
    "$OUT/$name.json"
}

echo
echo "| row | command | reviews/s | p50 ms | p99 ms | max ms | server CPU ms/review | failed | peak RSS, KiB |"
echo "|---|---|---|---|---|---|---|---|---|"
load floor-h2 floor /mutate "$BOOKIE" -c 16 -m 8
load floor-h1 floor /mutate "$BOOKIE" --protocol h1 -c 8
load mutate-h2 default /mutate "$BOOKIE" -c 16 -m 8 --expect-allowed true --expect-patch always
load mutate-h2-compact default /mutate "$OUT/bookie-compact.json" -c 16 -m 8 --expect-allowed true --expect-patch always
load mutate-h1 default /mutate "$BOOKIE" --protocol h1 -c 8 --expect-allowed true --expect-patch always
load validate-mutated-h2 default /validate "$OUT/bookie-mutated.json" -c 16 -m 8 --expect-allowed true --expect-patch never
load validate-unmutated-h2 default /validate "$BOOKIE" -c 16 -m 8 --expect-allowed false --expect-patch never
load mutate-h2-1conn-seq default /mutate "$BOOKIE" -c 1 -m 1 --expect-patch always
# Open loop: the steady state, past the first second of the run's new
# connections (measured from each request's due time, after a 1 s warm-up
# at the same rate on the same connections).
export WARMUP=1s
load floor-h2-open-1000 floor /mutate "$BOOKIE" -c 16 -m 8 --rate 1000
load mutate-h2-open-500 default /mutate "$BOOKIE" -c 16 -m 8 --rate 500 --expect-patch always
load mutate-h2-open-1000 default /mutate "$BOOKIE" -c 16 -m 8 --rate 1000 --expect-patch always
load mutate-h2-compact-open-1000 default /mutate "$OUT/bookie-compact.json" -c 16 -m 8 --rate 1000 --expect-patch always
load mutate-h2-open-1000-1conn default /mutate "$BOOKIE" -c 1 -m 128 --rate 1000 --expect-patch always
unset WARMUP

# h2load on the same servers and review: closed loop, then open loop at
# 1,000/s from a timing script; percentiles from its per-request log.
h2row() {
  local name=$1 pid=$2 url=$3 review=$4; shift 4
  only "$name" || return 0
  # Warm up unmeasured, as for berth-load, so the CPU counted is the run's.
  h2load -c 4 -m 4 -t 1 -D 1 -d "$review" -H 'content-type: application/json' "$url" >/dev/null 2>&1 || true
  local before; before=$(cpu "$pid")
  h2load "$@" -d "$review" -H 'content-type: application/json' --log-file "$OUT/$name.log" "$url" >"$OUT/$name.txt" 2>&1 || true
  local after; after=$(cpu "$pid")
  python3 - "$OUT/$name.log" "$OUT/$name.txt" "$name" "h2load $* -d $review -H 'content-type: application/json' $url" \
    "$(( after - before ))" "$(getconf CLK_TCK)" <<'EOF'
import re, sys
log, txt, name, cmd, cpu, hz = sys.argv[1:7]
rows = [line.split("\t") for line in open(log) if line.strip()]
lat = sorted(int(r[2]) / 1000 for r in rows if r[1] == "200")
bad = sum(1 for r in rows if r[1] != "200")
text = open(txt).read()
rps = re.search(r"finished in [^,]+, ([\d.]+) req/s", text)
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0
ok = len(lat)
cpu_ms = int(cpu) / int(hz) * 1000 / ok if ok else 0
print(f"| {name} | `{cmd}` | {float(rps.group(1)) if rps else 0:.0f} | {pick(0.5):.3f} | {pick(0.99):.3f} | {lat[-1] if lat else 0:.3f} | {cpu_ms:.3f} | {bad} | - |")
EOF
}
h2row h2load-floor-h2 "$FLOOR" https://127.0.0.1:8444/mutate "$BOOKIE" -c 16 -m 8 -t 1 -D "$DURATION"
h2row h2load-mutate-h2 "$DEFAULT" https://127.0.0.1:8443/mutate "$BOOKIE" -c 16 -m 8 -t 1 -D "$DURATION"
h2row h2load-mutate-h2-compact "$DEFAULT" https://127.0.0.1:8443/mutate "$OUT/bookie-compact.json" -c 16 -m 8 -t 1 -D "$DURATION"
h2row h2load-mutate-h1 "$DEFAULT" https://127.0.0.1:8443/mutate "$BOOKIE" --h1 -c 8 -t 1 -D "$DURATION"
# Open loop at 1,000/s: 8 connections at 125 requests/s each (h2load's
# --rps is per connection). Its latency counts from each request's send.
h2row h2load-floor-open-1000 "$FLOOR" https://127.0.0.1:8444/mutate "$BOOKIE" -c 8 -m 8 -t 1 -D "$DURATION" --rps 125
h2row h2load-mutate-open-1000 "$DEFAULT" https://127.0.0.1:8443/mutate "$BOOKIE" -c 8 -m 8 -t 1 -D "$DURATION" --rps 125

echo
echo "| RSS under load (after the runs above), default policy | $(rss "$DEFAULT") KiB |"
echo "| RSS under load (after the runs above), floor | $(rss "$FLOOR") KiB |"
