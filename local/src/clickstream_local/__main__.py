"""python -m clickstream_local {up,down,status,demo,dag} [--services/--no-services] [--state-dir D]

`dag <dag_id> [--conf JSON] [--logical-date T]` runs one of the batch DAGs (orchestration/)
against the running stack, without a scheduler (clickstream_local.orchestration).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from clickstream_local import demo
from clickstream_local.config import StackConfig, default_state_dir
from clickstream_local.orchestration import run_dag
from clickstream_local.stack import PLATFORM, Stack
from clickstream_local.supervisor import ReadinessError


def _config(state_dir: Path | None) -> StackConfig:
    state = (state_dir or default_state_dir()).resolve()
    # A running stack's saved config wins, so `status`/`down` find the ports it was given.
    return StackConfig.load(state) or StackConfig.default(state)


def _print_connection_info(stack: Stack) -> None:
    info = stack.connection_info()
    rows = [
        ("ingest API", info.ingest_url),
        ("write key", info.write_key),
        ("warehouse DSN", info.warehouse_dsn),
        ("Prometheus", info.prometheus_url),
        ("S3 endpoint", f"{info.s3_endpoint} (bucket {info.s3_bucket}, region {info.s3_region})"),
        ("S3 keys", f"{info.s3_access_key} / {info.s3_secret_key}"),
        ("Kafka", info.kafka_bootstrap),
        *(
            [("Kinesis", f"{stack.config.kinesis_endpoint} (bus; streams in docs/aws.md)")]
            if stack.config.bus == "kinesis"
            else []
        ),
        ("state", str(stack.config.state_dir)),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def _status(stack: Stack) -> int:
    _print_connection_info(stack)
    all_up = True
    print()
    for st in stack.status():
        if st.pid is None:
            state = "down"
        elif st.ready:
            state = f"up (pid {st.pid})"
        else:
            state = f"running, not ready (pid {st.pid})"
        if st.name in PLATFORM and not st.ready:
            all_up = False
        print(f"  {st.name:<17} {state}")
    return 0 if all_up else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clickstream_local", description="Run the local clickstream platform."
    )
    parser.add_argument("command", choices=["up", "down", "status", "demo", "dag"])
    parser.add_argument(
        "dag_id", nargs="?", help="dag: the DAG to run (python -m orchestration dags)"
    )
    parser.add_argument("--conf", default="{}", help="dag: the run's params (JSON)")
    parser.add_argument("--logical-date", default=None, help="dag: the run's logical date (ISO)")
    parser.add_argument(
        "--services",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="up: also start ingest-api, stream-processor and warehouse-loader",
    )
    parser.add_argument("--state-dir", type=Path, default=None, help="default: <repo>/.state")
    parser.add_argument(
        "--bus",
        choices=["kafka", "kinesis"],
        default=None,
        help="up/demo: the bus between collector and processor (default kafka; docs/aws.md)",
    )
    parser.add_argument("--rate", type=float, default=200.0, help="demo: events per second")
    parser.add_argument(
        "--duration", type=float, default=0.0, help="demo: stop after N seconds (0: at Ctrl-C)"
    )
    parser.add_argument(
        "--kafka-security",
        choices=["PLAINTEXT", "SASL_SSL"],
        default=None,
        help="up/demo: SASL_SSL connects the services through the broker's TLS + SCRAM "
        "listener (default: PLAINTEXT, or what the running stack uses)",
    )
    args = parser.parse_args(argv)

    config = _config(args.state_dir)
    if args.bus is not None and args.command in ("up", "demo"):
        config = dataclasses.replace(config, bus=args.bus)
    if args.kafka_security:
        config = dataclasses.replace(config, kafka_security=args.kafka_security)
    stack = Stack(config, progress=lambda line: print(line, flush=True))
    if args.command == "up":
        try:
            stack.start(platform=True, services=args.services)
        except (ReadinessError, RuntimeError) as err:
            print(f"error: {err}", file=sys.stderr)
            print(
                f"logs: {stack.config.logs_dir}; stop with: python -m clickstream_local down",
                file=sys.stderr,
            )
            return 1
        print()
        _print_connection_info(stack)
        return 0
    if args.command == "demo":
        try:
            return demo.run(stack, rate=args.rate, duration=args.duration)
        except (ReadinessError, RuntimeError) as err:
            print(f"error: {err}", file=sys.stderr)
            print(f"logs: {stack.config.logs_dir}", file=sys.stderr)
            stack.supervisor.stop(demo.SIMULATOR)
            stack.stop()
            return 1
    if args.command == "dag":
        if not args.dag_id:
            parser.error("dag needs a DAG id, e.g. clickstream_data_quality")
        if StackConfig.load(config.state_dir) is None:
            print("error: no running stack (make up)", file=sys.stderr)
            return 1
        result = run_dag(config, args.dag_id, json.loads(args.conf), args.logical_date)
        return result.returncode
    if args.command == "down":
        if stack.supervisor.stop(demo.SIMULATOR):
            print("simulator: stopped")
        stack.stop()
        print("all stopped")
        return 0
    return _status(stack)


if __name__ == "__main__":
    sys.exit(main())
