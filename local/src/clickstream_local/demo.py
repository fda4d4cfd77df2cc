"""`make demo`: the whole pipeline with simulated shoppers, and live figures from the warehouse."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime

import httpx
import psycopg

from clickstream_local.components import child_env
from clickstream_local.config import RECOMMENDER_READ_KEY, repo_root
from clickstream_local.stack import ConnectionInfo, Stack

SIMULATOR = "simulator"
COLUMNS = ("page_view", "product_view", "search", "add_to_cart", "checkout", "purchase")
# Windows whose end is within the watermark delay can still change (see the processor).
OPEN_WINDOW_SECONDS = 120


def simulator_command(
    ingest_url: str, write_key: str, rate: float, duration: float, *options: str
) -> list[str]:
    """The simulator's command line: shoppers sent to `ingest_url` at `rate` events/s for
    `duration` seconds (0: until stopped); `options` are more of its flags (`--incident`)."""
    return [
        sys.executable,
        "-m",
        "clickstream_simulator",
        "--url",
        ingest_url,
        "--write-key",
        write_key,
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        *options,
    ]


def _prometheus_total(info: ConnectionInfo, query: str) -> float | None:
    try:
        answer = httpx.get(
            f"{info.prometheus_url}/api/v1/query", params={"query": query}, timeout=2
        ).json()
        result = answer["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0
    except (httpx.HTTPError, KeyError, ValueError, IndexError):
        return None


def recommendations(recommender_url: str, candidates: int = 40) -> list[str]:
    """Trending products and the recommendations of one simulated shopper with a history."""
    headers = {"Authorization": f"Bearer {RECOMMENDER_READ_KEY}"}
    try:
        with httpx.Client(base_url=recommender_url, headers=headers, timeout=2) as client:
            trending = client.get("/v1/recommendations/trending?limit=5").json()["items"]
            lines = ["trending now: " + ", ".join(i["product_id"] for i in trending)]
            # Logged-in simulated shoppers are U000000, U000001, ...: show the first one with
            # a history.
            for n in range(candidates):
                user = f"U{n:06d}"
                answer = client.get(f"/v1/recommendations/users/{user}?limit=5").json()
                if answer["personalized"]:
                    picks = ", ".join(f"{i['product_id']} ({i['reason']})" for i in answer["items"])
                    viewed = ", ".join(answer["based_on"][:3])
                    lines.append(f"for {user} (viewed {viewed}): {picks}")
                    break
            return lines
    except (httpx.HTTPError, KeyError, ValueError):
        return ["recommender not answering yet"]


def render(info: ConnectionInfo, minutes: int = 8, recommender_url: str | None = None) -> str:
    """The last minutes of `analytics.event_counts_minute`, one line per minute."""
    with psycopg.connect(info.warehouse_dsn, connect_timeout=3) as conn:
        rows = conn.execute(
            "SELECT window_start, window_end, event_type, events "
            "FROM analytics.event_counts_minute "
            "WHERE window_start >= now() - make_interval(mins => %s) ORDER BY window_start",
            (minutes,),
        ).fetchall()
    table: dict[datetime, dict[str, int]] = {}
    ends: dict[datetime, datetime] = {}
    for start, end, event_type, events in rows:
        table.setdefault(start, {})[event_type] = events
        ends[start] = end
    now = datetime.now(UTC)
    header = f"{'minute (UTC)':<13}" + "".join(f"{c:>14}" for c in COLUMNS) + f"{'all':>9}"
    lines = [header, "-" * len(header)]
    for start in sorted(table):
        counts = table[start]
        state = "live" if (now - ends[start]).total_seconds() < OPEN_WINDOW_SECONDS else "final"
        lines.append(
            f"{start:%H:%M} {state:<7}"
            + "".join(f"{counts.get(c, 0):>14,}" for c in COLUMNS)
            + f"{sum(counts.values()):>9,}"
        )
    if not table:
        lines.append("(no minutes in the warehouse yet: the first appear within ~20 seconds)")
    if recommender_url:
        lines.append("")
        lines += recommendations(recommender_url)
    anomalies = _prometheus_total(info, "sum(anomaly_detected_total)")
    accepted = _prometheus_total(info, "sum(ingest_events_accepted_total)")
    loaded = _prometheus_total(info, "sum(loader_rows_loaded_total)")
    lines.append("")
    lines.append(
        f"ingest accepted {accepted or 0:,.0f} events | loader upserted {loaded or 0:,.0f} "
        f"window rows | anomalies {anomalies or 0:,.0f} | {now:%H:%M:%S} UTC | "
        "Ctrl-C stops everything"
    )
    return "\n".join(lines)


def run(stack: Stack, rate: float, duration: float) -> int:
    stack.start(platform=True, services=True)
    info = stack.connection_info()
    print(
        f"\npipeline up: ingest {info.ingest_url}, warehouse {info.warehouse_dsn}, "
        f"Prometheus {info.prometheus_url}"
    )
    conf = json.dumps({"hour": f"{datetime.now(UTC):%Y-%m-%dT%H:00:00Z}"})
    print(
        "the batch DAGs run against this stack from another terminal (docs/orchestration.md),\n"
        f"  e.g. make dag DAG=clickstream_data_quality CONF='{conf}'"
    )
    print(f"sending simulated shoppers at {rate:.0f} events/s ...\n", flush=True)
    stack.supervisor.start(
        SIMULATOR,
        simulator_command(info.ingest_url, info.write_key, rate, duration=0),
        env=child_env({"PYTHONUNBUFFERED": "1"}),
        cwd=repo_root(),
    )
    started = time.monotonic()
    interactive = sys.stdout.isatty()
    try:
        while not duration or time.monotonic() - started < duration:
            if not stack.supervisor.is_running(SIMULATOR):
                print(f"simulator stopped:\n{stack.supervisor.tail(SIMULATOR)}", file=sys.stderr)
                return 1
            try:
                screen = render(
                    info, recommender_url=f"http://127.0.0.1:{stack.config.recommender_port}"
                )
            except psycopg.Error as exc:
                screen = f"warehouse not answering yet: {exc}"
            if interactive:
                print("\033[2J\033[H", end="")
            print(screen, flush=True)
            print(flush=True)
            time.sleep(5)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        print("\nstopping everything ...", flush=True)
        stack.supervisor.stop(SIMULATOR)
        stack.stop()
