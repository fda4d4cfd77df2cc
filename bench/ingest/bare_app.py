"""The HTTP ceiling: the same server stack (uvicorn, uvloop, httptools, FastAPI) with an
endpoint that only reads and parses the body and answers 202."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import orjson
from fastapi import FastAPI, Request, Response

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from serving import serve

# As the collector: FastAPI's OpenTelemetry hooks off (it reports to Prometheus).
app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})


@app.post("/v1/events")
async def events(request: Request) -> Response:
    document = orjson.loads(await request.body())
    count = len(document["events"]) if "events" in document else 1
    return Response(orjson.dumps({"accepted": count, "rejected": []}), status_code=202)


if __name__ == "__main__":
    # BARE_WORKERS > 1: uvicorn's own worker processes (the same worker count as the
    # collector's, for a ceiling of the same shape; bench/ingest/workers.py).
    workers = int(os.environ.get("BARE_WORKERS", "1"))
    serve(
        "bare_app:app" if workers > 1 else app,
        int(os.environ["INGEST_PORT"]),
        app_dir=os.path.dirname(os.path.abspath(__file__)),
        workers=workers,
        proxy_headers=False,
    )
