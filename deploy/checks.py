#!/usr/bin/env python3
"""The checks of deploy/check.sh that no ready-made tool does.

  checks.py exprs METRICS FILE...
      Every PromQL expression in FILE (a Grafana dashboard's "expr" and variable queries, or a
      Prometheus rule file's "expr") names only series that METRICS lists, with label values it
      lists; rate(), irate() and increase() are given counters only. METRICS is a file: a scrape
      of /metrics (Prometheus text format) or a list of series (examples/prometheus/metrics.txt).

  checks.py dashboard-test METRICS DASHBOARD OUTDIR
      Writes OUTDIR/rules.yml, the dashboard's queries as recording rules (Grafana's variables
      replaced: intervals by durations, $job and $instance by ".*") with an alert for each that
      returns nothing, and OUTDIR/test.yml, a `promtool test rules` test that feeds one daemon's
      worth of every series METRICS lists and expects no such alert: every query parses as
      Prometheus parses it, and every panel shows data.

  checks.py kubernetes KUSTOMIZATION_DIR CRD_SCHEMA_DIR VERSION...
      Every manifest kustomization.yaml lists validates against the Kubernetes VERSIONs' schemas
      (kubernetes-validate, strict: unknown fields are errors) or, for a custom resource,
      against the JSON schema for its kind in CRD_SCHEMA_DIR; a kind with neither is an error.
      Then the manifests agree with each other: selectors match the pods, named ports exist.

Exit status 0 when all is well, 1 with the problems listed otherwise.
"""

import json
import re
import sys
from pathlib import Path

# --- What a scrape exports -------------------------------------------------------------------------

# Labels the scrape adds to every series (the target's), which /metrics itself never shows.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint", "node", "cluster"}

# Series Prometheus makes for every target itself.
SCRAPE_SERIES = {"up": {}}


def parse_known(text):
    """{series name: {label: set of values, or None for any}} from a scrape or a list."""
    known = {}
    if re.search(r"^# (TYPE|HELP) ", text, re.M):
        label_re = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:\\.|[^"\\])*)"')
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s", line)
            if not m:
                raise ValueError(f"not a sample line: {line!r}")
            labels = known.setdefault(m.group(1), {})
            for k, v in label_re.findall(m.group(3) or ""):
                labels.setdefault(k, set()).add(v)
        return known
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, *labels = line.split()
        known[name] = {}
        for label in labels:
            k, _, values = label.partition("=")
            known[name][k] = None if values == "*" else set(values.split("|"))
    return known


# --- PromQL, enough of it to find every series an expression names --------------------------------

FUNCTIONS = set("""
abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp
clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month
deg delta deriv exp floor histogram_avg histogram_count histogram_fraction histogram_quantile
histogram_stddev histogram_stdvar histogram_sum holt_winters double_exponential_smoothing hour
idelta increase irate label_join label_replace last_over_time ln log10 log2 mad_over_time
max_over_time min_over_time minute month pi predict_linear present_over_time quantile_over_time
rad rate resets round scalar sgn sin sinh sort sort_by_label sort_by_label_desc sort_desc sqrt
stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector year start end
""".split())
AGGREGATORS = set("sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio".split())
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
COUNTER_FUNCTIONS = {"rate", "irate", "increase"}
COUNTER_SUFFIXES = ("_total", "_bucket", "_sum", "_count")

TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<comment>\#[^\n]*)
      | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
      | (?P<range>\[[^\]]*\])
      | (?P<var>\$\{[^}]*\}|\$[A-Za-z_]\w*)
      | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*\b)
      | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){},@])""",
    re.X,
)


def tokenize(expr):
    tokens, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup not in ("ws", "comment"):
            tokens.append((m.lastgroup, m.group()))
    return tokens


def unquote(s):
    """A PromQL string literal's value ("..." takes Go's escapes, which JSON's cover here)."""
    if s[0] == '"':
        return json.loads(s)
    return s[1:-1].replace("\\'", "'") if s[0] == "'" else s[1:-1]


