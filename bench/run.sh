#!/usr/bin/env bash
# bench/run.sh: load benchmark of ml_api_logger against nginx as an HTTPS body logger.
#
# One invocation builds the release binary, installs wrk/nginx/openssl from Debian packages when
# they are missing, makes a throwaway ECDSA P-256 certificate, then runs the same wrk load
# (POST /log, one 512-byte JSON record per request, keep-alive, TLS) against:
#   1. ml_api_logger --output TMP/logger.ndjson   (fsync off, the default)
#   2. nginx proxying /log to a local `return 200;` upstream and logging $request_body
# and prints requests/s, p50/p99 latency, errors and peak RSS of each, and their ratios.
# Everything listens on 127.0.0.1 only; every process it starts is stopped on exit or Ctrl-C.
#
# Environment:
#   DURATION=15s     measured run per server (wrk -d: 30, 30s, 2m, 1h)
#   WARMUP=3s        warm-up run per server before the measured one, same load
#   CONNECTIONS=32   wrk connections (one wrk thread)
#   SKIP_BUILD=1     use target/release/ml_api_logger as it is, no cargo build
#   KEEP_TMP=1       keep the temp dir (certificate, outputs, logs) instead of removing it
# See bench/README.md.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
cd "$ROOT"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-32}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}

SAMPLE=$BENCH_DIR/sample-request.json
LUA=$BENCH_DIR/post.lua
TEMPLATE=$BENCH_DIR/nginx.conf.template
LOGGER_BIN=$ROOT/target/release/ml_api_logger
BODY_BYTES=512
export BENCH_BODY_FILE=$SAMPLE

# Time bounds, in seconds.
APT_TIMEOUT=900
BUILD_TIMEOUT=3600
START_TIMEOUT=15
STOP_GRACE=15
CHECK_TIMEOUT=600

# The logger must see only what this script sets.
for name in $(compgen -e); do
    case $name in LOGGER_* | RUST_LOG) unset "$name" ;; esac
done

die() {
    echo "run.sh: error: $*" >&2
    exit 1
}
say() { printf '%s\n' "$*"; }
section() { printf '\n== %s\n' "$*"; }

# 15s, 2m, 1h or 30 (seconds) -> seconds; fails on anything else.
secs_of() {
    [[ $1 =~ ^([0-9]+)([smh]?)$ ]] || return 1
    local n=$((10#${BASH_REMATCH[1]}))
    case ${BASH_REMATCH[2]} in
        m) n=$((n * 60)) ;;
        h) n=$((n * 3600)) ;;
    esac
    echo "$n"
}

DURATION_S=$(secs_of "$DURATION") && ((DURATION_S > 0)) || die "DURATION=$DURATION: not a duration (e.g. 15s, 2m)"
WARMUP_S=$(secs_of "$WARMUP") || die "WARMUP=$WARMUP: not a duration (e.g. 3s, 0)"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] && ((CONNECTIONS <= 1000)) || die "CONNECTIONS=$CONNECTIONS: not a count (1-1000)"
[[ -f $SAMPLE && -f $LUA && -f $TEMPLATE ]] || die "bench/ is incomplete: need sample-request.json, post.lua, nginx.conf.template"

# ---------------------------------------------------------------------------------------------
# Processes and cleanup

TMP=""
CHILD_PID=""   # a bounded setup step (apt-get, cargo) or wrk, run in the background and waited for
LOGGER_PID=""
NGINX_PID=""
NGINX_WORKERS=()
POLICY_RC=""   # a policy-rc.d this script created for the install, removed again at once

