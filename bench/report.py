#!/usr/bin/env python3
"""Turns bench/out/results.json (from bench/harness.py) into a Markdown report
and a chart.

    python bench/report.py [RESULTS_JSON] [--md bench/RESULTS.md] [--png bench/results.png]

The report has the machine, versions and settings; one table per value size
and work; the goals of issue 5 as ratios measured in this one run; and the
chart of throughput and CPU per record.
"""

import argparse
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDER = ["exactly-eos", "exactly-alo", "kstreams-eos", "copier-eos", "quix-eos", "exactly-eos-w2"]
LABEL = {
    "exactly-eos": "exactly, exactly_once",
    "exactly-alo": "exactly, at_least_once",
    "kstreams-eos": "Kafka Streams, exactly_once_v2",
    "copier-eos": "TransactionalMessageCopier",
    "quix-eos": "Quix Streams, exactly-once",
    "exactly-eos-w2": "exactly, exactly_once, 2 workers",
}


def fmt(v, spec):
    return "–" if v is None or v != v else format(v, spec)


def row(rows, size, mode, name):
    return next((r for r in rows if r["size"] == size and r["mode"] == mode and r["contender"] == name), None)


def ratio(a, b):
    return a / b if a is not None and b else None


def goals(rows, commit_ms):
    """Each goal of issue 5 as (goal, measured, met) per size and work."""
    out = []
    for size in sorted({r["size"] for r in rows}):
        for mode in ("passthrough", "map"):
            eos, alo = row(rows, size, mode, "exactly-eos"), row(rows, size, mode, "exactly-alo")
            ks, qx = row(rows, size, mode, "kstreams-eos"), row(rows, size, mode, "quix-eos")
            if eos is None:
                continue
            where = f"{size} B {mode}"
            if alo:
                r = ratio(eos["rate"], alo["rate"])
                out.append((where, "exactly_once ≥ 0.90 × at_least_once throughput", f"{r:.2f}×", r >= 0.90))
            if ks:
                r = ratio(eos["rate"], ks["rate"])
                out.append((where, "throughput ≥ 1 × Kafka Streams", f"{r:.2f}×", r >= 1.0))
                r = ratio(eos["cpu_per_million"], ks["cpu_per_million"])
                out.append((where, "CPU per record ≤ 1/3 of Kafka Streams", f"{r:.2f}× (1/{1 / r:.1f})", r <= 1 / 3))
                r = ratio(eos["rss_mib"], ks["rss_mib"])
                out.append((where, "RSS ≤ 1/5 of Kafka Streams", f"{r:.2f}× (1/{1 / r:.1f})", r <= 1 / 5))
            if qx:
                r = ratio(eos["rate"], qx["rate"])
                out.append((where, "throughput ≥ 10 × Quix Streams", f"{r:.1f}×", r >= 10))
            lat = eos.get("latency")
            if lat:
                bound = commit_ms + 20
                out.append((where, f"p99 latency ≤ {bound} ms at half load",
                            f"{lat['p99_ms']:.0f} ms ({lat['p99_ms'] / bound:.2f}×)", lat["p99_ms"] <= bound))
            light = eos.get("latency_light")
            if light:
                bound = commit_ms + 20
                out.append((where, f"p99 latency ≤ {bound} ms at a light load ({light['offered']:,.0f} rec/s)",
                            f"{light['p99_ms']:.0f} ms ({light['p99_ms'] / bound:.2f}×)", light["p99_ms"] <= bound))
            out.append((where, "RSS ≤ 64 MB at full speed", f"{eos['rss_mib'] * 1.048576:.0f} MB",
                        eos["rss_mib"] * 1.048576 <= 64))
    return out


def lag_text(rows):
    """How far the latency generator fell behind its schedule, at worst: if
    it did, the machine could not offer the load, whatever the contender."""
    lags = [r["latency"]["generator_max_lag_ms"] for r in rows
            if r.get("latency") and r["latency"].get("generator_max_lag_ms") is not None]
    if not lags:
        return ""
    return f" The generator fell behind its schedule by at most {max(lags):.0f} ms (worst run)."


