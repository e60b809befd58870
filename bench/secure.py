#!/usr/bin/env python3
"""Passthrough over SASL_SSL against PLAINTEXT, on one secured broker.

    python3 bench/secure.py [--records 1000000] [--size 100] [--partitions 12] [--rounds 2]

Starts a secured broker (scripts/kafka.sh start --secure), writes the input
once over its PLAINTEXT listener with Kafka's ProducerPerformance, then runs
the release binary in exactly_once mode over the same input, alternating the
broker's PLAINTEXT listener and its SASL_SSL listener (SCRAM-SHA-512, TLS
with the per-run CA), each run into a fresh output topic with a fresh group.
The principal is the broker's super user `admin`, so ACL look-ups are the
only thing it skips. Prints records/s per run and SASL_SSL as a ratio of
PLAINTEXT measured in the same run (this machine is shared and noisy).
"""

import argparse
import os
import subprocess
import tempfile

from passthrough import ROOT, kafka, run_guarantee, write_input


def read_env(path):
    out = {}
    with open(path) as f:
        for line in f:
            if "=" in line and not line.startswith("#"):
                k, _, v = line.strip().partition("=")
                out[k] = v
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=100, help="value bytes")
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2, help="PLAINTEXT/SASL_SSL pairs")
    a = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    workdir = tempfile.mkdtemp(prefix="exactly-bench-secure-")
    broker_dir = os.path.join(workdir, "kafka")
    kafka("start", broker_dir, "--secure", "--owner-pid", str(os.getpid()), capture=True)
    env = read_env(os.path.join(broker_dir, "secure.env"))
    plain = env["KAFKA_BOOTSTRAP_PLAINTEXT"]
    sasl = env["KAFKA_BOOTSTRAP_SASL_SSL"]
    sasl_toml = f"""
[kafka.client]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "admin"
"sasl.password" = "${{file:{env['KAFKA_PASSWORD_FILE_ADMIN']}}}"
"ssl.ca.location" = "{env['KAFKA_CA']}"
"""
    results = []
    try:
        write_input(broker_dir, plain, "in", a.records, a.size, a.partitions)
        for i in range(a.rounds):
            for name, bootstrap, extra in (("PLAINTEXT", plain, ""), ("SASL_SSL", sasl, sasl_toml)):
                tag = f"{name.lower()}-{i}"
                r = run_guarantee(workdir, bootstrap, broker_dir, "in", a.records, a.partitions,
                                  "exactly_once", tag, extra)
                r["listener"] = name
                results.append(r)
                print(f"{name} round {i + 1}: {r['rate']:,.0f} records/s", flush=True)
    finally:
        kafka("stop", broker_dir)

    def mean(listener, key):
        rows = [r[key] for r in results if r["listener"] == listener]
        return sum(rows) / len(rows)

    print()
    print(f"exactly_once passthrough of {a.records:,} records x {a.size} B, {a.partitions} partitions, "
          f"release build, {a.rounds} alternating rounds per listener")
    print(f"{'listener':<12}{'records/s':>12}{'vs PLAINTEXT':>14}{'CPU s/1M':>10}{'peak RSS MiB':>14}")
    base = mean("PLAINTEXT", "rate")
    for listener in ("PLAINTEXT", "SASL_SSL"):
        rate = mean(listener, "rate")
        print(f"{listener:<12}{rate:>12,.0f}{rate / base:>14.2f}"
              f"{mean(listener, 'cpu_per_million'):>10.2f}{mean(listener, 'rss_mib'):>14.1f}")


if __name__ == "__main__":
    main()