def selectors(expr):
    """Yields (name, [(label, op, value)], enclosing function, followed by a range) per selector."""
    toks = tokenize(expr)
    stack = []  # the function of each open parenthesis (None: plain grouping)
    pending = None  # an aggregator whose "by (...)" comes before its "("
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "ident" and text in GROUPING:
            if nxt == "(":
                i = next(j for j in range(i, len(toks)) if toks[j][1] == ")")
            elif text not in ("group_left", "group_right"):
                raise ValueError(f"{text} without a label list")
            i += 1
            continue
        if kind == "ident" and text in AGGREGATORS and nxt in ("by", "without"):
            pending = text
        elif kind == "ident" and nxt == "(":
            if text not in FUNCTIONS and text not in AGGREGATORS:
                raise ValueError(f"unknown function {text}()")
            stack.append(text)
            i += 2
            continue
        elif text == "(":
            stack.append(pending)
            pending = None
        elif text == ")":
            stack.pop()
        elif (kind == "ident" and text.lower() not in KEYWORDS and text not in AGGREGATORS) or text == "{":
            name = text if kind == "ident" else None
            j = i + 1 if kind == "ident" else i
            matchers = []
            if j < len(toks) and toks[j][1] == "{":
                j += 1
                while toks[j][1] != "}":
                    if toks[j][1] == ",":
                        j += 1
                        continue
                    (_, label), (_, op), (vkind, value) = toks[j:j + 3]
                    if vkind != "string":
                        raise ValueError(f"label {label}: value is not a string")
                    matchers.append((label, op, unquote(value)))
                    j += 3
                j += 1
            for label, op, value in matchers:
                if label == "__name__" and op == "=":
                    name = value
            ranged = j < len(toks) and toks[j][0] == "range"
            yield name, matchers, stack[-1] if stack else None, ranged
            i = j
            continue
        i += 1


def grafana_exprs(dashboard):
    """(where, expr) for every query of a dashboard: panel targets and query variables."""
    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            if "expr" in t:
                yield f'panel "{p.get("title", "")}" {t.get("refId", "")}', t["expr"]
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else q
            m = re.fullmatch(r"\s*(?:label_values\((.*),\s*\w+\s*\)|query_result\((.*)\))\s*", q or "", re.S)
            if m and (m.group(1) or m.group(2)):
                yield f'variable "{v["name"]}"', m.group(1) or m.group(2)
            elif q and not re.fullmatch(r"\s*(label_values\(\s*\w+\s*\)|label_names\(\)|metrics\(.*\))\s*", q):
                yield f'variable "{v["name"]}"', q


def rule_exprs(rules):
    for g in rules.get("groups", []):
        for r in g.get("rules", []):
            yield f'rule {r.get("alert") or r.get("record")}', r["expr"]


def check_expr(where, expr, known, problems):
    names = set()
    try:
        found = list(selectors(expr))
    except (ValueError, StopIteration, IndexError) as e:
        problems.append(f"{where}: cannot parse {expr!r}: {e}")
        return names
    for name, matchers, function, ranged in found:
        if name is None:
            problems.append(f"{where}: a selector without a metric name")
            continue
        names.add(name)
        labels = known.get(name)
        if labels is None:
            problems.append(f"{where}: {name} is not exported")
            continue
        if function in COUNTER_FUNCTIONS and ranged and not name.endswith(COUNTER_SUFFIXES):
            problems.append(f"{where}: {function}() of {name}, which is not a counter")
        for label, op, value in matchers:
            if label == "__name__" or label in TARGET_LABELS and label not in labels:
                continue
            if label not in labels:
                problems.append(f'{where}: {name} has no label "{label}"')
                continue
            values = labels[label]
            if values is None or "$" in value or op in ("!=", "!~"):
                continue
            if op == "=" and value and value not in values:
                problems.append(f'{where}: {name}{{{label}="{value}"}} is never exported ({"|".join(sorted(values))})')
            try:
                matched = op != "=~" or any(re.fullmatch(value, v) for v in values)
            except re.error as e:
                problems.append(f'{where}: {name}{{{label}=~"{value}"}}: {e}')
                continue
            if not matched:
                problems.append(f'{where}: {name}{{{label}=~"{value}"}} matches none of {"|".join(sorted(values))}')
    return names


