"""Every panel of the Grafana dashboards returns data from a running Prometheus.

Needs the `live_pipeline` fixture (tests/conftest.py): the local platform with real traffic
through ingest-api, stream-processor and warehouse-loader, scraped by Prometheus. Each panel
query is sent as Grafana would send it (its built-in variables substituted) and must return at
least one series. A panel whose metric a service does not (yet) expose fails here, naming the
query: docs/kubernetes.md lists the metrics the dashboards need beyond docs/contracts.md.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from deployhelpers import DASHBOARDS

# How Grafana fills its variables for the default 1-hour range; the rate window is kept
# short so that a few minutes of traffic are enough.
GRAFANA_VARS = {"$__rate_interval": "2m", "$__interval": "30s", "$__range": "1h"}
# Metrics appear only once scraped after the first traffic; give them this long in total.
WAIT_SECONDS = 180.0

pytestmark = pytest.mark.platform


# Metrics the dashboards need that no service exposes yet (docs/kubernetes.md, "Metrics the
# dashboards need"). Their panels are expected to fail; strict, so that the day a service
# exposes one the run says XPASS(strict): then delete the name here.
PENDING_METRICS: tuple[str, ...] = ()


def _panels() -> list[Any]:
    params = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            if not panel.get("targets"):
                continue
            pending = [m for m in PENDING_METRICS if any(m in t["expr"] for t in panel["targets"])]
            marks = (
                [pytest.mark.xfail(strict=True, reason=f"not exposed yet: {', '.join(pending)}")]
                if pending
                else []
            )
            params.append(
                pytest.param(
                    board["uid"],
                    panel["title"],
                    panel["targets"],
                    id=f"{path.stem}:{panel['title']}",
                    marks=marks,
                )
            )
    return params


def _query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus_url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", f"{expr}: {body}"
    result = body["data"]["result"]
    return result if isinstance(result, list) else [result]


@pytest.fixture(scope="module")
def deadline(live_pipeline: Any) -> float:
    """One shared deadline, so panels that never get data do not each wait the full time."""
    return time.monotonic() + WAIT_SECONDS


@pytest.mark.parametrize(("uid", "title", "targets"), _panels())
def test_panel_returns_data(
    live_pipeline: Any, deadline: float, uid: str, title: str, targets: list[dict[str, Any]]
) -> None:
    prometheus_url = live_pipeline.prometheus_url
    exprs = []
    for target in targets:
        expr = target["expr"]
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        exprs.append(expr)
    empty = list(exprs)
    while True:
        try:
            empty = [e for e in empty if not _query(prometheus_url, e)]
        except urllib.error.HTTPError as exc:  # a 400 is a broken query: fail at once
            pytest.fail(f"{uid} / {title}: Prometheus refused a query: {exc.read()!r}")
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert not empty, (
        f"dashboard {uid}, panel {title!r}: no data from {prometheus_url} for\n  "
        + "\n  ".join(empty)
    )
