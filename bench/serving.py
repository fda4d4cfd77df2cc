"""What the benchmarks' bare servers share: uvicorn with the services' fast settings (uvloop,
httptools, no access log) on 127.0.0.1, so a floor or ceiling differs from the service it is
compared with only in the application."""

from __future__ import annotations

from typing import Any

import uvicorn


def serve(app: Any, port: int, **options: Any) -> None:
    """Run `app` (an ASGI app, or "module:attr" with `app_dir` and `workers`) until stopped."""
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        **options,
    )
