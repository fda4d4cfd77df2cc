"""The Segment HTTP Tracking API: `/v1/batch`, `/v1/track`, `/v1/page`, ... .

Segment and RudderStack SDKs work unchanged with their host pointed here. They expect 200
on success and read `code`/`message` from an error. They send `track`, `page`, `screen`,
`identify`, `group` and `alias` messages; each becomes one native event. The Segment
e-commerce spec's names map onto our event types; any other name is kept as a custom
snake_case event, and the original name stays in `properties.segment_event`.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clickstream_common.schema import (
    CURRENCY_PATTERN,
    EVENT_ID_MAX_LENGTH,
    PRICE_MAX,
    QUANTITY_MAX,
    REVENUE_MAX_ABS,
    SCREEN_SIZE_MAX,
    SEARCH_QUERY_MAX_LENGTH,
    SHORT_TEXT_MAX_LENGTH,
    URL_MAX_LENGTH,
    USER_AGENT_MAX_LENGTH,
)
from ingest_api.collector import Collector, Route
from ingest_api.errors import ApiError
from ingest_api.exchange import Request, Response, json_response
from ingest_api.intake import Batch, Candidate, Limits, check_count, parse_body, parse_datetime
from ingest_api.sdk_settings import SEGMENT_SHORT_PATHS

SEGMENT_EVENT_TYPES: dict[str, str] = {
    "product viewed": "product_view",
    "product added": "add_to_cart",
    "product removed": "remove_from_cart",
    "checkout started": "checkout",
    "order completed": "purchase",
    "products searched": "search",
}
CALL_TYPES = ("track", "page", "screen", "identify", "group", "alias")
_CALL_EVENT_TYPES = {
    "page": "page_view",
    "screen": "screen_view",
    "identify": "identify",
    "group": "group",
    "alias": "alias",
}
_NOT_SNAKE = re.compile(r"[^a-z0-9]+")
_CURRENCY = re.compile(CURRENCY_PATTERN)


class MappingError(ValueError):
    """A Segment message that cannot become an event; the reason goes to the client."""


def snake_case(name: str) -> str:
    """`"Signed Up"` -> `signed_up`: a custom event type the schema accepts."""
    text = _NOT_SNAKE.sub("_", name.lower()).strip("_")
    if not text:
        raise MappingError(f"event name {name!r} has no letters or digits to name an event type")
    if not text[0].isalpha():
        text = f"event_{text}"
    return text[:64].rstrip("_")


def event_type_of(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise MappingError("track call without an event name (`event`)")
    return SEGMENT_EVENT_TYPES.get(name.strip().lower()) or snake_case(name)


def _number(value: Any, low: float, high: float) -> float | None:
    """A JSON number within [low, high]; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if low <= value <= high else None


