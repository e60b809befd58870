"""The contenders of the side-by-side benchmark: how each one is started on an
input topic, an output topic and a consumer group. Each start() returns the
Popen of the processing process; the harness measures it from outside.
"""

import ctypes
import os
import signal
import subprocess

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_harness():
    """In the child, before exec: SIGTERM when the harness dies, so that a
    harness killed mid-run does not leave a contender consuming on the machine
    (it would distort every later measurement)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def popen(cmd, **kw):
    return subprocess.Popen(cmd, preexec_fn=_die_with_harness, **kw)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KAFKA = os.path.join(ROOT, "scripts", "kafka.sh")
# EXACTLY_BIN compares another build of exactly with the same harness.
EXACTLY = os.environ.get("EXACTLY_BIN") or os.path.join(ROOT, "target", "release", "exactly")
COMMIT_INTERVAL_MS = 100
# The map every contender implements: exactly as jq, the peers in their own language.
MAP_JQ = "{id: .id, ts: .ts, total: (.price * .qty), customer: .customer.id}"


class Contender:
    name = "?"
    guarantee = "exactly_once"
    modes = ("passthrough", "map")
    latency = True
    # Consumers the contender puts in its group: the latency run waits for all.
    members = 1

    def start(self, ctx, inp, out, group, mode):
        raise NotImplementedError


class Exactly(Contender):
    def __init__(self, guarantee, workers=1, min_commit_interval_ms=None):
        self.guarantee = guarantee
        self.workers = workers
        self.members = workers
        # None: exactly's default, the fixed cadence (a transaction closes at
        # the interval or the size limits). Below COMMIT_INTERVAL_MS: it also
        # closes as soon as nothing more is ready, this long after the last
        # commit started at the soonest.
        self.min_commit_interval_ms = min_commit_interval_ms
        self.name = "exactly-" + ("eos" if guarantee == "exactly_once" else "alo")
        if workers > 1:
            self.name += f"-w{workers}"
        if min_commit_interval_ms is not None:
            self.name += f"-min{min_commit_interval_ms}"

    def start(self, ctx, inp, out, group, mode):
        cfg = os.path.join(ctx.workdir, f"{group}.toml")
        chain = f"[[transform]]\ntype = \"map\"\nexpr = '{MAP_JQ}'\n" if mode == "map" else ""
        with open(cfg, "w") as f:
            f.write(f"""
[kafka]
bootstrap_servers = "{ctx.bootstrap}"
group_id = "{group}"
transactional_id = "{group}-0"
[input]
topics = ["{inp}"]
[output]
topic = "{out}"
lineage = false
[processing]
guarantee = "{self.guarantee}"
commit_interval_ms = {COMMIT_INTERVAL_MS}
{"" if self.min_commit_interval_ms is None else f"min_commit_interval_ms = {self.min_commit_interval_ms}"}
workers = {self.workers}
[http]
listen = "127.0.0.1:0"
{chain}""")
        return popen([EXACTLY, "run", "--config", cfg],
                                stdout=subprocess.DEVNULL, stderr=ctx.log(group))


class Copier(Contender):
    name = "copier-eos"
    modes = ("passthrough",)
    # The copier drains the backlog it finds at assignment and exits (its
    # loop runs while "records remaining" > 0): it cannot serve an open-ended
    # stream, so it has no latency figure.
    latency = False

    def start(self, ctx, inp, out, group, mode):
        # One copier per input partition would be the system-test layout; one
        # process with group mode is the fair single-process comparison.
        return popen(
            [KAFKA, "tool", ctx.broker_dir, "org.apache.kafka.tools.TransactionalMessageCopier",
             "--broker-list", ctx.bootstrap, "--input-topic", inp, "--output-topic", out,
             # --input-partition is required, and ignored in group mode.
             "--input-partition", "0", "--group-mode", "--consumer-group", group,
             "--transactional-id", f"{group}-copier", "--transaction-size", "10000",
             "--transaction-timeout", "10000", "--max-messages", "-1", "--use-group-metadata"],
            stdout=subprocess.DEVNULL, stderr=ctx.log(group))


class KStreams(Contender):
    def __init__(self, commit_interval_ms=COMMIT_INTERVAL_MS):
        self.commit_interval_ms = commit_interval_ms
        # The default interval keeps the plain name the reports know.
        self.name = "kstreams-eos" + ("" if commit_interval_ms == COMMIT_INTERVAL_MS
                                      else f"-ci{commit_interval_ms}")

    def start(self, ctx, inp, out, group, mode):
        return popen(
            ["java", "-Xmx1g", "-jar", ctx.kstreams_jar, "--bootstrap", ctx.bootstrap, "--input", inp,
             "--output", out, "--application-id", group, "--mode", mode,
             "--commit-interval-ms", str(self.commit_interval_ms)],
            stdout=subprocess.DEVNULL, stderr=ctx.log(group))


class Quix(Contender):
    name = "quix-eos"

    def start(self, ctx, inp, out, group, mode):
        return popen(
            [ctx.quix_python, os.path.join(ROOT, "bench", "peers", "quix", "peer.py"),
             "--bootstrap", ctx.bootstrap, "--input", inp, "--output", out, "--group", group,
             "--mode", mode, "--commit-interval-ms", str(COMMIT_INTERVAL_MS)],
            stdout=subprocess.DEVNULL, stderr=ctx.log(group))


ALL = [Exactly("exactly_once"), Exactly("at_least_once"), KStreams(), Copier(), Quix(),
       # One process, two workers (two consumer/producer pairs, two threads).
       Exactly("exactly_once", workers=2)]
# Run only when named (--contenders): early closes (min_commit_interval_ms),
# which bench/latency_sweep.py compares with the default fixed cadence.
OPTIONAL = [Exactly("exactly_once", min_commit_interval_ms=ms) for ms in (0, 10, 20, 50)]
