#!/usr/bin/env python3
"""Side-by-side benchmark: exactly against the tools people would use instead.

    bench/run.sh [--quick]          (sets up the peers, then runs this file)

Contenders, on one local broker (scripts/kafka.sh), same input, same work:
  exactly-eos   the release binary, guarantee = exactly_once
  exactly-alo   the same binary, guarantee = at_least_once (the baseline)
  kstreams-eos  Kafka Streams, processing.guarantee = exactly_once_v2 (bench/peers/kafka-streams)
  copier-eos    Kafka's TransactionalMessageCopier (kafka-tools; passthrough only)
  quix-eos      Quix Streams, processing_guarantee = "exactly-once" (bench/peers/quix)

Every contender is measured the same way, from outside:
  - throughput: the input (N records, written once) is processed by a fresh consumer group into a
    fresh output topic; the clock runs from the group's first committed offset to the moment its
    committed offsets reach the end of the input. records/s and MB/s of input.
  - CPU seconds and peak RSS of the processing process, from /proc (summed over its children).
  - (not yet: end-to-end latency at half load; see the issue.)

Figures are medians of --runs runs (3 by default; 1 in --quick). Results go to
bench/RESULTS.md (and bench/out/results.json). Needs confluent-kafka (in the Quix venv).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KAFKA = os.path.join(ROOT, "scripts", "kafka.sh")
EXACTLY = os.path.join(ROOT, "target", "release", "exactly")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PARTITIONS = 12
COMMIT_INTERVAL_MS = 100
MAP_JQ = "{id: .id, total: (.price * .qty), customer: .customer.id}"


def kafka(*args, capture=False):
    r = subprocess.run([KAFKA, *args], check=True, stdout=subprocess.PIPE if capture else None)
    return r.stdout.decode().strip() if capture else None


def tree_stats(pid):
    """(cpu seconds, peak RSS MiB) of pid and its descendants."""
    cpu, rss = 0.0, 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLK_TCK
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        rss += int(line.split()[1]) / 1024
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return cpu, rss


def payload(i, size):
    base = {"id": i, "price": 2.5 + i % 7, "qty": 1 + i % 4, "customer": {"id": f"c{i % 1000}"}, "pad": ""}
    text = json.dumps(base, separators=(",", ":"))
    base["pad"] = "x" * max(0, size - len(text))
    return json.dumps(base, separators=(",", ":")).encode()


def write_input(bootstrap, topic, n, size, rate=None, stop=None):
    """Writes n keyed JSON records; at `rate` records/s when given."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000,
                  "enable.idempotence": True, "queue.buffering.max.messages": 1_000_000})
    start = time.monotonic()
    for i in range(n):
        if stop is not None and stop.is_set():
            break
        while True:
            try:
                p.produce(topic, key=f"k{i % 10007}".encode(), value=payload(i, size))
                break
            except BufferError:
                p.poll(0.05)
        if rate and i % 100 == 99:
            due = start + (i + 1) / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing of a load generator
        if i % 10000 == 0:
            p.poll(0)
    p.flush(120)