def _integer(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if low <= value <= high else None


def _identifier(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int) and str(value).strip():
        return str(value).strip()[:SHORT_TEXT_MAX_LENGTH]
    return None


def _text(value: Any, limit: int = SHORT_TEXT_MAX_LENGTH) -> str | None:
    return value[:limit] if isinstance(value, str) and value.strip() else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def native_context(context: dict[str, Any]) -> dict[str, Any] | None:
    """Segment's `context` object in the shape of the native EventContext."""
    screen, app = _dict(context.get("screen")), _dict(context.get("app"))
    device, os = _dict(context.get("device")), _dict(context.get("os"))
    mapped = {
        "user_agent": _text(context.get("userAgent"), USER_AGENT_MAX_LENGTH),
        "locale": _text(context.get("locale")),
        "timezone": _text(context.get("timezone")),
        "screen_width": _integer(screen.get("width"), 0, SCREEN_SIZE_MAX),
        "screen_height": _integer(screen.get("height"), 0, SCREEN_SIZE_MAX),
        "app_name": _text(app.get("name")),
        "app_version": _identifier(app.get("version")),
        "device_manufacturer": _text(device.get("manufacturer")),
        "device_model": _text(device.get("model")),
        "os_name": _text(os.get("name")),
        "os_version": _identifier(os.get("version")),
    }
    present = {k: v for k, v in mapped.items() if v is not None}
    return present or None


def _lift_commerce(event: dict[str, Any], props: dict[str, Any]) -> None:
    # Only well-typed values are lifted into typed fields; everything stays in properties.
    product = _identifier(props.get("product_id")) or _identifier(props.get("sku"))
    if product:
        event["product_id"] = product
    price = _number(props.get("price"), 0, PRICE_MAX)
    if price is not None:
        event["price"] = price
    quantity = _integer(props.get("quantity"), 0, QUANTITY_MAX)
    if quantity is not None:
        event["quantity"] = quantity
    revenue = _number(props.get("revenue"), -REVENUE_MAX_ABS, REVENUE_MAX_ABS)
    if revenue is None:
        revenue = _number(props.get("total"), -REVENUE_MAX_ABS, REVENUE_MAX_ABS)
    if revenue is not None:
        event["revenue"] = revenue
    currency = props.get("currency")
    if isinstance(currency, str) and _CURRENCY.fullmatch(currency.upper()):
        event["currency"] = currency.upper()
    query = _text(props.get("query"), SEARCH_QUERY_MAX_LENGTH)
    if query:
        event["search_query"] = query


def context_ip(
    message: Any, batch_context: dict[str, Any]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The end user's address a server-side SDK reports in `context.ip` (the message's,
    else the batch's), when it is one."""
    context = _dict(message.get("context")) if isinstance(message, dict) else {}
    value = context.get("ip", batch_context.get("ip"))
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def lenient_datetime(value: Any) -> datetime | None:
    """Segment's sentAt only corrects clocks: one that cannot be read is left out."""
    try:
        return parse_datetime(value, "sentAt")
    except ApiError:
        return None


def to_event(
    message: dict[str, Any], call: str, received_at: datetime, batch_sent_at: datetime | None
) -> tuple[dict[str, Any], datetime | None]:
    """One Segment message -> (native event, the sent_at to correct its clock with)."""
    if call not in CALL_TYPES:
        raise MappingError(f"unsupported Segment call type {call!r}; one of {CALL_TYPES}")
    props = _dict(message.get("properties"))
    context = _dict(message.get("context"))
    page = _dict(context.get("page"))
    event: dict[str, Any] = {}
    message_id = _identifier(message.get("messageId"))
    if message_id:
        event["event_id"] = message_id[:EVENT_ID_MAX_LENGTH]
    for ours, theirs in (("user_id", "userId"), ("anonymous_id", "anonymousId")):
        value = _identifier(message.get(theirs))
        if value:
            event[ours] = value
    session = _identifier(context.get("sessionId")) or _identifier(props.get("session_id"))
    if session:
        event["session_id"] = session

    # The device's own clock: originalTimestamp, else timestamp; corrected by sentAt.
    sent_at = lenient_datetime(message.get("sentAt")) or batch_sent_at
    device_time = message.get("originalTimestamp") or message.get("timestamp")
    if device_time is None:
        # No client time at all: the receive time needs no correction.
        event["timestamp"] = received_at.isoformat()
        sent_at = None
    else:
        event["timestamp"] = device_time

    properties: dict[str, Any] = dict(props)
    if call == "track":
        name = message.get("event")
        event["event_type"] = event_type_of(name)
        properties.setdefault("segment_event", name)
        _lift_commerce(event, props)
    else:
        event["event_type"] = _CALL_EVENT_TYPES[call]
        if call in ("page", "screen"):
            for key in ("name", "category"):
                if isinstance(message.get(key), str):
                    properties.setdefault(key, message[key])
        elif call == "identify":
            # RudderStack's SDKs carry identify traits in context.traits.
            traits = {**_dict(context.get("traits")), **_dict(message.get("traits"))}
            properties = {"traits": traits}
        elif call == "group":
            properties = {
                "group_id": message.get("groupId"),
                "traits": _dict(message.get("traits")),
            }
        elif call == "alias":
            properties = {"previous_id": message.get("previousId")}
    if call in ("page", "track"):
        url = _text(props.get("url"), URL_MAX_LENGTH) or _text(page.get("url"), URL_MAX_LENGTH)
        referrer = _text(props.get("referrer"), URL_MAX_LENGTH) or _text(
            page.get("referrer"), URL_MAX_LENGTH
        )
        if url:
            event["page_url"] = url
        if referrer:
            event["referrer"] = referrer
    if properties:
        event["properties"] = properties
    native = native_context(context)
    if native:
        event["context"] = native
    # The whole context, except the address: that becomes client_ip, cut to its network.
    kept = {k: v for k, v in context.items() if k != "ip"}
    if kept:
        event["raw_context"] = kept
    return event, sent_at


def candidates(
    messages: list[Any],
    route_call: str | None,
    received_at: datetime,
    batch_sent_at: datetime | None,
    batch_context: dict[str, Any],
) -> list[Candidate]:
    """Each message of a request, mapped; a message that cannot be mapped carries its reason.

    `route_call` is the call type of a single-call route (`/v1/track` ...); in a batch each
    message names its own `type`. Batch-level `context` applies to every message.
    """
    result: list[Candidate] = []
    for message in messages:
        if not isinstance(message, dict):
            result.append(
                Candidate(message, None, None, ("not_an_object", "message must be an object"))
            )
            continue
        call = route_call or message.get("type")
        merged = message
        if batch_context:
            merged = {**message, "context": {**batch_context, **_dict(message.get("context"))}}
        try:
            event, sent_at = to_event(merged, str(call), received_at, batch_sent_at)
        except MappingError as exc:
            result.append(Candidate(message, None, None, ("invalid", str(exc))))
            continue
        result.append(Candidate(message, event, sent_at))
    return result


async def collect_segment(collector: Collector, request: Request) -> Response:
    """200 once the request is handled, with the messages that were refused named (they
    are in the dead-letter topic), as Segment's own API answers; SDKs do not resend them."""
    name = request.path.removeprefix("/v1/")
    # analytics-next's short paths (`/v1/t` ...) name the call by its first letter.
    call = SEGMENT_SHORT_PATHS.get(name, name)
    single = call if call in CALL_TYPES else None
    # The key is checked before the body is read, unless only the body can carry it.
    offered = collector.offered_key(request)
    client = collector.authenticate(request, offered) if offered else None
    try:
        received_at = collector.clock()
        document, batch = request_document(await collector.read_body(request))
        if client is None:
            # analytics.js and others may carry the key in the body instead of a header.
            body_key = document.get("writeKey")
            if not isinstance(body_key, str):
                body_key = None
            client = collector.authenticate(request, body_key)
        mapped = request_candidates(document, single, received_at, collector.limits)
        if client.key.use_context_ip:
            with_context_ips(mapped, document, single, collector)
        del document
        endpoint = single or "batch"
        outcome = await collector.ingest(request, client, received_at, mapped, endpoint, batch)
    except ApiError as exc:
        return exc.response(client.allowed_origins if client else None)
    result = {"success": not outcome.rejected, **outcome.result()}
    return json_response(200, result, allowed_origins=client.allowed_origins)


def with_context_ips(
    mapped: list[Candidate], document: dict[str, Any], single: str | None, collector: Collector
) -> None:
    """For a trusted server source: each event's client address is the `context.ip` its
    message reports (cut to its network like the request's own)."""
    messages = [document] if single else document["batch"]  # checked by request_candidates
    batch_context = {} if single else _dict(document.get("context"))
    for index, (message, candidate) in enumerate(zip(messages, mapped, strict=True)):
        address = context_ip(message, batch_context)
        if address is not None:
            mapped[index] = candidate._replace(client_ip=collector.reported_ip(address))


def request_document(body: bytes) -> tuple[dict[str, Any], Batch]:
    document, batch = parse_body(body)
    if not isinstance(document, dict):
        raise ApiError(400, "invalid_body", "body must be a JSON object")
    return document, batch


def request_candidates(
    document: dict[str, Any], call: str | None, received_at: datetime, limits: Limits
) -> list[Candidate]:
    """A batch's messages (`call` None) or the one message of a single-call route."""
    if call is None:
        messages = document.get("batch")
        if not isinstance(messages, list):
            raise ApiError(400, "invalid_body", "batch must be a JSON array of messages")
        check_count(len(messages), limits)
        sent_at = lenient_datetime(document.get("sentAt"))
        context = document.get("context")
        batch_context = context if isinstance(context, dict) else {}
        return candidates(messages, None, received_at, sent_at, batch_context)
    return candidates([document], call, received_at, None, {})


ROUTES = tuple(Route(f"/v1/{name}", ("POST",), collect_segment) for name in ("batch", *CALL_TYPES))


# --- OpenAPI descriptions of the request bodies (validation is per message, above) ----------


class SegmentMessage(BaseModel):
    """One Segment call; unknown fields are kept out of the event, never an error."""

    model_config = ConfigDict(extra="allow")

    type: str | None = Field(default=None, description="track, page, screen, identify, ...")
    messageId: str | None = Field(default=None, description="Becomes event_id.")
    userId: str | None = None
    anonymousId: str | None = None
    event: str | None = Field(default=None, description="Track calls: the event name.")
    name: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    timestamp: str | None = None
    originalTimestamp: str | None = None
    sentAt: str | None = None
    groupId: str | None = None
    previousId: str | None = None


class SegmentBatch(BaseModel):
    model_config = ConfigDict(extra="allow")

    # The most per request comes from Settings (`openapi.components`), not from this model.
    batch: list[SegmentMessage] = Field(min_length=1)
    sentAt: str | None = None
    context: dict[str, Any] | None = None
    writeKey: str | None = Field(default=None, description="Accepted when no header names one.")