# True while PID exists and is not a zombie.
alive() {
    local state
    state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# Children of a process, from /proc.
children_of() {
    local f
    if [[ -r /proc/$1/task/$1/children ]]; then
        cat "/proc/$1/task/$1/children" 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' || true
        return 0
    fi
    for f in /proc/[0-9]*/status; do
        awk -v p="$1" -v f="$f" '/^PPid:/ { if ($2 == p) { sub("^/proc/", "", f); sub("/status$", "", f); print f } }' \
            "$f" 2>/dev/null || true
    done
}

# Sends SIG to PID, waits up to GRACE seconds, then SIGKILLs it. Sets STOP_RC to its exit status.
stop_pid() {
    local pid=$1 sig=$2 grace=$3 i
    STOP_RC=""
    if alive "$pid"; then
        kill "-$sig" "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 10; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            echo "run.sh: pid $pid did not stop within ${grace}s of SIG$sig; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    STOP_RC=0
    wait "$pid" 2>/dev/null || STOP_RC=$?
}

stop_nginx() {
    local w
    [[ -n $NGINX_PID ]] || return 0
    stop_pid "$NGINX_PID" TERM "$STOP_GRACE"
    # Workers outlive a master that had to be killed: stop them by their recorded ids.
    for w in "${NGINX_WORKERS[@]}"; do
        if alive "$w" && grep -q nginx "/proc/$w/comm" 2>/dev/null; then
            kill -KILL "$w" 2>/dev/null || true
        fi
    done
    NGINX_PID=""
    NGINX_WORKERS=()
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $CHILD_PID ]] && stop_pid "$CHILD_PID" TERM 5
    [[ -n $LOGGER_PID ]] && stop_pid "$LOGGER_PID" TERM "$STOP_GRACE"
    stop_nginx
    [[ -n $POLICY_RC ]] && rm -f "$POLICY_RC"
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ $KEEP_TMP == 1 ]]; then
            echo "run.sh: kept $TMP" >&2
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT
trap 'echo "run.sh: terminated" >&2; exit 143' TERM

