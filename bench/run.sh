#!/usr/bin/env bash
# bench/run.sh: load benchmark of ml_api_logger against its transport's ceiling and against nginx.
#
# One invocation builds the release binary and the two benchmark programs (cargo examples
# `ceiling` and `load`), installs wrk/nginx/openssl from Debian packages when they are missing,
# makes throwaway certificates, then runs the scenarios below against three servers, one after
# another, never two at once:
#   ml_api_logger  the daemon, writing the records to TMP/<scenario>-logger.ndjson
#   ceiling        bench/ceiling.rs: the daemon's TLS, HTTP settings and runtime; reads each body
#                  and answers 200, writing nothing (the most this transport allows)
#   nginx          an HTTPS body logger: proxies /log to a return-200 upstream, logs $request_body
# Scenarios (all on 127.0.0.1, one certificate for every server of a scenario):
#   S1  HTTP/1.1 keep-alive, 32 connections, one 512-byte record per request (wrk)
#   S2  HTTP/2, 32 connections x 10 streams (load --http 2)
#   S3  a new TLS connection per request (load --new-connection-per-request), with an RSA-4096
#       certificate made by the vendor's openssl commands and with an ECDSA P-256 one made by
#       `ml_api_logger cert`
#   S4  NDJSON batches of 1,000 records per request (load --batch 1000)
#   S5  S1 against ml_api_logger --fsync on
#   S6  resident memory with 5,000 idle keep-alive connections (load --idle); peak RSS under S1
#   S7  time from start to accepting (bench/startup_time.py); size of the release binary
#   S8  tail latency beside the vendor's Go program (bench/go-reference, built with `go build`),
#       at 32 and 256 keep-alive connections: saturation (wrk, closed loop) of both and of the
#       ceiling (the load generator's bound, beside its CPU share), then the
#       open loop (load --rate) at 50% and 90% of the Go program's saturation rate against both,
#       and at 50% and 90% of the logger's own against the logger; p50/p99/p99.9/max; S8_ROUNDS
#       rounds, servers interleaved, medians reported
# Every record a server writes is checked. It prints the results per scenario, then one markdown
# table with ratios and targets. A missed target is reported in the table ("no"), not as a
# problem; a PROBLEM line (exit status 1) means lost or bad records, non-2xx answers, errors, a
# server that died or a WARN/ERROR from the logger.
# Every process it starts is stopped on exit or Ctrl-C.
#
# Environment:
#   SCENARIOS="S1 S2 S3 S4 S5 S6 S7"   the scenarios to run (always in this order)
#   DURATION=15s     measured run per server (wrk -d, load --duration: 30, 30s, 2m)
#   WARMUP=3s        warm-up per server before the measured run, same load; 0 for none
#   CONNECTIONS=32   wrk connections in S1 and S5 (one wrk thread)
#   WORKERS=N        worker threads of the logger and the ceiling alike (LOGGER_WORKER_THREADS);
#                    unset: their default, half the CPUs
#   SKIP_BUILD=1     use target/release/ml_api_logger and target/release/examples/{ceiling,load} as they are
#   KEEP_TMP=1       keep the temp dir (certificates, outputs, logs) instead of removing it
#   RESULTS_MD=FILE  also write the markdown results, with the machine and the commands, to FILE
#   S8_ROUNDS=3      rounds of every S8 measurement (medians are reported)
#   S8_DURATION=6s   measured run of each S8 round (after a 2 s warm-up)
#   S8_CONNECTIONS="32 256"
# See bench/README.md.

set -euo pipefail

CALLER_DIR=$PWD
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
cd "$ROOT"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

ALL_SCENARIOS="S1 S2 S3 S4 S5 S6 S7 S8"
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-32}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
RESULTS_MD=${RESULTS_MD:-}
S8_ROUNDS=${S8_ROUNDS:-3}
S8_DURATION=${S8_DURATION:-6s}
S8_CONNECTIONS=${S8_CONNECTIONS:-32 256}

SAMPLE=$BENCH_DIR/sample-request.json
LUA=$BENCH_DIR/post.lua
TEMPLATE=$BENCH_DIR/nginx.conf.template
CHECK_PY=$BENCH_DIR/check_output.py
STARTUP_PY=$BENCH_DIR/startup_time.py
LOGGER_BIN=$ROOT/target/release/ml_api_logger
CEILING_BIN=$ROOT/target/release/examples/ceiling
LOAD_BIN=$ROOT/target/release/examples/load
GO_SRC=$BENCH_DIR/go-reference/ml_api_logger.go
GO_BIN=""  # built into the temp dir when S8 runs
BODY_BYTES=512
export BENCH_BODY_FILE=$SAMPLE

# The scenarios' loads.
H2_CONNECTIONS=32     # S2: HTTP/2 connections ...
H2_STREAMS=10         #     ... with this many concurrent streams each
HS_WORKERS=16         # S3: workers, each connecting, handshaking, posting once and closing in turn
BATCH=1000            # S4: records per request ...
BATCH_CONNECTIONS=8   #     ... on this many keep-alive HTTP/1.1 connections
IDLE_CONNECTIONS=5000 # S6: idle keep-alive connections held ...
IDLE_HOLD=10s         #     ... for this long
START_RUNS=7          # S7: start-ups per server

# Targets (from the performance issue). A missed target is a "no" in the table, not a problem.
T_S1_RPS=0.90         # logger/ceiling requests/s, at least
T_S1_P99=1.2          # logger/ceiling p99, at most
T_S1_NGINX=3          # logger/nginx requests/s, at least
T_S2=1.0              # logger S2 records/s / logger S1 requests/s, at least
T_S3=0.95             # logger/ceiling handshakes/s, at least, for each certificate type
T_S4_RECORDS=500000   # logger records/s, at least
T_S4_MBS=256          # logger MB/s (10^6 bytes of body), at least
T_S5=0.60             # logger fsync on / fsync off requests/s, at least
T_S6A_MIB=64          # logger VmRSS with the idle connections held, MiB, below
T_S6B_MIB=32          # logger VmHWM under S1, MiB, below
T_S7A_MS=50           # logger median start to accepting, ms, below
T_S7B_BYTES=10000000  # release binary, bytes (10 MB, decimal), below

# Time bounds, in seconds.
APT_TIMEOUT=900
BUILD_TIMEOUT=3600
CERT_TIMEOUT=300
START_TIMEOUT=15
STOP_GRACE=15
CHECK_TIMEOUT=900

# The logger must see only what this script sets.
for name in $(compgen -e); do
    case $name in LOGGER_* | RUST_LOG) unset "$name" ;; esac
done
# The ceiling reads the same variable, so the two keep the same runtime.
if [[ -n ${WORKERS:-} ]]; then
    export LOGGER_WORKER_THREADS=$WORKERS
fi

die() {
    echo "run.sh: error: $*" >&2
    exit 1
}
say() { printf '%s\n' "$*"; }
section() { printf '\n== %s\n' "$*"; }
subsection() { printf -- '\n-- %s\n' "$*"; }

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