def markdown(res, png_name):
    s, env, rows = res["settings"], res["environment"], res["rows"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `bench/report.py` from one run of `bench/run.sh`"
        + (" in **quick mode** (figures meaningless; the run only proves the harness works)." if s["quick"] else "."),
        "Every figure below comes from that one run, on one machine, one broker.",
        "",
        "## Machine and versions",
        "",
        "| | |",
        "| --- | --- |",
    ]
    for k in ("cpu", "cores", "memory_gib", "kernel", "exactly", "rustc", "kafka", "java", "python", "confluent_kafka"):
        lines.append(f"| {k} | {env.get(k, '?')} |")
    for k, v in sorted(env.items()):
        if k.startswith("peer:"):
            lines.append(f"| {k[5:]} | {v} |")
    lines += [
        "",
        "## Settings",
        "",
        f"- Input: {s['records']:,} records per value size, {s['partitions']} partitions, JSON values, "
        "keys `k0`…`k10006`; written once per size and read by every contender with a fresh group "
        "into a fresh output topic.",
        f"- Every contender commits every {s['commit_interval_ms']} ms (the copier: every 10,000 records, "
        "its only knob), one processing thread, default client settings otherwise. exactly runs "
        "with lineage headers off (the peers write none).",
        f"- Throughput: from the group's first committed offset to committed offsets at the end "
        f"of the input; median of {s['runs']} run(s), interleaved (every contender once, then "
        f"again), after one unrecorded warm-up run that creates the broker's transaction state "
        f"topic and warms its JIT. MB/s counts input values.",
        "- CPU: user + system seconds of the processing process (children included) per million "
        "records. RSS: its peak resident set (VmHWM).",
        "- Broker CPU: user + system seconds of the broker process over the window the throughput "
        "is measured on, per million records processed in it: the broker shares the machine's "
        "cores with the contender. – when the harness used a broker it did not start "
        "(`--bootstrap`).",
        f"- Latency: empty input, group holding all partitions, then the latency probe "
        f"(`bench/latency/main.rs`, one Rust process) runs a paced open-loop generator thread that "
        f"offers half of exactly_once's measured throughput, capped at "
        f"{s.get('latency_max_rate', 0):,.0f} records/s and {s.get('latency_max_mbps', 0):.0f} MB/s, "
        f"for {s['latency_seconds']:.0f} s (the first {s['warmup_seconds']:.0f} s left out), and a "
        "read_committed consumer thread. Each value carries its send time; the consumer takes "
        "arrival minus send time." + lag_text(rows) + " The probe, the broker and the contender "
        "share the machine: above the caps even at_least_once, which has no transactions to wait "
        "for, saw seconds of delay, so the figures would measure the machine rather than the "
        "contender. at_least_once's p99 is the floor this machine gives; exactly_once adds the "
        "wait for its commit.",
        f"- Light-load latency: exactly's two guarantees run the same probe again at "
        f"{s.get('latency_light_rate') or 0:,.0f} records/s, a load this machine carries without "
        "queueing, to show what exactly itself adds (table below the contenders).",
        "",
    ]
    for size in sorted({r["size"] for r in rows}):
        for mode in ("passthrough", "map"):
            sel = [row(rows, size, mode, n) for n in ORDER]
            sel = [r for r in sel if r]
            if not sel:
                continue
            base = row(rows, size, mode, "exactly-alo")
            lines += [f"## {size} B values, {mode}", "",
                      "| contender | records/s | MB/s | vs exactly ALO | CPU s / 1M records "
                      "| broker CPU s / 1M | peak RSS MiB | latency offered rec/s | p50 ms | p99 ms |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for r in sel:
                lat = r.get("latency") or {}
                vs = fmt(ratio(r["rate"], base["rate"]) if base else None, ".2f")
                late = ""
                if lat and lat["received"] < lat["sent"]:
                    late = f" ({lat['received']:,} of {lat['sent']:,} arrived)"
                lines.append(
                    f"| {LABEL[r['contender']]} | {r['rate']:,.0f} | {r['mb_s']:.1f} | {vs} "
                    f"| {r['cpu_per_million']:.2f} | {fmt(r.get('broker_cpu_per_million'), '.2f')} "
                    f"| {r['rss_mib']:.0f} "
                    f"| {fmt(lat.get('offered'), ',.0f')} | {fmt(lat.get('p50_ms'), '.0f')} "
                    f"| {fmt(lat.get('p99_ms'), '.0f')}{late} |")
            lights = [r for r in sel if r.get("latency_light")]
            if lights:
                lines += ["", "| at a light load | offered rec/s | p50 ms | p99 ms | max ms |",
                          "| --- | ---: | ---: | ---: | ---: |"]
                for r in lights:
                    lt = r["latency_light"]
                    lines.append(f"| {LABEL[r['contender']]} | {lt['offered']:,.0f} | {fmt(lt.get('p50_ms'), '.0f')} "
                                 f"| {fmt(lt.get('p99_ms'), '.0f')} | {fmt(lt.get('max_ms'), '.0f')} |")
            if any(r["contender"] == "copier-eos" for r in sel):
                lines.append("")
                lines.append("The copier has no latency figure: it copies the backlog it finds at "
                             "assignment and exits, so it cannot serve an open-ended stream.")
            lines.append("")
    lines += ["## Goals (issue 5), as ratios from this run", "",
              "| where | goal | measured | met |", "| --- | --- | --- | --- |"]
    for where, goal, measured, met in goals(rows, s["commit_interval_ms"]):
        lines.append(f"| {where} | {goal} | {measured} | {'yes' if met else '**no**'} |")
    lines += ["", f"![throughput and CPU per record]({png_name})", ""]
    return "\n".join(lines)


def chart(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    cases = [(s, m) for s in sorted({r["size"] for r in rows}) for m in ("passthrough", "map")
             if any(r["size"] == s and r["mode"] == m for r in rows)]
    names = [n for n in ORDER if any(r["contender"] == n for r in rows)]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        xs = [c + (i - (len(names) - 1) / 2) * width for c in range(len(cases))]
        rates = [(row(rows, s, m, n) or {}).get("rate", 0) / 1000 for s, m in cases]
        # CPU seconds per million records are CPU microseconds per record.
        cpu = [(row(rows, s, m, n) or {}).get("cpu_per_million", 0) for s, m in cases]
        axes[0].bar(xs, rates, width, label=LABEL[n])
        axes[1].bar(xs, cpu, width, label=LABEL[n])
    labels = [f"{s} B\n{m}" for s, m in cases]
    for ax, title in ((axes[0], "throughput, thousand records/s (higher is better)"),
                      (axes[1], "CPU µs per record (lower is better)")):
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels(labels)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    s = res["settings"]
    fig.suptitle(f"{s['records']:,} records, {s['partitions']} partitions, commit every "
                 f"{s['commit_interval_ms']} ms, median of {s['runs']}" + (" (QUICK MODE)" if s["quick"] else ""),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", default=os.path.join(ROOT, "bench", "out", "results.json"))
    ap.add_argument("--md", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    ap.add_argument("--png", default=os.path.join(ROOT, "bench", "results.png"))
    a = ap.parse_args()
    with open(a.results) as f:
        res = json.load(f)
    chart(res, a.png)
    with open(a.md, "w") as f:
        f.write(markdown(res, os.path.relpath(a.png, os.path.dirname(os.path.abspath(a.md)))))
    print(f"wrote {a.md} and {a.png}")


if __name__ == "__main__":
    main()