# Runs a command under `timeout`, in the background so that Ctrl-C reaches the trap at once
# (timeout runs in its own process group); output goes to LOG. Returns the command's status.
run_bounded() {
    local secs=$1 log=$2 rc=0
    shift 2
    timeout -k 10 "$secs" "$@" >"$log" 2>&1 </dev/null &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    return "$rc"
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ml_api_logger-bench.XXXXXX")
chmod 755 "$TMP" # nginx workers may run as another user

# ---------------------------------------------------------------------------------------------
# Machine

say "ml_api_logger load benchmark   $(date -u +%Y-%m-%dT%H:%M:%SZ)   (work tree at commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ', with uncommitted changes to src/Cargo'))"
section "machine"
say "nproc:      $(nproc)"
say "cpu:        $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
say "memory:     $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
say "kernel:     $(uname -sr)"
say "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (before the run)"

# ---------------------------------------------------------------------------------------------
# Setup: packages, build, sample, certificate, ports

section "setup"
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
    [[ $(id -u) == 0 ]] || die "missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root"
    say "installing ${need[*]} (apt-get)"
    # Keep the package's maintainer scripts from starting the system nginx service.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        POLICY_RC=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\n# bench/run.sh: no service starts during its install\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
    fi
    run_bounded "$APT_TIMEOUT" "$TMP/apt.log" env DEBIAN_FRONTEND=noninteractive apt-get update ||
        { tail -n 20 "$TMP/apt.log" >&2; die "apt-get update failed"; }
    run_bounded "$APT_TIMEOUT" "$TMP/apt.log" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${need[@]}" ||
        { tail -n 30 "$TMP/apt.log" >&2; die "apt-get install ${need[*]} failed"; }
    if [[ -n $POLICY_RC ]]; then
        rm -f "$POLICY_RC"
        POLICY_RC=""
    fi
    for tool in wrk nginx openssl python3 curl; do
        command -v "$tool" >/dev/null || die "$tool is still missing after apt-get install"
    done
else
    say "packages:   wrk, nginx, openssl, python3, curl already installed"
fi

if [[ $SKIP_BUILD == 1 ]]; then
    say "build:      skipped (SKIP_BUILD=1)"
else
    say "build:      cargo build --release --locked ..."
    t0=$SECONDS
    run_bounded "$BUILD_TIMEOUT" "$TMP/build.log" cargo build --release --locked ||
        { tail -n 40 "$TMP/build.log" >&2; die "cargo build --release --locked failed"; }
    say "build:      done in $((SECONDS - t0)) s ($(tail -n 1 "$TMP/build.log" | sed 's/^ *//'))"
fi
[[ -x $LOGGER_BIN ]] || die "$LOGGER_BIN is missing; run without SKIP_BUILD=1"

size=$(wc -c <"$SAMPLE")
((size == BODY_BYTES)) || die "$SAMPLE is $size bytes, not $BODY_BYTES"
python3 -c '
import json, sys
raw = open(sys.argv[1], "rb").read()
assert b"\n" not in raw, "not one line"
rec = json.loads(raw)
assert isinstance(rec, dict) and "sequence" in rec and "request" in rec, "not a request record"
assert json.dumps(rec, separators=(",", ":")).encode() == raw, "not compact (minified) JSON"
' "$SAMPLE" || die "$SAMPLE is not a one-line compact JSON request record"
say "sample:     $SAMPLE: $size bytes, one-line compact JSON request record"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 90 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "extendedKeyUsage=serverAuth" >"$TMP/openssl.log" 2>&1 ||
    { cat "$TMP/openssl.log" >&2; die "openssl could not make the test certificate"; }
chmod 600 "$TMP/key.pem"
say "cert:       ECDSA P-256 (prime256v1) self-signed, CN=localhost, SAN DNS:localhost IP:127.0.0.1, 90 days, made now in $TMP"

read -r LOGGER_PORT NGINX_PORT UPSTREAM_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')
[[ -n ${UPSTREAM_PORT:-} ]] || die "could not find free ports"
say "ports:      logger $LOGGER_PORT, nginx $NGINX_PORT (upstream $UPSTREAM_PORT), all on 127.0.0.1"

NGINX_DIR=$TMP/nginx
mkdir -p "$NGINX_DIR"
sed -e "s|@DIR@|$NGINX_DIR|g" -e "s|@LOG@|$TMP/nginx.log|g" -e "s|@PORT@|$NGINX_PORT|g" \
    -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@CERT@|$TMP/cert.pem|g" -e "s|@KEY@|$TMP/key.pem|g" \
    "$TEMPLATE" >"$NGINX_DIR/nginx.conf"
if grep -v '^ *#' "$NGINX_DIR/nginx.conf" | grep -q '@[A-Z_]*@'; then die "nginx.conf.template has an unknown placeholder"; fi

# ---------------------------------------------------------------------------------------------
# Versions and commands

section "versions"
say "wrk:        $(wrk -v 2>&1 | head -n 1 || true)"
say "nginx:      $(nginx -v 2>&1 | head -n 1 | sed 's/^nginx version: //')"
say "logger:     $("$LOGGER_BIN" --version 2>&1 | head -n 1) ($LOGGER_BIN, built $(date -u -r "$LOGGER_BIN" +%Y-%m-%dT%H:%M:%SZ))"
say "openssl:    $(openssl version)"

LOGGER_OUT=$TMP/logger.ndjson
NGINX_LOG=$TMP/nginx.log
logger_cmd=(env "LOGGER_CERT=$TMP/cert.pem" "LOGGER_KEY=$TMP/key.pem" "LOGGER_PORT=$LOGGER_PORT"
    LOGGER_IP=127.0.0.1 "$LOGGER_BIN" --output "$LOGGER_OUT")
nginx_cmd=(nginx -p "$NGINX_DIR/" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/error.log")
wrk_cmd() { # duration port
    echo "wrk -t1 -c$CONNECTIONS -d$1 --latency -s $LUA https://127.0.0.1:$2/log"
}

section "commands"
say "logger:     ${logger_cmd[*]:1}"
say "nginx:      ${nginx_cmd[*]}   (config: bench/nginx.conf.template, worker_processes auto)"
say "load:       BENCH_BODY_FILE=$SAMPLE $(wrk_cmd "$DURATION" PORT)"
say "            preceded by a ${WARMUP} warm-up with the same command (-d$WARMUP), not measured"
say "            body: POST /log, Content-Type: application/json, $BODY_BYTES bytes; HTTP/1.1 keep-alive over TLS"

# ---------------------------------------------------------------------------------------------
# One scenario

# Converts a wrk latency (850.00us, 1.23ms, 2.00s, 1.00m) to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (!match(v, /^[0-9.]+/)) { print "nan"; exit }
        n = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1)
        m = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
        if (m < 0) print "nan"; else printf "%.3f", n * m
    }'
}

