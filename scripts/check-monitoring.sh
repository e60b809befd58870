#!/usr/bin/env bash
# Checks of the monitoring files, without a cluster or a running daemon:
#
#   deploy/prometheus/exactly-rules.yaml       promtool check rules
#   deploy/prometheus/exactly-rules.test.yaml  promtool test rules
#   the alerts                                 every alert has a summary, a
#                                              description, a severity, a
#                                              runbook_url whose anchor is a
#                                              heading of docs/operations.md,
#                                              and tests that fire it and
#                                              tests that must not
#   metric names                               every exactly_* name the rules
#                                              and the dashboard use, and
#                                              every recorded series, is in
#                                              deploy/prometheus/METRICS.md
#   deploy/grafana/exactly-dashboard.json      valid JSON, unique panel ids,
#                                              every panel on the 24-column
#                                              grid with a datasource and
#                                              queries; provisioning YAML
#   the dashboard's PromQL                     every query parses: a throw-away
#                                              Prometheus (empty TSDB, no
#                                              scrapes, 127.0.0.1 on a free
#                                              port) answers /api/v1/query
#                                              with 400 to a parse error; it
#                                              is stopped at the end
#
# promtool and prometheus come from Debian's `prometheus` package, installed
# with apt-get when missing (as root). PyYAML is needed, as for
# scripts/check-static.sh.
#
# Usage: scripts/check-monitoring.sh
#   CHECK_MONITORING_INSTALL=0  never apt-get install; fail when missing.
# Exit status: 0 if every check passed, 1 otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

install_ok=${CHECK_MONITORING_INSTALL:-1}
python=${PYTHON:-python3}
failures=0

section() { printf '\n== %s\n' "$*"; }
pass() { printf '  ok    %s\n' "$*"; }
fail() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }

# run_tool LABEL CMD...: run a checker, show its output only on failure.
run_tool() {
  local label=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass "$label"
  else
    fail "$label"
    printf '%s\n' "$out" | sed 's/^/        /'
  fi
}

