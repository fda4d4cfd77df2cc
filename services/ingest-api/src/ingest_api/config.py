"""Settings from the environment; the Helm chart sets the same names."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clickstream_common.bus import DEFAULT_MAX_EVENT_BYTES, MAX_EVENT_BYTES_CEILING
from clickstream_common.schema import DEFAULT_CLOCK_POLICY, ClockPolicy
from clickstream_common.settings import CommonSettings


class WriteKey(BaseModel):
    """What one write key is allowed to do.

    `INGEST_WRITE_KEYS` maps each key either to a source name (`{"key": "web"}`) or to an
    object with these fields; unset fields take the service-wide defaults below.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Annotated[str, Field(min_length=1, max_length=128)]
    allowed_origins: tuple[str, ...] | None = Field(
        default=None,
        description='Origins allowed to send from a browser ("*" = any); default '
        "INGEST_CORS_ALLOWED_ORIGINS.",
    )
    rate_limit_events_per_second: float | None = Field(
        default=None, ge=0, description="Sustained events/s per replica; 0 = unlimited."
    )
    rate_limit_burst: int | None = Field(
        default=None, ge=0, description="Events allowed at once above the sustained rate."
    )
    use_context_ip: bool = Field(
        default=False,
        description="A trusted server source: its SDK reports the end user's address in "
        "context.ip (Segment, RudderStack), which becomes the event's client address. Only "
        "for keys kept on your servers; a browser could claim any address.",
    )