def cmd_exprs(source, files):
    known = parse_known(Path(source).read_text())
    if not any(n.startswith("ml_api_logger_") for n in known):
        print(f"{source}: no ml_api_logger_ series in it", file=sys.stderr)
        return 1
    known.update({k: v for k, v in SCRAPE_SERIES.items() if k not in known})
    problems = []
    for f in files:
        text = Path(f).read_text()
        if f.endswith(".json"):
            exprs = list(grafana_exprs(json.loads(text)))
        else:
            import yaml

            exprs = list(rule_exprs(yaml.safe_load(text)))
        names = set()
        for where, expr in exprs:
            names |= check_expr(f"{f}: {where}", expr, known, problems)
        print(f"{f}: {len(exprs)} expressions, {len(names)} series: {' '.join(sorted(names))}")
        if not exprs:
            problems.append(f"{f}: no expression found")
    for p in problems:
        print(f"ERROR {p}")
    return 1 if problems else 0


# Grafana's built-in interval variables, as durations PromQL accepts in a range.
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
BUCKETS = ["0.005", "0.1", "1", "+Inf"]


def synthetic_series(known):
    """One daemon's series: counters rising, buckets cumulative, gauges at 1, an expiry ahead."""
    import itertools

    for name, labels in sorted(known.items()):
        if not name.startswith("ml_api_logger_"):
            continue
        keys = sorted(labels)
        choices = [sorted(labels[k]) if labels[k] else (BUCKETS if k == "le" else ["x"]) for k in keys]
        if "le" in labels:
            les = sorted(set(choices[keys.index("le")]), key=float)  # float("+Inf") is inf
        for combo in itertools.product(*choices):
            lset = dict(zip(keys, combo), job="ml-api-logger", instance="10.0.0.1:9187")
            if name.endswith("_bucket"):
                values = f"0+{les.index(lset['le']) + 1}x30"
            elif name.endswith(COUNTER_SUFFIXES):
                values = "0+1x30"
            elif name.endswith("_timestamp_seconds"):
                values = "2000000000+0x30"
            else:
                values = "1+0x30"
            inner = ", ".join(f'{k}="{v}"' for k, v in sorted(lset.items()))
            yield f"{name}{{{inner}}}", values


def cmd_dashboard_test(source, path, outdir):
    import yaml

    known = parse_known(Path(source).read_text())
    outdir = Path(outdir)
    records, alerts = [], []
    for i, (where, expr) in enumerate(grafana_exprs(json.loads(Path(path).read_text()))):
        for var, duration in GRAFANA_INTERVALS.items():
            expr = expr.replace("${" + var[1:] + "}", duration).replace(var, duration)
        expr = re.sub(r"\$\{?(job|instance)\}?", ".*", expr)
        records.append({"record": f"dashboard:query_{i}", "expr": expr})
        alerts.append({"alert": "DashboardQueryEmpty", "expr": f"absent(dashboard:query_{i})",
                       "labels": {"query": where}})
    rules = {"groups": [{"name": "queries", "rules": records}, {"name": "empty", "rules": alerts}]}
    (outdir / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in synthetic_series(known)],
        "alert_rule_test": [{"eval_time": "30m", "alertname": "DashboardQueryEmpty", "exp_alerts": []}],
    }]}
    (outdir / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False, width=200))
    print(f"{path}: {len(records)} queries, {len(test['tests'][0]['input_series'])} input series")
    return 0


