#!/usr/bin/env python3
"""Side-by-side benchmark: exactly against the tools people would use instead.

    bench/run.sh [--quick]          (builds exactly, its latency probe and the peers, then runs this file)

Contenders (bench/contenders.py), on one local broker (scripts/kafka.sh), same input, same work:
  exactly-eos   the release binary, guarantee = exactly_once
  exactly-alo   the same binary, guarantee = at_least_once (the baseline for the cost of EOS)
  kstreams-eos  Kafka Streams, processing.guarantee = exactly_once_v2 (bench/peers/kafka-streams)
  copier-eos    Kafka's TransactionalMessageCopier (kafka-tools; passthrough only)
  quix-eos      Quix Streams, processing_guarantee = "exactly-once" (bench/peers/quix)
All commit every 100 ms (the copier: every 10,000 records, its only knob).

For each value size (100 B, 1 KB) and each work (passthrough, map):
  - throughput: the input (N records on 12 partitions, written once) is processed by a fresh
    consumer group into a fresh output topic. The clock runs from the group's first committed
    offset to the moment its committed offsets reach the end of the input. Median of --runs.
  - CPU seconds per million records and peak RSS of the processing process (and its children),
    from /proc, in the same runs; and the broker's CPU seconds per million records over the same
    window as the throughput clock (None with --bootstrap: the harness knows no broker pid then).
  - latency: a fresh, empty input; once the group holds all partitions, the latency probe
    (bench/latency/main.rs, built as the example `latency-probe`; one process) runs an open-loop
    generator thread that offers half of exactly-eos's measured throughput (within
    --latency-max-rate and --latency-max-mbps) for --latency-seconds, and a read_committed
    consumer thread that takes arrival time minus the `ts` stamped into each value at send time.
    The first --warmup-seconds of records are left out. p50/p99 over the rest, and how far the
    generator ever fell behind its schedule.

Results: bench/out/results.json always; bench/RESULTS.md and bench/results.png in full mode
(bench/report.py).
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import contenders
import load

ROOT = contenders.ROOT
# The end-to-end latency generator and probe (bench/latency/main.rs).
LATENCY_PROBE = (os.environ.get("EXACTLY_LATENCY_PROBE")
                 or os.path.join(ROOT, "target", "release", "examples", "latency-probe"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PARTITIONS = 12


def kafka(*args, capture=False):
    r = subprocess.run([contenders.KAFKA, *args], check=True, stdout=subprocess.PIPE if capture else None)
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


def proc_cpu(pid):
    """User + system CPU seconds of process pid (all its threads); None when
    there is no such process or no pid."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Ctx:
    def __init__(self, args):
        self.args = args
        self.workdir = tempfile.mkdtemp(prefix="exactly-harness-")
        self.broker_dir = os.path.join(self.workdir, "kafka")
        self.bootstrap = None
        self.broker_pid = None  # known when the harness starts the broker itself
        self.kstreams_jar = args.kstreams_jar
        self.quix_python = args.quix_python
        self.admin = None

    def drop(self, *topics):
        """Deletes topics a run is done with: a full run writes tens of GB."""
        try:
            for f in self.admin.delete_topics(list(topics)).values():
                f.result(timeout=60)
        except KafkaException as e:
            print(f"  (could not delete {topics}: {e})", flush=True)

    def log(self, name):
        return open(os.path.join(self.workdir, f"{name}.log"), "a")

    def topic(self, prefix):
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(timeout=60)
        # Created on the controller; wait until the broker's metadata has it.
        deadline = time.monotonic() + 60
        while True:
            meta = self.admin.list_topics(name, timeout=10).topics.get(name)
            if meta is not None and meta.error is None and len(meta.partitions) == PARTITIONS:
                return name
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} not in the broker's metadata after 60 s")
            time.sleep(0.1)  # polling an outside condition


def committed_total(ctx, group, topic):
    """The group's committed offsets on `topic`, summed; None when the broker
    does not answer in time (a busy machine): the caller samples again."""
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    try:
        fut = ctx.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])[group]
        got = fut.result(timeout=15).topic_partitions
    except (KafkaException, TimeoutError, concurrent.futures.TimeoutError) as e:
        print(f"  (committed offsets of {group}: {e}; sampling again)", flush=True)
        return None
    return sum(max(tp.offset, 0) for tp in got)


