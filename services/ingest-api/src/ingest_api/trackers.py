"""Paths that popular trackers use as they are, beside the Segment HTTP Tracking API.

* Segment's analytics-next and mobile SDKs: the short paths `/v1/t|p|i|g|a|s` and the batch
  path `/v1/b` (Segment's handler, `segment.collect_segment`), and the settings document
  `GET /v1/projects/{write_key}/settings` analytics-next loads from its `cdnURL`.
* RudderStack's JavaScript SDK v3: `GET /sourceConfig` (its `configUrl`) and its beacon
  `POST /beacon/v1/batch?writeKey=`; its other paths are Segment's.
* Snowplow trackers: `POST /com.snowplowanalytics.snowplow/tp2` and `GET /i`, at the root
  or below `/snowplow/{write_key}`. Snowplow has no write key: the path names one, else a
  header or `?write_key=` as for the native API, else the events' app id (`aid`).

Handlers of the collector core (`collector.Route`); the FastAPI routes that document them
are in `routes/trackers.py`.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from ingest_api.auth import Client
from ingest_api.collector import Collector, Route
from ingest_api.enrichment import client_address
from ingest_api.errors import ApiError
from ingest_api.exchange import Request, Response, json_response
from ingest_api.intake import Batch, Candidate, check_count, parse_body
from ingest_api.pixel import NO_CACHE, PIXEL
from ingest_api.sdk_settings import (
    SEGMENT_SHORT_PATHS,
    SNOWPLOW_PREFIX,
    path_write_key,
    rudderstack_source_config,
    segment_settings,
)
from ingest_api.segment import MappingError, collect_segment
from ingest_api.snowplow import post_payloads, query_payload, to_event

SNOWPLOW_POST = "/com.snowplowanalytics.snowplow/tp2"
SNOWPLOW_GET = "/i"
SEGMENT_SETTINGS = "/v1/projects/{write_key}/settings"
RUDDERSTACK_CONFIG = ("/sourceConfig", "/sourceConfig/")
RUDDERSTACK_BEACON = "/beacon/v1/batch"


# --- configuration documents -----------------------------------------------------------------


def public_base_url(collector: Collector, request: Request) -> str:
    """Where SDKs reach this collector: INGEST_PUBLIC_URL, else the request's host, with the
    scheme and host a trusted proxy forwarded (the collector itself speaks plain HTTP)."""
    configured = collector.settings.ingest_public_url
    if configured:
        return configured.rstrip("/")
    headers = request.headers
    scheme, host = "http", headers.get("host") or "localhost"
    peer = client_address(request.peer, None, collector.trusted) if request.peer else None
    if peer is not None and any(peer in network for network in collector.trusted):
        proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        scheme = proto if proto in ("http", "https") else scheme
        host = headers.get("x-forwarded-host", "").split(",")[0].strip() or host
    return f"{scheme}://{host}"


def document_client(collector: Collector, request: Request, presented: str | None) -> Client:
    """The key a configuration request names: a missing or unknown one has no document."""
    try:
        return collector.authenticate(request, presented)
    except ApiError as exc:
        if exc.status_code == 401:
            raise ApiError(404, exc.code, f"no configuration: {exc.message}") from exc
        raise


async def segment_project_settings(collector: Collector, request: Request) -> Response:
    write_key = path_write_key(request.path)
    client = document_client(collector, request, write_key)
    assert write_key is not None  # resolved above
    document = segment_settings(write_key, public_base_url(collector, request))
    return json_response(
        200,
        document,
        headers=[("Cache-Control", "public, max-age=300")],
        allowed_origins=client.allowed_origins,
    )


async def rudderstack_config(collector: Collector, request: Request) -> Response:
    presented = request.query_value("writeKey") or collector.offered_key(request)
    client = document_client(collector, request, presented)
    return json_response(
        200, rudderstack_source_config(client.source), allowed_origins=client.allowed_origins
    )


async def rudderstack_beacon(collector: Collector, request: Request) -> Response:
    """A beacon names its key in `?writeKey=`: handed to Segment's handler as a header."""
    key = request.query_value("writeKey")
    if key and not collector.offered_key(request):
        request = replace(request, headers={**request.headers, "x-write-key": key})
    return await collect_segment(collector, request)


# --- Snowplow tracker protocol v2 ------------------------------------------------------------


def named_client(collector: Collector, request: Request) -> Client | None:
    """The client of a key the path or the headers name; None when neither names one
    (then only the events' app id can)."""
    presented = path_write_key(request.path) or collector.offered_key(request)
    return collector.authenticate(request, presented) if presented else None


