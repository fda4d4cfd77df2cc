"""The event schema, defined once.

The pydantic models below are the single definition of an event. The API validates with them,
the stream processor derives its Spark StructType from `columns_of(EnrichedEvent)`, and the
warehouse DDL is built from the `TableSpec`s in `clickstream_common.tables`, whose event
columns come from the same models.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

STANDARD_EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
    "click",
)
"""Event types with meaning in the aggregates; any other snake_case name is a custom event."""

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
"""An ISO 4217 code, upper case."""

# Field bounds. The models below use them; mappings from other formats (Segment, the pixel)
# and the stream processor's checks read them from here, never restate them.
EVENT_ID_MAX_LENGTH = 128
SHORT_TEXT_MAX_LENGTH = 256
URL_MAX_LENGTH = 2048
SEARCH_QUERY_MAX_LENGTH = 1024
USER_AGENT_MAX_LENGTH = 1024
SCREEN_SIZE_MAX = 100_000
QUANTITY_MAX = 1_000_000
PRICE_MAX = 1e12
REVENUE_MAX_ABS = 1e12

PURCHASE_EVENT_TYPE = "purchase"


def purchase_revenue(
    event_type: str | None,
    revenue: float | None,
    price: float | None,
    quantity: int | None,
) -> float:
    """The revenue rule every figure follows (product stats, sessions, the funnel and the
    stitched users): a purchase earns its `revenue`; without one, `price` x `quantity` (one
    unit when no quantity is given); without a price, nothing. Other events earn nothing.

    The stream processor states it as a Spark column (`transforms.purchase_revenue`) and the
    warehouse as SQL (`warehouse_loader.sql.purchase_revenue_sql`); parity tests hold both to
    this function.
    """
    if event_type != PURCHASE_EVENT_TYPE:
        return 0.0
    if revenue is not None:
        return float(revenue)
    if price is None:
        return 0.0
    return float(price) * (quantity if quantity is not None else 1)


USER_KEY_FIELDS: tuple[str, ...] = ("user_id", "anonymous_id")
"""The identity that counts as one user: the first of these that is present. Blank values
are absent (the models turn them into None), so SQL's COALESCE over the same columns agrees."""


def user_key_of(user_id: str | None, anonymous_id: str | None) -> str | None:
    """The user key (see USER_KEY_FIELDS) of an event's identity fields."""
    return user_id if user_id is not None else anonymous_id


ClockAdjustment = Literal["ahead", "behind"]
"""Why the clock policy replaced an event time: it lay too far ahead of, or behind, the
time the pipeline received the event."""


@dataclass(frozen=True)
class ClockPolicy:
    """How far an event time may lie from the time the pipeline received the event.

    The collector applies it after the clock-skew correction; the stream processor applies
    it again before its watermark (records also reach Kafka from other producers). Outside
    the bounds the event is kept: its event time becomes the receive time, the replaced time
    is kept in `original_event_time` and `event_time_adjusted` says which bound it crossed.

    `max_ahead` must stay below the processor's watermark delay: the watermark is the newest
    event time minus that delay, so an event at most `max_ahead` in the future can never push
    the watermark past events that arrive on time.
    """

    max_ahead: timedelta = timedelta(minutes=1)
    max_behind: timedelta = timedelta(days=7)

    def bound(
        self, event_time: datetime, received_at: datetime
    ) -> tuple[datetime, ClockAdjustment | None]:
        """(the event time to use, the bound it crossed or None)."""
        if event_time - received_at > self.max_ahead:
            return received_at, "ahead"
        if received_at - event_time > self.max_behind:
            return received_at, "behind"
        return event_time, None


DEFAULT_CLOCK_POLICY = ClockPolicy()
"""The defaults of INGEST_CLOCK_MAX_AHEAD_SECONDS / PROCESSOR_CLOCK_MAX_AHEAD_SECONDS and the
matching *_MAX_BEHIND_* settings."""


EARLIEST_TIME = datetime(1, 1, 2, tzinfo=UTC)
LATEST_TIME = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)
"""The range of every time the pipeline keeps: the whole range of Python's (and Spark's)
datetimes, less a day at each end, so that showing a stored time in any time zone stays in
range for every reader. `9999-12-31T23:59:59-10:00` is out of it (it is in the year 10000 in
UTC), and so is `0001-01-01T00:00:00+10:00`."""


def _utc(value: datetime) -> datetime:
    # Device clocks often omit the offset; an RFC 3339 time without one is taken as UTC.
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_TIME <= utc <= LATEST_TIME:
        raise PydanticCustomError(
            "time_out_of_range",
            "time out of range: in UTC it must lie between {earliest} and {latest}",
            {"earliest": EARLIEST_TIME.isoformat(), "latest": LATEST_TIME.isoformat()},
        )
    return utc