def coordinator_ready(ctx, group):
    """Whether the broker's group coordinator answers for `group`. Until it
    does (a fresh broker still creating or loading __consumer_offsets), a
    list_consumer_group_offsets answer can carry NOT_COORDINATOR, on which
    librdkafka's admin client dereferences the consumer group it does not have
    and the harness dies with a segfault (librdkafka issue 5040)."""
    try:
        ctx.admin.describe_consumer_groups([group])[group].result(timeout=10)
        return True
    except (KafkaException, TimeoutError, concurrent.futures.TimeoutError):
        return False


def settled(ctx, group, members):
    """Whether the group is stable with `members` members holding every partition
    (not yet, while a fresh broker's coordinator is still loading)."""
    if not coordinator_ready(ctx, group):
        return False
    desc = ctx.admin.describe_consumer_groups([group])[group].result(timeout=10)
    if desc.state.name != "STABLE" or len(desc.members) < members:
        return False
    return sum(len(m.assignment.topic_partitions) for m in desc.members if m.assignment) >= PARTITIONS


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def median(values):
    """The median, or None when any sample is None (a figure not known)."""
    values = list(values)
    return None if any(v is None for v in values) else statistics.median(values)


def check_alive(proc, contender, ctx, group):
    code = proc.poll()
    if code is not None:
        raise RuntimeError(f"{contender.name} exited with {code}; see {ctx.workdir}/{group}.log")


def throughput_run(ctx, contender, inp, n, mode):
    out = ctx.topic(f"out-{contender.name}")
    group = f"g-{contender.name}-{mode}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    broker_started = proc_cpu(ctx.broker_pid)
    proc = contender.start(ctx, inp, out, group, mode)
    t0 = None
    stats = (0.0, 0.0)
    ready = False
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
            if not ready:
                ready = coordinator_ready(ctx, group)
                if not ready:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{contender.name}: no group coordinator for {group} in 30 min")
                    time.sleep(0.1)  # the sampling period of an outside observer
                    continue
            done = committed_total(ctx, group, inp)
            now = time.monotonic()
            if done is None:
                if now > deadline:
                    raise RuntimeError(f"{contender.name}: no committed offsets for 30 min")
                continue
            if t0 is None and done > 0:
                t0, first = now, done
                broker_t0 = proc_cpu(ctx.broker_pid)
            if done >= n:
                broker_end = proc_cpu(ctx.broker_pid)
                break
            if exited == 0:
                raise RuntimeError(f"{contender.name} stopped at {done} of {n} records")
            if now > deadline:
                raise RuntimeError(f"{contender.name} did not finish in 30 min")
            time.sleep(0.1)  # the sampling period of an outside observer
        if now - t0 > 0.5:
            rate = (n - first) / (now - t0)
            broker_from, records = broker_t0, n - first
        else:
            # Done within one poll (a small quick-mode input): time it from
            # the start of the process instead, start-up included.
            rate = n / (now - started)
            broker_from, records = broker_started, n
        # The broker's CPU over the window the rate is measured on: it shares
        # the machine's cores with the contender.
        broker = None
        if broker_from is not None and broker_end is not None:
            broker = (broker_end - broker_from) / records * 1e6
        sample = tree_stats(proc.pid)
        cpu, rss = sample if sample[0] > 0 else stats
        return {"rate": rate, "cpu_per_million": cpu / n * 1e6, "rss_mib": rss,
                "broker_cpu_per_million": broker}
    finally:
        stop(proc)
        ctx.drop(out)


