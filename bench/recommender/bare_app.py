"""The HTTP floor: the recommender's server stack answering a fixed JSON body to any GET."""

from __future__ import annotations

import os

import orjson
import uvicorn
from fastapi import FastAPI, Response

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
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["BARE_PORT"]),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
