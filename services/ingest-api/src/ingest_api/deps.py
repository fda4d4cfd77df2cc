"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ingest_api.config import Settings, get_settings
from ingest_api.publisher import KafkaPublisher


def get_publisher(request: Request) -> KafkaPublisher:
    publisher: KafkaPublisher = request.app.state.publisher
    return publisher


Publisher = Annotated[KafkaPublisher, Depends(get_publisher)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
