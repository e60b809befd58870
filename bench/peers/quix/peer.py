#!/usr/bin/env python3
"""Quix Streams peer for benchmarks: consume -> transform -> produce, exactly once.

    python peer.py --bootstrap 127.0.0.1:9092 --input in --output out \
        --group g1 --mode passthrough|map [--commit-interval-ms 100]

A measurement peer only: the same job `exactly` does, written the way a Quix
Streams user would write it, so both can be run over the same input. Run it
with the virtualenv that setup.sh builds.

  passthrough  every input record goes out unchanged (key and value bytes)
  map          the value is parsed as JSON and reshaped to
               {"id": .id, "total": .price * .qty, "customer": .customer.id};
               anything missing (or not a number, for the product) becomes
               null. The key is kept. A value that is not valid JSON stops
               the application with an error.

Both topics must already exist: topic auto-creation is off, so the app only
reads the existing topics' metadata and never creates or alters a topic.

Prints `READY` on stdout once the consumer has its first partitions. Quix's
own logs go to stderr. SIGTERM (or SIGINT) stops it cleanly, exit code 0.
"""

import argparse
import json
import shutil
import signal
import sys
import tempfile
import warnings


# A SIGTERM (or SIGINT) that comes before app.run() is only noted here -
# raising from the handler could land inside a librdkafka callback and be
# lost - and Peer below stops the app as soon as its loop starts. Installed
# before quixstreams is imported, which takes a second or so.
_stop_requested = False


def _note_stop(_signum, _frame):
    global _stop_requested
    _stop_requested = True


signal.signal(signal.SIGTERM, _note_stop)
signal.signal(signal.SIGINT, _note_stop)

# quixstreams 3.28.1 pulls in authlib, whose import warns that its httpx
# module is deprecated - nothing to do with this app. authlib puts its own
# "always" filter first when loaded, so load it, then put ours before it.
try:
    import authlib.deprecate  # noqa: F401
except ImportError:
    pass
warnings.filterwarnings("ignore", message="The httpx module is deprecated")

from quixstreams import Application  # noqa: E402
from quixstreams.exceptions.assignment import PartitionAssignmentError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", required=True, help="HOST:PORT of a broker")
    p.add_argument("--input", required=True, help="input topic (must exist)")
    p.add_argument("--output", required=True, help="output topic (must exist)")
    p.add_argument("--group", required=True, help="consumer group id")
    p.add_argument("--mode", choices=("passthrough", "map"), default="passthrough")
    p.add_argument(
        "--commit-interval-ms",
        type=int,
        default=100,
        help="how often Quix commits its checkpoint (= one transaction), ms",
    )
    p.add_argument(
        "--transactional-id",
        default=None,
        help="producer transactional.id; default: Quix's own (a random UUID per start)",
    )
    p.add_argument(
        "--loglevel",
        default="WARNING",
        help="level of Quix's logger on stderr (default WARNING)",
    )
    args = p.parse_args(argv)
    if args.commit_interval_ms <= 0:
        p.error("--commit-interval-ms must be positive")
    return args


def number(v):
    # bool is an int in Python, but not a number in JSON.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def reshape(value: bytes) -> bytes:
    doc = json.loads(value)
    if not isinstance(doc, dict):
        doc = {}
    price, qty = doc.get("price"), doc.get("qty")
    customer = doc.get("customer")
    out = {
        "id": doc.get("id"),
        "ts": doc.get("ts"),
        "total": price * qty if number(price) and number(qty) else None,
        "customer": customer.get("id") if isinstance(customer, dict) else None,
    }
    return json.dumps(out, separators=(",", ":")).encode()


class Peer(Application):
    """An Application that says READY when it first gets partitions, and
    that never loses a SIGTERM (or SIGINT) however early it comes.

    Quix's run() installs its handlers and only then marks itself running,
    which clears a stop requested in between; so the stop is noted and
    applied again right after that point. Private hooks of quixstreams are
    used for this, hence the exact pin in requirements.txt."""

    _ready = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        tracker = self._run_tracker
        mark_running = tracker.set_as_running

        def set_as_running():
            mark_running()
            if _stop_requested:
                tracker.stop()

        tracker.set_as_running = set_as_running

    def _setup_signal_handlers(self):
        def on_signal(signum, frame):
            _note_stop(signum, frame)
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        if _stop_requested:
            self.stop()

    def _on_assign(self, consumer, topic_partitions):
        super()._on_assign(consumer, topic_partitions)
        if topic_partitions and not self._ready:
            self._ready = True
            print("READY", flush=True)


def main(argv=None):
    args = parse_args(argv)

    # No stateful operators here, but Quix still wants a state directory:
    # keep it out of the working directory and remove it at the end.
    state_dir = tempfile.mkdtemp(prefix="quix-peer-state-")
    try:
        producer_extra = {}
        if args.transactional_id:
            producer_extra["transactional.id"] = args.transactional_id
        app = Peer(
            broker_address=args.bootstrap,
            consumer_group=args.group,
            processing_guarantee="exactly-once",
            commit_interval=args.commit_interval_ms / 1000.0,
            auto_offset_reset="earliest",
            auto_create_topics=False,
            use_changelog_topics=False,
            state_dir=state_dir,
            producer_extra_config=producer_extra,
            loglevel=args.loglevel,
        )
        source = app.topic(args.input, key_deserializer="bytes", value_deserializer="bytes")
        sink = app.topic(args.output, key_serializer="bytes", value_serializer="bytes")

        sdf = app.dataframe(source)
        if args.mode == "map":
            sdf = sdf.apply(reshape)
        sdf.to_topic(sink)

        if not _stop_requested:
            try:
                app.run()
            except PartitionAssignmentError as e:
                # A SIGTERM during the group join makes the consumer close
                # while Quix's assignment callback still asks for committed
                # offsets ("Broker handle destroyed for termination"). Nothing
                # was committed in that state, so it is a clean stop.
                if not _stop_requested:
                    raise
                print(f"peer: stopped during partition assignment ({e.__cause__ or e})",
                      file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