# wrk-summary key -> value from a wrk output file.
summary_of() {
    awk -v k="$2" '/^wrk-summary / { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$1"
}

# Waits until something accepts on 127.0.0.1:PORT while PID lives.
wait_port() {
    local port=$1 pid=$2 i
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        alive "$pid" || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# Runs wrk for DURATION against PORT into FILE; fails if wrk did not produce a report.
# Each wrk run numbers its records from its own range, so no record repeats across runs
# (a repeat is a retry to the logger, answered without a second write).
WRK_RUNS=0
run_wrk() {
    local duration=$1 port=$2 out=$3 secs rc=0
    secs=$(secs_of "$duration")
    WRK_RUNS=$((WRK_RUNS + 1))
    BENCH_FIRST_SEQUENCE=$((200000000 + WRK_RUNS * 10000000)) \
    timeout -k 5 $((secs + 60)) wrk -t1 -c"$CONNECTIONS" -d"$duration" --latency -s "$LUA" \
        "https://127.0.0.1:$port/log" >"$out" 2>&1 </dev/null &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    if ((rc != 0)) || ! grep -q '^Requests/sec:' "$out" || ! grep -q '^wrk-summary ' "$out"; then
        echo "run.sh: wrk failed (status $rc) against port $port:" >&2
        sed 's/^/    /' "$out" >&2
        return 1
    fi
}

# Checks an output file: every line must be the sample record. For nginx, each line is the body
# escaped as the content of a JSON string (escape=json), so it is unescaped first.
# Prints: lines invalid differing unterminated first_problem...
CHECK_PY='
import json, sys
path, kind, sample_path = sys.argv[1:4]
sample = json.loads(open(sample_path, "rb").read())
lines = invalid = differing = 0
unterminated = 0
seen = set()
first = "-"
with open(path, "rb") as f:
    for raw in f:
        lines += 1
        if not raw.endswith(b"\n"):
            unterminated += 1
        text = raw.rstrip(b"\n").decode("utf-8", "replace")
        try:
            if kind == "nginx":
                text = json.loads("\"" + text + "\"")
            rec = json.loads(text)
        except ValueError as e:
            invalid += 1
            if first == "-":
                first = "line %d: not JSON (%s)" % (lines, str(e)[:80])
            continue
        # Each request carries its own sequence; everything else is the sample, and no
        # sequence may appear twice (a record written twice).
        seq = rec.get("sequence") if isinstance(rec, dict) else None
        if seq in seen:
            differing += 1
            if first == "-":
                first = "line %d: sequence %s written twice" % (lines, seq)
        seen.add(seq)
        if isinstance(rec, dict):
            rec["sequence"] = sample["sequence"]
        if rec != sample:
            differing += 1
            if first == "-":
                first = "line %d: not the record sent: %s" % (lines, text[:80])
print(lines, invalid, differing, unterminated, first)
'

# CPU seconds (user + system) used so far by the processes given, from /proc/PID/stat.
cpu_secs() {
    local p ticks=0 t
    for p in "$@"; do
        t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
        ticks=$((ticks + ${t:-0}))
    done
    awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz }'
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# Results per server, by index 0 (logger) and 1 (nginx).
NAMES=(ml_api_logger nginx)
R_RPS=() R_P50=() R_P99=() R_NON2XX=() R_SOCKERR=() R_RSS=() R_CPU=() R_LINES=() R_OK=() R_NOTES=()

# Everything after the server is up: TLS check, smoke POST, warm-up, measured run, peak RSS.
# Sets the R_* entries at IDX. PIDS_FN prints the server's process ids.
measure() {
    local idx=$1 port=$2 pid=$3 pids_fn=$4 name=${NAMES[$1]}
    local code tls warm=$TMP/$name.warmup.txt meas=$TMP/$name.wrk.txt p kib=0

    tls=$(timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost </dev/null 2>/dev/null |
        grep -m 1 '^New,' || true)
    say "tls:        ${tls:-(openssl s_client could not tell)}"

    code=$(curl -sS --max-time 10 --cacert "$TMP/cert.pem" --resolve "localhost:$port:127.0.0.1" \
        -H 'Content-Type: application/json' --data-binary "@$SAMPLE" -o "$TMP/$name.smoke" \
        -w '%{http_code}' "https://localhost:$port/log" 2>"$TMP/$name.smoke.err") || code="curl failed: $(head -c 200 "$TMP/$name.smoke.err")"
    say "smoke:      one POST /log with curl (certificate verified): $code $(head -c 100 "$TMP/$name.smoke" 2>/dev/null)"
    [[ $code == 2?? ]] || die "$name did not accept the sample record"

    if ((WARMUP_S > 0)); then
        say "warm-up:    $(wrk_cmd "$WARMUP" "$port")"
        run_wrk "$WARMUP" "$port" "$warm" || die "warm-up against $name failed"
        say "            $(awk '/^Requests\/sec:/ { print $2 " requests/s" }' "$warm"), $(summary_of "$warm" status) non-2xx"
    fi
    say "measured:   $(wrk_cmd "$DURATION" "$port")   (load avg $(cut -d' ' -f1-3 /proc/loadavg))"
    local cpu0 cpu1
    cpu0=$(cpu_secs $($pids_fn))
    run_wrk "$DURATION" "$port" "$meas" || die "measured run against $name failed"
    cpu1=$(cpu_secs $($pids_fn))
    R_CPU[idx]=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.1f", b - a }')
    grep -v '^wrk-summary ' "$meas" | sed 's/^/    | /' || true

    if alive "$pid"; then
        for p in $($pids_fn); do
            kib=$((kib + $(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)))
        done
        R_RSS[idx]=$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }')
    else
        R_NOTES[idx]+="${name} DIED during the run; "
        R_RSS[idx]=-
        R_CPU[idx]=-
    fi
    R_RPS[idx]=$(awk '/^Requests\/sec:/ { print $2 }' "$meas")
    R_P50[idx]=$(to_ms "$(awk '$1 == "50%" { print $2; exit }' "$meas")")
    R_P99[idx]=$(to_ms "$(awk '$1 == "99%" { print $2; exit }' "$meas")")
    R_NON2XX[idx]=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' "$meas")
    R_NON2XX[idx]=${R_NON2XX[idx]:-0}
    R_SOCKERR[idx]=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$meas")
    R_SOCKERR[idx]=${R_SOCKERR[idx]:-0}
    # 2xx the server acknowledged: the smoke POST, the warm-up's and the measured run's.
    local ok=1 f
    for f in "$warm" "$meas"; do
        [[ -f $f ]] || continue
        ok=$((ok + $(summary_of "$f" requests) - $(summary_of "$f" status)))
    done
    R_OK[idx]=$ok
}

