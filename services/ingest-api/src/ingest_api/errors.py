"""Error answers: one JSON shape for every refusal.

`{"code": <machine-readable>, "message": <human-readable>, "detail": <same message>}` —
`code`/`message` are what Segment SDKs read from an error, `detail` is FastAPI's usual key.
"""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response as StarletteResponse

from ingest_api.exchange import Response, json_response


def error_body(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message, "detail": message}


class ApiError(Exception):
    """A refusal the core answers with a 4xx (or 503) and the JSON error shape."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return error_body(self.code, self.message)

    def response(self, allowed_origins: tuple[str, ...] | None = None) -> Response:
        return json_response(
            self.status_code, self.body(), self.headers.items(), allowed_origins=allowed_origins
        )


def http_error_response(exc: HTTPException) -> StarletteResponse:
    """The same JSON shape for FastAPI's own refusals (404, 405, ...)."""
    return StarletteResponse(
        orjson.dumps(error_body(f"http_{exc.status_code}", str(exc.detail))),
        status_code=exc.status_code,
        headers=exc.headers,
        media_type="application/json",
    )
