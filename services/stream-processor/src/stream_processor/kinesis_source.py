"""Kinesis Data Streams as the processor's source (PROCESSOR_SOURCE=kinesis).

No Spark 4 Kinesis connector is published, so this is a Spark Python Data Source
(`DataSourceStreamReader`), format "kinesis":

* **Offsets** are per-shard positions in the query's checkpoint: `{"shards": {shard id:
  {"pos": "trim" | "ts:<epoch ms>" | "after:<sequence number>", "n": records read from the
  shard so far, "done": the shard is closed and read to its end}}}`.
* **Planning** (`latestOffset`, on the driver) lists the shards and reads each open one from
  its position, up to the batch's share of `maxRecordsPerTrigger`, to learn the last sequence
  number there is: that is the batch's end. Kinesis has no "end offset" call.
* **One partition per shard** (`partitions`, `read`, on the executors): each yields exactly the
  records between the batch's start and end positions of its shard. A small batch carries the
  records planning read (no second read of the shard); a large one, or a batch planned before
  a restart, reads them again and fails if the shard no longer has them (retention passed),
  like Kafka's failOnDataLoss. Both give the same rows: records in a shard never change.
* **Resharding**: a shard that was split or merged is read to its end first; its children are
  added to the offsets (from their first record) only in a later batch, once every parent is
  done, so one user's records keep their order across a reshard.
* **Exactly once**, as with Kafka: Spark writes a batch's end offsets to the checkpoint before
  running it, and records in a shard never change, so a batch that runs again after a crash
  reads the same records and writes the same objects (named after the batch id).

`kinesis_stream` gives the DataFrame in the Kafka source's columns (key, value, topic,
partition, offset, timestamp), so the job's transforms read either bus: topic is the stream,
partition the shard's number, offset the record's ordinal in its shard since the query began.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows
from pyspark.sql.types import StructType

from clickstream_common.settings import KinesisSettings

FORMAT = "kinesis"
SCHEMA = (
    "stream string, shard_id string, sequence_number string, ordinal bigint, "
    "partition_key string, data binary, arrival_time timestamp"
)
TRIM = "trim"
AFTER = "after:"
AT_TIMESTAMP = "ts:"
# GetRecords returns at most 10,000 records per call.
MAX_PER_CALL = 10_000
LIST_SHARDS_SECONDS = 10.0
RETRYABLE = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "InternalFailure",
        "ServiceUnavailable",
        "KMSThrottlingException",
    }
)


class DataLossError(RuntimeError):
    """A batch's records are no longer in the shard (past the stream's retention)."""


@dataclass(frozen=True)
class Options:
    stream: str
    region: str
    endpoint_url: str | None
    starting_position: str  # "earliest" | "latest"
    max_records_per_trigger: int  # 0: no limit
    max_bytes_per_trigger: int = 0  # bytes of record data per trigger, all shards; 0: no limit
    # Static keys (local endpoints); none: the AWS default chain (IRSA on EKS).
    access_key_id: str | None = None
    secret_access_key: str | None = None

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> Options:
        # Spark hands the options over with lower-cased keys.
        lower = {k.lower(): v for k, v in options.items()}
        if not lower.get("streamname"):
            raise ValueError("the kinesis source needs the option streamName")
        position = lower.get("startingposition", "earliest").lower()
        if position not in ("earliest", "latest"):
            raise ValueError(f"startingPosition must be earliest or latest, not {position!r}")
        return cls(
            stream=lower["streamname"],
            region=lower.get("region") or "us-east-1",
            endpoint_url=lower.get("endpointurl") or None,
            starting_position=position,
            max_records_per_trigger=int(lower.get("maxrecordspertrigger") or 0),
            max_bytes_per_trigger=int(lower.get("maxbytespertrigger") or 0),
            access_key_id=lower.get("awsaccesskeyid") or None,
            secret_access_key=lower.get("awssecretaccesskey") or None,
        )


def client(options: Options) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "kinesis",
        region_name=options.region,
        endpoint_url=options.endpoint_url,
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        config=Config(retries={"mode": "standard", "max_attempts": 5}),
    )


def list_shards(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    answer = kinesis.list_shards(StreamName=stream)
    shards += answer["Shards"]
    while answer.get("NextToken"):
        answer = kinesis.list_shards(NextToken=answer["NextToken"])
        shards += answer["Shards"]
    return shards


def parents_of(shard: dict[str, Any]) -> list[str]:
    return [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p]


def shard_number(shard_id: str) -> int:
    """shardId-000000000007 -> 7 (the Kafka partition's counterpart)."""
    return int(shard_id.rsplit("-", 1)[-1])


def iterator_args(position: str) -> dict[str, Any]:
    """GetShardIterator arguments that start right at `position`."""
    if position == TRIM:
        return {"ShardIteratorType": "TRIM_HORIZON"}
    if position.startswith(AFTER):
        return {
            "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
            "StartingSequenceNumber": position.removeprefix(AFTER),
        }
    if position.startswith(AT_TIMESTAMP):
        millis = int(position.removeprefix(AT_TIMESTAMP))
        return {
            "ShardIteratorType": "AT_TIMESTAMP",
            "Timestamp": datetime.fromtimestamp(millis / 1000, UTC),
        }
    raise ValueError(f"not a shard position: {position!r}")


def _call(fn: Any, **kwargs: Any) -> Any:
    """A Kinesis call, retried with backoff while the shard or the service is throttled."""
    from botocore.exceptions import ClientError

    delay = 0.2
    for attempt in range(10):
        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in RETRYABLE or attempt == 9:
                raise
        time.sleep(random.uniform(delay / 2, delay))  # noqa: S311 - backoff jitter
        delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


@dataclass
class ShardRead:
    records: list[dict[str, Any]]
    closed: bool  # the shard is closed and every record up to its end was read
    next_iterator: str | None = None  # continues right after the last record read


def read_shard(
    kinesis: Any,
    stream: str,
    shard_id: str,
    position: str,
    limit: int | None,
    iterator: str | None = None,
    max_bytes: int | None = None,
) -> ShardRead:
    """Records of a shard after `position`, until caught up with its end (or `limit` records,
    or `max_bytes` of record data: at least one record, so a batch always moves on).

    `iterator`, when given, must point at `position` (the `next_iterator` of the read that
    ended there): it saves a GetShardIterator call. An expired one is replaced.
    """
    from botocore.exceptions import ClientError

    if iterator is not None:
        try:
            return _read_from(kinesis, iterator, limit, max_bytes)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                raise
    fresh = _call(
        kinesis.get_shard_iterator, StreamName=stream, ShardId=shard_id, **iterator_args(position)
    )["ShardIterator"]
    return _read_from(kinesis, fresh, limit, max_bytes)


def _read_from(
    kinesis: Any, iterator: str | None, limit: int | None, max_bytes: int | None = None
) -> ShardRead:
    records: list[dict[str, Any]] = []
    size = 0
    while iterator is not None and (limit is None or len(records) < limit):
        want = MAX_PER_CALL if limit is None else min(MAX_PER_CALL, limit - len(records))
        answer = _call(kinesis.get_records, ShardIterator=iterator, Limit=want)
        got = answer["Records"]
        iterator = answer.get("NextShardIterator")
        if max_bytes is not None:
            kept = within_bytes(got, max_bytes - size, first=not records)
            size += sum(len(r["Data"]) for r in got[:kept])
            if kept < len(got):
                # Cut inside a call: the iterator continues after records not kept, so the
                # next read starts from the position instead (a GetShardIterator).
                return ShardRead(records + got[:kept], closed=False, next_iterator=None)
            if size >= max_bytes:
                records += got
                return ShardRead(records, closed=False, next_iterator=iterator)
        records += got
        # Empty and caught up: this is the end of an open shard for now.
        if not got and not answer.get("MillisBehindLatest"):
            break
    return ShardRead(records, closed=iterator is None, next_iterator=iterator)


def within_bytes(records: list[dict[str, Any]], budget: int, first: bool) -> int:
    """How many of `records`, from the start, fit `budget` bytes of data (the first record of
    a read always does, when `first`: a record larger than the budget still moves on)."""
    total = 0
    for i, record in enumerate(records):
        total += len(record["Data"])
        if total > budget and not (first and i == 0):
            return i
    return len(records)


# Planned records a batch's partitions carry at most (bytes of data, all shards): beyond it the
# executors read the shards again instead of the planner shipping the records to them.
CARRY_BYTES = 8 * 1024 * 1024


class KinesisStreamReader(DataSourceStreamReader):
    def __init__(self, options: Options) -> None:
        self.options = options
        # What the last planning read, per shard: (start position, end position, records).
        self._planned: dict[str, tuple[str, str, list[dict[str, Any]]]] = {}
        # Per shard, the iterator that continues planning where it stopped: (position, it).
        # Saves a GetShardIterator per shard and batch (shard iterators live 5 minutes).
        self._iterators: dict[str, tuple[str, str]] = {}
        self._shards: tuple[float, list[dict[str, Any]]] | None = None

    def _list_shards(self, kinesis: Any) -> list[dict[str, Any]]:
        """The stream's shards, listed again at most every LIST_SHARDS_SECONDS (a reshard is
        seen that much later; closed parents are found by reading them to their end)."""
        now = time.monotonic()
        if self._shards is None or now - self._shards[0] >= LIST_SHARDS_SECONDS:
            self._shards = (now, list_shards(kinesis, self.options.stream))
        return self._shards[1]

    def _client(self) -> Any:
        return client(self.options)

    def initialOffset(self) -> dict[str, Any]:
        if self.options.starting_position == "latest":
            start = f"{AT_TIMESTAMP}{int(time.time() * 1000)}"
        else:
            start = TRIM
        shards = list_shards(self._client(), self.options.stream)
        listed = {s["ShardId"] for s in shards}
        # Roots: shards whose parents are gone (past retention) or that never had any.
        return {
            "shards": {
                s["ShardId"]: {"pos": start, "n": 0, "done": False}
                for s in shards
                if not any(p in listed for p in parents_of(s))
            }
        }

    def getDefaultReadLimit(self) -> ReadLimit:
        if self.options.max_records_per_trigger > 0:
            return ReadMaxRows(self.options.max_records_per_trigger)
        return ReadAllAvailable()

    def latestOffset(self, start: dict[str, Any], limit: ReadLimit) -> dict[str, Any]:
        kinesis = self._client()
        state: dict[str, dict[str, Any]] = {k: dict(v) for k, v in start["shards"].items()}
        shards = self._list_shards(kinesis)
        listed = {s["ShardId"] for s in shards}
        # Children join once every parent still in the stream has been read to its end.
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id in state:
                continue
            parents = [p for p in parents_of(shard) if p in listed or p in state]
            if all(p in state and state[p]["done"] for p in parents):
                state[shard_id] = {"pos": TRIM, "n": 0, "done": False}
        active = [s for s, v in state.items() if not v["done"] and s in listed]
        budget: int | None = None
        if isinstance(limit, ReadMaxRows) and active:
            budget = max(1, limit.max_rows // len(active))
        # The bytes bound (PROCESSOR_MAX_BATCH_BYTES), shared out like the records.
        byte_budget: int | None = None
        if self.options.max_bytes_per_trigger > 0 and active:
            byte_budget = max(1, self.options.max_bytes_per_trigger // len(active))
        self._planned = {}
        for shard_id in active:
            entry = state[shard_id]
            cached = self._iterators.pop(shard_id, None)
            iterator = cached[1] if cached is not None and cached[0] == entry["pos"] else None
            read = read_shard(
                kinesis, self.options.stream, shard_id, entry["pos"], budget, iterator, byte_budget
            )
            if read.records:
                end = AFTER + read.records[-1]["SequenceNumber"]
                self._planned[shard_id] = (entry["pos"], end, read.records)
                entry["pos"] = end
                entry["n"] += len(read.records)
            if read.next_iterator is not None:
                self._iterators[shard_id] = (entry["pos"], read.next_iterator)
            # Done only when nothing is left to read: a limit may stop before the end (a
            # bytes cut never reports a closed shard).
            entry["done"] = read.closed and (budget is None or len(read.records) < budget)
        return {"shards": state}

    def partitions(self, start: dict[str, Any], end: dict[str, Any]) -> list[InputPartition]:
        parts: list[ShardRange] = []
        for shard_id, last in sorted(end["shards"].items()):
            first = start["shards"].get(shard_id, {"pos": TRIM, "n": 0})
            count = last["n"] - first["n"]
            if count > 0:
                parts.append(ShardRange(shard_id, first["pos"], first["n"], last["pos"], count))
        # The records planning read for exactly these ranges travel with the partitions.
        planned = [self._planned.get(p.shard_id) for p in parts]
        matching = [
            plan is not None and plan[0] == p.start and plan[1] == p.end and len(plan[2]) == p.count
            for p, plan in zip(parts, planned, strict=True)
        ]
        size = sum(len(r["Data"]) for plan in planned if plan for r in plan[2])
        if parts and all(matching) and size <= CARRY_BYTES:
            for part, plan in zip(parts, planned, strict=True):
                assert plan is not None
                part.records = [row(self.options.stream, part, i, r) for i, r in enumerate(plan[2])]
        return list(parts)

    def read(self, partition: InputPartition) -> Iterator[tuple[Any, ...]]:
        assert isinstance(partition, ShardRange)
        if partition.records is not None:
            return iter(partition.records)
        return read_range(self.options, partition)

    def commit(self, end: dict[str, Any]) -> None:
        """Nothing to acknowledge: Kinesis keeps records for the retention period."""


class ShardRange(InputPartition):
    """The records of one shard after `start` up to and including `end` (`count` of them)."""

    def __init__(self, shard_id: str, start: str, ordinal: int, end: str, count: int) -> None:
        super().__init__(shard_id)
        self.shard_id = shard_id
        self.start = start
        self.ordinal = ordinal
        self.end = end
        self.count = count
        # The rows, when planning read them for this very range (small batches).
        self.records: list[tuple[Any, ...]] | None = None


def read_range(options: Options, part: ShardRange) -> Iterator[tuple[Any, ...]]:
    kinesis = client(options)
    read = read_shard(kinesis, options.stream, part.shard_id, part.start, part.count)
    records = read.records[: part.count]
    last = records[-1]["SequenceNumber"] if records else None
    if len(records) != part.count or AFTER + str(last) != part.end:
        raise DataLossError(
            f"{options.stream}/{part.shard_id}: expected {part.count} records after "
            f"{part.start} ending at {part.end}, the shard has {len(records)} ending at {last} "
            "(records past the stream's retention are gone)"
        )
    for i, record in enumerate(records):
        yield row(options.stream, part, i, record)


def row(stream: str, part: ShardRange, index: int, record: dict[str, Any]) -> tuple[Any, ...]:
    """One record as a row of SCHEMA (the arrival time zone-aware, so no local zone applies)."""
    arrival = record["ApproximateArrivalTimestamp"]
    return (
        stream,
        part.shard_id,
        record["SequenceNumber"],
        part.ordinal + index,
        record["PartitionKey"],
        bytes(record["Data"]),
        arrival.astimezone(UTC) if arrival.tzinfo else arrival.replace(tzinfo=UTC),
    )


class KinesisDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return FORMAT

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema: StructType) -> KinesisStreamReader:
        return KinesisStreamReader(Options.parse(self.options))


def as_kafka_records(frame: DataFrame) -> DataFrame:
    """Kinesis rows in the Kafka source's columns (what the job's transforms read)."""
    shard = F.element_at(F.split(F.col("shard_id"), "-"), -1).cast("int")
    return frame.select(
        F.col("partition_key").cast("binary").alias("key"),
        F.col("data").alias("value"),
        F.col("stream").alias("topic"),
        shard.alias("partition"),
        F.col("ordinal").alias("offset"),
        F.col("arrival_time").alias("timestamp"),
        F.lit(1).alias("timestampType"),  # LogAppendTime: set by the stream on arrival
    )


def kinesis_stream(
    spark: SparkSession,
    kinesis: KinesisSettings,
    starting_position: str,
    max_records_per_trigger: int,
    credentials: tuple[str, str] | None = None,
    max_bytes_per_trigger: int = 0,
) -> DataFrame:
    """The events stream as a streaming DataFrame in the Kafka source's columns.

    `credentials` (key id, secret) travel as source options, which Spark redacts in plans
    and its UI (the option name holds "secret"); without them the AWS default chain applies
    where the source runs (the driver's and executors' IRSA role on EKS)."""
    spark.dataSource.register(KinesisDataSource)
    reader = (
        spark.readStream.format(FORMAT)
        .option("streamName", kinesis.kinesis_stream_name)
        .option("region", kinesis.kinesis_region)
        .option("startingPosition", starting_position)
        .option("maxRecordsPerTrigger", str(max_records_per_trigger))
        .option("maxBytesPerTrigger", str(max_bytes_per_trigger))
    )
    if kinesis.kinesis_endpoint_url:
        reader = reader.option("endpointUrl", kinesis.kinesis_endpoint_url)
    if credentials is not None:
        reader = reader.option("awsAccessKeyId", credentials[0])
        reader = reader.option("awsSecretAccessKey", credentials[1])
    return as_kafka_records(reader.load())
