"""Query the lake from a laptop with DuckDB: no cluster, no catalog, just the Parquet files.

    pip install duckdb==1.4.4 duckdb-ext-httpfs==1.4.4.20260205
    python docs/examples/duckdb_lake.py            # the last hour's event counts per minute

`duckdb-ext-httpfs` carries DuckDB's S3 extension in the wheel, so nothing is downloaded at run
time. Settings come from the environment: LAKE_BUCKET, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, and for a local lake S3_ENDPOINT_URL (e.g. the one
`make up` prints; leave it unset for AWS S3). LAKE_FROM / LAKE_TO (ISO times, UTC) choose the
range. One row per (minute, event type), as the warehouse holds it: the newest batch's row.
"""

from __future__ import annotations

import os
import sysconfig
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import duckdb


def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    extensions = os.path.join(sysconfig.get_paths()["purelib"], "duckdb_ext", "extensions")
    con.execute(f"SET extension_directory = '{extensions}'")
    con.execute("LOAD httpfs")
    secret = {
        "TYPE": "s3",
        "KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "SECRET": os.environ["AWS_SECRET_ACCESS_KEY"],
        "REGION": os.environ.get("AWS_REGION", "us-east-1"),
    }
    endpoint = os.environ.get("S3_ENDPOINT_URL")
    if endpoint:  # a local S3 server: path-style URLs, plain HTTP
        url = urlparse(endpoint)
        secret |= {"ENDPOINT": url.netloc, "URL_STYLE": "path", "USE_SSL": url.scheme == "https"}
    options = ", ".join(
        f"{k} {v}" if isinstance(v, bool) else f"{k} '{v}'" for k, v in secret.items()
    )
    con.execute(f"CREATE SECRET lake ({options})")
    return con


def event_counts(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> list[tuple]:
    bucket = os.environ.get("LAKE_BUCKET", "clickstream-lake")
    days = sorted({(start + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(-1, 2)})
    return con.execute(
        f"""
        SELECT window_start, event_type, events, unique_users
        FROM read_parquet('s3://{bucket}/processed/event_counts_minute/*/*/*.parquet',
                          hive_partitioning = true)
        WHERE date IN ({", ".join("?" for _ in days)})     -- prunes the folders read
          AND window_start >= ? AND window_start < ?
        QUALIFY row_number() OVER (PARTITION BY window_start, event_type
                                   ORDER BY batch_id DESC) = 1
        ORDER BY window_start, event_type
        """,
        [*days, start, end],
    ).fetchall()


if __name__ == "__main__":
    now = datetime.now(UTC)
    start = datetime.fromisoformat(
        os.environ.get("LAKE_FROM", (now - timedelta(hours=1)).isoformat())
    )
    end = datetime.fromisoformat(os.environ.get("LAKE_TO", now.isoformat()))
    for window_start, event_type, events, users in event_counts(connect(), start, end):
        print(f"{window_start.astimezone(UTC).isoformat()},{event_type},{events},{users}")