class Settings(CommonSettings):
    # Address to listen on (a collector listens on every interface).
    ingest_host: str = "0.0.0.0"  # noqa: S104
    # HTTP port of the API and /metrics.
    ingest_port: int = 8080
    ingest_write_keys: dict[str, WriteKey] = Field(
        default_factory=dict,
        description='write key -> source name, or -> {"source", "allowed_origins", '
        '"rate_limit_events_per_second", "rate_limit_burst", "use_context_ip"}, as a JSON '
        "object; no keys: every request is refused",
    )
    # How long a request waits for the bus to acknowledge its events before a 503.
    ingest_publish_timeout_seconds: float = 5.0
    # The bus accepted events go to: "kafka", or "kinesis" (KINESIS_* settings; docs/aws.md).
    ingest_sink: Literal["kafka", "kinesis"] = "kafka"
    # Events in one batch request at most (413 above).
    ingest_max_events_per_request: int = 500
    # Size of a request body at most, after decompression (413 above).
    ingest_max_request_bytes: int = 1024 * 1024
    # At most 512 KiB, so an event (and its dead letter) always fits a Kafka record of 1 MiB
    # (clickstream_common.bus; the stream processor sizes its batches by it).
    ingest_max_event_bytes: int = Field(
        default=DEFAULT_MAX_EVENT_BYTES, ge=1024, le=MAX_EVENT_BYTES_CEILING
    )
    # Size of one event's properties at most (the event is refused above).
    ingest_max_properties_bytes: int = 16 * 1024
    # Retry-After of a 503 answer (bus or server busy); a 429 names its own wait.
    ingest_retry_after_seconds: int = 2

    # Clock-skew correction (sent_at against the receive time): differences below this are
    # network delay, not skew.
    ingest_skew_tolerance_seconds: float = 2.0
    # Clock differences above this are an absurd clock, not corrected.
    ingest_skew_max_seconds: float = 7 * 24 * 3600.0

    # The clock policy (clickstream_common.schema.ClockPolicy), after the skew correction.
    # An event time further ahead of the receive time than this is replaced by the receive
    # time; must stay below the stream processor's watermark delay.
    ingest_clock_max_ahead_seconds: float = Field(
        default=DEFAULT_CLOCK_POLICY.max_ahead.total_seconds(), ge=0
    )
    # An event time further behind the receive time than this is replaced by it.
    ingest_clock_max_behind_seconds: float = Field(
        default=DEFAULT_CLOCK_POLICY.max_behind.total_seconds(), ge=0
    )

    # Defaults for write keys that do not set their own.

    # Origins browsers may send from ("*" = any).
    ingest_cors_allowed_origins: tuple[str, ...] = ("*",)
    # How long browsers cache a preflight answer.
    ingest_cors_max_age_seconds: int = 86400
    # Sustained events/s per write key and replica; 0 = unlimited.
    ingest_rate_limit_events_per_second: float = 0.0
    # Events allowed at once above the sustained rate.
    ingest_rate_limit_burst: int = 0

    # Client addresses are kept to a network prefix: IPv4 prefix length (0 = not recorded).
    ingest_client_ip_ipv4_prefix: int = Field(default=24, ge=0, le=32)
    # IPv6 prefix length kept of client addresses (0 = not recorded).
    ingest_client_ip_ipv6_prefix: int = Field(default=48, ge=0, le=128)
    # CIDRs of the proxies whose X-Forwarded-For (and -Proto/-Host) is believed.
    ingest_trusted_proxies: tuple[str, ...] = ()
    # 0: send as soon as the previous produce request returns; under load events still batch
    # (they queue while a request is in flight). Measured faster than 5 ms for single events
    # and 50-event batches alike (docs/benchmarks.md).
    ingest_kafka_linger_ms: int = 0
    # One log line per request; off by default (it costs ~40% of single-event throughput),
    # refused and failed requests (status >= 400) are logged either way.
    ingest_access_log: bool = False
    # Serve the collecting routes below FastAPI's router (DispatchMiddleware); false routes
    # them through FastAPI. The same core answers either way; the fast path saves ~135 us
    # per request.
    ingest_fast_path: bool = True

    # What one client can make the server hold (ingest_api/server.py).

    # Size of the request line and headers at most.
    ingest_max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    # Time a client has to send the request line and headers.
    ingest_header_timeout_seconds: float = Field(default=10.0, gt=0)
    # Time a client has to send the body after the headers.
    ingest_body_timeout_seconds: float = Field(default=30.0, gt=0)
    # Open connections per process at most.
    ingest_max_connections: int = Field(default=2048, ge=1)
    # Request bodies being read, across all requests, at most.
    ingest_max_buffered_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    # Admission control, per worker process: requests whose body has arrived and that are
    # being validated or wait for Kafka. Past it a request is answered 503 `overloaded` with
    # Retry-After at once instead of queueing behind the others (at saturation a queue only
    # adds latency): 64 is about 80 ms of 50-event batches for one worker on the benchmark
    # machine, and twice the connections of its saturation benchmark. Requests still sending
    # their bodies do not count (the limits above bound them); a request arriving while the
    # bound is reached is shed before its body is read.
    ingest_max_inflight_requests: int = Field(default=64, ge=1)
    # Idle time a keep-alive connection is kept open between requests (uvicorn's own knob).
    ingest_keep_alive_seconds: int = Field(default=5, ge=1)
    # The collector's public base URL, for the settings documents that point SDKs back at it
    # (Segment's settings, RudderStack's source config); unset: the request's own scheme and
    # host (X-Forwarded-Proto/-Host from INGEST_TRUSTED_PROXIES).
    ingest_public_url: str | None = None
    # What a 2xx guarantees (ingest_api/durability.py, docs/ingest-api.md): the replication
    # factor the events and dead-letter topics need, checked at start-up.
    ingest_durable_min_replication_factor: int = Field(default=3, ge=1)
    # The min.insync.replicas those topics need (acks=all then means that many copies).
    ingest_durable_min_insync_replicas: int = Field(default=2, ge=1)
    # Below either minimum the collector logs a warning at start-up; true: it refuses to
    # start instead (also when the topics cannot be described).
    ingest_require_durable_topic: bool = False
    # Worker processes serving the port (SO_REUSEPORT), each with its own producer; 0: one
    # per CPU the container may use (its cgroup CPU limit, rounded up, else the CPUs it is
    # allowed to run on). Per-key rate limits and readiness are shared between them.
    ingest_workers: int = Field(default=0, ge=0)
    # Where the workers' Prometheus metrics files live (prometheus-client's multiprocess
    # mode; emptied at start); unset: a fresh temporary directory.
    ingest_metrics_dir: str | None = None

    @field_validator("ingest_write_keys", mode="before")
    @classmethod
    def _plain_source_names(cls, value: Any) -> Any:
        # The simple {"key": "source"} form stays valid.
        if isinstance(value, dict):
            return {k: {"source": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    def per_worker(self, pod_limit: int) -> int:
        """A pod-wide limit's share for one worker process (INGEST_WORKERS is the resolved
        count in the workers; 0 or 1 when one process serves)."""
        return max(1, pod_limit // max(1, self.ingest_workers))

    @property
    def clock_policy(self) -> ClockPolicy:
        return ClockPolicy(
            max_ahead=timedelta(seconds=self.ingest_clock_max_ahead_seconds),
            max_behind=timedelta(seconds=self.ingest_clock_max_behind_seconds),
        )

    def origins_of(self, key: WriteKey) -> tuple[str, ...]:
        if key.allowed_origins is not None:
            return key.allowed_origins
        return self.ingest_cors_allowed_origins

    def rate_of(self, key: WriteKey) -> tuple[float, int]:
        """(events per second, burst) for a key; a rate of 0 means unlimited."""
        rate = key.rate_limit_events_per_second
        if rate is None:
            rate = self.ingest_rate_limit_events_per_second
        burst = key.rate_limit_burst
        if burst is None:
            burst = self.ingest_rate_limit_burst
        # A burst below one request's worth of a second would refuse everything.
        return rate, max(burst, int(rate))


@lru_cache
def get_settings() -> Settings:
    return Settings()
