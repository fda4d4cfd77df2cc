"""Small JSON documents the batch jobs keep between runs, in the lake bucket.

Under `orchestration/state/` (not a data set: the loader never reads it, and the Glue tables
do not cover it). Each job owns one document; runs of one DAG never overlap
(`max_active_runs=1`), so a read-modify-write needs no lock.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

STATE_PREFIX = "orchestration/state"


def state_key(name: str) -> str:
    return f"{STATE_PREFIX}/{name}.json"


def load_json(s3: Any, bucket: str, name: str) -> dict[str, Any]:
    try:
        body = s3.get_object(Bucket=bucket, Key=state_key(name))["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return {}
        raise
    document: dict[str, Any] = json.loads(body)
    return document


def save_json(s3: Any, bucket: str, name: str, document: dict[str, Any]) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=state_key(name),
        Body=json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
        ContentType="application/json",
    )
