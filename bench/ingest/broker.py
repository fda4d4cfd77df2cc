"""A Kafka broker of its own for the benchmark (the local platform's component, nothing else)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from clickstream_local.config import TOPIC_PARTITIONS, StackConfig
from clickstream_local.kafka_admin import ensure_topics
from clickstream_local.stack import Stack


@contextmanager
def kafka_broker(progress: bool = True) -> Iterator[str]:
    """Start a broker on a free port with the contract's topics; yield its bootstrap address."""
    config = StackConfig.scratch("bench-stacks", f"ingest-{uuid.uuid4().hex[:6]}")
    state = config.state_dir
    stack = Stack(config, progress=(lambda line: print(line, flush=True)) if progress else None)
    kafka = stack.components["kafka"]
    try:
        note = kafka.start()
        ensure_topics(config.kafka_bootstrap, TOPIC_PARTITIONS)
        if progress:
            print(f"kafka ready at {config.kafka_bootstrap} {note}", flush=True)
        yield config.kafka_bootstrap
    finally:
        kafka.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    import signal
    import threading

    with kafka_broker() as bootstrap:
        print(f"BOOTSTRAP={bootstrap}", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
