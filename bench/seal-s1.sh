#!/bin/bash
# bench/seal-s1.sh: S1 with and without sealing (LOGGER_SEAL), for SPEC 4.8's "at most 3%".
#
# HTTP/1.1 keep-alive, 32 connections, one 512-byte record per request (the load tool,
# bench/load.rs), file output; 3 alternating rounds (off, on) of 10 s measured after a 2 s
# warm-up. Prints requests/s and the server's CPU per request (utime+stime from /proc/PID/stat
# over the whole load, warm-up included, divided by every request answered), then verifies the
# sealed outputs (ORDER="on off" runs sealing first in each round). Build first: cargo build --release --examples --bins
# (with --target T, set RELEASE=target/T/release).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RELEASE=${RELEASE:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
B=$RELEASE/ml_api_logger
L=$RELEASE/examples/load
W=${WORK:-$(mktemp -d /tmp/seal-s1.XXXXXX)}
SAMPLE=$ROOT/bench/sample-request.json
PORT=${PORT:-18444}
mkdir -p "$W"
"$B" seal-keys --state "$W/seal.state" > "$W/verify.key" 2>/dev/null
TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
seq0=200000000
for round in 1 2 3; do
  for mode in ${ORDER:-off on}; do
    log=$W/err-$mode-$round.log
    seal=()
    [[ $mode == on ]] && seal=(--seal "$W/seal.state")
    "$B" --ip 127.0.0.1 --port "$PORT" --cert-dir "$W/certs" --output "$W/out-$mode-$round.ndjson" "${seal[@]}" 2>"$log" &
    pid=$!
    for _ in $(seq 100); do grep -qs listening "$log" && break; sleep 0.1; done
    t0=$(ticks $pid)
    line=$("$L" "https://127.0.0.1:$PORT/log" --ca "$W/certs/serverca.crt" --http 1 --connections 32 \
      --duration 10s --warmup 2s --body "$SAMPLE" --first-sequence $seq0 2>/dev/null | grep load-summary)
    t1=$(ticks $pid)
    kill -TERM $pid; wait $pid
    seq0=$((seq0 + 5000000))
    rps=$(grep -o ' rps=[0-9.]*' <<<"$line" | cut -d= -f2)
    sent=$(grep -o 'sent_total=[0-9]*' <<<"$line" | cut -d= -f2)
    cpu=$(awk -v a="$t0" -v b="$t1" -v t="$TCK" -v n="$sent" 'BEGIN{printf "%.2f", (b-a)/t*1e6/n}')
    echo "round $round seal=$mode rps=$rps cpu_per_request_us=$cpu (load avg $(cut -d' ' -f1-3 /proc/loadavg))"
  done
done
for f in "$W"/out-on-*.ndjson; do "$B" verify --key "$W/verify.key" "$f" | tail -1; done
