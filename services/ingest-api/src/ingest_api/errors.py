"""Error answers: one JSON shape for every refusal.

`{"code": <machine-readable>, "message": <human-readable>, "detail": <same message>}` —
`code`/`message` are what Segment SDKs read from an error, `detail` is FastAPI's usual key.
"""

from __future__ import annotations

from fastapi import HTTPException


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
