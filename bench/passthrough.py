#!/usr/bin/env python3
"""Passthrough benchmark: exactly_once vs at_least_once on one local broker.

    python3 bench/passthrough.py [--records 1000000] [--size 100] [--partitions 12]

Starts a broker (scripts/kafka.sh), writes the input once with Kafka's own
ProducerPerformance, then runs the release binary over it in each guarantee,
one after the other, each into a fresh output topic with a fresh group.
Prints, per guarantee: records/s (first record consumed -> last output
committed, read from the daemon's own metrics), CPU seconds of the daemon,
and its peak RSS (VmHWM). Then kills an exactly_once daemon with SIGKILL in
mid-stream, restarts it with the same transactional id and reports the time
to its first committed transaction.

Figures are printed as ratios against at_least_once, measured in the same
run: this machine is shared and noisy. Only the standard library is used.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KAFKA = os.path.join(ROOT, "scripts", "kafka.sh")
BIN = os.path.join(ROOT, "target", "release", "exactly")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metrics(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def proc_stats(pid):
    """(cpu seconds, peak RSS in MiB) of a running process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return cpu, hwm


class Daemon:
    def __init__(self, workdir, bootstrap, group, txid, inp, out, guarantee, extra=""):
        self.port = free_port()
        self.config = os.path.join(workdir, f"{group}.toml")
        with open(self.config, "w") as f:
            f.write(
                f"""
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
transactional_id = "{txid}"
[kafka.consumer]
"session.timeout.ms" = "6000"
[input]
topics = ["{inp}"]
[output]
topic = "{out}"
[processing]
guarantee = "{guarantee}"
[http]
listen = "127.0.0.1:{self.port}"
{extra}
"""
            )
        self.log = open(os.path.join(workdir, f"{group}-{txid}.log"), "a")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [BIN, "run", "--config", self.config], stdout=subprocess.DEVNULL, stderr=self.log
        )

    def metric(self, name):
        return metrics(self.port).get(name, 0.0)

    def wait(self, cond, what, timeout=600):
        deadline = time.monotonic() + timeout
        while True:
            m = metrics(self.port)
            if cond(m):
                return m
            if self.proc.poll() is not None:
                sys.exit(f"daemon exited while waiting for {what}; log: {self.log.name}")
            if time.monotonic() > deadline:
                sys.exit(f"timed out waiting for {what}; log: {self.log.name}")
            time.sleep(0.02)

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)


def kafka(*args, capture=False):
    r = subprocess.run([KAFKA, *args], check=True, stdout=subprocess.PIPE if capture else None)
    return r.stdout.decode().strip() if capture else None


def write_input(broker_dir, bootstrap, topic, records, size, partitions):
    """Creates `topic` and fills it once with Kafka's ProducerPerformance."""
    kafka("topic", broker_dir, topic, str(partitions))
    print(f"writing {records} records of {size} bytes to {partitions} partitions ...", flush=True)
    kafka(
        "tool", broker_dir, "org.apache.kafka.tools.ProducerPerformance",
        "--topic", topic, "--num-records", str(records), "--record-size", str(size),
        "--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}",
        "acks=all", "linger.ms=20", "batch.size=524288",
    )


def run_guarantee(workdir, bootstrap, broker_dir, inp, records, partitions, guarantee, tag, extra=""):
    out = f"out-{tag}"
    kafka("topic", broker_dir, out, str(partitions))
    d = Daemon(workdir, bootstrap, f"g-{tag}", f"t-{tag}", inp, out, guarantee, extra)
    d.wait(lambda m: m.get("exactly_records_consumed_total", 0) > 0, "first record")
    t0 = time.monotonic()
    d.wait(lambda m: m.get("exactly_records_produced_total", 0) >= records, "all outputs", 900)
    took = time.monotonic() - t0
    cpu, rss = proc_stats(d.proc.pid)
    m = metrics(d.port)
    d.stop()
    return {
        "guarantee": guarantee,
        "seconds": took,
        "rate": records / took,
        "cpu_per_million": cpu / records * 1e6,
        "rss_mib": rss,
        "transactions": m.get('exactly_transactions_total{outcome="committed"}', 0),
    }


def recovery(workdir, bootstrap, broker_dir, inp, records, partitions):
    out = "out-recovery"
    kafka("topic", broker_dir, out, str(partitions))
    args = (workdir, bootstrap, "g-recovery", "t-recovery", inp, out, "exactly_once")
    d = Daemon(*args)
    d.wait(lambda m: m.get("exactly_records_produced_total", 0) >= records * 0.3, "30% of outputs")
    d.stop(signal.SIGKILL)
    restart = time.monotonic()
    d2 = Daemon(*args)
    d2.wait(
        lambda m: m.get('exactly_transactions_total{outcome="committed"}', 0) >= 1,
        "first commit after restart",
    )
    first_commit = time.monotonic() - restart
    d2.stop()
    return first_commit


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=100, help="value bytes")
    ap.add_argument("--partitions", type=int, default=12)
    a = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    workdir = tempfile.mkdtemp(prefix="exactly-bench-")
    broker_dir = os.path.join(workdir, "kafka")
    bootstrap = kafka("start", broker_dir, "--owner-pid", str(os.getpid()), capture=True)
    try:
        write_input(broker_dir, bootstrap, "in", a.records, a.size, a.partitions)
        results = []
        for guarantee, tag in (("at_least_once", "alo"), ("exactly_once", "eos")):
            r = run_guarantee(workdir, bootstrap, broker_dir, "in", a.records, a.partitions, guarantee, tag)
            results.append(r)
            print(f"{guarantee}: {r['rate']:.0f} records/s", flush=True)
        first_commit = recovery(workdir, bootstrap, broker_dir, "in", a.records, a.partitions)
    finally:
        kafka("stop", broker_dir)

    base = results[0]
    print()
    print(f"passthrough of {a.records:,} records x {a.size} B, {a.partitions} partitions, release build, "
          f"commit_interval_ms=100, max_batch_records=10000, one worker")
    print(f"{'guarantee':<15}{'records/s':>12}{'MB/s':>8}{'vs ALO':>8}{'CPU s/1M':>10}{'peak RSS MiB':>14}{'txns':>7}")
    for r in results:
        mbps = r["rate"] * a.size / 1e6
        print(f"{r['guarantee']:<15}{r['rate']:>12,.0f}{mbps:>8.1f}{r['rate'] / base['rate']:>8.2f}"
              f"{r['cpu_per_million']:>10.2f}{r['rss_mib']:>14.1f}{r['transactions']:>7.0f}")
    print(f"kill -9 then restart (same transactional id): first committed transaction after {first_commit:.2f} s")


if __name__ == "__main__":
    main()
