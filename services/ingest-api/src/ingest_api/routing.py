"""Every route the collector core serves: each protocol module contributes its own."""

from __future__ import annotations

from ingest_api import native, pixel, segment, trackers
from ingest_api.collector import Route

ROUTES: tuple[Route, ...] = (*native.ROUTES, *segment.ROUTES, *trackers.ROUTES, *pixel.ROUTES)