# Validates an output file after its server stopped; sets R_LINES and notes.
check_output() {
    local idx=$1 file=$2 kind=$3 name=${NAMES[$1]} lines invalid differing unterminated first
    local runs=$((WARMUP_S > 0 ? 2 : 1))
    if [[ ! -f $file ]]; then
        R_LINES[idx]=0
        R_NOTES[idx]+="no output file; "
        say "output:     $file is missing"
        return
    fi
    read -r lines invalid differing unterminated first < <(timeout "$CHECK_TIMEOUT" python3 -c "$CHECK_PY" "$file" "$kind" "$SAMPLE") || true
    R_LINES[idx]=${lines:-0}
    local extra=$((R_LINES[idx] - R_OK[idx]))
    [[ $first != - ]] || first=""
    say "output:     $file: ${lines:-?} lines, $(du -h "$file" | cut -f1); ${invalid:-?} not JSON, ${differing:-?} not the record sent, ${unterminated:-?} without a final newline${first:+ (first problem: $first)}"
    say "            2xx answered (smoke + warm-up + measured, per wrk): ${R_OK[idx]}; lines - 2xx = $extra (0..$((runs * CONNECTIONS)) expected: requests in flight when wrk stopped)"
    if [[ ${invalid:-1} != 0 || ${differing:-1} != 0 || ${unterminated:-1} != 0 ]]; then
        R_NOTES[idx]+="output has bad lines; "
    fi
    if ((extra < 0)); then
        R_NOTES[idx]+="$((-extra)) acknowledged records missing from the output; "
    elif ((extra > runs * CONNECTIONS)); then
        R_NOTES[idx]+="$extra more lines than 2xx answers; "
    fi
}

