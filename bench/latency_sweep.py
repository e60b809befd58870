#!/usr/bin/env python3
"""Latency sweep of exactly's commit policy against at_least_once and Kafka Streams.

    bench/run.sh --sweep [--quick] [--rates 1000,5000,50000] [--sizes 100,1000] [--kstreams-low 10]

One run, one broker (scripts/kafka.sh), the harness's own functions (bench/harness.py):
  1. Throughput, 100 B passthrough, interleaved runs, median of --runs: exactly-eos (the default
     fixed 100 ms cadence), exactly-eos-min50 (a transaction also closes as soon as nothing more is
     ready, min_commit_interval_ms = 50) and exactly-alo.
  2. End-to-end latency (the latency probe, a read_committed reader) at each of --rates and at half
     of exactly-eos's throughput, for each of --sizes: the same three,
     Kafka Streams exactly_once_v2 at its default commit.interval.ms (100 ms under exactly-once)
     and at --kstreams-low ms. Each row: p50, p99, p99.9, max, and the CPU time stolen by the
     hypervisor (vmstat's `st`, from /proc/stat) and left idle over the row's run, so that machine
     noise is visible beside the figure it distorts.
Writes OUT/sweep.json and OUT/SWEEP.md (the tables, the issue's goals as ratios).
"""

import argparse
import json
import os
import shutil
import sys

from confluent_kafka.admin import AdminClient

import contenders
import harness

GOAL_P99_LIGHT_MS = 50
GOAL_P99_HALF_MS = 120
GOAL_VS_FIXED = 0.95
GOAL_VS_ALO = 0.90


def cpu_times():
    """(steal, idle, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest
    # time is already counted in user.
    idle = fields[3] + fields[4]
    steal = fields[7] if len(fields) > 7 else 0
    return steal, idle, sum(fields[:8])


def with_cpu(run):
    """Runs run(); returns its result with the steal and idle share of the
    machine's CPU time over it, in percent."""
    s0, i0, t0 = cpu_times()
    result = run()
    s1, i1, t1 = cpu_times()
    span = max(t1 - t0, 1)
    result["steal_pct"] = 100.0 * (s1 - s0) / span
    result["idle_pct"] = 100.0 * (i1 - i0) / span
    return result


def by_name(names):
    pool = contenders.ALL + contenders.OPTIONAL
    return [next(c for c in pool if c.name == n) for n in names]


def fmt(v, digits=0):
    return "–" if v is None or v != v else f"{v:,.{digits}f}"


