#!/usr/bin/env bash
# Checks the monitoring and deployment files, offline:
#   - examples/prometheus/alerts.yml: promtool check rules, and its unit tests
#     (promtool test rules examples/prometheus/alerts_test.yml);
#   - examples/grafana/ml_api_logger.json: valid JSON; every query parses as Prometheus parses it
#     and shows data for one daemon's series;
#   - both name only series that /metrics exports, with label values it exports;
#   - deploy/kubernetes/: every manifest against the Kubernetes API schemas (kubernetes-validate,
#     strict), the ServiceMonitor against deploy/schemas/servicemonitor.json, and the manifests
#     against each other.
# The integration test tests/it/live_prometheus.rs holds the same rules and dashboard against a real
# Prometheus scraping a live daemon.
#
# Usage: deploy/check.sh [METRICS]
#   METRICS: what /metrics exports, by default examples/prometheus/metrics.txt. It may be a scrape
#   of a running daemon instead, saved to a file, piped in ("-"), or fetched from its URL:
#     deploy/check.sh http://127.0.0.1:9187/metrics
#
# Needs promtool (Debian: apt-get install prometheus, or any Prometheus release), python3 and pip.
# The first run installs kubernetes-validate (with PyYAML and jsonschema) from PyPI into
# $CHECK_PYTHON_DIR (by default under ~/.cache), not into the system's Python; later runs need no
# network. A missing tool fails its checks: nothing is skipped. Exit status 0 when every check
# passed, 1 otherwise.
#
# Environment: K8S_VERSIONS, the Kubernetes versions to validate against ("1.29 1.37").
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi

KV_VERSION=1.37.0
K8S_VERSIONS=${K8S_VERSIONS:-1.29 1.37}
CHECK_PYTHON_DIR=${CHECK_PYTHON_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ml_api_logger-check/kubernetes-validate-$KV_VERSION}
ALERTS=examples/prometheus/alerts.yml
ALERTS_TEST=examples/prometheus/alerts_test.yml
DASHBOARD=examples/grafana/ml_api_logger.json
METRICS=${1:-examples/prometheus/metrics.txt}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
passed=0

# check NAME COMMAND...: runs one check, records whether it passed.
check() {
    local name=$1
    shift
    echo
    echo "== $name"
    if "$@"; then
        passed=$((passed + 1))
    else
        echo "FAILED: $name"
        failed+=("$name")
    fi
}

# need TOOL: fails, saying how to get it, when TOOL is not installed.
need() {
    case $1 in
        promtool) command -v promtool >/dev/null 2>&1 && return 0
            echo "promtool not found: install it (Debian: apt-get install prometheus; or a Prometheus release)" ;;
        python3) command -v python3 >/dev/null 2>&1 && return 0
            echo "python3 not found: install it (Debian: apt-get install python3)" ;;
        python-deps) [ -n "$python_deps" ] && return 0
            echo "kubernetes-validate, PyYAML and jsonschema are not installed (see above)" ;;
    esac
    return 1
}

py() {
    PYTHONPATH=$CHECK_PYTHON_DIR${PYTHONPATH:+:$PYTHONPATH} python3 "$@"
}

# The Python packages, in a directory of their own, installed once.
python_deps=
if command -v python3 >/dev/null 2>&1; then
    probe="import sys, jsonschema, yaml, kubernetes_validate as kv; sys.exit(kv.__version__ != '$KV_VERSION')"
    if py -c "$probe" 2>/dev/null; then
        python_deps=yes
    elif ! python3 -m pip --version >/dev/null 2>&1; then
        echo "pip not found: install it (Debian: apt-get install python3-pip) to get kubernetes-validate" >&2
    else
        echo "== installing kubernetes-validate $KV_VERSION from PyPI into $CHECK_PYTHON_DIR"
        if PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
            --no-input --upgrade --target "$CHECK_PYTHON_DIR" "kubernetes-validate==$KV_VERSION" \
            && py -c "$probe"; then
            python_deps=yes
        else
            echo "could not install kubernetes-validate $KV_VERSION" >&2
        fi
    fi
fi

# What /metrics exports, in a file: from stdin or a URL, fetched once.
metrics_file() {
    case $METRICS in
        -) cat >"$work/metrics.txt" ;;
        http://* | https://*)
            need python3 || return 1
            python3 -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "$METRICS" >"$work/metrics.txt" ;;
        *) [ -r "$METRICS" ] || { echo "$METRICS: cannot read it"; return 1; }
            cp "$METRICS" "$work/metrics.txt" ;;
    esac
    echo "what /metrics exports: $METRICS ($(grep -cv '^#' "$work/metrics.txt") lines)"
}

alert_rules() {
    need promtool && promtool check rules "$ALERTS"
}

alert_tests() {
    need promtool && promtool test rules "$ALERTS_TEST"
}

dashboard_json() {
    need python3 && python3 -m json.tool "$DASHBOARD" >/dev/null && echo "$DASHBOARD: valid JSON"
}

exported_series() {
    need python3 && need python-deps && [ -s "$work/metrics.txt" ] \
        && py deploy/checks.py exprs "$work/metrics.txt" "$DASHBOARD" "$ALERTS"
}

dashboard_queries() {
    need promtool && need python3 && need python-deps && [ -s "$work/metrics.txt" ] || return 1
    mkdir -p "$work/dashboard"
    py deploy/checks.py dashboard-test "$work/metrics.txt" "$DASHBOARD" "$work/dashboard" \
        && promtool test rules "$work/dashboard/test.yml"
}

kubernetes_manifests() {
    # shellcheck disable=SC2086 # one argument per version
    need python3 && need python-deps \
        && py deploy/checks.py kubernetes deploy/kubernetes deploy/schemas $K8S_VERSIONS
}

check "what /metrics exports" metrics_file
check "promtool check rules $ALERTS" alert_rules
check "promtool test rules $ALERTS_TEST" alert_tests
check "$DASHBOARD parses" dashboard_json
check "the dashboard and the rules name only exported series" exported_series
check "every dashboard query parses and shows data" dashboard_queries
check "Kubernetes manifests (deploy/kubernetes)" kubernetes_manifests

echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "${#failed[@]} of $((passed + ${#failed[@]})) checks FAILED:"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
echo "all $passed checks passed"
