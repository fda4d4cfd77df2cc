"""Register the lake's tables and views in the Glue Data Catalog, or print what would be.

    python -m clickstream_common.catalog_cli register --bucket B [--database D]
        [--endpoint-url URL] [--region R] [--projection-start YYYY-MM-DD]
    python -m clickstream_common.catalog_cli athena --bucket B      # the Athena DDL script
    python -m clickstream_common.catalog_cli terraform [--out F]    # the module's catalog JSON

`register` is idempotent: a missing database or table is created, an existing table is
updated to the current definition (columns added to a TableSpec reach the catalog this way).
Credentials and region come from the AWS default chain unless given.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from clickstream_common.catalog import (
    DEFAULT_DATABASE,
    DEFAULT_PROJECTION_START,
    athena_script,
    catalog_entries,
    render_terraform_catalog,
)


def glue_client(endpoint_url: str | None, region: str | None) -> Any:
    import boto3  # only this command needs the SDK

    return boto3.client("glue", endpoint_url=endpoint_url, region_name=region)


def register(
    glue: Any,
    bucket: str,
    database: str = DEFAULT_DATABASE,
    start: date = DEFAULT_PROJECTION_START,
) -> dict[str, str]:
    """Create or update the database, every table and every view; name -> what was done."""
    done: dict[str, str] = {}
    try:
        glue.get_database(Name=database)
        done[database] = "exists"
    except glue.exceptions.EntityNotFoundException:
        glue.create_database(
            DatabaseInput={"Name": database, "Description": "clickstream data lake"}
        )
        done[database] = "created"
    for entry in catalog_entries(bucket, database, start):
        try:
            glue.get_table(DatabaseName=database, Name=entry.name)
        except glue.exceptions.EntityNotFoundException:
            glue.create_table(DatabaseName=database, TableInput=entry.table_input)
            done[entry.name] = "created"
            continue
        glue.update_table(DatabaseName=database, TableInput=entry.table_input)
        done[entry.name] = "updated"
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clickstream_common.catalog_cli")
    commands = parser.add_subparsers(dest="command", required=True)
    reg = commands.add_parser("register", help="create or update the tables through Glue")
    ddl = commands.add_parser("athena", help="print the Athena DDL")
    tf = commands.add_parser("terraform", help="write the Terraform module's catalog JSON")
    for sub in (reg, ddl):
        sub.add_argument("--bucket", required=True, help="the lake bucket")
        sub.add_argument("--database", default=DEFAULT_DATABASE)
        sub.add_argument(
            "--projection-start",
            type=date.fromisoformat,
            default=DEFAULT_PROJECTION_START,
            help="first date partition projection enumerates (default %(default)s)",
        )
    reg.add_argument("--endpoint-url", default=None, help="a Glue-compatible endpoint")
    reg.add_argument("--region", default=None)
    tf.add_argument("--out", type=Path, default=None, help="default: stdout")
    args = parser.parse_args(argv)

    if args.command == "athena":
        sys.stdout.write(athena_script(args.bucket, args.database, args.projection_start))
        return 0
    if args.command == "terraform":
        text = json.dumps(render_terraform_catalog(), indent=2)
        if args.out is None:
            sys.stdout.write(text + "\n")
        else:
            args.out.write_text(text + "\n")
        return 0
    glue = glue_client(args.endpoint_url, args.region)
    for name, what in register(glue, args.bucket, args.database, args.projection_start).items():
        print(f"{name}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
