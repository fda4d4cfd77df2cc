"""Error answers: one JSON shape for every refusal.

`{"code": <machine-readable>, "message": <human-readable>, "detail": <same message>}` —
`code`/`message` are what Segment SDKs read from an error, `detail` is FastAPI's usual key.
"""

from __future__ import annotations

import orjson
from fastapi import HTTPException
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response


class ApiError(HTTPException):
    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, message, headers)
        self.code = code
        self.message = message

    def body(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "detail": self.message}


def error_response(exc: StarletteHTTPException) -> Response:
    """The JSON answer for a refusal, whichever layer raised it."""
    if isinstance(exc, ApiError):
        body = exc.body()
    else:
        message = str(exc.detail)
        body = {"code": f"http_{exc.status_code}", "message": message, "detail": message}
    return Response(
        orjson.dumps(body),
        status_code=exc.status_code,
        headers=exc.headers,
        media_type="application/json",
    )
