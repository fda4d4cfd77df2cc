"""The native API, `POST /v1/events`: a batch `{sent_at, events: [...]}` or one event."""

from __future__ import annotations

from ingest_api.collector import Collector, Route
from ingest_api.errors import ApiError
from ingest_api.exchange import Request, Response, json_response
from ingest_api.intake import Batch, Candidate, Limits, native_events, parse_body


async def collect_native(collector: Collector, request: Request) -> Response:
    """202 once the bus holds every valid event, with the invalid ones named by index; 400
    with the same body when none was valid."""
    client = collector.authenticate(request, collector.offered_key(request))
    try:
        received_at = collector.clock()
        candidates, batch = native_candidates(await collector.read_body(request), collector.limits)
        outcome = await collector.ingest(request, client, received_at, candidates, "events", batch)
    except ApiError as exc:
        return exc.response(client.allowed_origins)
    status = 202 if outcome.accepted_count else 400
    return json_response(status, outcome.result(), allowed_origins=client.allowed_origins)


def native_candidates(body: bytes, limits: Limits) -> tuple[list[Candidate], Batch]:
    """The body's events; the body and its parsed document are not kept beyond this."""
    document, batch = parse_body(body)
    sent_at, raw_events, is_batch = native_events(document, limits)
    if not is_batch and len(body) > limits.max_event_bytes:
        raise ApiError(
            413,
            "event_too_large",
            f"event over the limit of {limits.max_event_bytes} bytes (INGEST_MAX_EVENT_BYTES)",
        )
    return [Candidate(raw, raw, sent_at) for raw in raw_events], batch


ROUTES = (Route("/v1/events", ("POST",), collect_native),)
