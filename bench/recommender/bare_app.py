"""The HTTP floor: the recommender's server stack answering a fixed JSON body to any GET."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import orjson
from fastapi import FastAPI, Response

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from serving import serve

app = FastAPI()
BODY = orjson.dumps(
    {"items": [{"product_id": f"P{i:05d}", "score": 1.0, "reason": "trending"} for i in range(10)]}
)


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b"ok\n", media_type="text/plain")


@app.get("/v1/recommendations/{rest:path}")
async def anything(rest: str) -> Response:
    return Response(BODY, media_type="application/json")


if __name__ == "__main__":
    serve(app, int(os.environ["BARE_PORT"]))
