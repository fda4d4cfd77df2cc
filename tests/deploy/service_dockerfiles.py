"""The pure-Python services' Dockerfiles, made from one template.

ingest-api, warehouse-loader, anomaly-detector and recommender build the same way (a uv
workspace package in a virtualenv, on a slim Python with tini, as user 10001); only names,
ports and the description differ. Each keeps its own `services/<service>/Dockerfile` (one
self-contained folder per service, what skaffold and `docker build -f` use), written from
`services/Dockerfile.template` here. The stream processor's differs (a JRE, Spark's jars, the
executor entrypoint) and is written by hand.

    python tests/deploy/service_dockerfiles.py --write   # rewrite the Dockerfiles
    python tests/deploy/service_dockerfiles.py           # exit 1 if one is out of date

tests/deploy/test_dockerfiles.py runs the check.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"
TEMPLATE = SERVICES_DIR / "Dockerfile.template"


@dataclass(frozen=True)
class Image:
    service: str
    description: str
    # Environment baked into the image (the listening address where the code's default
    # would not do for a container is set here; ports repeat the code's defaults).
    env: tuple[str, ...]
    serves: str
    port: int

    @property
    def module(self) -> str:
        return self.service.replace("-", "_")


IMAGES = (
    Image(
        "ingest-api",
        "Clickstream collector: HTTP events to Kafka",
        ("INGEST_HOST=0.0.0.0", "INGEST_PORT=8080"),
        "HTTP API, /healthz, /readyz and /metrics.",
        8080,
    ),
    Image(
        "warehouse-loader",
        "Clickstream warehouse loader: committed lake batches to Redshift or PostgreSQL",
        ("LOADER_METRICS_PORT=9092",),
        "/healthz, /readyz and /metrics.",
        9092,
    ),
    Image(
        "anomaly-detector",
        "Clickstream anomaly detector: per-minute series, anomalies to Kafka, the lake and "
        "Prometheus",
        ("ANOMALY_METRICS_PORT=9093",),
        "/metrics, /healthz and /readyz.",
        9093,
    ),
    Image(
        "recommender",
        "Clickstream recommendations API: trending, similar and per-user picks from Redis",
        ("RECOMMENDER_HOST=0.0.0.0", "RECOMMENDER_PORT=8080"),
        "HTTP API, /healthz, /readyz and /metrics.",
        8080,
    ),
)


def render(image: Image) -> str:
    env = " \\\n".join(f"    {line}" for line in image.env)
    return (
        TEMPLATE.read_text()
        .replace("{service}", image.service)
        .replace("{module}", image.module)
        .replace("{description}", image.description)
        .replace("{env}", env)
        .replace("{serves}", image.serves)
        .replace("{port}", str(image.port))
    )


def stale() -> list[Path]:
    return [
        SERVICES_DIR / image.service / "Dockerfile"
        for image in IMAGES
        if (SERVICES_DIR / image.service / "Dockerfile").read_text() != render(image)
    ]


def main(argv: list[str]) -> int:
    if "--write" in argv:
        for image in IMAGES:
            (SERVICES_DIR / image.service / "Dockerfile").write_text(render(image))
        return 0
    out_of_date = stale()
    for path in out_of_date:
        print(
            f"{path} differs from services/Dockerfile.template: edit the template, then run "
            "python tests/deploy/service_dockerfiles.py --write"
        )
    return 1 if out_of_date else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
