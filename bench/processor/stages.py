"""Where the stream-processor's time goes: each stage of the job on one static batch.

    uv run python bench/processor/stages.py [--events 200000] [--conf key=value ...]

(`--conf spark.master=local[1]` for one core.)

Loads --events shopper events into a Kafka topic of its own (as bench_processor.py does),
then runs each stage of the job as a batch query over the whole topic, with the job's own
Spark settings (local[2]) unless --conf overrides one, and prints the best of three runs as
wall-clock microseconds per event on the 2 cores. The stages are cumulative: each includes
the Kafka read, so the cost of a stage is its figure minus the read's.

This is the model behind the full-job figures in docs/benchmarks.md: the streaming job's
cost per event is close to the sum of the lake, windows and sessions rows, because each of
the three queries reads and cleans every record itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_processor import Events, load_backlog  # noqa: E402

from clickstream_local.config import StackConfig  # noqa: E402
from clickstream_local.services import service_env  # noqa: E402
from clickstream_local.stack import Stack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--conf", action="append", default=[], help="Spark key=value override")
    args = parser.parse_args()

    config = StackConfig.scratch("test-stacks", f"bench-stages-{os.getpid()}")
    stack = Stack(config, progress=None)
    try:
        stack.components["kafka"].start()
        stack.components["s3"].start()  # the lake query's own write path writes to it
        load_backlog(config.kafka_bootstrap, Events(), args.events)
        os.environ.update(service_env(config, "stream-processor"))
        # Imported after the environment is set: Settings reads it.
        from pyspark.sql import DataFrame

        from stream_processor import executor_writes, transforms
        from stream_processor.config import Settings
        from stream_processor.job import BatchWriters
        from stream_processor.sinks import LakeWriter
        from stream_processor.spark_setup import build_session

        settings = Settings()
        overrides = dict(item.partition("=")[::2] for item in args.conf)
        spark = build_session(settings, overrides=overrides)
        spark.sparkContext.setLogLevel("ERROR")

        def records() -> DataFrame:
            return (
                spark.read.format("kafka")
                .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
                .option("subscribe", settings.kafka_events_topic)
                .load()
            )

        def run(frame: DataFrame) -> None:
            frame.write.format("noop").mode("overwrite").save()

        def aggregate_input() -> DataFrame:
            return transforms.aggregate_input(records())

        def to_python_workers() -> None:
            # The lake batch handed to the executors' Python workers as Arrow, nothing written.
            def drop(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
                return iter(())

            schema = executor_writes.spark_schema(executor_writes.OBJECTS_SCHEMA)
            run(transforms.lake_batch(records()).mapInArrow(drop, schema))

        writers = BatchWriters(
            LakeWriter(settings.s3_client(), settings.s3_bucket),
            executor_writes.S3Target.of(settings),
        )
        lake_batches = iter(range(10**6))

        stages: list[tuple[str, Callable[[], object]]] = [
            ("read (bare)", lambda: run(records().select("value"))),
            ("read + parse (full schema)", lambda: run(transforms.parse_records(records()))),
            (
                "lake: read + clean, collected to Arrow",
                lambda: transforms.lake_batch(records()).toArrow(),
            ),
            ("lake: read + clean, to the executors' Python workers", to_python_workers),
            (
                "lake: + the executors' writes to S3, markers (the job's path)",
                lambda: writers.lake(records(), next(lake_batches)),
            ),
            ("windows/sessions input: read + narrow clean", lambda: run(aggregate_input())),
            (
                "windows: + window aggregation",
                lambda: run(transforms.window_aggregates(aggregate_input())),
            ),
            (
                "sessions: + session windows",
                lambda: run(transforms.sessions(aggregate_input(), settings.processor_session_gap)),
            ),
        ]
        master = spark.sparkContext.master
        print(f"| stage ({args.events:,} events, {master}) | best of 3, s | µs per event |")
        print("| --- | ---: | ---: |")
        for name, stage in stages:
            times = []
            for _ in range(3):
                began = time.perf_counter()
                stage()
                times.append(time.perf_counter() - began)
            best = min(times)
            print(f"| {name} | {best:.2f} | {best / args.events * 1e6:.1f} |", flush=True)
        spark.stop()
    finally:
        stack.stop()
        shutil.rmtree(config.state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