def latency_run(ctx, contender, size, mode, rate, seconds, warmup):
    inp = ctx.topic(f"lat-in-{contender.name}")
    out = ctx.topic(f"lat-out-{contender.name}")
    group = f"lat-{contender.name}-{mode}-{uuid.uuid4().hex[:6]}"
    proc = contender.start(ctx, inp, out, group, mode)
    probe = None
    try:
        deadline = time.monotonic() + 120
        while not settled(ctx, group, contender.members):
            check_alive(proc, contender, ctx, group)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{contender.name}: group {group} not stable with all partitions in 120 s")
            time.sleep(0.2)  # the sampling period of an outside observer
        drain = 30
        probe = contenders.popen(
            [LATENCY_PROBE, "--bootstrap", ctx.bootstrap, "--input", inp, "--output", out,
             "--partitions", str(PARTITIONS), "--size", str(size), "--rate", repr(float(rate)),
             "--seconds", repr(float(seconds)), "--warmup-seconds", repr(float(warmup)),
             "--drain-seconds", str(drain)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The probe ends by itself: load, then drain (its producer's final
        # flush may take up to 60 s more). Past that it is stuck.
        limit = warmup + seconds + drain + 90
        deadline = time.monotonic() + limit
        while True:
            try:
                # communicate, not wait: it keeps reading the pipes, so the
                # probe cannot block on a full one.
                stdout, stderr = probe.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                check_alive(proc, contender, ctx, group)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"latency probe still running after {limit:.0f} s") from None
        if probe.returncode != 0:
            raise RuntimeError(f"latency probe exited with {probe.returncode}: {stderr.strip()}")
        lat = json.loads(stdout)
        # serde_json writes NaN (nothing measured) as null.
        nan = float("nan")
        return {"offered": lat["offered"], "sent": lat["sent"], "received": lat["received"],
                "measured": lat["measured"],
                "p50_ms": lat["p50_ms"] if lat["p50_ms"] is not None else nan,
                "p99_ms": lat["p99_ms"] if lat["p99_ms"] is not None else nan,
                "p999_ms": lat["p999_ms"] if lat.get("p999_ms") is not None else nan,
                "max_ms": lat["max_ms"] if lat["max_ms"] is not None else nan,
                "generator_max_lag_ms": lat["generator_max_lag_ms"]}
    finally:
        if probe is not None and probe.poll() is None:
            probe.kill()
            probe.communicate()
        stop(proc)
        ctx.drop(inp, out)


def environment(ctx):
    def out(cmd, stderr=True):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
            return (r.stdout + (r.stderr if stderr else "")).strip()
        except OSError:
            return "?"
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))) / 1024 / 1024
    import confluent_kafka
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "kernel": os.uname().release,
        "exactly": out([contenders.EXACTLY, "--version"]) + " @ " + out(["git", "rev-parse", "--short", "HEAD"])
                   + ("" if "/release/" in contenders.EXACTLY else f" ({contenders.EXACTLY})"),
        "rustc": out(["rustc", "--version"]),
        "java": out(["java", "-version"]).splitlines()[0],
        "python": sys.version.split()[0],
        "confluent_kafka": f"{confluent_kafka.version()[0]} (librdkafka {confluent_kafka.libversion()[0]})",
        "kafka": "4.1.1 (broker, Kafka Streams, TransactionalMessageCopier)",
        # Only stdout: quixstreams' import of authlib prints a deprecation
        # warning on stderr, which -W ignore does not silence (authlib puts
        # its own "always" filter first).
        "peer:quixstreams": out([ctx.quix_python, "-W", "ignore", "-c",
                                 "import quixstreams; print(quixstreams.__version__)"], stderr=False),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small input, one run: keeps the harness from rotting")
    ap.add_argument("--records", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--modes", default="passthrough,map")
    ap.add_argument("--contenders", default=",".join(c.name for c in contenders.ALL))
    ap.add_argument("--latency-seconds", type=float)
    ap.add_argument("--warmup-seconds", type=float)
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--latency-max-rate", type=float, default=50_000,
                    help="cap on the offered load of the latency runs, records/s (default 50,000)")
    ap.add_argument("--latency-light-rate", type=float, default=5_000,
                    help="exactly's two guarantees also run at this light load, records/s "
                         "(default 5,000; 0 to skip)")
    ap.add_argument("--latency-max-mbps", type=float, default=25,
                    help="cap on the offered load of the latency runs, MB/s of values (default 25)")
    ap.add_argument("--bootstrap", help="use this broker instead of starting one")
    ap.add_argument("--kstreams-jar")
    ap.add_argument("--quix-python", default=sys.executable)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out"))
    args = ap.parse_args()
    n = args.records or (20_000 if args.quick else 1_000_000)
    runs = args.runs or (1 if args.quick else 3)
    seconds = args.latency_seconds or (3 if args.quick else 15)
    warmup = args.warmup_seconds if args.warmup_seconds is not None else (1 if args.quick else 3)
    ctx = Ctx(args)
    chosen = [c for c in contenders.ALL + contenders.OPTIONAL if c.name in args.contenders.split(",")]
    if ctx.kstreams_jar is None:
        chosen = [c for c in chosen if c.name != "kstreams-eos"]
    if args.bootstrap:
        ctx.bootstrap = args.bootstrap
    else:
        ctx.bootstrap = kafka("start", ctx.broker_dir, "--owner-pid", str(os.getpid()), capture=True)
        with open(os.path.join(ctx.broker_dir, "pid")) as f:
            ctx.broker_pid = int(f.read())
    ctx.admin = AdminClient({"bootstrap.servers": ctx.bootstrap})
    results = {"settings": {"records": n, "runs": runs, "partitions": PARTITIONS,
                            "commit_interval_ms": contenders.COMMIT_INTERVAL_MS,
                            "latency_seconds": seconds, "warmup_seconds": warmup, "quick": args.quick,
                            "latency_max_rate": args.latency_max_rate,
                            "latency_max_mbps": args.latency_max_mbps,
                            "latency_light_rate": args.latency_light_rate},
               "environment": environment(ctx), "rows": []}
    warmed = False
    finished = False
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            inp = ctx.topic(f"in-{size}")
            print(f"writing {n:,} records of {size} bytes", flush=True)
            load.write_input(ctx.bootstrap, inp, n, size)
            if not warmed:
                # One unrecorded run first: it creates the broker's
                # transaction state topic and warms its JIT, which would
                # otherwise count against whichever contender came first.
                print("warm-up run (not recorded)", flush=True)
                throughput_run(ctx, chosen[0], inp, n, args.modes.split(",")[0])
                warmed = True
            for mode in args.modes.split(","):
                rows = []
                here = [c for c in chosen if mode in c.modes]
                # Runs interleave (every contender once, then again), so a
                # slow spell of the machine does not land on one contender.
                runs_of = {c.name: [] for c in here}
                for _ in range(runs):
                    for c in here:
                        runs_of[c.name].append(throughput_run(ctx, c, inp, n, mode))
                for c in here:
                    samples = runs_of[c.name]
                    r = {k: median(s[k] for s in samples) for k in samples[0]}
                    r.update(contender=c.name, size=size, mode=mode, mb_s=r["rate"] * size / 1e6,
                             samples=samples)
                    rows.append(r)
                    broker = r["broker_cpu_per_million"]
                    print(f"{size:>5} B {mode:<11} {c.name:<13} {r['rate']:>10,.0f} rec/s {r['mb_s']:6.1f} MB/s "
                          f"{r['cpu_per_million']:6.2f} CPU s/1M {r['rss_mib']:7.1f} MiB "
                          f"broker {'–' if broker is None else f'{broker:.2f}'} CPU s/1M", flush=True)
                eos = next((r for r in rows if r["contender"] == "exactly-eos"), None)
                if eos and not args.no_latency:
                    # Half of exactly's maximum, within what this machine can
                    # offer and take back at once: the generator, the probe and
                    # the broker share its cores with the contender.
                    half = min(eos["rate"] / 2, args.latency_max_rate, args.latency_max_mbps * 1e6 / size)
                    for r in rows:
                        c = next(c for c in chosen if c.name == r["contender"])
                        if not c.latency:
                            continue
                        r["latency"] = latency_run(ctx, c, size, mode, half, seconds, warmup)
                        r["latency"]["half_of_max"] = eos["rate"] / 2
                        lat = r["latency"]
                        print(f"{size:>5} B {mode:<11} {c.name:<13} at {half:,.0f} rec/s: p50 {lat['p50_ms']:.0f} ms "
                              f"p99 {lat['p99_ms']:.0f} ms ({lat['received']:,} of {lat['sent']:,} arrived; "
                              f"generator at most {lat['generator_max_lag_ms']:.0f} ms behind)", flush=True)
                        if args.latency_light_rate and r["contender"] in ("exactly-eos", "exactly-alo"):
                            # The same at a load the machine carries easily:
                            # what exactly itself adds (its commit cadence),
                            # apart from a saturated machine's queueing.
                            light = latency_run(ctx, c, size, mode, args.latency_light_rate, seconds, warmup)
                            r["latency_light"] = light
                            print(f"{size:>5} B {mode:<11} {c.name:<13} at {args.latency_light_rate:,.0f} rec/s: "
                                  f"p50 {light['p50_ms']:.0f} ms p99 {light['p99_ms']:.0f} ms", flush=True)
                results["rows"].extend(rows)
            ctx.drop(inp)
        finished = True
    finally:
        # The admin client is a librdkafka handle too: released before the
        # broker goes, it does not log connection failures to a stopped broker.
        ctx.admin = None
        if not args.bootstrap:
            kafka("stop", ctx.broker_dir)
        if finished:
            shutil.rmtree(ctx.workdir, ignore_errors=True)
        else:
            print(f"logs kept in {ctx.workdir}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
