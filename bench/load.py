"""Load for the side-by-side benchmark: the input records, a paced generator for
the latency runs, and the read_committed probe that times each output record.

Every value is a JSON object that starts with the moment it was produced,
`{"ts":<epoch ms>,"id":<n>,...}`. Passthrough keeps the value and every
contender's map keeps `ts`, so the probe measures end-to-end latency from the
value alone, whichever tool wrote the output (the copier, for one, does not
carry the input's record timestamp over).
"""

import json
import multiprocessing
import re
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

TS = re.compile(rb'"ts":(\d+)')


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


def _paced(bootstrap, topic, size, rate, seconds, sent):
    """Child process: produces `rate` records/s for `seconds`, each stamped with
    the time it is handed to the client. Stores the count sent in `sent`."""
    p = _producer(bootstrap, 1)
    n = int(rate * seconds)
    # One template, filled per record: json.dumps per record would make the
    # generator, not the contender, the bottleneck on a small machine.
    head, tail = payload(10**6, size, 10**12).split(b"1000000000000", 1)
    start = time.monotonic()
    clock = time.time
    for i in range(n):
        if i % 64 == 0:
            delay = start + i / rate - time.monotonic()
            if delay > 0.0005:
                time.sleep(delay)  # the pacing of an open-loop load generator
            p.poll(0)
        _send(p, topic, i, b"%s%d%s" % (head, int(clock() * 1000), tail))
    p.flush(60)
    sent.value = n


class PacedLoad:
    """An open-loop generator in its own process (so that the probe and the
    generator do not share one interpreter lock)."""

    def __init__(self, bootstrap, topic, size, rate, seconds):
        ctx = multiprocessing.get_context("spawn")
        self.sent = ctx.Value("q", -1)
        self.proc = ctx.Process(target=_paced, args=(bootstrap, topic, size, rate, seconds, self.sent),
                                daemon=True)
        self.proc.start()

    def done(self):
        return not self.proc.is_alive()

    def count(self):
        self.proc.join()
        if self.sent.value < 0:
            raise RuntimeError("paced load generator failed")
        return self.sent.value


class Probe:
    """A read_committed consumer of the output topic that records, for each
    record, its arrival time minus the `ts` in its value (milliseconds)."""

    def __init__(self, bootstrap, topic, partitions):
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{topic}",
                           "isolation.level": "read_committed", "enable.auto.commit": False,
                           "fetch.wait.max.ms": 5, "auto.offset.reset": "earliest"})
        self.c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.latencies = []  # (ts, latency_ms)
        self.count = 0

    def poll(self):
        # consume() returns once it has num_messages or the timeout passed:
        # the timeout bounds how late an arrival can be noted.
        for m in self.c.consume(num_messages=1000, timeout=0.002):
            if m.error():
                raise KafkaException(m.error())
            arrived = time.time() * 1000
            hit = TS.search(m.value() or b"", 0, 64)
            if hit is None:
                raise RuntimeError(f"output record without ts: {m.value()[:80]!r}")
            ts = int(hit.group(1))
            self.latencies.append((ts, arrived - ts))
            self.count += 1

    def close(self):
        self.c.close()


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]
