"""The Terraform module read with python-hcl2, for tests that cannot run `terraform`
(providers cannot be downloaded here, so neither `validate` nor `plan` can run).

python-hcl2 keeps string literals quoted and expressions as `${...}`; `text()` gives a
literal's value, `expression()` an expression's source.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
MODULE = TERRAFORM / "modules" / "clickstream"
EXAMPLE = TERRAFORM / "examples" / "eks"


def text(value: Any) -> str:
    """A string literal's value ("\\"abc\\"" -> "abc"); expressions are returned as given."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return str(value)


def expression(value: Any) -> str:
    """The expression inside `${...}`."""
    value = str(value)
    if value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    return value


@dataclass
class Module:
    """Every top-level block of the .tf files of one folder."""

    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)


def load(folder: Path = MODULE) -> Module:
    module = Module()
    for path in sorted(folder.glob("*.tf")):
        with path.open() as f:
            parsed = hcl2.load(f)
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    module.resources[(text(kind), text(name))] = body
        for block in parsed.get("data", []):
            for kind, named in block.items():
                for name, body in named.items():
                    module.data[(text(kind), text(name))] = body
        for block in parsed.get("output", []):
            for name, body in block.items():
                module.outputs[text(name)] = body
        for block in parsed.get("variable", []):
            for name, body in block.items():
                module.variables[text(name)] = body
        for block in parsed.get("locals", []):
            module.locals.update(block)
    return module


@dataclass(frozen=True)
class Statement:
    sid: str
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]
    dynamic: bool  # inside a `dynamic "statement"` block (present only for some inputs)


def _values(values: Any) -> tuple[str, ...]:
    """A list of literals, or one expression (a `for` that makes the list) as given."""
    if isinstance(values, str):
        return (values,)
    return tuple(text(v) for v in values)


def statements(document: dict[str, Any]) -> Iterator[Statement]:
    """The statements of an aws_iam_policy_document, dynamic ones included."""

    def one(body: dict[str, Any], dynamic: bool) -> Statement:
        conditions = tuple(
            (text(c["test"]), text(c["variable"]), _values(c["values"]))
            for c in body.get("condition", [])
        )
        return Statement(
            sid=text(body.get("sid", '""')),
            effect=text(body.get("effect", '"Allow"')),
            actions=tuple(text(a) for a in body.get("actions", [])),
            resources=tuple(text(r) for r in body.get("resources", [])),
            conditions=conditions,
            dynamic=dynamic,
        )

    for body in document.get("statement", []):
        yield one(body, dynamic=False)
    for block in document.get("dynamic", []):
        for kind, body in block.items():
            if text(kind) == "statement":
                for content in body["content"]:
                    yield one(content, dynamic=True)


def leaves(
    tree: dict[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in tree.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            yield from leaves(value, path)
        else:
            yield path, value
