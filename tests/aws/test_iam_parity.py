"""Every IAM policy of the Terraform module grants what the service's code calls, on the
resources it calls it on, and nothing more.

"What the code calls" is read from the services' source, not listed by hand: the AWS clients
each package creates (`boto3.client("s3")`, `create_client("kinesis")`), and every attribute of
the package that is an operation of one of those clients (botocore's service models give the
operations and their Python names), plus `get_paginator("<operation>")`. Each operation maps to
its IAM action (the few that differ are in ACTION_OF). What the code cannot show is written out
with its reason: Spark's S3A checkpoint calls (Java), Redshift's COPY (runs in the cluster), and
the KMS calls that encryption at rest implies.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from clickstream_common import lake
from clickstream_common.tables import EVENTS
from tests.aws.tfparse import Module, Statement, load, statements, text

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "ingest_api": REPO / "services/ingest-api/src/ingest_api",
    "stream_processor": REPO / "services/stream-processor/src/stream_processor",
    "warehouse_loader": REPO / "services/warehouse-loader/src/warehouse_loader",
}
# Operations whose IAM action has another name (Service Authorization Reference).
ACTION_OF = {
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
}
# The stream processor's checkpoints go through Hadoop's S3A (Java): the calls its docs list
# for a read-write path (HEAD/GET/PUT/DELETE of objects, multipart uploads and their cleanup,
# LIST of the prefix).
S3A_CHECKPOINT_ACTIONS = {
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
}
# Redshift's COPY FROM 's3://...' (warehouse_loader.sql.copy_from_s3_sql) reads the objects,
# or the manifest and the objects it names, and lists the key as a prefix.
REDSHIFT_COPY_ACTIONS = {"s3:GetObject", "s3:ListBucket"}


@cache
def _models() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def _operations(service: str) -> dict[str, str]:
    """python_name -> OperationName of one AWS service."""
    model = _models().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


COMMON = REPO / "libs/clickstream-common/src"


def _shared_modules(trees: list[ast.AST]) -> set[Path]:
    """The clickstream_common modules a service imports: their calls run with its role."""
    found = set()
    for tree in trees:
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("clickstream_common."):
                    path = COMMON / (name.replace(".", "/") + ".py")
                    if path.exists():
                        found.add(path)
    return found


def _sources(package: Path) -> Iterator[ast.AST]:
    own = [ast.parse(p.read_text(), str(p)) for p in sorted(package.rglob("*.py"))]
    yield from own
    for path in sorted(_shared_modules(own)):
        yield ast.parse(path.read_text(), str(path))


def aws_services_of(package: Path) -> set[str]:
    """Services the package makes clients of: the literal first argument of `*.client(...)`
    and `*.create_client(...)` calls."""
    available = set(_models().get_available_services())
    found: set[str] = set()
    for tree in _sources(package):
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("client", "create_client")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in available
            ):
                found.add(node.args[0].value)
    return found


def actions_called_by(package: Path) -> set[str]:
    services = aws_services_of(package)
    names: set[str] = set()
    for tree in _sources(package):
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get_paginator"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(str(node.args[0].value))
    actions: set[str] = set()
    for service in services:
        for python_name, operation in _operations(service).items():
            if python_name in names:
                actions.add(ACTION_OF.get((service, operation), f"{service}:{operation}"))
    return actions


def kms_actions_for(actions: set[str]) -> set[str]:
    """What the lake key's encryption at rest adds: writing to the bucket or the stream needs a
    data key, reading from the bucket, the stream or the queue needs to decrypt."""
    writes = {"s3:PutObject", "kinesis:PutRecords"}
    reads = {"s3:GetObject", "kinesis:GetRecords", "sqs:ReceiveMessage"}
    kms = set()
    if actions & writes:
        kms.add("kms:GenerateDataKey")
    if actions & reads:
        kms.add("kms:Decrypt")
    return kms


@pytest.fixture(scope="module")
def module() -> Module:
    return load()


def _policy(module: Module, name: str) -> list[Statement]:
    return list(statements(module.data[("aws_iam_policy_document", name)]))


def _granted(policy: list[Statement]) -> set[str]:
    assert all(s.effect == "Allow" for s in policy)
    return {a for s in policy for a in s.actions}


def _resources_of(policy: list[Statement], action: str) -> set[str]:
    return {r for s in policy if action in s.actions for r in s.resources}


def _object_prefixes(policy: list[Statement], action: str) -> set[str]:
    """Key prefixes (as written in the module) an object action is granted on."""
    prefixes = set()
    for resource in _resources_of(policy, action):
        assert resource.startswith("${aws_s3_bucket.lake.arn}/"), (action, resource)
        prefixes.add(resource.removeprefix("${aws_s3_bucket.lake.arn}/"))
    return prefixes


def _local(module: Module, name: str) -> str:
    return "${local." + name + "}*"


def test_the_code_scan_finds_what_the_services_call() -> None:
    # The scan itself: each service's known calls are found (a scan that finds nothing would
    # make every comparison below vacuous).
    assert {"s3:PutObject", "kinesis:GetRecords"} <= actions_called_by(PACKAGES["stream_processor"])
    assert {"sqs:ReceiveMessage", "s3:ListBucket"} <= actions_called_by(
        PACKAGES["warehouse_loader"]
    )
    assert "kinesis:PutRecords" in actions_called_by(PACKAGES["ingest_api"])


@pytest.mark.parametrize("service", sorted(PACKAGES))
def test_each_service_role_grants_exactly_what_its_code_calls(module: Module, service: str) -> None:
    called = actions_called_by(PACKAGES[service])
    expected = called | kms_actions_for(called)
    if service == "stream_processor":
        expected |= S3A_CHECKPOINT_ACTIONS | {"kms:Decrypt"}
    policy = _policy(module, service)
    granted = _granted(policy)
    assert granted == expected, (
        f"{service}: granted but not called: {sorted(granted - expected)}; "
        f"called but not granted: {sorted(expected - granted)}"
    )
    for statement in policy:
        assert "*" not in statement.resources, statement
        assert not any(a.endswith("*") for a in statement.actions), statement


def test_resources_are_the_ones_each_call_touches(module: Module) -> None:
    processor = _policy(module, "stream_processor")
    # The lake writer puts raw, processed and rejected objects; S3A owns the checkpoints.
    written = {
        f"{lake.RAW_PREFIX}/",
        f"{lake.PROCESSED_PREFIX}/",
        f"{lake.ERRORS_PREFIX}/",
    }
    names = {"raw_prefix", "processed_prefix", "errors_prefix", "checkpoints_prefix"}
    assert _object_prefixes(processor, "s3:PutObject") == {_local(module, n) for n in names}
    assert {text(module.locals[n]) for n in names - {"checkpoints_prefix"}} == written
    for action in S3A_CHECKPOINT_ACTIONS - {"s3:PutObject", "s3:ListBucket"}:
        if action.startswith("s3:List"):
            continue
        assert _object_prefixes(processor, action) == {_local(module, "checkpoints_prefix")}
    assert _resources_of(processor, "kinesis:GetRecords") == {"${statement.value}"}

    loader = _policy(module, "warehouse_loader")
    assert _object_prefixes(loader, "s3:GetObject") == {_local(module, "processed_prefix")}
    assert _object_prefixes(loader, "s3:PutObject") == {_local(module, "manifests_prefix")}
    assert _resources_of(loader, "sqs:ReceiveMessage") == {"${aws_sqs_queue.notifications.arn}"}

    ingest = _policy(module, "ingest_api")
    assert _resources_of(ingest, "kinesis:PutRecords") == {
        "${aws_kinesis_stream.events[0].arn}",
        "${aws_kinesis_stream.dead_letters[0].arn}",
    }

    # Bucket-level listing only under the prefixes each one reads.
    for policy, prefixes in (
        (processor, {"checkpoints_prefix"}),
        (loader, {"processed_prefix"}),
    ):
        for statement in policy:
            if "s3:ListBucket" in statement.actions:
                assert statement.resources == ("${aws_s3_bucket.lake.arn}",)
                (condition,) = statement.conditions
                assert condition[:2] == ("StringLike", "s3:prefix")
                assert set(condition[2]) == {_local(module, p) for p in prefixes}


def test_the_redshift_role_reads_only_batches_and_manifests(module: Module) -> None:
    from warehouse_loader import sql

    # The loader's COPY names the role and reads from S3: what the role below allows.
    copy = sql.copy_from_s3_sql(EVENTS, "s3://b/k", "arn:aws:iam::1:role/r", manifest=True)
    assert "IAM_ROLE" in copy and "FROM 's3://b/k'" in copy
    policy = _policy(module, "redshift_copy")
    assert _granted(policy) == REDSHIFT_COPY_ACTIONS | {"kms:Decrypt"}
    assert _object_prefixes(policy, "s3:GetObject") == {
        _local(module, "processed_prefix"),
        _local(module, "manifests_prefix"),
    }


def test_each_role_is_assumed_only_by_its_own_service_accounts(module: Module) -> None:
    (trust,) = statements(module.data[("aws_iam_policy_document", "irsa_trust")])
    assert trust.actions == ("sts:AssumeRoleWithWebIdentity",)
    conditions = {c[1]: c for c in trust.conditions}
    assert conditions["${local.oidc_issuer}:aud"][2] == ("sts.amazonaws.com",)
    subject = conditions["${local.oidc_issuer}:sub"]
    assert subject[0] == "StringEquals"  # not StringLike: no wildcard service accounts
    # One exact subject per service account of the role.
    assert "system:serviceaccount:${var.namespace}:${account}" in subject[2][0]
    assert subject[2][0].startswith("${[for account in each.value")
    roles = module.locals["role_service_accounts"]
    assert set(roles) == set(PACKAGES)
    (redshift,) = statements(module.data[("aws_iam_policy_document", "redshift_trust")])
    assert redshift.actions == ("sts:AssumeRole",)