def committed_total(bootstrap, group, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        got = c.committed(tps, timeout=10)
        return sum(max(tp.offset, 0) for tp in got)
    finally:
        c.close()


class Contender:
    name = "?"
    guarantee = "exactly_once"
    modes = ("passthrough", "map")

    def start(self, ctx, inp, out, group, mode):
        raise NotImplementedError


class Exactly(Contender):
    def __init__(self, guarantee):
        self.guarantee = guarantee
        self.name = "exactly-" + ("eos" if guarantee == "exactly_once" else "alo")

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
[http]
listen = "127.0.0.1:0"
{chain}""")
        return subprocess.Popen([EXACTLY, "run", "--config", cfg],
                                stdout=subprocess.DEVNULL, stderr=ctx.log(group))


class Copier(Contender):
    name = "copier-eos"
    modes = ("passthrough",)

    def start(self, ctx, inp, out, group, mode):
        # One copier per input partition would be the system-test layout; one
        # process with group mode is the fair single-process comparison.
        return subprocess.Popen(
            [KAFKA, "tool", ctx.broker_dir, "org.apache.kafka.tools.TransactionalMessageCopier",
             "--broker-list", ctx.bootstrap, "--input-topic", inp, "--output-topic", out,
             # --input-partition is required, and ignored in group mode.
             "--input-partition", "0", "--group-mode", "--consumer-group", group,
             "--transactional-id", f"{group}-copier", "--transaction-size", "10000",
             "--transaction-timeout", "10000", "--max-messages", "-1", "--use-group-metadata"],
            stdout=subprocess.DEVNULL, stderr=ctx.log(group))


class KStreams(Contender):
    name = "kstreams-eos"

    def start(self, ctx, inp, out, group, mode):
        return subprocess.Popen(
            ["java", "-Xmx1g", "-jar", ctx.kstreams_jar, "--bootstrap", ctx.bootstrap, "--input", inp,
             "--output", out, "--application-id", group, "--mode", mode,
             "--commit-interval-ms", str(COMMIT_INTERVAL_MS)],
            stdout=subprocess.DEVNULL, stderr=ctx.log(group))


class Quix(Contender):
    name = "quix-eos"

    def start(self, ctx, inp, out, group, mode):
        return subprocess.Popen(
            [ctx.quix_python, os.path.join(ROOT, "bench", "peers", "quix", "peer.py"),
             "--bootstrap", ctx.bootstrap, "--input", inp, "--output", out, "--group", group,
             "--mode", mode, "--commit-interval-ms", str(COMMIT_INTERVAL_MS)],
            stdout=subprocess.DEVNULL, stderr=ctx.log(group))


class Ctx:
    def __init__(self, args):
        self.args = args
        self.workdir = tempfile.mkdtemp(prefix="exactly-harness-")
        self.broker_dir = os.path.join(self.workdir, "kafka")
        self.bootstrap = None
        self.kstreams_jar = args.kstreams_jar
        self.quix_python = args.quix_python

    def log(self, name):
        return open(os.path.join(self.workdir, f"{name}.log"), "a")

    def topic(self, prefix):
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        kafka("topic", self.broker_dir, name, str(PARTITIONS))
        return name


def throughput_run(ctx, contender, inp, n, mode):
    out = ctx.topic(f"out-{contender.name}")
    group = f"g-{contender.name}-{mode}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    proc = contender.start(ctx, inp, out, group, mode)
    t0 = None
    stats = (0.0, 0.0)
    deadline = time.monotonic() + 1800
    try:
        while True:
            # Sampled while running: a contender may exit by itself at the end.
            sample = tree_stats(proc.pid)
            if sample[0] > 0:
                stats = sample
            # The copier exits by itself at the end of the input; anything
            # else that exits has failed.
            exited = proc.poll()
            if exited not in (None, 0):
                raise RuntimeError(f"{contender.name} exited with {exited}; see {ctx.workdir}/{group}.log")
            done = committed_total(ctx.bootstrap, group, inp)
            now = time.monotonic()
            if t0 is None and done > 0:
                t0, first = now, done
            if done >= n:
                break
            if exited == 0:
                raise RuntimeError(f"{contender.name} stopped at {done} of {n} records")
            if now > deadline:
                raise RuntimeError(f"{contender.name} did not finish in 30 min")
            time.sleep(0.1)
        if now - t0 > 0.5:
            rate = (n - first) / (now - t0)
        else:
            # Done within one poll (a small quick-mode input): time it from
            # the start of the process instead, start-up included.
            rate = n / (now - started)
        sample = tree_stats(proc.pid)
        cpu, rss = sample if sample[0] > 0 else stats
        return {"rate": rate, "cpu_per_million": cpu / n * 1e6, "rss_mib": rss}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small input, one run: keeps the harness from rotting")
    ap.add_argument("--records", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--contenders", default="exactly-eos,exactly-alo,kstreams-eos,copier-eos,quix-eos")
    ap.add_argument("--kstreams-jar")
    ap.add_argument("--quix-python", default=sys.executable)
    args = ap.parse_args()
    n = args.records or (20_000 if args.quick else 1_000_000)
    runs = args.runs or (1 if args.quick else 3)
    ctx = Ctx(args)
    ctx.bootstrap = kafka("start", ctx.broker_dir, "--owner-pid", str(os.getpid()), capture=True)
    all_contenders = {c.name: c for c in [Exactly("exactly_once"), Exactly("at_least_once"), KStreams(), Copier(), Quix()]}
    chosen = [all_contenders[c] for c in args.contenders.split(",")]
    if ctx.kstreams_jar is None:
        chosen = [c for c in chosen if c.name != "kstreams-eos"]
    results = []
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            inp = ctx.topic(f"in-{size}")
            print(f"writing {n} records of {size} bytes", flush=True)
            write_input(ctx.bootstrap, inp, n, size)
            for mode in ("passthrough", "map"):
                for c in chosen:
                    if mode not in c.modes:
                        continue
                    samples = [throughput_run(ctx, c, inp, n, mode) for _ in range(runs)]
                    r = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
                    r.update(contender=c.name, size=size, mode=mode, mb_s=r["rate"] * size / 1e6)
                    results.append(r)
                    print(f"{size:>5} B {mode:<11} {c.name:<13} {r['rate']:>10,.0f} rec/s "
                          f"{r['cpu_per_million']:6.2f} CPU s/1M {r['rss_mib']:7.1f} MiB", flush=True)
    finally:
        kafka("stop", ctx.broker_dir)
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
