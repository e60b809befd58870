#!/usr/bin/env python3
"""Reads one scripted run back from Prometheus and draws it (used by
scripts/monitoring-chart.sh; see there for the run).

Four panels over the run's time: records per second read and committed
against the offered load; input partitions held by each replica; consumer
lag in records and in seconds; commit latency p50 and p99. Vertical lines
mark the events (a kill, a restart, a replica joining). It also prints the
figures the docs quote: the healthy baseline before the first event, and
for each event the lag's peak and how long until the lag in seconds was
back under one second.
"""

import argparse
import json
import math
import statistics
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

QUERIES = {
    "read": "sum(rate(exactly_records_consumed_total[5s]))",
    "committed": "sum(rate(exactly_records_produced_total[5s]))",
    "partitions": "sum by (replica) (exactly_assigned_partitions)",
    "lag_records": "sum(exactly_consumer_lag)",
    "lag_seconds": "max(exactly_consumer_lag_seconds)",
    "commit_p50": "histogram_quantile(0.5, sum by (le) (rate(exactly_commit_duration_seconds_bucket[10s])))",
    "commit_p99": "histogram_quantile(0.99, sum by (le) (rate(exactly_commit_duration_seconds_bucket[10s])))",
}
HEALTHY_LAG_SECONDS = 1.0


def query_range(base, expr, start, end):
    """{label value or '': [(t, v), ...]} for one expression, step 1 s."""
    url = base + "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": "1"})
    with urllib.request.urlopen(url, timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    series = {}
    for s in body["data"]["result"]:
        name = s["metric"].get("replica", "")
        points = [(float(t), float(v)) for t, v in s["values"]]
        series[name] = [(t, v) for t, v in points if v == v]  # drop NaN
    return series


def between(points, a, b):
    return [(t, v) for t, v in points if a <= t < b]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--start", type=float, required=True, help="load start, Unix seconds")
    ap.add_argument("--end", type=float, required=True, help="load end, Unix seconds")
    ap.add_argument("--events", required=True, help="file of lines '<unix seconds> <label>'")
    ap.add_argument("--probe", required=True, help="the latency probe's JSON result")
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    t0 = args.start
    lo, hi = t0 - 10, args.end + 5
    data = {k: query_range(args.prometheus, q, lo, hi) for k, q in QUERIES.items()}
    events = []
    with open(args.events) as f:
        for line in f:
            t, label = line.strip().split(" ", 1)
            events.append((float(t), label))
    with open(args.probe) as f:
        probe = json.load(f)

    def one(key):
        return data[key].get("", [])

    # Figures.
    first = events[0][0]
    healthy = (t0 + 10, first)
    committed = [v for _, v in between(one("committed"), *healthy)]
    p50 = [v for _, v in between(one("commit_p50"), *healthy)]
    p99 = [v for _, v in between(one("commit_p99"), *healthy)]
    lag_s = [v for _, v in between(one("lag_seconds"), *healthy)]
    print(f"healthy ({healthy[1] - healthy[0]:.0f} s before '{events[0][1]}'): "
          f"committed {statistics.median(committed):.0f} records/s (offered {args.rate:.0f}), "
          f"commit p50 {1000 * statistics.median(p50):.1f} ms, p99 {1000 * statistics.median(p99):.1f} ms, "
          f"lag in seconds max {max(lag_s):.2f}")
    bounds = [e[0] for e in events[1:]] + [hi]
    for (t, label), until in zip(events, bounds):
        window_lag = between(one("lag_records"), t, until)
        window_s = between(one("lag_seconds"), t, until)
        peak_t, peak_s = max(window_s, key=lambda p: p[1]) if window_s else (t, 0.0)
        back = next((pt for pt, v in window_s if pt > peak_t and v < HEALTHY_LAG_SECONDS), None)
        peak_records = max((v for _, v in window_lag), default=0.0)
        owners = {r: between(pts, t, until) for r, pts in data["partitions"].items()}
        settled = None
        for pt, _ in between(one("lag_seconds"), t, until):
            held = sum(v for pts in owners.values() for tt, v in pts if tt == pt)
            if held == 6 and pt > t + 1:
                settled = pt
                break
        print(f"'{label}' at {t - t0:.0f} s: lag peak {peak_records:.0f} records, "
              f"{peak_s:.1f} s at +{peak_t - t:.0f} s; "
              f"lag back under {HEALTHY_LAG_SECONDS:.0f} s at "
              + (f"+{back - t:.0f} s" if back else "never in this window")
              + "; all 6 partitions held again at "
              + (f"+{settled - t:.0f} s" if settled else "never in this window"))
    print(f"end-to-end latency over the whole run (probe): p50 {probe.get('p50_ms')} ms, "
          f"p99 {probe.get('p99_ms')} ms, max {probe.get('max_ms')} ms, "
          f"{probe.get('received')} of {probe.get('sent')} records")

    # Chart.
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)

    def gapped(points):
        # A replica that is down has no samples: break its line there
        # instead of drawing its last value across the gap.
        out = []
        for p in points:
            if out and p[0] - out[-1][0] > 2:
                out.append((out[-1][0] + 1, math.nan))
            out.append(p)
        return out

    def xs(points):
        return [t - t0 for t, _ in gapped(points)]

    def ys(points, scale=1.0):
        return [v * scale for _, v in gapped(points)]

    ax = axes[0]
    ax.axhline(args.rate, color="0.6", linestyle=":", label="offered")
    ax.plot(xs(one("read")), ys(one("read")), label="read", color="tab:blue", linewidth=1)
    ax.plot(xs(one("committed")), ys(one("committed")), label="committed", color="tab:green")
    ax.set_ylabel("records/s")
    ax.set_title("Throughput (rate over 5 s)")
    ax.legend(loc="upper right", fontsize=8)

    ax = axes[1]
    for replica, pts in sorted(data["partitions"].items()):
        ax.step(xs(pts), ys(pts), where="post", label=f"replica {replica}")
    ax.set_ylabel("partitions")
    ax.set_title("Input partitions held (exactly_assigned_partitions)")
    ax.legend(loc="upper right", fontsize=8)

    ax = axes[2]
    ax.plot(xs(one("lag_records")), ys(one("lag_records")), color="tab:orange", label="records")
    ax.set_ylabel("lag, records", color="tab:orange")
    ax.set_title("Consumer lag (sum in records; oldest uncommitted input in seconds)")
    twin = ax.twinx()
    twin.plot(xs(one("lag_seconds")), ys(one("lag_seconds")), color="tab:red", linewidth=1)
    twin.set_ylabel("lag, seconds", color="tab:red")

    ax = axes[3]
    ax.plot(xs(one("commit_p50")), ys(one("commit_p50"), 1000), label="p50", color="tab:purple")
    ax.plot(xs(one("commit_p99")), ys(one("commit_p99"), 1000), label="p99", color="tab:pink")
    ax.set_ylabel("ms")
    ax.set_title("Commit latency (exactly_commit_duration_seconds, over 10 s)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("seconds since the load started")

    for ax in axes:
        for t, label in events:
            ax.axvline(t - t0, color="0.3", linestyle="--", linewidth=0.8)
        ax.grid(alpha=0.3)
    for t, label in events:
        axes[0].annotate(label, (t - t0, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(3, -12), textcoords="offset points", fontsize=8)
    fig.suptitle(f"exactly: two replicas at {args.rate:.0f} records/s, a kill, a restart, a third replica",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"chart: {args.out}")


if __name__ == "__main__":
    main()