# ---------------------------------------------------------------------------------------------
# Scenario 1: ml_api_logger

section "scenario 1: ml_api_logger (fsync off)"
"${logger_cmd[@]}" >"$TMP/logger.stdout" 2>"$TMP/logger.stderr" </dev/null &
LOGGER_PID=$!
logger_pids() { echo "$LOGGER_PID"; }
if ! wait_port "$LOGGER_PORT" "$LOGGER_PID"; then
    sed 's/^/    /' "$TMP/logger.stderr" >&2
    die "the logger did not start listening on 127.0.0.1:$LOGGER_PORT within ${START_TIMEOUT}s"
fi
say "started:    pid $LOGGER_PID"
measure 0 "$LOGGER_PORT" "$LOGGER_PID" logger_pids
alive "$LOGGER_PID" || say "stopped:    had exited by itself before the end of the run"
stop_pid "$LOGGER_PID" TERM "$STOP_GRACE"
LOGGER_PID=""
say "stopped:    SIGTERM, exit status $STOP_RC"
[[ $STOP_RC == 0 ]] || R_NOTES[0]+="exit status $STOP_RC after SIGTERM; "
warns=$(grep -cE '(^|[[:space:]])(WARN|ERROR)([[:space:]]|$)' "$TMP/logger.stderr" || true)
say "stderr:     $(wc -l <"$TMP/logger.stderr") lines, ${warns:-0} WARN/ERROR"
if ((warns > 0)); then
    grep -E '(^|[[:space:]])(WARN|ERROR)([[:space:]]|$)' "$TMP/logger.stderr" | head -n 5 | sed 's/^/    | /'
    R_NOTES[0]+="$warns WARN/ERROR lines on stderr; "
fi
[[ ! -s $TMP/logger.stdout ]] || R_NOTES[0]+="wrote to stdout though --output was a file; "
check_output 0 "$LOGGER_OUT" logger

# ---------------------------------------------------------------------------------------------
# Scenario 2: nginx