def app_id_client(
    collector: Collector, request: Request, payloads: list[Any]
) -> tuple[Client, str | None]:
    """(the client named by the first event's app id, that app id)."""
    first = payloads[0] if payloads else None
    app_id = first.get("aid") if isinstance(first, dict) else None
    app_id = app_id if isinstance(app_id, str) and app_id else None
    return collector.authenticate(request, app_id), app_id


def snowplow_candidates(
    payloads: list[Any], received_at: Any, key_app_id: str | None
) -> list[Candidate]:
    result = []
    for payload in payloads:
        if (
            key_app_id is not None
            and isinstance(payload, dict)
            and payload.get("aid") != key_app_id
        ):
            reason = "aid differs from the app id that named this request's write key"
            result.append(Candidate(payload, None, None, ("invalid", reason)))
            continue
        try:
            event, sent_at = to_event(payload, received_at, app_id_is_key=key_app_id is not None)
        except MappingError as exc:
            result.append(Candidate(payload, None, None, ("invalid", str(exc))))
            continue
        result.append(Candidate(payload, event, sent_at))
    return result


def anonymous(request: Request) -> bool:
    """Snowplow trackers ask the collector not to record the client's address."""
    return request.headers.get("sp-anonymous", "").strip() == "*"


async def snowplow_post(collector: Collector, request: Request) -> Response:
    """200 once handled, events that cannot be mapped named in `rejected` (and dead-lettered),
    as Segment's answer; Snowplow trackers resend only on failure statuses."""
    # The key is checked before the body is read, unless only the body can carry it.
    client = named_client(collector, request)
    key_app_id = None
    try:
        received_at = collector.clock()
        document, batch = parse_body(await collector.read_body(request))
        try:
            payloads = post_payloads(document)
        except MappingError as exc:
            raise ApiError(400, "invalid_body", str(exc)) from exc
        del document
        check_count(len(payloads), collector.limits)
        if client is None:
            client, key_app_id = app_id_client(collector, request, payloads)
        candidates = snowplow_candidates(payloads, received_at, key_app_id)
        outcome = await collector.ingest(
            request, client, received_at, candidates, "snowplow", batch, anonymous(request)
        )
    except ApiError as exc:
        return exc.response(client.allowed_origins if client else None)
    result = {"success": not outcome.rejected, **outcome.result()}
    return json_response(200, result, allowed_origins=client.allowed_origins)


async def snowplow_get(collector: Collector, request: Request) -> Response:
    """The pixel whatever the event was, as Snowplow's own collector answers (a refused
    event is in the dead-letter topic); errors are the request's own (key, limits, bus)."""
    client: Client | None = None
    try:
        received_at = collector.clock()
        payload = query_payload(request.query_items())
        client, key_app_id = named_client(collector, request), None
        if client is None:
            client, key_app_id = app_id_client(collector, request, [payload])
        candidates = snowplow_candidates([payload], received_at, key_app_id)
        # The query is the pixel's body: it names an event sent without an id.
        batch = Batch(hashlib.sha256(request.query_string.encode("latin-1")).digest(), True)
        await collector.ingest(
            request, client, received_at, candidates, "snowplow", batch, anonymous(request)
        )
    except ApiError as exc:
        exc.headers.update(NO_CACHE)
        return exc.response(client.allowed_origins if client else None)
    return Response(200, PIXEL, "image/gif", NO_CACHE, client.allowed_origins)


ROUTES: tuple[Route, ...] = (
    *(Route(f"/v1/{letter}", ("POST",), collect_segment) for letter in SEGMENT_SHORT_PATHS),
    Route("/v1/b", ("POST",), collect_segment),
    Route(SEGMENT_SETTINGS, ("GET",), segment_project_settings),
    *(Route(path, ("GET",), rudderstack_config) for path in RUDDERSTACK_CONFIG),
    Route(RUDDERSTACK_BEACON, ("POST",), rudderstack_beacon),
    Route(SNOWPLOW_POST, ("POST",), snowplow_post),
    Route(SNOWPLOW_GET, ("GET",), snowplow_get),
    Route(SNOWPLOW_PREFIX + "/{write_key}" + SNOWPLOW_POST, ("POST",), snowplow_post),
    Route(SNOWPLOW_PREFIX + "/{write_key}" + SNOWPLOW_GET, ("GET",), snowplow_get),
)