def report(results):
    s = results["settings"]
    lines = ["## Latency of the commit policy (issue 14)", "",
             f"`bench/run.sh --sweep` on {results['environment']['cpu']} "
             f"({results['environment']['cores']} cores), broker on the same machine, "
             f"{results['environment']['exactly']}. Latency: {s['latency_seconds']:.0f} s per row "
             f"after {s['warmup_seconds']:.0f} s of warm-up, measured by a read_committed reader "
             f"(`bench/latency/main.rs`). `st` is the CPU time the hypervisor stole over the row's "
             f"run and `idle` what was left idle (both % of the machine): read a row with a high `st` "
             f"or no idle time as the machine's, not the contender's.", "",
             "exactly-eos is the default fixed cadence (`commit_interval_ms` = 100); exactly-eos-minN "
             "also closes a transaction as soon as nothing more is ready to consume, at most every "
             "`min_commit_interval_ms` = N ms; kstreams-eos is "
             "Kafka Streams `exactly_once_v2` at its default `commit.interval.ms` (100 ms), "
             f"kstreams-eos-ci{s['kstreams_low']} the same at {s['kstreams_low']} ms.", ""]
    t = results["throughput"]
    if t:
        lines += ["### Throughput, 100 B passthrough (median of "
                  f"{s['runs']} interleaved runs of {s['records']:,} records)", "",
                  "| contender | records/s | CPU s / 1M records | broker CPU s / 1M |",
                  "| --- | ---: | ---: | ---: |"]
        for name, r in t.items():
            lines.append(f"| {name} | {fmt(r['rate'])} | {fmt(r['cpu_per_million'], 2)} | "
                         f"{fmt(r['broker_cpu_per_million'], 2)} |")
        lines.append("")
    lines += ["### End-to-end latency", "",
              "| size | offered rec/s | contender | p50 ms | p99 ms | p99.9 ms | max ms | "
              "received / sent | st % | idle % |",
              "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["latency"]:
        lines.append(f"| {r['size']} | {fmt(r['rate'])}{' (half)' if r['half'] else ''} | "
                     f"{r['contender']} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
                     f"{fmt(r['p999_ms'])} | {fmt(r['max_ms'])} | {r['received']:,} / {r['sent']:,} | "
                     f"{fmt(r['steal_pct'], 1)} | {fmt(r['idle_pct'], 1)} |")
    lines += ["", "### Goals, as ratios (≤ 1 for a bound, ≥ 1 for a floor: met)", ""]
    for goal, value in goals(results):
        lines.append(f"- {goal}: {value}")
    return "\n".join(lines) + "\n"


def goals(results):
    out = []
    for r in results["latency"]:
        if not r["contender"].startswith("exactly-eos"):
            continue
        if r["rate"] == 5_000 and not r["half"]:
            out.append((f"{r['contender']} p99 ≤ {GOAL_P99_LIGHT_MS} ms at 5,000 records/s, {r['size']} B",
                        f"{r['p99_ms']:.0f} ms = {r['p99_ms'] / GOAL_P99_LIGHT_MS:.2f} × the bound"))
        if r["half"]:
            out.append((f"{r['contender']} p99 ≤ {GOAL_P99_HALF_MS} ms at half exactly-eos's throughput "
                        f"({r['rate']:,.0f} records/s), {r['size']} B",
                        f"{r['p99_ms']:.0f} ms = {r['p99_ms'] / GOAL_P99_HALF_MS:.2f} × the bound"))
    t = results["throughput"]
    fixed, early, alo = (t.get(n) for n in ("exactly-eos", "exactly-eos-min50", "exactly-alo"))
    eos = fixed
    if early and fixed:
        ratio = early["rate"] / fixed["rate"]
        out.append((f"full-speed throughput with early closes ≥ {GOAL_VS_FIXED} × the fixed cadence's",
                    f"{ratio:.3f} ({ratio / GOAL_VS_FIXED:.2f} × the floor)"))
    if eos and alo:
        ratio = eos["rate"] / alo["rate"]
        out.append((f"exactly_once ≥ {GOAL_VS_ALO} × at_least_once, 100 B passthrough",
                    f"{ratio:.3f} ({ratio / GOAL_VS_ALO:.2f} × the floor)"))
    return out


def throughput(ctx, args, chosen, n, runs, results):
    """Interleaved throughput runs of 100 B passthrough; medians into results."""
    inp = ctx.topic("in-100")
    print(f"writing {n:,} records of 100 bytes", flush=True)
    harness.load.write_input(ctx.bootstrap, inp, n, 100)
    print("warm-up run (not recorded)", flush=True)
    harness.throughput_run(ctx, chosen[0], inp, n, "passthrough")
    samples = {c.name: [] for c in chosen}
    for _ in range(runs):
        for c in chosen:
            samples[c.name].append(harness.throughput_run(ctx, c, inp, n, "passthrough"))
    for name, runs_of in samples.items():
        r = {k: harness.median(s[k] for s in runs_of) for k in runs_of[0]}
        results["throughput"][name] = r
        print(f"100 B passthrough {name:<18} {r['rate']:>10,.0f} rec/s", flush=True)
    ctx.drop(inp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small run: keeps the script from rotting")
    ap.add_argument("--records", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--rates", default="1000,5000,50000")
    ap.add_argument("--exactly", default="exactly-eos,exactly-eos-min50,exactly-alo",
                    help="exactly's contenders: the first is the one the goals are about; "
                         "exactly-eos-minN closes early at min_commit_interval_ms = N (N in 0,10,20,50)")
    ap.add_argument("--no-throughput", action="store_true",
                    help="latency rows only (the half-load row is then left out)")
    ap.add_argument("--kstreams-low", type=int, default=10,
                    help="Kafka Streams' lower commit.interval.ms (default 10)")
    ap.add_argument("--latency-seconds", type=float)
    ap.add_argument("--warmup-seconds", type=float)
    ap.add_argument("--latency-max-mbps", type=float, default=25,
                    help="cap on the offered load, MB/s of values (default 25)")
    ap.add_argument("--kstreams-jar")
    ap.add_argument("--quix-python", default=sys.executable)
    ap.add_argument("--out", default=os.path.join(harness.ROOT, "bench", "out"))
    args = ap.parse_args()
    n = args.records or (20_000 if args.quick else 1_000_000)
    runs = args.runs or (1 if args.quick else 3)
    seconds = args.latency_seconds or (3 if args.quick else 15)
    warmup = args.warmup_seconds if args.warmup_seconds is not None else (1 if args.quick else 3)
    rates = [float(r) for r in args.rates.split(",")]
    ctx = harness.Ctx(args)
    throughput_set = by_name(args.exactly.split(","))
    latency_set = throughput_set[:]
    # Quick mode (CI) keeps the script working: exactly's rows only, no
    # half-load row. The main harness's quick run covers the Kafka Streams peer.
    if args.kstreams_jar and not args.quick:
        latency_set += [contenders.KStreams(), contenders.KStreams(args.kstreams_low)]
    ctx.bootstrap = harness.kafka("start", ctx.broker_dir, "--owner-pid", str(os.getpid()), capture=True)
    with open(os.path.join(ctx.broker_dir, "pid")) as f:
        ctx.broker_pid = int(f.read())
    ctx.admin = AdminClient({"bootstrap.servers": ctx.bootstrap})
    results = {"settings": {"records": n, "runs": runs, "rates": rates, "sizes": args.sizes,
                            "kstreams_low": args.kstreams_low, "latency_seconds": seconds,
                            "warmup_seconds": warmup, "quick": args.quick},
               "environment": harness.environment(ctx), "throughput": {}, "latency": []}
    finished = False
    try:
        if args.no_throughput:
            # The throughput runs warm the broker up (its JIT, the
            # transaction state topic); without them, one unrecorded row does.
            print("warm-up latency run (not recorded)", flush=True)
            harness.latency_run(ctx, latency_set[0], 100, "passthrough", rates[0], seconds, warmup)
        else:
            throughput(ctx, args, throughput_set, n, runs, results)
        first = results["throughput"].get(throughput_set[0].name)
        for size in [int(s) for s in args.sizes.split(",")]:
            cap = args.latency_max_mbps * 1e6 / size
            points = [(r, False) for r in rates]
            if first and not args.quick:
                points.append((first["rate"] / 2, True))
            for rate, is_half in points:
                offered = min(rate, cap)
                for c in latency_set:
                    lat = with_cpu(lambda c=c, offered=offered: harness.latency_run(
                        ctx, c, size, "passthrough", offered, seconds, warmup))
                    row = dict(lat, size=size, rate=offered, half=is_half, contender=c.name)
                    results["latency"].append(row)
                    print(f"{size:>5} B {offered:>9,.0f} rec/s{' (half)' if is_half else '       '} "
                          f"{c.name:<22} p50 {fmt(row['p50_ms']):>6} p99 {fmt(row['p99_ms']):>6} "
                          f"p99.9 {fmt(row['p999_ms']):>6} max {fmt(row['max_ms']):>6} ms  "
                          f"{row['received']:,}/{row['sent']:,}  st {row['steal_pct']:4.1f} % "
                          f"idle {row['idle_pct']:4.1f} %", flush=True)
        finished = True
    finally:
        ctx.admin = None
        harness.kafka("stop", ctx.broker_dir)
        if finished:
            shutil.rmtree(ctx.workdir, ignore_errors=True)
        else:
            print(f"logs kept in {ctx.workdir}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "sweep.json"), "w") as f:
        json.dump(results, f, indent=2)
    md = report(results)
    with open(os.path.join(args.out, "SWEEP.md"), "w") as f:
        f.write(md)
    print(md)
    print(f"wrote {os.path.join(args.out, 'sweep.json')} and SWEEP.md", flush=True)


if __name__ == "__main__":
    main()