section "scenario 2: nginx (proxy to a return-200 upstream, access_log of \$request_body, escape=json)"
"${nginx_cmd[@]}" -t >"$TMP/nginx-t.log" 2>&1 || { cat "$TMP/nginx-t.log" >&2; die "nginx -t rejected the generated config"; }
"${nginx_cmd[@]}" >"$TMP/nginx.stdout" 2>&1 </dev/null &
NGINX_PID=$!
nginx_pids() {
    echo "$NGINX_PID"
    children_of "$NGINX_PID"
}
if ! wait_port "$NGINX_PORT" "$NGINX_PID"; then
    cat "$TMP/nginx.stdout" "$NGINX_DIR/error.log" 2>/dev/null | sed 's/^/    /' >&2
    die "nginx did not start listening on 127.0.0.1:$NGINX_PORT within ${START_TIMEOUT}s"
fi
sleep 0.5 # let every worker come up before their ids are recorded
mapfile -t NGINX_WORKERS < <(children_of "$NGINX_PID")
say "started:    master pid $NGINX_PID, workers ${NGINX_WORKERS[*]}"
measure 1 "$NGINX_PORT" "$NGINX_PID" nginx_pids
alive "$NGINX_PID" || say "stopped:    had exited by itself before the end of the run"
stop_nginx
say "stopped:    SIGTERM, exit status $STOP_RC"
errs=$(grep -cE '\[(error|crit|alert|emerg)\]' "$NGINX_DIR/error.log" 2>/dev/null || true)
say "error.log:  ${errs:-0} error/crit/alert/emerg lines"
if ((errs > 0)); then
    grep -E '\[(error|crit|alert|emerg)\]' "$NGINX_DIR/error.log" | head -n 5 | sed 's/^/    | /'
    R_NOTES[1]+="$errs errors in error.log; "
fi
check_output 1 "$NGINX_LOG" nginx

# ---------------------------------------------------------------------------------------------
# Results

if ((WARMUP_S > 0)); then warm_note="after a $WARMUP warm-up"; else warm_note="no warm-up"; fi
section "results: DURATION=$DURATION ($warm_note), CONNECTIONS=$CONNECTIONS, 1 wrk thread, $BODY_BYTES-byte body, TLS with ECDSA P-256, $(nproc) cores shared by wrk and the server"
printf '%-14s %12s %9s %9s %8s %9s %13s %13s %10s\n' server requests/s "p50 ms" "p99 ms" non-2xx "sock err" "peak RSS MiB" "server CPU s" "lines"
for i in 0 1; do
    printf '%-14s %12s %9s %9s %8s %9s %13s %13s %10s\n' "${NAMES[i]}" "${R_RPS[i]}" "${R_P50[i]}" "${R_P99[i]}" \
        "${R_NON2XX[i]}" "${R_SOCKERR[i]}" "${R_RSS[i]}" "${R_CPU[i]}" "${R_LINES[i]}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
say ""
say "logger/nginx  requests/s: $(ratio "${R_RPS[0]}" "${R_RPS[1]}")x (higher is better)   p99: $(ratio "${R_P99[0]}" "${R_P99[1]}")x (lower is better)"
say "peak RSS: VmHWM of the logger; for nginx the sum of VmHWM over master and workers (shared pages counted per process)."
say "server CPU s: user + system CPU seconds the server's processes used during the measured run; the machine had $((DURATION_S * $(nproc))) core-seconds in that time, shared with wrk."
say "lines: records in the output file after smoke + warm-up + measured run."
say "Compare the ratios, not the absolute numbers: the machine is shared and noisy, and wrk runs on the same cores."

status=0
for i in 0 1; do
    if [[ -n ${R_NOTES[i]:-} ]]; then
        say "PROBLEM ${NAMES[i]}: ${R_NOTES[i]%; }"
        status=1
    fi
    if [[ ${R_NON2XX[i]} != 0 || ${R_SOCKERR[i]} != 0 ]]; then
        say "PROBLEM ${NAMES[i]}: ${R_NON2XX[i]} non-2xx responses, ${R_SOCKERR[i]} socket errors in the measured run"
        status=1
    fi
done
((status == 0)) && say "no problems: every response 2xx, no socket errors, every output line is the record sent"
exit "$status"