INDEX_KEY_MAX_BYTES = 2048
"""The longest UTF-8 text of a field that feeds a warehouse index key (INDEX_KEY_FIELDS).
PostgreSQL refuses B-tree index rows over 2704 bytes (error 54000), and a refused row would
hold up every later batch; 2048 leaves room for the other columns of the key (the page path
shares `page_views_minute`'s key with a timestamp). Lengths elsewhere count characters, which
are up to 4 bytes each."""

INDEX_KEY_FIELDS: tuple[str, ...] = (
    "event_id",
    "user_id",
    "anonymous_id",
    "product_id",
    "page_url",
)
"""Event fields that become (part of) a warehouse index key: the events table's key, the
user key, the product and the page path (taken from the URL)."""


def _fits_an_index_key(value: str) -> str:
    # Only a string of over a quarter of the limit in characters can be over it in bytes.
    if len(value) * 4 > INDEX_KEY_MAX_BYTES:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > INDEX_KEY_MAX_BYTES:
            raise PydanticCustomError(
                "too_long_to_index",
                "{size} bytes in UTF-8, over the {limit} a warehouse index key can hold",
                {"size": size, "limit": INDEX_KEY_MAX_BYTES},
            )
    return value


UNSTORABLE_TEXT_PATTERN = r"[\x00\ud800-\udfff]"
"""Characters no store of the pipeline can hold: NUL (U+0000), which PostgreSQL refuses in
text and JSON (errors 22021, 22P05), and lone surrogates (U+D800-U+DFFF), which are not
Unicode text (UTF-8 cannot encode them). Used by `unstorable_text`."""
_UNSTORABLE = re.compile(UNSTORABLE_TEXT_PATTERN)


def unstorable_text(value: Any) -> str | None:
    """Where a JSON-like value holds a character no store can hold (UNSTORABLE_TEXT_PATTERN),
    object keys included: `"<path>: <which character>"`, or None when it holds none.

    Walks without recursion: bodies nest up to JSON parsers' limits (1024 levels)."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            found = _UNSTORABLE.search(item)
            if found:
                return f"{path or 'value'}: holds {_character_name(found.group())}"
        elif isinstance(item, dict):
            for key, child in item.items():
                where = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    shown = _UNSTORABLE.sub("\ufffd", where)
                    return f"{shown}: the name holds {_character_name(_UNSTORABLE.findall(key)[0])}"
                pending.append((where, child))
        elif isinstance(item, list):
            pending.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None


def _character_name(character: str) -> str:
    if character == "\x00":
        return "a NUL character (U+0000), which the warehouse cannot store"
    return f"a lone surrogate (U+{ord(character):04X}), which is not Unicode text"


def _absent_if_blank(value: str | None) -> str | None:
    return value or None


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
ShortText = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=SHORT_TEXT_MAX_LENGTH)
]
Identity = Annotated[ShortText, AfterValidator(_absent_if_blank)]
UrlText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=URL_MAX_LENGTH)]
IndexedUrl = Annotated[UrlText, AfterValidator(_fits_an_index_key)]


class EventContext(BaseModel):
    """Where the event happened: browser or app, device and locale."""

    model_config = ConfigDict(extra="ignore")

    user_agent: Annotated[str, StringConstraints(max_length=USER_AGENT_MAX_LENGTH)] | None = None
    locale: ShortText | None = None
    timezone: ShortText | None = None
    screen_width: Annotated[int, Field(ge=0, le=SCREEN_SIZE_MAX)] | None = None
    screen_height: Annotated[int, Field(ge=0, le=SCREEN_SIZE_MAX)] | None = None
    app_name: ShortText | None = None
    app_version: ShortText | None = None
    device_manufacturer: ShortText | None = None
    device_model: ShortText | None = None
    os_name: ShortText | None = None
    os_version: ShortText | None = None


class Event(BaseModel):
    """One event as a client sends it."""

    model_config = ConfigDict(extra="forbid")

    event_id: (
        Annotated[str, StringConstraints(min_length=1, max_length=EVENT_ID_MAX_LENGTH)] | None
    ) = Field(
        default=None, description="Client-supplied id (stable across retries); generated if absent."
    )
    event_type: Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN)] = Field(
        description="page_view, product_view, search, add_to_cart, remove_from_cart, checkout, "
        "purchase, click, or a custom snake_case name."
    )
    timestamp: UtcDatetime = Field(description="When the event happened, by the device clock.")
    user_id: Identity | None = None
    anonymous_id: Identity | None = None
    session_id: ShortText | None = None
    page_url: IndexedUrl | None = None
    referrer: UrlText | None = None
    product_id: ShortText | None = None
    search_query: Annotated[str, StringConstraints(max_length=SEARCH_QUERY_MAX_LENGTH)] | None = (
        None
    )
    quantity: Annotated[int, Field(ge=0, le=QUANTITY_MAX)] | None = None
    price: Annotated[float, Field(ge=0, le=PRICE_MAX)] | None = None
    revenue: Annotated[float, Field(ge=-REVENUE_MAX_ABS, le=REVENUE_MAX_ABS)] | None = None
    currency: Annotated[str, StringConstraints(pattern=CURRENCY_PATTERN)] | None = None
    properties: dict[str, Any] | None = Field(default=None, description="Free-form properties.")
    context: EventContext | None = None
    raw_context: dict[str, Any] | None = Field(
        default=None,
        description="The tracker's own context, kept whole: Segment's and RudderStack's "
        "`context` object, Snowplow's context entities and unmapped fields.",
    )

    @model_validator(mode="after")
    def _needs_an_identity(self) -> Event:
        if user_key_of(self.user_id, self.anonymous_id) is None:
            raise ValueError("at least one of user_id or anonymous_id is required")
        return self


class Campaign(BaseModel):
    """UTM parameters parsed from the page URL."""

    model_config = ConfigDict(extra="forbid")

    source: ShortText | None = None
    medium: ShortText | None = None
    name: ShortText | None = None
    term: ShortText | None = None
    content: ShortText | None = None


class UserAgentInfo(BaseModel):
    """The user agent as a maintained parser reads it."""

    model_config = ConfigDict(extra="forbid")

    browser_family: ShortText | None = None
    browser_version: ShortText | None = None
    os_family: ShortText | None = None
    os_version: ShortText | None = None
    device_family: ShortText | None = None
    device_class: ShortText | None = Field(
        default=None, description="desktop, mobile, tablet, bot or other"
    )
    is_bot: bool = False


class EnrichedEvent(Event):
    """An accepted event as published to Kafka: the original fields plus the collector's."""

    event_id: str  # always set once accepted
    source: str = Field(description="Source name of the write key that sent the event.")
    received_at: UtcDatetime = Field(description="When the collector received the request.")
    sent_at: UtcDatetime | None = Field(default=None, description="Client send time, if given.")
    event_time: UtcDatetime = Field(
        description="Device time corrected for clock skew; the time aggregates use."
    )
    future_dated: bool = Field(
        default=False, description="The corrected time is later than the receive time."
    )
    original_event_time: UtcDatetime | None = Field(
        default=None,
        description="The skew-corrected device time that the clock policy replaced, if any.",
    )
    event_time_adjusted: ClockAdjustment | None = Field(
        default=None,
        description="ahead/behind: the clock policy replaced event_time with received_at.",
    )
    client_ip: ShortText | None = Field(
        default=None, description="Client address, truncated (IPv4 /24, IPv6 /48) by default."
    )
    campaign: Campaign | None = None
    user_agent_info: UserAgentInfo | None = None
    referrer_host: ShortText | None = None

    @property
    def user_key(self) -> str:
        """The identity that counts as one user (USER_KEY_FIELDS); never empty once valid."""
        return user_key_of(self.user_id, self.anonymous_id) or ""