section "tools"
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  if [ "$install_ok" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "  installing Debian's prometheus package (promtool, prometheus)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # On a host with systemd the package starts its own Prometheus on :9090;
    # only the binaries were wanted.
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
      echo "  stopping and disabling the prometheus service the package started"
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
  fi
fi
for tool in promtool prometheus; do
  if ! command -v "$tool" >/dev/null; then
    echo "  $tool is missing: apt-get install prometheus (as root), or put it on PATH" >&2
    exit 1
  fi
done
"$python" -c 'import yaml' 2>/dev/null || {
  echo "  PyYAML is missing: pip install pyyaml" >&2
  exit 1
}
pass "$(promtool --version 2>&1 | head -1)"

section "deploy/prometheus"
run_tool "promtool check rules exactly-rules.yaml" \
  promtool check rules deploy/prometheus/exactly-rules.yaml
# promtool resolves rule_files relative to the test file.
run_tool "promtool test rules exactly-rules.test.yaml" \
  promtool test rules deploy/prometheus/exactly-rules.test.yaml

tmp=$(mktemp -d)
prom_pid=
cleanup() {
  if [ -n "$prom_pid" ]; then
    kill "$prom_pid" 2>/dev/null || true
    wait "$prom_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

section "alerts, runbooks, metric names, dashboard structure"
# One "ok"/"FAIL" line per check; exits 1 if any failed. Writes the
# dashboard's queries to $tmp/exprs.json for the parse check below.
set +e
EXPRS="$tmp/exprs.json" "$python" - <<'PY'
import json, os, re, sys, yaml

failed = 0
def check(ok, what, detail=""):
    global failed
    print(("  ok    " if ok else "  FAIL  ") + what)
    if not ok:
        failed += 1
        if detail:
            print("        " + detail)

# GitHub's heading anchors: lower case, punctuation other than - and _
# dropped, spaces to dashes, duplicates numbered.
def anchors(path):
    seen, out, fenced = {}, set(), False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(2).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out

ops = anchors("docs/operations.md")
rules = yaml.safe_load(open("deploy/prometheus/exactly-rules.yaml"))
tests = yaml.safe_load(open("deploy/prometheus/exactly-rules.test.yaml"))
tested = {}
for t in tests["tests"]:
    for a in t.get("alert_rule_test", []):
        tested.setdefault(a["alertname"], [False, False])
        tested[a["alertname"]][bool(a.get("exp_alerts"))] = True

alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
bad_ann, bad_url, untested = [], [], []
for r in alerts:
    name, ann = r["alert"], r.get("annotations", {})
    if not (ann.get("summary") and ann.get("description")
            and r.get("labels", {}).get("severity") in ("warning", "critical")):
        bad_ann.append(name)
    url = ann.get("runbook_url", "")
    if not (url.startswith("docs/operations.md#") and url.split("#", 1)[1] in ops):
        bad_url.append(f"{name}: {url!r}")
    if tested.get(name) != [True, True]:
        untested.append(name)
n = len(alerts)
check(not bad_ann, f"{n} alerts have a summary, a description and a severity", ", ".join(bad_ann))
check(not bad_url, f"{n} alerts have a runbook_url to a heading of docs/operations.md", "; ".join(bad_url))
check(not untested, f"{n} alerts are tested firing and not firing", ", ".join(untested))

dash = json.load(open("deploy/grafana/exactly-dashboard.json"))
panels = dash["panels"] + [p for row in dash["panels"] for p in row.get("panels", [])]
ids = [p["id"] for p in panels]
check(bool(dash.get("uid")) and bool(dash.get("title")), "dashboard: uid and title")
check(len(ids) == len(set(ids)), f"dashboard: {len(ids)} panel ids are unique")
off_grid, no_query, exprs = [], [], []
for p in panels:
    g = p.get("gridPos", {})
    if not (all(k in g for k in "hwxy") and g["x"] >= 0 and g["x"] + g["w"] <= 24):
        off_grid.append(p.get("title"))
    if p["type"] == "row":
        continue
    ts = p.get("targets", [])
    if not (ts and all(t.get("expr") and t.get("refId") for t in ts)
            and p.get("datasource", {}).get("uid") == "${datasource}"):
        no_query.append(p.get("title"))
    exprs += [t["expr"] for t in ts if t.get("expr")]
check(not off_grid, "dashboard: every panel lies on the 24-column grid", ", ".join(off_grid))
check(not no_query, "dashboard: every panel queries the ${datasource} variable", ", ".join(no_query))
for a in dash.get("annotations", {}).get("list", []):
    if a.get("expr"):
        exprs.append(a["expr"])
for v in dash.get("templating", {}).get("list", []):
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    m = re.match(r"^label_values\((.*),\s*\w+\)$", q or "")
    if m:
        exprs.append(m.group(1))
with open(os.environ["EXPRS"], "w") as out:
    json.dump(exprs, out)

for f in ("deploy/grafana/provisioning/datasources/exactly-prometheus.yaml",
          "deploy/grafana/provisioning/dashboards/exactly.yaml"):
    y = yaml.safe_load(open(f))
    check(y.get("apiVersion") == 1 and (y.get("datasources") or y.get("providers")),
          f"{f}: Grafana provisioning (apiVersion 1)")

# Every exactly_* metric used is documented (histogram suffixes and
# recorded series' names aside).
documented = set(re.findall(r"`(exactly_[a-z_]+)`", open("deploy/prometheus/METRICS.md").read()))
used = set()
for text in [json.dumps([r["expr"] for g in rules["groups"] for r in g["rules"]])] + exprs:
    used |= set(re.findall(r"(?<![\w:])(exactly_[a-z_]+)", text))
base = {re.sub(r"_(bucket|sum|count)$", "", m) if re.sub(r"_(bucket|sum|count)$", "", m) in documented else m for m in used}
missing = sorted(base - documented)
check(not missing, "every exactly_* metric used is in deploy/prometheus/METRICS.md", ", ".join(missing))
recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
undocumented = sorted(r for r in recorded if f"`{r}`" not in open("deploy/prometheus/METRICS.md").read())
check(not undocumented, f"{len(recorded)} recorded series are in deploy/prometheus/METRICS.md", ", ".join(undocumented))
sys.exit(1 if failed else 0)
PY
py_status=$?
set -e
[ "$py_status" = 0 ] || failures=$((failures + 1))

section "the dashboard's PromQL parses"
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'global:\n  evaluation_interval: 1m\n' >"$tmp/prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$port" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
prom_pid=$!
set +e
PORT=$port EXPRS="$tmp/exprs.json" "$python" - <<'PY'
import json, os, sys, time, urllib.error, urllib.parse, urllib.request

base = f"http://127.0.0.1:{os.environ['PORT']}"
for _ in range(300):
    try:
        urllib.request.urlopen(base + "/-/ready", timeout=1)
        break
    except Exception:
        time.sleep(0.1)
else:
    print("  FAIL  prometheus did not become ready within 30 s")
    sys.exit(1)

# Grafana's variables, as Grafana would substitute them.
subst = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
         '"$job"': '".+"', '"$instance"': '".+"'}
failed = 0
exprs = json.load(open(os.environ["EXPRS"]))
for expr in exprs:
    q = expr
    for k, v in subst.items():
        q = q.replace(k, v)
    if "$" in q:
        print(f"  FAIL  unknown variable left in: {expr}")
        failed += 1
        continue
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        urllib.request.urlopen(url, timeout=10)
    except urllib.error.HTTPError as e:
        body = json.loads(e.read() or b"{}")
        print(f"  FAIL  {expr}\n        {e.code}: {body.get('error')}")
        failed += 1
print(f"  {'ok  ' if not failed else 'FAIL'}  {len(exprs) - failed} of {len(exprs)} queries parse")
sys.exit(1 if failed else 0)
PY
parse_status=$?
set -e
[ "$parse_status" = 0 ] || failures=$((failures + 1))

if [ "$failures" = 0 ]; then
  printf '\nall monitoring checks passed\n'
else
  printf '\n%d check group(s) failed\n' "$failures"
  exit 1
fi
