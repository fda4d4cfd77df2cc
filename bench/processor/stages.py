"""Where the stream-processor's time goes: each stage of the job on one static batch.

    uv run python bench/processor/stages.py [--events 200000] [--conf key=value ...]

(`--conf spark.master=local[1]` for one core.)

Loads --events shopper events into a Kafka topic of its own (as bench_processor.py does),
then runs each stage of the job as a batch query over the whole topic, with the job's own
Spark settings (local[2]) unless --conf overrides one, and prints the best of three runs as
wall-clock microseconds per event on the 2 cores. The stages are cumulative: each includes
the Kafka read, so the cost of a stage is its figure minus the read's.

This is the model behind the full-job figures in docs/benchmarks.md. Before #17's one read,
the streaming job's cost per event was close to the sum of the lake, windows and sessions
rows, because each of the three queries read and cleaned every record itself. The last three
stages are the stateful queries since: they read the lake's committed `events` batch back
(`lake_events_source`, columnar) instead of the topic, as streaming queries over one lake
batch (their own cost only; the lake stage is paid once).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
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

        from clickstream_common.lake import commit_marker_key
        from clickstream_common.tables import EVENTS
        from stream_processor import executor_writes, transforms
        from stream_processor.config import Settings
        from stream_processor.job import BatchWriters
        from stream_processor.lake_events_source import lake_events_stream
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
        target = executor_writes.S3Target.of(settings)
        s3 = settings.s3_client()
        checkpoints = config.state_dir / "stage-checkpoints"

        def the_topic() -> DataFrame:
            # The stateful queries' input before the one read: each read the topic itself.
            return transforms.aggregate_input(
                spark.readStream.format("kafka")
                .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
                .option("subscribe", settings.kafka_events_topic)
                .option("startingOffsets", "earliest")
                .load()
            )

        def the_lake() -> DataFrame:
            # Since the one read: lake batch 0's events (the lake stage's first run), read
            # back by the job's source. The lake stage ran three times, as batches 0-2 of the
            # same events: only batch 0's marker stays, so each event is read once.
            for batch in (1, 2):
                s3.delete_object(
                    Bucket=settings.s3_bucket, Key=commit_marker_key(EVENTS.name, batch)
                )
            return lake_events_stream(spark, target, "earliest", 0, 2)

        def streaming(
            source: Callable[[], DataFrame], query: Callable[[DataFrame], DataFrame], mode: str
        ) -> Callable[[], None]:
            """A stateful query as the job runs it (dedup within the watermark, then `query`)
            over every event in one micro-batch, with a fresh checkpoint each time: the
            streaming overheads (start, state store) are counted, alike for both sources."""

            def stage() -> None:
                events = transforms.without_bots(
                    transforms.deduplicate(source(), settings.processor_watermark_delay),
                    settings.processor_exclude_bots,
                )
                stream = (
                    query(events)
                    .writeStream.outputMode(mode)
                    .option("checkpointLocation", str(checkpoints / str(uuid.uuid4())))
                    .foreachBatch(lambda frame, _: run(frame))
                    .trigger(availableNow=True)
                    .start()
                )
                stream.awaitTermination()
                rows = sum(p["numInputRows"] for p in stream.recentProgress)
                assert rows == args.events, rows

            return stage

        def sessions(events: DataFrame) -> DataFrame:
            return transforms.sessions(events, settings.processor_session_gap)

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
            ("windows/sessions input from the topic: read + clean", lambda: run(aggregate_input())),
            (
                "windows: + window aggregation",
                lambda: run(transforms.window_aggregates(aggregate_input())),
            ),
            (
                "sessions: + session windows",
                lambda: run(transforms.sessions(aggregate_input(), settings.processor_session_gap)),
            ),
            *(
                (f"{query} on {name} (streaming, {mode} mode, dedup included)", stage)
                for query, make, mode in (
                    ("stateful input", lambda events: events, "append"),
                    ("windows", transforms.window_aggregates, "update"),
                    ("sessions", sessions, "append"),
                )
                for name, stage in (
                    ("the topic (before the one read)", streaming(the_topic, make, mode)),
                    ("the lake's events (the job's path)", streaming(the_lake, make, mode)),
                )
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