# --- Kubernetes ------------------------------------------------------------------------------------


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def cross_check(docs, problems):
    """The manifests agree: every selector picks the pods or the Service it is meant for."""
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    pods = [(d["metadata"]["name"], d["spec"]["template"]) for d in by_kind.get("Deployment", [])]
    if not pods:
        problems.append("no Deployment")
        return
    for dname, tmpl in pods:
        labels = tmpl["metadata"]["labels"]
        containers = tmpl["spec"]["containers"]
        ports = {p["containerPort"] for c in containers for p in c.get("ports", [])}
        port_names = {p["name"]: p["containerPort"] for c in containers for p in c.get("ports", []) if "name" in p}
        for c in containers:
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None and port not in port_names and port not in ports:
                    problems.append(f"Deployment {dname}: {probe} port {port} is not a container port")
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            admin = env.get("LOGGER_ADMIN_ADDR")
            if admin and int(admin.rsplit(":", 1)[1]) != port_names.get("admin"):
                problems.append(f"Deployment {dname}: LOGGER_ADMIN_ADDR={admin}, but the admin port is {port_names.get('admin')}")
            if int(env.get("LOGGER_PORT") or 8443) != port_names.get("https"):
                problems.append(f"Deployment {dname}: the daemon listens on {env.get('LOGGER_PORT') or 8443}, but the https port is {port_names.get('https')}")
        for s in by_kind.get("Service", []):
            if not matches(s["spec"].get("selector", {}), labels):
                problems.append(f"Service {s['metadata']['name']}: its selector picks no pod of {dname}")
            for p in s["spec"]["ports"]:
                t = p.get("targetPort", p["port"])
                if t not in port_names and t not in ports:
                    problems.append(f"Service {s['metadata']['name']}: targetPort {t} is not a container port")
        for p in by_kind.get("PodDisruptionBudget", []):
            if not matches(p["spec"]["selector"].get("matchLabels", {}), labels):
                problems.append(f"PodDisruptionBudget {p['metadata']['name']}: its selector picks no pod of {dname}")
        for n in by_kind.get("NetworkPolicy", []):
            if not matches(n["spec"]["podSelector"].get("matchLabels", {}), labels):
                problems.append(f"NetworkPolicy {n['metadata']['name']}: its podSelector picks no pod of {dname}")
            for rule in n["spec"].get("ingress", []):
                for p in rule.get("ports", []):
                    if p.get("port") not in ports and p.get("port") not in port_names:
                        problems.append(f"NetworkPolicy {n['metadata']['name']}: port {p.get('port')} is not a container port")
    for m in by_kind.get("ServiceMonitor", []):
        services = [s for s in by_kind.get("Service", []) if matches(m["spec"]["selector"].get("matchLabels", {}), s["metadata"].get("labels", {}))]
        if len(services) != 1:
            problems.append(f"ServiceMonitor {m['metadata']['name']}: its selector picks {len(services)} Services, not 1")
            continue
        names = {p.get("name") for p in services[0]["spec"]["ports"]}
        for e in m["spec"]["endpoints"]:
            if e.get("port") not in names:
                problems.append(f"ServiceMonitor {m['metadata']['name']}: port {e.get('port')} is not a port of Service {services[0]['metadata']['name']}")


def cmd_kubernetes(directory, schema_dir, versions):
    import jsonschema
    import kubernetes_validate
    import yaml

    directory, schema_dir = Path(directory), Path(schema_dir)
    print(f"kubernetes-validate {kubernetes_validate.__version__}, Kubernetes {' '.join(versions)}")
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    listed = kustomization.get("resources", [])
    problems, docs = [], []
    for f in sorted(p.name for p in directory.glob("*.yaml")):
        if f != "kustomization.yaml" and f not in listed:
            problems.append(f"{f} is not in kustomization.yaml's resources")
    crd_schemas = {}
    for s in schema_dir.glob("*.json"):
        schema = json.loads(s.read_text())
        crd_schemas[(schema["x-apiVersion"], schema["x-kind"])] = (s.name, schema)
    for f in listed:
        path = directory / f
        if not path.is_file():
            problems.append(f"{f}, listed in kustomization.yaml, does not exist")
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            docs.append(doc)
            what = f"{f}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            custom = crd_schemas.get((doc.get("apiVersion"), doc.get("kind")))
            if custom:
                errors = sorted(jsonschema.Draft202012Validator(custom[1]).iter_errors(doc), key=lambda e: list(e.path))
                for e in errors:
                    problems.append(f"{what}: {'.'.join(map(str, e.path))}: {e.message} ({custom[0]})")
                if not errors:
                    print(f"ok   {what} against {custom[0]}")
                continue
            for v in versions:
                try:
                    kubernetes_validate.validate(doc, v, strict=True)
                    print(f"ok   {what} against Kubernetes {v}")
                except kubernetes_validate.ValidationError as e:
                    problems.append(f"{what}: Kubernetes {v}: {'.'.join(map(str, e.path))}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    problems.append(f"{what}: {e.message}, and {schema_dir} has no schema for it")
                except kubernetes_validate.utils.VersionNotSupportedError as e:
                    problems.append(f"{what}: {e.message}")
    cross_check(docs, problems)
    for p in problems:
        print(f"ERROR {p}")
    return 1 if problems else 0


def main(argv):
    if len(argv) >= 3 and argv[0] == "exprs":
        return cmd_exprs(argv[1], argv[2:])
    if len(argv) == 4 and argv[0] == "dashboard-test":
        return cmd_dashboard_test(argv[1], argv[2], argv[3])
    if len(argv) >= 4 and argv[0] == "kubernetes":
        return cmd_kubernetes(argv[1], argv[2], argv[3:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
