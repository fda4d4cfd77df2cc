"""Open-loop GET load (its own process): request i is due at start + i/rate; latency counts
from the due time. Reuses the ingest benchmark's open loop with GET requests."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingest"))
from loadgen import run_load


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--paths", type=Path, required=True, help="file: JSON list of paths")
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    requests = [
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
            f"Authorization: Bearer {args.key}\r\n\r\n"
        ).encode()
        for path in json.loads(args.paths.read_text())
    ]
    result = run_load(args.port, requests, args)  # --rate is required: the open loop
    result["statuses"] = {str(k): v for k, v in result["statuses"].items()}  # type: ignore[union-attr]
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