PROMOTED_PROPERTIES: dict[str, type] = {
    "order_id": str,
    "category": str,
    "product_name": str,
    "items": int,
}
"""Free-form properties that the processor lifts into typed columns of the events table."""


class LogicalType(StrEnum):
    """Column types that every target (Spark, PostgreSQL, Redshift, Parquet) can represent."""

    STRING = "string"
    LONG = "long"
    DOUBLE = "double"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    JSON = "json"  # a nested free-form object, kept as JSON text downstream
    STRUCT = "struct"


@dataclass(frozen=True)
class Column:
    name: str
    type: LogicalType
    nullable: bool = True
    children: tuple[Column, ...] = field(default=())


_SCALARS: dict[type, LogicalType] = {
    str: LogicalType.STRING,
    int: LogicalType.LONG,
    float: LogicalType.DOUBLE,
    bool: LogicalType.BOOLEAN,
    datetime: LogicalType.TIMESTAMP,
    dict: LogicalType.JSON,
}


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """Strip Annotated[...] and Optional; return the base type and whether None is allowed."""
    nullable = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            nullable = nullable or len(args) < len(typing.get_args(annotation))
            if len(args) != 1:
                raise TypeError(f"unsupported union {annotation!r}")
            annotation = args[0]
        elif origin is dict:
            return dict, nullable
        elif origin is Literal:
            # A closed set of names (e.g. ClockAdjustment) is text in every target.
            return type(typing.get_args(annotation)[0]), nullable
        else:
            return annotation, nullable


def columns_of(model: type[BaseModel]) -> tuple[Column, ...]:
    """The columns of a model, in declaration order, for deriving other schemas."""
    columns: list[Column] = []
    for name, info in model.model_fields.items():
        base, nullable = _unwrap(info.annotation)
        nullable = nullable or not info.is_required()
        if isinstance(base, type) and issubclass(base, BaseModel):
            columns.append(Column(name, LogicalType.STRUCT, nullable, columns_of(base)))
        elif base in _SCALARS:
            columns.append(Column(name, _SCALARS[base], nullable))
        else:
            raise TypeError(f"{model.__name__}.{name}: no logical type for {base!r}")
    return tuple(columns)
