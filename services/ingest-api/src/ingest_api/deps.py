"""Dependencies shared by the routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ingest_api.auth import Client, optional_client, require_client
from ingest_api.bus import EventBus
from ingest_api.collector import Collector
from ingest_api.config import Settings, app_settings


async def get_publisher(request: Request) -> EventBus:
    publisher: EventBus = request.app.state.publisher
    return publisher


async def get_collector(request: Request) -> Collector:
    collector: Collector = request.app.state.collector
    return collector


@dataclass(frozen=True)
class Intake:
    """What a collecting route needs: the caller's resolved write key and the collector.

    One dependency, not two: FastAPI's per-dependency cost shows on the hot path.
    """

    client: Client
    collector: Collector


@dataclass(frozen=True)
class OptionalIntake:
    client: Client | None  # Segment SDKs may carry the key in the body instead
    collector: Collector


async def get_intake(request: Request) -> Intake:
    return Intake(await require_client(request), request.app.state.collector)


async def get_optional_intake(request: Request) -> OptionalIntake:
    return OptionalIntake(await optional_client(request), request.app.state.collector)


Publisher = Annotated[EventBus, Depends(get_publisher)]
IntakeDep = Annotated[Intake, Depends(get_intake)]
OptionalIntakeDep = Annotated[OptionalIntake, Depends(get_optional_intake)]
CollectorDep = Annotated[Collector, Depends(get_collector)]
SettingsDep = Annotated[Settings, Depends(app_settings)]