if ! DURATION_S=$(secs_of "$DURATION") || ((DURATION_S == 0)); then die "DURATION=$DURATION: not a duration (e.g. 15s, 2m)"; fi
WARMUP_S=$(secs_of "$WARMUP") || die "WARMUP=$WARMUP: not a duration (e.g. 3s, 0)"
IDLE_HOLD_S=$(secs_of "$IDLE_HOLD")
if [[ ! $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || ((CONNECTIONS > 1000)); then die "CONNECTIONS=$CONNECTIONS: not a count (1-1000)"; fi
for f in "$SAMPLE" "$LUA" "$TEMPLATE" "$CHECK_PY" "$STARTUP_PY"; do
    [[ -f $f ]] || die "bench/ is incomplete: $f is missing"
done

declare -A RUN=()
for s in $SCENARIOS; do
    s=${s^^}
    [[ " $ALL_SCENARIOS " == *" $s "* ]] || die "SCENARIOS=$SCENARIOS: $s is not one of $ALL_SCENARIOS"
    RUN[$s]=1
done
((${#RUN[@]} > 0)) || die "SCENARIOS is empty"
SELECTED=""
for s in $ALL_SCENARIOS; do [[ -n ${RUN[$s]:-} ]] && SELECTED+="$s "; done
SELECTED=${SELECTED% }
want() { [[ -n ${RUN[$1]:-} ]]; }
NEED_LOAD=0
for s in S2 S3 S4 S6 S8; do want "$s" && NEED_LOAD=1; done
if want S8; then
    [[ $S8_ROUNDS =~ ^[1-9][0-9]?$ ]] || die "S8_ROUNDS=$S8_ROUNDS: not a count (1-99)"
    S8_DURATION_S=$(secs_of "$S8_DURATION") && ((S8_DURATION_S > 0)) || die "S8_DURATION=$S8_DURATION: not a duration"
    for c in $S8_CONNECTIONS; do
        [[ $c =~ ^[1-9][0-9]*$ ]] && ((c <= 1000)) || die "S8_CONNECTIONS=$S8_CONNECTIONS: $c is not a count (1-1000)"
    done
fi

# ---------------------------------------------------------------------------------------------
# Processes and cleanup

TMP=""
GEN_CPU=-     # CPU seconds of the last wrk or load run (gen_cpu_mark)
CHILD_PID=""  # a bounded step (apt-get, cargo, openssl, wrk, load, the start-up helper), waited for
SRV=""        # the server under test: logger, ceiling or nginx; one at a time
SRV_PID=""
NGINX_WORKERS=()
POLICY_RC=""  # a policy-rc.d this script created for the install, removed again at once

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
        tr ' ' '\n' <"/proc/$1/task/$1/children" 2>/dev/null | grep -E '^[0-9]+$' || true
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

# Stops the server under test; for nginx also its recorded workers, which outlive a master that
# had to be killed.
stop_server() {
    local w
    [[ -n $SRV_PID ]] || return 0
    stop_pid "$SRV_PID" TERM "$STOP_GRACE"
    for w in "${NGINX_WORKERS[@]}"; do
        if alive "$w" && grep -q nginx "/proc/$w/comm" 2>/dev/null; then
            kill -KILL "$w" 2>/dev/null || true
        fi
    done
    SRV_PID=""
    NGINX_WORKERS=()
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $CHILD_PID ]] && stop_pid "$CHILD_PID" TERM 5
    stop_server
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

# Paths as the project speaks of them: the temp dir as TMP, the repository's files relative to it.
pretty() {
    local s=$*
    s=${s//"$TMP"/TMP}
    s=${s//"$ROOT/"/}
    printf '%s' "$s"
}

# ---------------------------------------------------------------------------------------------
# Machine

COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src bench Cargo.toml Cargo.lock 2>/dev/null || echo ', with uncommitted changes to src/bench/Cargo')"
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
KERNEL=$(uname -sr)
MEMORY=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
LOADAVG0=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$SECONDS

say "ml_api_logger load benchmark   $DATE   (work tree at commit $COMMIT)"
section "machine"
say "nproc:      $(nproc)"
say "cpu:        $CPU_MODEL"
say "memory:     $MEMORY"
say "kernel:     $KERNEL"
say "load avg:   $LOADAVG0 (before the run)"
say "scenarios:  $SELECTED   DURATION=$DURATION WARMUP=$WARMUP"

# ---------------------------------------------------------------------------------------------
# Setup: packages, build, sample, certificates

section "setup"
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
if want S8; then command -v go >/dev/null || need+=(golang-go); fi
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
    if want S8; then command -v go >/dev/null || die "go is still missing after apt-get install golang-go"; fi
else
    say "packages:   wrk, nginx, openssl, python3, curl$(want S8 && echo ', go') already installed"
fi

BUILD_CMD=(cargo build --release --locked --bin ml_api_logger --example ceiling --example load)
if [[ $SKIP_BUILD == 1 ]]; then
    say "build:      skipped (SKIP_BUILD=1)"
else
    say "build:      ${BUILD_CMD[*]} ..."
    t0=$SECONDS
    run_bounded "$BUILD_TIMEOUT" "$TMP/build.log" "${BUILD_CMD[@]}" ||
        { tail -n 40 "$TMP/build.log" >&2; die "${BUILD_CMD[*]} failed"; }
    say "build:      done in $((SECONDS - t0)) s ($(tail -n 1 "$TMP/build.log" | sed 's/^ *//'))"
fi
if want S8; then
    # The vendor's program as SPEC section 2 describes it, standard library only; its build cache
    # and GOPATH stay in the temp dir.
    GO_BIN=$TMP/go-reference
    GO_BUILD_CMD=(go build -o "$GO_BIN" "$GO_SRC")
    run_bounded "$BUILD_TIMEOUT" "$TMP/go-build.log" env GOCACHE="$TMP/go-cache" GOPATH="$TMP/go-path" \
        GO111MODULE=off GOFLAGS= "${GO_BUILD_CMD[@]}" ||
        { tail -n 20 "$TMP/go-build.log" >&2; die "${GO_BUILD_CMD[*]} failed"; }
    say "go build:   $(pretty "${GO_BUILD_CMD[*]}") ($(go version | awk '{ print $3 }'))"
fi
[[ -x $LOGGER_BIN ]] || die "$LOGGER_BIN is missing; run without SKIP_BUILD=1"
[[ -x $CEILING_BIN ]] || die "$CEILING_BIN is missing; run without SKIP_BUILD=1"
if ((NEED_LOAD)) && [[ ! -x $LOAD_BIN ]]; then
    die "$LOAD_BIN is missing (needed by S2, S3, S4, S6 and S8); run without SKIP_BUILD=1"
fi

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
say "sample:     $(pretty "$SAMPLE"): $size bytes, one-line compact JSON request record"

# The ECDSA P-256 certificate of every scenario but S3's RSA half: made by the logger's own
# `cert` command (a CA and a server certificate signed by it).
ECDSA_DIR=$TMP/ecdsa
ECDSA_CERT_CMD=("$LOGGER_BIN" cert --host localhost --ip 127.0.0.1 --out "$ECDSA_DIR")
run_bounded "$CERT_TIMEOUT" "$TMP/cert-ecdsa.log" "${ECDSA_CERT_CMD[@]}" ||
    { cat "$TMP/cert-ecdsa.log" >&2; die "ml_api_logger cert could not make the ECDSA certificate"; }
for f in server.crt server.key serverca.crt; do
    [[ -s $ECDSA_DIR/$f ]] || die "ml_api_logger cert did not write $f"
done
say "cert:       ECDSA P-256, server certificate for DNS:localhost IP:127.0.0.1 signed by a new CA, made now by: $(pretty "${ECDSA_CERT_CMD[*]}")"

# S3's RSA-4096 certificate, made the way the vendor's page makes it: a CA key from
# `openssl genrsa 4096` (not AES-encrypted here: the server must load it without a passphrase)
# and a self-signed CA certificate, then a server key and request with `-newkey rsa:4096` and a
# certificate signed by the CA with the SAN extension.
RSA_DIR=$TMP/rsa
OPENSSL_CNF=/etc/ssl/openssl.cnf
[[ -f $OPENSSL_CNF ]] || OPENSSL_CNF="$(openssl version -d | sed -E 's/^OPENSSLDIR: "(.*)"$/\1/')/openssl.cnf"
# shellcheck disable=SC2016 # expanded by the inner bash
RSA_SCRIPT='set -eu
cd "$1"
openssl genrsa -out serverca.key 4096
openssl req -new -key serverca.key -x509 -out serverca.crt -days 3650 -subj "/CN=ml_api_logger bench CA"
openssl req -new \
  -nodes \
  -newkey rsa:4096 \
  -keyout server.key \
  -out server.req \
  -batch \
  -subj "/C=US/ST=WA/L=Seattle/O=ml_api_logger bench/OU=router/CN=localhost" \
  -reqexts SAN \
  -config <(cat "$2" <(printf "[SAN]\nsubjectAltName=DNS:localhost,IP:127.0.0.1"))
openssl x509 -req \
  -in server.req \
  -CA serverca.crt \
  -CAkey serverca.key \
  -CAcreateserial \
  -out server.crt \
  -days 3650 \
  -sha256 \
  -extfile <(printf "subjectAltName=DNS:localhost,IP:127.0.0.1")'
if want S3; then
    mkdir -p "$RSA_DIR"
    t0=$SECONDS
    run_bounded "$CERT_TIMEOUT" "$TMP/cert-rsa.log" bash -c "$RSA_SCRIPT" bash "$RSA_DIR" "$OPENSSL_CNF" ||
        { cat "$TMP/cert-rsa.log" >&2; die "openssl could not make the RSA-4096 certificate"; }
    chmod 600 "$RSA_DIR"/*.key
    say "cert:       RSA 4096, server certificate for DNS:localhost IP:127.0.0.1 signed by an RSA-4096 CA, the vendor's openssl commands (CA key unencrypted), $((SECONDS - t0)) s"
fi

# Sets CERT, KEY and CA (the certificate that verifies CERT) for a certificate set.
cert_set() {
    case $1 in
        ecdsa) CERT=$ECDSA_DIR/server.crt KEY=$ECDSA_DIR/server.key CA=$ECDSA_DIR/serverca.crt ;;
        rsa) CERT=$RSA_DIR/server.crt KEY=$RSA_DIR/server.key CA=$RSA_DIR/serverca.crt ;;
        *) die "unknown certificate set $1" ;;
    esac
}

# N free ports on 127.0.0.1, below the ephemeral range: a port the kernel hands out (bind to
# port 0) may still be the local end of one of the load tool's closed connections in TIME_WAIT,
# and then a server without SO_REUSEADDR cannot listen on it.
free_ports() {
    python3 -c '
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
lo, hi = (10000, low - 1) if low > 11000 else (low // 2, low - 1)
socks = []
while len(socks) < int(sys.argv[1]):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randint(lo, hi)))
        socks.append(s)
    except OSError:
        s.close()
print(*[s.getsockname()[1] for s in socks])
' "$1"
}

# ---------------------------------------------------------------------------------------------
# Versions and commands

section "versions"
say "wrk:        $(wrk -v 2>&1 | head -n 1 || true)"
say "nginx:      $(nginx -v 2>&1 | head -n 1 | sed 's/^nginx version: //')"
say "logger:     $("$LOGGER_BIN" --version 2>&1 | head -n 1) (target/release/ml_api_logger, built $(date -u -r "$LOGGER_BIN" +%Y-%m-%dT%H:%M:%SZ))"
say "ceiling:    target/release/examples/ceiling, built $(date -u -r "$CEILING_BIN" +%Y-%m-%dT%H:%M:%SZ)"
if [[ -x $LOAD_BIN ]]; then
    say "load:       target/release/examples/load, built $(date -u -r "$LOAD_BIN" +%Y-%m-%dT%H:%M:%SZ)"
fi
say "openssl:    $(openssl version)"
want S8 && say "go:         $(go version)"
say "python3:    $(python3 --version 2>&1)"

# The loads, as arguments of wrk and of the load tool (which also gets --ca, --first-sequence
# and the URL).
WRK_ARGS=(-t1 -c"$CONNECTIONS" --latency -s "$LUA")
S2_ARGS=(--http 2 --connections "$H2_CONNECTIONS" --streams "$H2_STREAMS" --duration "$DURATION" --warmup "${WARMUP_S}s" --body "$SAMPLE")
S3_ARGS=(--new-connection-per-request --connections "$HS_WORKERS" --duration "$DURATION" --warmup "${WARMUP_S}s" --body "$SAMPLE")
S4_ARGS=(--http 1 --batch "$BATCH" --connections "$BATCH_CONNECTIONS" --duration "$DURATION" --warmup "${WARMUP_S}s" --body "$SAMPLE")
S6_ARGS=(--idle "$IDLE_CONNECTIONS" --hold "$IDLE_HOLD" --body "$SAMPLE")
S6_LOGGER_ARGS=(--max-connections $((IDLE_CONNECTIONS + 100)))
S6_WORKER_CONNECTIONS=$((IDLE_CONNECTIONS + 1024))
S6_NOFILE=$((IDLE_CONNECTIONS * 2 + 1024))

COMMANDS=()
cmd_line() { COMMANDS+=("$(pretty "$*")"); }
LOGGER_TEMPLATE="$LOGGER_BIN --cert CERT --key KEY --ip 127.0.0.1 --port PORT --output TMP/SCENARIO-logger.ndjson"
cmd_line "logger:  $LOGGER_TEMPLATE"
cmd_line "ceiling: $CEILING_BIN CERT KEY 127.0.0.1:PORT"
cmd_line "nginx:   nginx -p TMP/SCENARIO-nginx/ -c TMP/SCENARIO-nginx/nginx.conf -e TMP/SCENARIO-nginx/error.log   (config: bench/nginx.conf.template)"
cmd_line "CERT, KEY (ECDSA P-256): $(pretty "${ECDSA_CERT_CMD[*]}") -> TMP/ecdsa/server.crt, server.key; CA: TMP/ecdsa/serverca.crt"
want S3 && cmd_line "CERT, KEY (RSA 4096): the vendor's openssl commands (genrsa 4096 CA, -newkey rsa:4096 server signed by it) -> TMP/rsa/server.crt, server.key; CA: TMP/rsa/serverca.crt"
load_template() { echo "$LOAD_BIN --ca CA --first-sequence N $* https://127.0.0.1:PORT/log"; }
wrk_template() { echo "BENCH_BODY_FILE=$SAMPLE BENCH_FIRST_SEQUENCE=N wrk ${WRK_ARGS[*]} -d$1 https://127.0.0.1:PORT/log"; }
warm_note() { if ((WARMUP_S > 0)); then echo "after a -d$WARMUP warm-up with the same command"; else echo "no warm-up"; fi; }
want S1 && cmd_line "S1 load (logger, ceiling, nginx): $(wrk_template "$DURATION"), $(warm_note)"
want S2 && cmd_line "S2 load (logger, ceiling, nginx with 'listen ... ssl http2'): $(load_template "${S2_ARGS[*]}")"
want S3 && cmd_line "S3 load (logger, ceiling, nginx; RSA, then ECDSA): $(load_template "${S3_ARGS[*]}")"
want S4 && cmd_line "S4 load (logger, ceiling, nginx with client_body_buffer_size 1m): $(load_template "${S4_ARGS[*]}")"
want S5 && cmd_line "S5 load (logger --fsync on): $(wrk_template "$DURATION"), $(warm_note)"
want S6 && cmd_line "S6 load (ulimit -n $S6_NOFILE; logger ${S6_LOGGER_ARGS[*]}, ceiling, nginx with worker_connections $S6_WORKER_CONNECTIONS): $(load_template "${S6_ARGS[*]}")"
want S7 && cmd_line "S7: python3 $STARTUP_PY $START_RUNS TMP/s7-SERVER -- SERVER-COMMAND   (logger: $LOGGER_BIN --cert CERT --key KEY --ip 127.0.0.1 --port {port} --output TMP/s7-logger-{run}.ndjson; ceiling: $CEILING_BIN CERT KEY 127.0.0.1:{port})"
want S8 && cmd_line "S8 go: LOGGER_IP=127.0.0.1 LOGGER_PORT=PORT LOGGER_CERT=CERT LOGGER_KEY=KEY TMP/go-reference >TMP/SCENARIO-go.stdout   (built by: go build -o TMP/go-reference bench/go-reference/ml_api_logger.go)"
want S8 && cmd_line "S8 saturation (logger, go, ceiling), for C in $S8_CONNECTIONS: BENCH_BODY_FILE=$SAMPLE BENCH_FIRST_SEQUENCE=N wrk -t1 -cC --latency -s $LUA -d$S8_DURATION https://127.0.0.1:PORT/log, after a -d2s warm-up"
want S8 && cmd_line "S8 open loop (logger, go): $(load_template "--connections C --rate R --duration $S8_DURATION --warmup 2s --body $SAMPLE"), R = 50% and 90% of go's saturation (both servers) and of the logger's (the logger)"
cmd_line "smoke (each server, first): curl --cacert CA --resolve localhost:PORT:127.0.0.1 -H 'Content-Type: application/json' --data-binary @BODY https://localhost:PORT/log"

section "commands"
for c in "${COMMANDS[@]}"; do say "$c"; done
say "Every record carries its own sequence; each run gets its own range (N), so no record is a retry of another."

# ---------------------------------------------------------------------------------------------
# Measuring

declare -A V=()   # results: V[SCENARIO.SERVER.KEY]
declare -A L=()   # the last load-summary line: L[KEY]
PROBLEMS=()
NEXT_SEQ=100001000 # the next unused sequence; 9 digits keep the body at 512 bytes
SRV_PORT=""
SRV_TAG=""  # file name stem of the server under test, e.g. s1-logger
SRV_OUT=""  # the file it writes records to; none for the ceiling
SRV_CA=""   # the CA certificate that verifies its certificate
SRV_KEY=""  # V[] key prefix: SCENARIO.SERVER
SEQ_LO=0    # the first sequence handed out while this server ran
SENT=0      # records it acknowledged with a 2xx: the smoke POST and every run's
SLACK=0     # more lines than that allowed: wrk's requests in flight when it stopped

# nginx config variables, changed by the scenarios that need it.
NGX_HTTP2=""
NGX_BODY_BUFFER=64k
NGX_WORKER_CONNECTIONS=1024

problem() {
    PROBLEMS+=("$*")
    say "problem:    $*"
}

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

# Waits until PID listens on 127.0.0.1:PORT, while it lives. The listening socket must be its
# own (an open file of PID in /proc): another program may hold the port.
wait_port() {
    local port=$1 pid=$2 i inode fd hex inodes
    hex=$(printf '0100007F:%04X' "$port")
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        alive "$pid" || return 1
        mapfile -t inodes < <(awk -v a="$hex" '$2 == a && $4 == "0A" { print $10 }' /proc/net/tcp)
        for inode in "${inodes[@]}"; do
            for fd in "/proc/$pid/fd/"*; do
                [[ $(readlink "$fd" 2>/dev/null) != "socket:[$inode]" ]] || return 0
            done
        done
        sleep 0.1
    done
    return 1
}

# The server's process ids: the master and workers for nginx.
server_pids() {
    [[ -n $SRV_PID ]] || return 0
    echo "$SRV_PID"
    [[ $SRV != nginx ]] || children_of "$SRV_PID"
}

# CPU seconds (user + system) used so far by the processes given, from /proc/PID/stat.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_secs() {
    local p ticks=0 t
    for p in "$@"; do
        t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
        ticks=$((ticks + ${t:-0}))
    done
    awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'
}

# The load generator's CPU: `times` run by this shell (a builtin with a redirection does not
# fork) reports the user and system CPU of the children it has waited for, so the difference
# between a mark before a wrk or load run and one after it is that run's CPU (and a few
# milliseconds of helpers). gen_cpu_mark NAME writes a mark; gen_cpu_since A B prints seconds.
gen_cpu_mark() { times >"$TMP/$1.times"; }
gen_cpu_since() {
    # The decimal mark is the locale's: a comma in some.
    awk 'function s(t, a) { gsub(",", ".", t); split(t, a, "m"); return a[1] * 60 + substr(a[2], 1, length(a[2]) - 1) }
         FNR == 2 { c[FILENAME] = s($1) + s($2) }
         END { printf "%.2f", c[ARGV[2]] - c[ARGV[1]] }' "$TMP/$1.times" "$TMP/$2.times"
}

# Sum of a /proc/PID/status field (VmRSS, VmHWM; kB) over the server's processes.
status_kib() {
    local p kib=0 v
    for p in $(server_pids); do
        v=$(awk -v f="$1:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null || true)
        kib=$((kib + ${v:-0}))
    done
    echo "$kib"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# Starts SERVER (logger, ceiling or nginx) for SCENARIO with a certificate set, waits for it to
# listen and sends it the smoke POST. Extra arguments go to the logger. Returns 1 (after noting a
# problem and stopping it) if it does not come up.
server_up() {
    local scen=$1 srv=$2 set=$3 attempt rc
    shift 3
    SRV=$srv
    SRV_TAG="$(tr 'A-Z ' 'a-z-' <<<"$scen")-$srv"
    SRV_KEY="$scen.$srv"
    SRV_OUT=""
    SENT=0
    SLACK=0
    SEQ_LO=$NEXT_SEQ
    cert_set "$set"
    SRV_CA=$CA
    # Another program on the machine may take the chosen port first: then try other ports.
    for attempt in 1 2 3; do
        rc=0
        start_server "$@" || rc=$?
        ((rc == 2 && attempt < 3)) || break
        say "retry:      a port was taken meanwhile; other ports"
    done
    if ((rc != 0)); then
        problem "$scen $srv: did not start listening on 127.0.0.1:$SRV_PORT within ${START_TIMEOUT}s"
        return 1
    fi
    if [[ $srv == nginx ]]; then
        sleep 0.5 # let every worker come up before their ids are recorded
        mapfile -t NGINX_WORKERS < <(children_of "$SRV_PID")
        say "started:    master pid $SRV_PID, workers ${NGINX_WORKERS[*]}"
    else
        say "started:    pid $SRV_PID"
    fi
    V[$SRV_KEY.ran]=1
    smoke "$scen" || {
        stop_server
        return 1
    }
}

# Starts the server on free ports and waits for it to listen. Returns 1 if it does not, 2 if
# that was because its address was in use.
start_server() {
    local upstream dir="" cmd=()
    read -r SRV_PORT upstream < <(free_ports 2)
    [[ -n ${upstream:-} ]] || die "could not find free ports"
    case $SRV in
        logger)
            SRV_OUT=$TMP/$SRV_TAG.ndjson
            cmd=("$LOGGER_BIN" --cert "$CERT" --key "$KEY" --ip 127.0.0.1 --port "$SRV_PORT" --output "$SRV_OUT" "$@")
            ;;
        ceiling)
            cmd=("$CEILING_BIN" "$CERT" "$KEY" "127.0.0.1:$SRV_PORT")
            ;;
        go)
            # It prints every body to stdout.
            SRV_OUT=$TMP/$SRV_TAG.stdout
            cmd=(env LOGGER_IP=127.0.0.1 LOGGER_PORT="$SRV_PORT" LOGGER_CERT="$CERT" LOGGER_KEY="$KEY" "$GO_BIN")
            ;;
        nginx)
            SRV_OUT=$TMP/$SRV_TAG.log
            dir=$TMP/$SRV_TAG
            mkdir -p "$dir"
            sed -e "s|@DIR@|$dir|g" -e "s|@LOG@|$SRV_OUT|g" -e "s|@PORT@|$SRV_PORT|g" \
                -e "s|@UPSTREAM_PORT@|$upstream|g" -e "s|@CERT@|$CERT|g" -e "s|@KEY@|$KEY|g" \
                -e "s|@HTTP2@|$NGX_HTTP2|g" -e "s|@BODY_BUFFER@|$NGX_BODY_BUFFER|g" \
                -e "s|@WORKER_CONNECTIONS@|$NGX_WORKER_CONNECTIONS|g" \
                "$TEMPLATE" >"$dir/nginx.conf"
            if grep -v '^ *#' "$dir/nginx.conf" | grep -q '@[A-Z_0-9]*@'; then die "nginx.conf.template has an unknown placeholder"; fi
            cmd=(nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log")
            "${cmd[@]}" -t >"$dir/nginx-t.log" 2>&1 || { cat "$dir/nginx-t.log" >&2; die "nginx -t rejected the generated config"; }
            say "config:     listen 127.0.0.1:$SRV_PORT ssl$NGX_HTTP2; client_body_buffer_size $NGX_BODY_BUFFER; worker_connections $NGX_WORKER_CONNECTIONS"
            ;;
    esac
    say "server:     $(pretty "${cmd[*]}")"
    "${cmd[@]}" >"$TMP/$SRV_TAG.stdout" 2>"$TMP/$SRV_TAG.stderr" </dev/null &
    SRV_PID=$!
    wait_port "$SRV_PORT" "$SRV_PID" && return 0
    cat "$TMP/$SRV_TAG.stderr" "${dir:-/nonexistent}/error.log" 2>/dev/null | tail -n 20 | sed 's/^/    | /'
    stop_server
    if grep -qs 'Address already in use' "$TMP/$SRV_TAG.stderr" "${dir:-/nonexistent}/error.log"; then
        return 2
    fi
    return 1
}

# One POST of the sample (with a sequence of its own) with curl, verifying the certificate; it
# must get a 2xx.
smoke() {
    local scen=$1 tls code seq=$NEXT_SEQ body=$TMP/$SRV_TAG.smoke.json
    NEXT_SEQ=$((NEXT_SEQ + 1))
    tls=$(timeout 10 openssl s_client -connect "127.0.0.1:$SRV_PORT" -servername localhost </dev/null 2>/dev/null |
        grep -m 1 '^New,' || true)
    say "tls:        ${tls:-(openssl s_client could not tell)}"
    sed -E "s/(\"sequence\":)[0-9]+/\\1$seq/" "$SAMPLE" >"$body"
    code=$(curl -sS --max-time 10 --cacert "$SRV_CA" --resolve "localhost:$SRV_PORT:127.0.0.1" \
        -H 'Content-Type: application/json' --data-binary "@$body" -o "$TMP/$SRV_TAG.smoke" \
        -w '%{http_code} HTTP/%{http_version}' "https://localhost:$SRV_PORT/log" 2>"$TMP/$SRV_TAG.smoke.err") ||
        code="curl failed: $(head -c 200 "$TMP/$SRV_TAG.smoke.err")"
    say "smoke:      one POST /log with curl (certificate verified): $code $(head -c 100 "$TMP/$SRV_TAG.smoke" 2>/dev/null)"
    if [[ $code != 2??\ * ]]; then
        problem "$scen $SRV: did not accept the sample record ($code)"
        return 1
    fi
    SENT=$((SENT + 1))
}

# Runs wrk for DURATION against the server under test into FILE; fails if wrk did not produce a
# report. Each run numbers its records from its own range (post.lua, BENCH_FIRST_SEQUENCE), so no
# record repeats (a repeat is a retry to the logger, answered without a second write).
run_wrk() {
    local duration=$1 out=$2 secs rc=0 first=$NEXT_SEQ requests status
    secs=$(secs_of "$duration")
    gen_cpu_mark gen0
    BENCH_FIRST_SEQUENCE=$first \
        timeout -k 5 $((secs + 60)) wrk "${WRK_ARGS[@]}" -d"$duration" "https://127.0.0.1:$SRV_PORT/log" >"$out" 2>&1 </dev/null &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    gen_cpu_mark gen1
    GEN_CPU=$(gen_cpu_since gen0 gen1)
    if ((rc != 0)) || ! grep -q '^Requests/sec:' "$out" || ! grep -q '^wrk-summary ' "$out"; then
        echo "run.sh: wrk failed (status $rc) against $SRV:" >&2
        tail -n 20 "$out" | sed 's/^/    /' >&2
        NEXT_SEQ=$((first + 100000000)) # whatever it sent stays in this server's range
        return 1
    fi
    requests=$(summary_of "$out" requests)
    status=$(summary_of "$out" status)
    # wrk counts completed requests; up to one per connection more were sent (and numbered).
    NEXT_SEQ=$((first + requests + CONNECTIONS + 1000))
    SENT=$((SENT + requests - status))
    SLACK=$((SLACK + CONNECTIONS))
}

# Warm-up and measured wrk run against the server under test; sets its results.
wrk_measure() {
    local scen=$1 k=$SRV_KEY warm=$TMP/$SRV_TAG.warmup.txt meas=$TMP/$SRV_TAG.wrk.txt cpu0 cpu1 non2xx sockerr
    if ((WARMUP_S > 0)); then
        say "warm-up:    $(pretty "$(wrk_template "$WARMUP" | sed "s/=N /=$NEXT_SEQ /; s/PORT/$SRV_PORT/")")"
        run_wrk "$WARMUP" "$warm" || {
            problem "$scen $SRV: the wrk warm-up failed"
            return 1
        }
        say "            $(awk '/^Requests\/sec:/ { print $2 " requests/s" }' "$warm"), $(summary_of "$warm" status) non-2xx"
    fi
    say "measured:   $(pretty "$(wrk_template "$DURATION" | sed "s/=N /=$NEXT_SEQ /; s/PORT/$SRV_PORT/")")   (load avg $(cut -d' ' -f1-3 /proc/loadavg))"
    # shellcheck disable=SC2046 # one word per process id
    cpu0=$(cpu_secs $(server_pids))
    run_wrk "$DURATION" "$meas" || {
        problem "$scen $SRV: the measured wrk run failed"
        return 1
    }
    # shellcheck disable=SC2046
    cpu1=$(cpu_secs $(server_pids))
    V[$k.cpu]=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')
    V[$k.cpuus]=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$(summary_of "$meas" requests)" 'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1e6 / n; else print "-" }')
    grep -v '^wrk-summary ' "$meas" | sed 's/^/    | /' || true
    if alive "$SRV_PID"; then
        V[$k.rss]=$(mib "$(status_kib VmHWM)")
    else
        V[$k.cpu]=-
        V[$k.cpuus]=-
    fi
    V[$k.rps]=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$meas")
    V[$k.p50]=$(to_ms "$(awk '$1 == "50%" { print $2; exit }' "$meas")")
    V[$k.p99]=$(to_ms "$(awk '$1 == "99%" { print $2; exit }' "$meas")")
    non2xx=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' "$meas")
    sockerr=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$meas")
    V[$k.non2xx]=${non2xx:-0}
    V[$k.errors]=${sockerr:-0}
    if [[ ${V[$k.non2xx]} != 0 || ${V[$k.errors]} != 0 ]]; then
        problem "$scen $SRV: ${V[$k.non2xx]} non-2xx responses, ${V[$k.errors]} socket errors in the measured run"
    fi
}

# Runs the load tool against the server under test with ARGS (after --ca, --first-sequence);
# reads its load-summary line into L[]. With SAMPLE_RSS=1 it also samples the server's VmRSS
# every 0.2 s while the tool runs (RSS_AT[] microsecond times, RSS_KIB[] values).
SAMPLE_RSS=0
RSS_AT=()
RSS_KIB=()
LOAD_END=0
run_load() {
    local scen=$1 label=$2 tsecs=$3 out first=$NEXT_SEQ rc=0 line kv cmd=()
    shift 3
    out=$TMP/$SRV_TAG.$label.txt
    cmd=("$LOAD_BIN" --ca "$SRV_CA" --first-sequence "$first" "$@" "https://127.0.0.1:$SRV_PORT/log")
    say "load:       $(pretty "${cmd[*]}")   (load avg $(cut -d' ' -f1-3 /proc/loadavg))"
    L=()
    RSS_AT=()
    RSS_KIB=()
    gen_cpu_mark gen0
    timeout -k 5 "$tsecs" "${cmd[@]}" >"$out" 2>"$out.stderr" </dev/null &
    CHILD_PID=$!
    if ((SAMPLE_RSS)); then
        while alive "$CHILD_PID"; do
            RSS_AT+=("${EPOCHREALTIME//[.,]/}")
            RSS_KIB+=("$(status_kib VmRSS)")
            sleep 0.2
        done
    fi
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    LOAD_END=${EPOCHREALTIME//[.,]/}
    gen_cpu_mark gen1
    GEN_CPU=$(gen_cpu_since gen0 gen1)
    line=$(grep -m 1 '^load-summary ' "$out" || true)
    for kv in $line; do
        [[ $kv == *=* ]] && L[${kv%%=*}]=${kv#*=}
    done
    if [[ -z $line ]]; then
        tail -n 20 "$out.stderr" | sed 's/^/    | /'
        problem "$scen $SRV: the load tool failed (status $rc) without a load-summary line"
        NEXT_SEQ=$((first + 100000000)) # whatever it sent stays in this server's range
        return 1
    fi
    say "            $line"
    if [[ ${L[last_sequence]:-} =~ ^[0-9]+$ ]] && ((L[last_sequence] >= first)); then
        NEXT_SEQ=$((L[last_sequence] + 1000))
    else
        problem "$scen $SRV: the load-summary has no last_sequence"
        NEXT_SEQ=$((first + 100000000))
    fi
    # sent_total: every 2xx answer (requests), warm-up and the requests in flight at the end
    # included; each carried `batch` records.
    SENT=$((SENT + ${L[sent_total]:-0} * ${L[batch]:-1}))
    if ((rc != 0)); then
        tail -n 5 "$out.stderr" | sed 's/^/    | /'
        problem "$scen $SRV: the load tool exited with status $rc"
    fi
    if [[ ${L[non2xx]:-x} != 0 || ${L[errors]:-x} != 0 ]]; then
        grep -v '^load-summary ' "$out.stderr" | tail -n 5 | sed 's/^/    | /'
        problem "$scen $SRV: ${L[non2xx]:-?} non-2xx responses, ${L[errors]:-?} errors (load tool)"
    fi
}

# Keeps the measured run's throughput and latency from the last load-summary.
keep_load_results() {
    local k=$SRV_KEY
    V[$k.rps]=${L[rps]:-}
    V[$k.records]=${L[records_per_s]:-}
    V[$k.mbs]=${L[mb_per_s]:-}
    V[$k.p50]=${L[p50_ms]:-}
    V[$k.p99]=${L[p99_ms]:-}
    V[$k.non2xx]=${L[non2xx]:-}
    V[$k.errors]=${L[errors]:-}
    if alive "$SRV_PID"; then V[$k.rss]=$(mib "$(status_kib VmHWM)"); fi
}

# Stops the server under test and checks what it left: its exit status, its stderr (the logger)
# or error.log (nginx), and every line of its output against the records it acknowledged.
server_down() {
    local scen=$1 srv=$SRV warns errs
    if ! alive "$SRV_PID"; then
        problem "$scen $srv: DIED before the end of its runs"
        V[$SRV_KEY.rss]=-
    fi
    stop_server
    say "stopped:    SIGTERM, exit status $STOP_RC"
    # The Go program has no shutdown of its own: SIGTERM ends it (143).
    [[ $STOP_RC == 0 || ($srv == go && $STOP_RC == 143) ]] || problem "$scen $srv: exit status $STOP_RC after SIGTERM"
    case $srv in
        logger)
            warns=$(grep -cE '(^|[[:space:]])(WARN|ERROR)([[:space:]]|$)' "$TMP/$SRV_TAG.stderr" || true)
            say "stderr:     $(wc -l <"$TMP/$SRV_TAG.stderr") lines, ${warns:-0} WARN/ERROR"
            if ((warns > 0)); then
                grep -E '(^|[[:space:]])(WARN|ERROR)([[:space:]]|$)' "$TMP/$SRV_TAG.stderr" | head -n 5 | sed 's/^/    | /'
                problem "$scen $srv: $warns WARN/ERROR lines on stderr"
            fi
            [[ ! -s $TMP/$SRV_TAG.stdout ]] || problem "$scen $srv: wrote to stdout though --output was a file"
            ;;
        go)
            # It prints a line for each failed TLS handshake (the smoke's openssl s_client).
            say "stderr:     $(wc -l <"$TMP/$SRV_TAG.stderr") lines"
            ;;
        ceiling)
            errs=$(grep -cv '^ceiling: listening on ' "$TMP/$SRV_TAG.stderr" || true)
            if ((errs > 0)); then
                head -n 5 "$TMP/$SRV_TAG.stderr" | sed 's/^/    | /'
                problem "$scen $srv: $errs unexpected lines on stderr"
            fi
            ;;
        nginx)
            errs=$(grep -cE '\[(error|crit|alert|emerg)\]' "$TMP/$SRV_TAG/error.log" 2>/dev/null || true)
            say "error.log:  ${errs:-0} error/crit/alert/emerg lines"
            if ((errs > 0)); then
                grep -E '\[(error|crit|alert|emerg)\]' "$TMP/$SRV_TAG/error.log" | head -n 5 | sed 's/^/    | /'
                problem "$scen $srv: $errs errors in error.log"
            fi
            ;;
    esac
    [[ -z $SRV_OUT ]] || check_output "$scen"
}

# Checks the output file of the server that just stopped (bench/check_output.py): every record
# is the sample with a sequence sent to this server, none twice; and the records must be as many
# as the 2xx answers (wrk: up to one more per connection and run, for requests in flight when it
# stopped; the load tool waits for its requests: exactly as many).
check_output() {
    local scen=$1 kind=logger lines records invalid differing unterminated first extra
    # The Go program prints each body as it came, one compact record per line, as the logger does.
    [[ $SRV != nginx ]] || kind=nginx
    if [[ ! -f $SRV_OUT ]]; then
        V[$SRV_KEY.lines]=0
        problem "$scen $SRV: no output file"
        return
    fi
    read -r lines records invalid differing unterminated first < <(timeout "$CHECK_TIMEOUT" \
        python3 "$CHECK_PY" "$SRV_OUT" "$kind" "$SAMPLE" "$SEQ_LO" "$NEXT_SEQ") || true
    V[$SRV_KEY.lines]=${records:-0}
    [[ ${first:--} != - ]] || first=""
    extra=$((${records:-0} - SENT))
    say "output:     $(pretty "$SRV_OUT"): ${lines:-?} lines, ${records:-?} records, $(du -h "$SRV_OUT" | cut -f1); ${invalid:-?} not JSON, ${differing:-?} not a record sent or written twice, ${unterminated:-?} without a final newline${first:+ (first problem: $first)}"
    if ((SLACK > 0)); then
        say "            records acknowledged with a 2xx (smoke + runs): $SENT; records - 2xx = $extra (0..$SLACK expected: requests in flight when wrk stopped)"
    else
        say "            records acknowledged with a 2xx (smoke + runs): $SENT; records - 2xx = $extra (0 expected: the load tool waits for its requests)"
    fi
    if [[ ${invalid:-1} != 0 || ${differing:-1} != 0 || ${unterminated:-1} != 0 ]]; then
        problem "$scen $SRV: the output has bad lines${first:+ (first: $first)}"
    fi
    if ((extra < 0)); then
        problem "$scen $SRV: $((-extra)) acknowledged records missing from the output"
    elif ((extra > SLACK)); then
        problem "$scen $SRV: $extra more records than 2xx answers"
    fi
    [[ $KEEP_TMP == 1 ]] || rm -f "$SRV_OUT"
}

# ---------------------------------------------------------------------------------------------
# Scenarios

scenario_wrk() { # S1 or S5
    local scen=$1 srv
    shift
    for srv in "$@"; do
        subsection "$scen $srv"
        if [[ $scen == S5 ]]; then
            server_up "$scen" "$srv" ecdsa --fsync on || continue
        else
            server_up "$scen" "$srv" ecdsa || continue
        fi
        wrk_measure "$scen" || true
        server_down "$scen"
    done
}

scenario_load() { # SCENARIO CERTSET SERVERS... -- LOAD ARGS...
    local scen=$1 set=$2 srv servers=() secs
    shift 2
    while [[ $1 != -- ]]; do
        servers+=("$1")
        shift
    done
    shift
    secs=$((DURATION_S + WARMUP_S + 120))
    local cpu0 cpu1
    for srv in "${servers[@]}"; do
        subsection "$scen $srv"
        server_up "$scen" "$srv" "$set" || continue
        # shellcheck disable=SC2046 # one word per process id
        cpu0=$(cpu_secs $(server_pids))
        if run_load "$scen" load "$secs" "$@"; then
            keep_load_results
            # shellcheck disable=SC2046
            cpu1=$(cpu_secs $(server_pids))
            # CPU over the whole run (warm-up included) per record acknowledged in it.
            V[$SRV_KEY.cpuus]=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$((${L[sent_total]:-0} * ${L[batch]:-1}))" 'BEGIN { if (n > 0) printf "%.2f", (b - a) * 1e6 / n; else print "-" }')
        fi
        server_down "$scen"
    done
}

run_s6() {
    local srv soft i best mid d
    soft=$(ulimit -Sn)
    if [[ $soft != unlimited ]] && ((soft < S6_NOFILE)); then
        if ! ulimit -Sn "$S6_NOFILE" 2>/dev/null; then
            problem "S6: cannot raise ulimit -n from $soft to $S6_NOFILE (hard limit $(ulimit -Hn)); S6 skipped"
            return
        fi
        say "ulimit -n:  raised from $soft to $S6_NOFILE for S6"
    else
        say "ulimit -n:  $soft (at least $S6_NOFILE needed)"
    fi
    NGX_WORKER_CONNECTIONS=$S6_WORKER_CONNECTIONS
    for srv in logger ceiling nginx; do
        subsection "S6 $srv"
        if [[ $srv == logger ]]; then
            server_up S6 "$srv" ecdsa "${S6_LOGGER_ARGS[@]}" || continue
        else
            server_up S6 "$srv" ecdsa || continue
        fi
        SAMPLE_RSS=1
        if run_load S6 idle $((IDLE_HOLD_S + 300)) "${S6_ARGS[@]}"; then
            # VmRSS while the connections are held: the sample nearest the middle of the hold,
            # which ends when the tool exits.
            mid=$((LOAD_END - IDLE_HOLD_S * 500000))
            best=""
            for i in "${!RSS_AT[@]}"; do
                d=$((RSS_AT[i] - mid))
                ((d >= 0)) || d=$((-d))
                if [[ -z $best ]] || ((d < best)); then
                    best=$d
                    V[S6.$srv.held]=$(mib "${RSS_KIB[i]}")
                fi
            done
            grep -m 1 ' connections open' "$TMP/$SRV_TAG.idle.txt.stderr" | sed 's/^/            /' || true
            say "            VmRSS while held (${#RSS_KIB[@]} samples, the one nearest mid-hold): ${V[S6.$srv.held]:--} MiB"
            if alive "$SRV_PID"; then V[S6.$srv.hwm]=$(mib "$(status_kib VmHWM)"); fi
            V[S6.$srv.conns]=${L[connections]:-}
        fi
        SAMPLE_RSS=0
        server_down S6
    done
    NGX_WORKER_CONNECTIONS=1024
    ulimit -Sn "$soft" 2>/dev/null || true
}

run_s7() {
    local srv rc line kv cmd warns
    for srv in logger ceiling; do
        subsection "S7 $srv"
        cert_set ecdsa
        if [[ $srv == logger ]]; then
            cmd=("$LOGGER_BIN" --cert "$CERT" --key "$KEY" --ip 127.0.0.1 --port '{port}' --output "$TMP/s7-logger-{run}.ndjson")
        else
            cmd=("$CEILING_BIN" "$CERT" "$KEY" '127.0.0.1:{port}')
        fi
        say "start-up:   $(pretty "python3 $STARTUP_PY $START_RUNS $TMP/s7-$srv -- ${cmd[*]}")"
        rc=0
        run_bounded $((START_RUNS * 60)) "$TMP/s7-$srv.txt" python3 "$STARTUP_PY" "$START_RUNS" "$TMP/s7-$srv" -- "${cmd[@]}" || rc=$?
        sed 's/^/    | /' "$TMP/s7-$srv.txt"
        ((rc == 0)) || problem "S7 $srv: the start-up helper reported a failure (status $rc)"
        line=$(grep -m 1 '^startup-summary ' "$TMP/s7-$srv.txt" || true)
        for kv in $line; do
            case $kv in
                median_ms=*) V[S7.$srv.median]=${kv#*=} ;;
                max_ms=*) V[S7.$srv.max]=${kv#*=} ;;
                min_ms=*) V[S7.$srv.min]=${kv#*=} ;;
                ok=*) V[S7.$srv.runs]=${kv#*=} ;;
            esac
        done
        V[S7.$srv.ran]=1
        if [[ $srv == logger ]]; then
            warns=$(cat "$TMP"/s7-logger-*.stderr | grep -cE '(^|[[:space:]])(WARN|ERROR)([[:space:]]|$)' || true)
            ((warns == 0)) || problem "S7 logger: $warns WARN/ERROR lines on stderr"
            if [[ -n $(cat "$TMP"/s7-logger-*.stdout) ]]; then problem "S7 logger: wrote to stdout though --output was a file"; fi
        fi
    done
    V[S7.logger.bytes]=$(stat -c %s "$LOGGER_BIN")
    V[S7.ceiling.bytes]=$(stat -c %s "$CEILING_BIN")
    subsection "S7 binary size"
    say "size:       target/release/ml_api_logger: ${V[S7.logger.bytes]} bytes; target/release/examples/ceiling: ${V[S7.ceiling.bytes]} bytes"
}

# median VALUES...: the median of numbers ("-" when there are none); of an even count, the mean
# of the middle two.
median() {
    local x sorted=()
    for x in "$@"; do isnum "$x" && sorted+=("$x"); done
    ((${#sorted[@]} > 0)) || {
        printf '%s' -
        return
    }
    printf '%s\n' "${sorted[@]}" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) printf "%.3f", a[(NR + 1) / 2]; else printf "%.3f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
isnum() { [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }

# One S8 measurement of SERVER with C connections: LOAD is "sat" (wrk, closed loop) or a rate
# (load --rate). Keeps its figures in S8[C.LOAD.SERVER.KEY] as a list, one per round.
declare -A S8=()
s8_once() {
    local c=$1 load=$2 srv=$3 round=$4 scen cpu0 cpu1 k
    scen="S8 c$c $load r$round"
    subsection "$scen $srv"
    server_up "$scen" "$srv" ecdsa || return 0
    k="$c.$load.$srv"
    if [[ $load == sat ]]; then
        local saved_c=$CONNECTIONS saved_w=$WARMUP saved_ws=$WARMUP_S
        CONNECTIONS=$c WARMUP=2s WARMUP_S=2
        WRK_ARGS=(-t1 -c"$c" --latency -s "$LUA")
        DURATION_SAVED=$DURATION
        DURATION=$S8_DURATION
        if wrk_measure "$scen"; then
            S8[$k.rps]+=" ${V[$SRV_KEY.rps]}"
            S8[$k.p50]+=" ${V[$SRV_KEY.p50]}"
            S8[$k.p99]+=" ${V[$SRV_KEY.p99]}"
            S8[$k.max]+=" $(to_ms "$(awk '$1 == "Latency" { print $4; exit }' "$TMP/$SRV_TAG.wrk.txt")")"
            S8[$k.cpuus]+=" $(awk -v c="${V[$SRV_KEY.cpu]}" -v n="$(summary_of "$TMP/$SRV_TAG.wrk.txt" requests)" 'BEGIN { if (n > 0 && c != "-") printf "%.2f", c * 1e6 / n; else print "-" }')"
            S8[$k.gen]+=" $(awk -v c="$GEN_CPU" -v d="$S8_DURATION_S" 'BEGIN { printf "%.0f", c * 100 / d }')"
        fi
        DURATION=$DURATION_SAVED
        CONNECTIONS=$saved_c WARMUP=$saved_w WARMUP_S=$saved_ws
        WRK_ARGS=(-t1 -c"$CONNECTIONS" --latency -s "$LUA")
    else
        # shellcheck disable=SC2046 # one word per process id
        cpu0=$(cpu_secs $(server_pids))
        if run_load "$scen" load $((S8_DURATION_S + 120)) --connections "$c" --rate "$load" \
            --duration "$S8_DURATION" --warmup 2s --body "$SAMPLE"; then
            # shellcheck disable=SC2046
            cpu1=$(cpu_secs $(server_pids))
            S8[$k.rps]+=" ${L[rps]:--}"
            S8[$k.p50]+=" ${L[p50_ms]:--}"
            S8[$k.p99]+=" ${L[p99_ms]:--}"
            S8[$k.p999]+=" ${L[p999_ms]:--}"
            S8[$k.max]+=" ${L[max_ms]:--}"
            # CPU over the whole run (warm-up included) per record acknowledged in it.
            S8[$k.cpuus]+=" $(awk -v a="$cpu0" -v b="$cpu1" -v n="${L[sent_total]:-0}" 'BEGIN { if (n > 0) printf "%.2f", (b - a) * 1e6 / n; else print "-" }')"
            # Over the warm-up and the measured run.
            S8[$k.gen]+=" $(awk -v c="$GEN_CPU" -v d="$((S8_DURATION_S + 2))" 'BEGIN { printf "%.0f", c * 100 / d }')"
        fi
    fi
    server_down "$scen"
}

run_s8() {
    local c round srv pct rate go_sat own_sat
    for c in $S8_CONNECTIONS; do
        # The ceiling (TLS and HTTP, no record path) at saturation: what the load generator can
        # get out of any server on this transport, on this machine.
        for ((round = 1; round <= S8_ROUNDS; round++)); do
            for srv in go logger ceiling; do s8_once "$c" sat "$srv" "$round"; done
        done
        # shellcheck disable=SC2086 # a list of numbers
        go_sat=$(median ${S8[$c.sat.go.rps]:-})
        # shellcheck disable=SC2086
        own_sat=$(median ${S8[$c.sat.logger.rps]:-})
        S8_RATES[$c]=""
        for pct in 50 90; do
            if isnum "$go_sat"; then
                rate=$(awk -v s="$go_sat" -v p="$pct" 'BEGIN { printf "%.0f", s * p / 100 }')
                S8_RATES[$c]+=" go$pct:$rate"
                for ((round = 1; round <= S8_ROUNDS; round++)); do
                    for srv in go logger; do s8_once "$c" "$rate" "$srv" "$round"; done
                done
            fi
        done
        for pct in 50 90; do
            if isnum "$own_sat"; then
                rate=$(awk -v s="$own_sat" -v p="$pct" 'BEGIN { printf "%.0f", s * p / 100 }')
                S8_RATES[$c]+=" own$pct:$rate"
                for ((round = 1; round <= S8_ROUNDS; round++)); do
                    s8_once "$c" "$rate" logger "$round"
                done
            fi
        done
    done
}
declare -A S8_RATES=()

if want S1; then
    section "S1: HTTP/1.1 keep-alive, $CONNECTIONS connections, one 512-byte record per request (wrk)"
    scenario_wrk S1 logger ceiling nginx
fi
if want S2; then
    section "S2: HTTP/2, $H2_CONNECTIONS connections x $H2_STREAMS streams, one 512-byte record per request (load)"
    scenario_load S2 ecdsa logger ceiling -- "${S2_ARGS[@]}"
    NGX_HTTP2=" http2"
    scenario_load S2 ecdsa nginx -- "${S2_ARGS[@]}"
    NGX_HTTP2=""
fi
if want S3; then
    section "S3 RSA: a new TLS connection per request, $HS_WORKERS workers, RSA-4096 certificate (vendor's openssl commands)"
    scenario_load "S3 RSA" rsa logger ceiling nginx -- "${S3_ARGS[@]}"
    section "S3 ECDSA: a new TLS connection per request, $HS_WORKERS workers, ECDSA P-256 certificate (ml_api_logger cert)"
    scenario_load "S3 ECDSA" ecdsa logger ceiling nginx -- "${S3_ARGS[@]}"
fi
if want S4; then
    section "S4: NDJSON batches of $BATCH records per request, $BATCH_CONNECTIONS HTTP/1.1 connections (load)"
    NGX_BODY_BUFFER=1m
    scenario_load S4 ecdsa logger ceiling nginx -- "${S4_ARGS[@]}"
    NGX_BODY_BUFFER=64k
fi
if want S5; then
    section "S5: S1 against ml_api_logger --fsync on (wrk)"
    scenario_wrk S5 logger
fi
if want S6; then
    section "S6: resident memory with $IDLE_CONNECTIONS idle keep-alive connections held for $IDLE_HOLD (load --idle)"
    run_s6
fi
if want S7; then
    section "S7: time from start to accepting ($START_RUNS runs each), size of the release binary"
    run_s7
fi
if want S8; then
    section "S8: tail latency beside the vendor's Go program: $S8_CONNECTIONS connections, $S8_ROUNDS rounds of $S8_DURATION"
    run_s8
fi

# ---------------------------------------------------------------------------------------------
# Results

ELAPSED=$((SECONDS - T_START))
# v KEY [default]: a result, or "-".
v() {
    local x=${V[$1]:-}
    [[ -n $x ]] && printf '%s' "$x" || printf '%s' "${2:--}"
}
# fmt VALUE FORMAT: a number formatted, anything else as it is.
fmt() {
    if isnum "$1"; then awk -v x="$1" -v f="$2" 'BEGIN { printf f, x }'; else printf '%s' "${1:--}"; fi
}
# ratio A B: A/B, unrounded, or "-".
ratio() {
    if isnum "$1" && isnum "$2" && awk -v b="$2" 'BEGIN { exit !(b + 0 > 0) }'; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a / b }'
    else
        printf '%s' -
    fi
}
# met VALUE OP LIMIT: yes, no, or n/a without a value.
met() {
    isnum "$1" || {
        printf 'n/a'
        return
    }
    awk -v x="$1" -v op="$2" -v l="$3" 'BEGIN {
        r = (op == ">=") ? (x >= l) : (op == "<=") ? (x <= l) : (op == "<") ? (x < l) : 0
        printf "%s", r ? "yes" : "no" }'
}

# The markdown table's rows: scenario|metric|logger|ceiling|nginx|ratio|target|met.
ROWS=()
row() {
    local IFS='|'
    ROWS+=("$*")
}
r() { fmt "$(ratio "$1" "$2")" '%.2f'; }

if want S1; then
    L1=$(v S1.logger.rps) C1=$(v S1.ceiling.rps) N1=$(v S1.nginx.rps)
    x=$(ratio "$L1" "$C1")
    row S1 "requests/s (ratio logger/ceiling)" "$(fmt "$L1" %.0f)" "$(fmt "$C1" %.0f)" "$(fmt "$N1" %.0f)" "$(fmt "$x" %.2f)" ">= $T_S1_RPS x ceiling" "$(met "$x" '>=' "$T_S1_RPS")"
    x=$(ratio "$L1" "$N1")
    row S1 "requests/s (ratio logger/nginx)" "$(fmt "$L1" %.0f)" "$(fmt "$C1" %.0f)" "$(fmt "$N1" %.0f)" "$(fmt "$x" %.2f)" ">= $T_S1_NGINX x nginx" "$(met "$x" '>=' "$T_S1_NGINX")"
    row S1 "p50 ms (ratio logger/ceiling)" "$(fmt "$(v S1.logger.p50)" %.2f)" "$(fmt "$(v S1.ceiling.p50)" %.2f)" "$(fmt "$(v S1.nginx.p50)" %.2f)" "$(r "$(v S1.logger.p50)" "$(v S1.ceiling.p50)")" - -
    x=$(ratio "$(v S1.logger.p99)" "$(v S1.ceiling.p99)")
    row S1 "p99 ms (ratio logger/ceiling)" "$(fmt "$(v S1.logger.p99)" %.2f)" "$(fmt "$(v S1.ceiling.p99)" %.2f)" "$(fmt "$(v S1.nginx.p99)" %.2f)" "$(fmt "$x" %.2f)" "<= $T_S1_P99 x ceiling" "$(met "$x" '<=' "$T_S1_P99")"
    row S1 "server CPU s (ratio logger/ceiling)" "$(v S1.logger.cpu)" "$(v S1.ceiling.cpu)" "$(v S1.nginx.cpu)" "$(r "$(v S1.logger.cpu)" "$(v S1.ceiling.cpu)")" - -
    row S1 "server CPU µs per record (ratio logger/ceiling)" "$(v S1.logger.cpuus)" "$(v S1.ceiling.cpuus)" "$(v S1.nginx.cpuus)" "$(r "$(v S1.logger.cpuus)" "$(v S1.ceiling.cpuus)")" - -
    row S1 "peak RSS MiB (ratio logger/ceiling)" "$(v S1.logger.rss)" "$(v S1.ceiling.rss)" "$(v S1.nginx.rss)" "$(r "$(v S1.logger.rss)" "$(v S1.ceiling.rss)")" - -
fi
if want S2; then
    x=$(ratio "$(v S2.logger.records)" "$(v S1.logger.rps)")
    row S2 "records/s (ratio logger S2 / logger S1 requests/s)" "$(fmt "$(v S2.logger.records)" %.0f)" "$(fmt "$(v S2.ceiling.records)" %.0f)" "$(fmt "$(v S2.nginx.records)" %.0f)" "$(fmt "$x" %.2f)" ">= 1 x logger S1" "$(met "$x" '>=' "$T_S2")"
    row S2 "server CPU µs per record (ratio logger/ceiling)" "$(v S2.logger.cpuus)" "$(v S2.ceiling.cpuus)" "$(v S2.nginx.cpuus)" "$(r "$(v S2.logger.cpuus)" "$(v S2.ceiling.cpuus)")" - -
    row S2 "p99 ms (ratio logger/ceiling)" "$(fmt "$(v S2.logger.p99)" %.2f)" "$(fmt "$(v S2.ceiling.p99)" %.2f)" "$(fmt "$(v S2.nginx.p99)" %.2f)" "$(r "$(v S2.logger.p99)" "$(v S2.ceiling.p99)")" - -
fi
if want S3; then
    for c in RSA ECDSA; do
        x=$(ratio "$(v "S3 $c.logger.rps")" "$(v "S3 $c.ceiling.rps")")
        row "S3 $c" "handshakes/s (ratio logger/ceiling)" "$(fmt "$(v "S3 $c.logger.rps")" %.0f)" "$(fmt "$(v "S3 $c.ceiling.rps")" %.0f)" "$(fmt "$(v "S3 $c.nginx.rps")" %.0f)" "$(fmt "$x" %.2f)" ">= $T_S3 x ceiling" "$(met "$x" '>=' "$T_S3")"
        row "S3 $c" "server CPU µs per handshake and record (ratio logger/ceiling)" "$(v "S3 $c.logger.cpuus")" "$(v "S3 $c.ceiling.cpuus")" "$(v "S3 $c.nginx.cpuus")" "$(r "$(v "S3 $c.logger.cpuus")" "$(v "S3 $c.ceiling.cpuus")")" - -
    done
fi
if want S4; then
    row S4 "records/s (ratio logger/ceiling)" "$(fmt "$(v S4.logger.records)" %.0f)" "$(fmt "$(v S4.ceiling.records)" %.0f)" "$(fmt "$(v S4.nginx.records)" %.0f)" "$(r "$(v S4.logger.records)" "$(v S4.ceiling.records)")" ">= 500,000" "$(met "$(v S4.logger.records)" '>=' "$T_S4_RECORDS")"
    row S4 "server CPU µs per record (ratio logger/ceiling)" "$(v S4.logger.cpuus)" "$(v S4.ceiling.cpuus)" "$(v S4.nginx.cpuus)" "$(r "$(v S4.logger.cpuus)" "$(v S4.ceiling.cpuus)")" - -
    row S4 "MB/s (ratio logger/ceiling)" "$(fmt "$(v S4.logger.mbs)" %.1f)" "$(fmt "$(v S4.ceiling.mbs)" %.1f)" "$(fmt "$(v S4.nginx.mbs)" %.1f)" "$(r "$(v S4.logger.mbs)" "$(v S4.ceiling.mbs)")" ">= $T_S4_MBS MB/s" "$(met "$(v S4.logger.mbs)" '>=' "$T_S4_MBS")"
fi
if want S5; then
    x=$(ratio "$(v S5.logger.rps)" "$(v S1.logger.rps)")
    row S5 "requests/s, fsync on (ratio S5/S1)" "$(fmt "$(v S5.logger.rps)" %.0f)" - - "$(fmt "$x" %.2f)" ">= $T_S5 x logger S1" "$(met "$x" '>=' "$T_S5")"
    row S5 "p99 ms, fsync on (ratio S5/S1)" "$(fmt "$(v S5.logger.p99)" %.2f)" - - "$(r "$(v S5.logger.p99)" "$(v S1.logger.p99)")" - -
fi
if want S6; then
    row S6a "VmRSS MiB, $IDLE_CONNECTIONS idle connections held (ratio logger/ceiling)" "$(v S6.logger.held)" "$(v S6.ceiling.held)" "$(v S6.nginx.held)" "$(r "$(v S6.logger.held)" "$(v S6.ceiling.held)")" "< $T_S6A_MIB MiB" "$(met "$(v S6.logger.held)" '<' "$T_S6A_MIB")"
    row S6a "VmHWM MiB, $IDLE_CONNECTIONS idle connections (ratio logger/ceiling)" "$(v S6.logger.hwm)" "$(v S6.ceiling.hwm)" "$(v S6.nginx.hwm)" "$(r "$(v S6.logger.hwm)" "$(v S6.ceiling.hwm)")" - -
fi
if want S6; then
    row S6b "VmHWM MiB under S1 (ratio logger/ceiling)" "$(v S1.logger.rss)" "$(v S1.ceiling.rss)" "$(v S1.nginx.rss)" "$(r "$(v S1.logger.rss)" "$(v S1.ceiling.rss)")" "< $T_S6B_MIB MiB" "$(met "$(v S1.logger.rss)" '<' "$T_S6B_MIB")"
fi
if want S7; then
    row S7a "start to accepting ms, median of $START_RUNS (ratio logger/ceiling)" "$(v S7.logger.median)" "$(v S7.ceiling.median)" - "$(r "$(v S7.logger.median)" "$(v S7.ceiling.median)")" "< $T_S7A_MS ms" "$(met "$(v S7.logger.median)" '<' "$T_S7A_MS")"
    row S7a "start to accepting ms, max of $START_RUNS (ratio logger/ceiling)" "$(v S7.logger.max)" "$(v S7.ceiling.max)" - "$(r "$(v S7.logger.max)" "$(v S7.ceiling.max)")" - -
    mb=$(awk -v b="$(v S7.logger.bytes 0)" 'BEGIN { printf "%.2f", b / 1e6 }')
    row S7b "release binary MB (10^6 bytes)" "$mb" "$(awk -v b="$(v S7.ceiling.bytes 0)" 'BEGIN { printf "%.2f", b / 1e6 }')" - - "< 10 (10,000,000 bytes)" "$(met "$(v S7.logger.bytes)" '<' "$T_S7B_BYTES")"
fi

# (a) The plain tables, per scenario.
if ((WARMUP_S > 0)); then warm_note="after a $WARMUP warm-up"; else warm_note="no warm-up"; fi
section "results: DURATION=$DURATION ($warm_note), $(nproc) cores shared by the load generator and the server; took $((ELAPSED / 60)) min $((ELAPSED % 60)) s"
SERVERS=(logger ceiling nginx)
name_of() { [[ $1 == logger ]] && echo ml_api_logger || echo "$1"; }
plain() { # SCENARIO TITLE KEY:HEADER:FORMAT...
    local scen=$1 title=$2 col srv line
    shift 2
    say ""
    say "$scen: $title"
    line=$(printf '%-14s' server)
    for col in "$@"; do line+=$(printf ' %13s' "$(cut -d: -f2 <<<"$col")"); done
    say "$line"
    for srv in "${SERVERS[@]}"; do
        [[ -n ${V[$scen.$srv.ran]:-} ]] || continue
        line=$(printf '%-14s' "$(name_of "$srv")")
        for col in "$@"; do
            line+=$(printf ' %13s' "$(fmt "$(v "$scen.$srv.${col%%:*}")" "${col##*:}")")
        done
        say "$line"
    done
    # The scenario's ratios and targets, as in the markdown table.
    local rw f
    for rw in "${ROWS[@]}"; do
        IFS='|' read -r -a f <<<"$rw"
        [[ ${f[0]} == "$scen" || ${f[0]} == "$scen"[ab] ]] || continue
        [[ ${f[5]} != - || ${f[6]} != - ]] || continue
        line="  ${f[0]} ${f[1]}: ml_api_logger ${f[2]}"
        [[ ${f[5]} == - ]] || line+=", ratio ${f[5]}"
        [[ ${f[6]} == - ]] || line+=", target ${f[6]}: ${f[7]}"
        say "$line"
    done
}
WRK_COLS=("rps:requests/s:%.0f" "cpuus:CPU µs/rec:%s" "p50:p50 ms:%.2f" "p99:p99 ms:%.2f" "non2xx:non-2xx:%s" "errors:sock err:%s" "rss:peak RSS MiB:%s" "cpu:server CPU s:%s" "lines:lines:%s")
LOAD_COLS=("rps:requests/s:%.0f" "records:records/s:%.0f" "cpuus:CPU µs/rec:%s" "mbs:MB/s:%.1f" "p50:p50 ms:%.2f" "p99:p99 ms:%.2f" "non2xx:non-2xx:%s" "errors:errors:%s" "rss:peak RSS MiB:%s" "lines:records out:%s")
want S1 && plain S1 "HTTP/1.1 keep-alive, $CONNECTIONS connections, wrk -t1" "${WRK_COLS[@]}"
want S2 && plain S2 "HTTP/2, $H2_CONNECTIONS connections x $H2_STREAMS streams" "${LOAD_COLS[@]}"
want S3 && plain "S3 RSA" "new TLS connection per request, $HS_WORKERS workers, RSA 4096 (requests/s = handshakes/s)" "${LOAD_COLS[@]}"
want S3 && plain "S3 ECDSA" "new TLS connection per request, $HS_WORKERS workers, ECDSA P-256 (requests/s = handshakes/s)" "${LOAD_COLS[@]}"
want S4 && plain S4 "batches of $BATCH records, $BATCH_CONNECTIONS connections" "${LOAD_COLS[@]}"
want S5 && plain S5 "S1 with --fsync on" "${WRK_COLS[@]}"
want S6 && plain S6 "$IDLE_CONNECTIONS idle keep-alive connections held $IDLE_HOLD" "held:VmRSS MiB:%s" "hwm:VmHWM MiB:%s" "lines:records out:%s"
want S7 && plain S7 "start to accepting, $START_RUNS runs" "median:median ms:%.1f" "min:min ms:%.1f" "max:max ms:%.1f" "runs:runs ok:%s" "bytes:binary bytes:%s"
say ""
say "requests/s, records/s, MB/s: measured run only (MB = 10^6 bytes of request body). p50/p99: per request."
say "peak RSS: VmHWM at the end of the measured run; for nginx the sum over master and workers (shared pages counted per process)."
say "server CPU s: user + system CPU seconds of the server's processes in the measured run ($((DURATION_S * $(nproc))) core-seconds available, shared with the load generator)."
say "CPU µs/rec: the server's user + system CPU (from /proc/PID/stat) per record: over the measured run with wrk, over the whole run (warm-up included) per record acknowledged with the load tool."

# S8: its own tables, one line per connection count, load and server (medians of the rounds),
# and its checks against the Go program.
S8_TABLE=()
S8_CHECKS=()
S8_BOUNDS=()
if want S8; then
    s8m() { # C LOAD SERVER KEY: the median of the rounds
        # shellcheck disable=SC2086 # a list of numbers
        median ${S8[$1.$2.$3.$4]:-}
    }
    s8_check() { # WHAT LOGGER GO OP FACTOR: "logger OP FACTOR x go"
        local x
        x=$(ratio "$2" "$3")
        S8_CHECKS+=("$1|$(fmt "$2" %.2f)|$(fmt "$3" %.2f)|$(fmt "$x" %.2f)|$4 $5 x go|$(met "$x" "$4" "$5")")
    }
    for c in $S8_CONNECTIONS; do
        loads=("sat:sat")
        for lr in ${S8_RATES[$c]:-}; do loads+=("$lr"); done
        for lr in "${loads[@]}"; do
            name=${lr%%:*} load=${lr#*:}
            case $name in
                sat) label="saturation (wrk, closed loop)" ;;
                go50 | go90) label="open loop, ${name#go}% of go's saturation: $load/s" ;;
                own50 | own90) label="open loop, ${name#own}% of the logger's saturation: $load/s" ;;
            esac
            for srv in logger go ceiling; do
                [[ -n ${S8[$c.$load.$srv.rps]:-} ]] || continue
                S8_TABLE+=("$c|$label|$(name_of "$srv")|$(fmt "$(s8m "$c" "$load" "$srv" rps)" %.0f)|$(fmt "$(s8m "$c" "$load" "$srv" p50)" %.2f)|$(fmt "$(s8m "$c" "$load" "$srv" p99)" %.2f)|$(fmt "$(s8m "$c" "$load" "$srv" p999)" %.2f)|$(fmt "$(s8m "$c" "$load" "$srv" max)" %.2f)|$(fmt "$(s8m "$c" "$load" "$srv" cpuus)" %.2f)|$(fmt "$(s8m "$c" "$load" "$srv" gen)" %.0f)")
            done
            case $name in
                sat)
                    s8_check "c=$c saturation requests/s" "$(s8m "$c" sat logger rps)" "$(s8m "$c" sat go rps)" '>=' 1.5
                    # Not a target: the bound the load generator sets (see the load generator's CPU).
                    x=$(ratio "$(s8m "$c" sat ceiling rps)" "$(s8m "$c" sat go rps)")
                    S8_BOUNDS+=("c=$c: the ceiling got $(fmt "$x" %.2f) x go's requests/s with wrk at $(fmt "$(s8m "$c" sat ceiling gen)" %.0f)% of a CPU; ml_api_logger $(fmt "$(ratio "$(s8m "$c" sat logger rps)" "$(s8m "$c" sat ceiling rps)")" %.2f) x the ceiling's, wrk at $(fmt "$(s8m "$c" sat logger gen)" %.0f)%")
                    s8_check "c=$c saturation p99 ms" "$(s8m "$c" sat logger p99)" "$(s8m "$c" sat go p99)" '<=' 1
                    ;;
                go50 | go90)
                    s8_check "c=$c $load/s p99 ms" "$(s8m "$c" "$load" logger p99)" "$(s8m "$c" "$load" go p99)" '<=' 1
                    s8_check "c=$c $load/s max ms" "$(s8m "$c" "$load" logger max)" "$(s8m "$c" "$load" go max)" '<=' 1
                    ;;
            esac
        done
    done
    say ""
    say "S8: tail latency beside the vendor's Go program (medians of $S8_ROUNDS rounds of $S8_DURATION; open loop: latency from when a request was due if its connection was still busy)"
    printf '%-6s %-52s %-14s %10s %8s %8s %9s %8s %11s %8s\n' conns load server requests/s "p50 ms" "p99 ms" "p99.9 ms" "max ms" "CPU µs/rec" "gen CPU%" | while IFS= read -r l; do say "$l"; done
    for rw in "${S8_TABLE[@]}"; do
        IFS='|' read -r -a f <<<"$rw"
        say "$(printf '%-6s %-52s %-14s %10s %8s %8s %9s %8s %11s %8s' "${f[@]}")"
    done
    for rw in "${S8_CHECKS[@]}"; do
        IFS='|' read -r -a f <<<"$rw"
        say "  S8 ${f[0]}: ml_api_logger ${f[1]}, go ${f[2]}, ratio ${f[3]}, target ${f[4]}: ${f[5]}"
    done
    for rw in "${S8_BOUNDS[@]}"; do say "  S8 bound, $rw"; done
    say "gen CPU%: the load generator's user + system CPU (wrk at saturation, the load tool in the open loop) as a share of one CPU over its run; near 100 it, not the server, sets the rate."
fi
say "lines / records out: records in the output file, checked one by one (smoke + warm-up + measured)."

# (b) The markdown table.
markdown_table() {
    local rw
    if ((${#ROWS[@]} > 0)); then
        say "| scenario | metric | ml_api_logger | ceiling | nginx | ratio | target | met |"
        say "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |"
        for rw in "${ROWS[@]}"; do
            say "| ${rw//|/ | } |"
        done
    fi
    if ((${#S8_TABLE[@]} > 0)); then
        say ""
        say "S8, medians of $S8_ROUNDS rounds of $S8_DURATION:"
        say ""
        say "| connections | load | server | requests/s | p50 ms | p99 ms | p99.9 ms | max ms | server CPU µs/record | load generator CPU % |"
        say "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        for rw in "${S8_TABLE[@]}"; do
            say "| ${rw//|/ | } |"
        done
        say ""
        say "| S8 check | ml_api_logger | go | ratio | target | met |"
        say "| --- | ---: | ---: | ---: | --- | --- |"
        for rw in "${S8_CHECKS[@]}"; do
            say "| ${rw//|/ | } |"
        done
        say ""
        for rw in "${S8_BOUNDS[@]}"; do say "- $rw"; done
    fi
}
markdown_file() {
    say "# ml_api_logger benchmark results"
    say ""
    say "Made by \`bench/run.sh\` (SCENARIOS=\"$SELECTED\" DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS WORKERS=${WORKERS:-default}); the run took $((ELAPSED / 60)) min $((ELAPSED % 60)) s."
    say ""
    say "- date: $DATE"
    say "- commit: $COMMIT"
    say "- cpu: $CPU_MODEL"
    say "- nproc: $(nproc)"
    say "- memory: $MEMORY"
    say "- kernel: $KERNEL"
    say "- load average before the run: $LOADAVG0"
    say "- $(wrk -v 2>&1 | head -n 1 | awk '{ print $1 " " $2 }'), nginx $(nginx -v 2>&1 | head -n 1 | sed 's/^nginx version: nginx\///'), $(openssl version | awk '{ print $1 " " $2 }'), $("$LOGGER_BIN" --version 2>&1 | head -n 1)"
    say ""
    markdown_table
    say ""
    say "Ratios and targets: see bench/README.md. The machine is shared and noisy: compare ratios within one run."
    say ""
    say "Commands (TMP is the run's temp dir, PORT a free port, N the first sequence of a run):"
    say ""
    say '```'
    say "${BUILD_CMD[*]}"
    for c in "${COMMANDS[@]}"; do say "$c"; done
    say '```'
}
section "results (markdown)"
markdown_table
if [[ -n $RESULTS_MD ]]; then
    [[ $RESULTS_MD == /* ]] || RESULTS_MD=$CALLER_DIR/$RESULTS_MD
    markdown_file >"$RESULTS_MD"
    say ""
    say "wrote the markdown results to $RESULTS_MD"
fi

say ""
say "A missed target is a \"no\" above, not a problem. The machine is shared and noisy: compare ratios within one run."
status=0
for p in "${PROBLEMS[@]}"; do
    say "PROBLEM $p"
    status=1
done
((status == 0)) && say "no problems: every response 2xx, no errors, every output line a record sent, none lost, none twice"
exit "$status"
