"""A tiny HTTP server for `/metrics`, `/healthz` and `/readyz` in non-HTTP services."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest


class ProbeServer:
    """Serves Prometheus metrics and liveness/readiness answers from a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        ready: Callable[[], bool] = lambda: True,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        probe = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._answer(200, b"ok\n", "text/plain")
                elif path == "/readyz":
                    ok = probe.ready()
                    self._answer(
                        200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain"
                    )
                else:
                    self._answer(404, b"not found\n", "text/plain")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the logs

        self.ready = ready
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> ProbeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_until_stopped(
    main: Callable[[], Awaitable[None]], stop: Callable[[], None], probe: ProbeServer
) -> None:
    """Run a service's main coroutine to its end: SIGTERM and SIGINT call `stop` (the service
    finishes what it holds and returns), and the probe server goes last."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        await main()

    try:
        asyncio.run(run())
    finally:
        probe.stop()
