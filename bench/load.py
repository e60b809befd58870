"""The input of the side-by-side benchmark's throughput runs: keyed JSON
records, written once per value size.

Every value is a JSON object that starts with the moment it was produced,
`{"ts":<epoch ms>,"id":<n>,...}`. The latency runs write values of the same
shape with the latency probe (bench/latency/main.rs), stamped at send time:
passthrough keeps the value and every contender's map keeps `ts`, so the probe
measures end-to-end latency from the value alone, whichever tool wrote the
output (the copier, for one, does not carry the input's record timestamp over).
"""

import json
import time

from confluent_kafka import Producer


def payload(i, size, ts_ms):
    base = {"ts": ts_ms, "id": i, "price": 2.5 + i % 7, "qty": 1 + i % 4,
            "customer": {"id": f"c{i % 1000}"}, "pad": ""}
    text = json.dumps(base, separators=(",", ":"))
    base["pad"] = "x" * max(0, size - len(text))
    return json.dumps(base, separators=(",", ":")).encode()


def _producer(bootstrap, linger_ms):
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms, "batch.size": 1_000_000,
                     "enable.idempotence": True, "queue.buffering.max.messages": 1_000_000})


def _send(p, topic, i, value):
    while True:
        try:
            p.produce(topic, key=f"k{i % 10007}".encode(), value=value)
            return
        except BufferError:
            p.poll(0.05)


def write_input(bootstrap, topic, n, size):
    """Writes n keyed JSON records as fast as the broker takes them."""
    p = _producer(bootstrap, 20)
    now = int(time.time() * 1000)
    for i in range(n):
        _send(p, topic, i, payload(i, size, now))
        if i % 10000 == 0:
            p.poll(0)
            now = int(time.time() * 1000)
    if p.flush(120) != 0:
        raise RuntimeError("input writer: records still unsent after 120 s")
