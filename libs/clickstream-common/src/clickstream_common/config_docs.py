"""The docs' environment-variable tables, rendered from the Settings classes.

Every service reads its configuration from a pydantic-settings class; the tables in the docs
are made from those classes (name, type, default, description) so they cannot drift. A table
lives between two marker comments that name the classes it shows:

    <!-- settings-table ingest_api.config:Settings own -->
    ...generated...
    <!-- /settings-table -->

Options after the class references:

* `own`: only the fields declared in the named class itself, not those it inherits (the
  shared settings get a table of their own);
* `prefix=a_,b_`: only the fields whose names start with one of these prefixes.

A field's description is its `Field(description=...)`, or else the comment written just
above it (or after it on its line) in the class's source, so the comment beside the code is
the one text to keep up to date.

    python -m clickstream_common.config_docs           # rewrite the tables in place
    python -m clickstream_common.config_docs --check   # exit 1 if a table is out of date

`make lint` runs the check.
"""

from __future__ import annotations

import argparse
import ast
import enum
import importlib
import inspect
import json
import re
import sys
import textwrap
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

MARKER = re.compile(
    r"(?P<open><!-- settings-table (?P<spec>[^>]*?) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- /settings-table -->)",
    re.DOTALL,
)
_NOQA = re.compile(r"#?\s*noqa(:\s*[A-Z0-9, ]+)?\s*")


@dataclass(frozen=True)
class SettingDoc:
    """One row of a table: what a reader needs to set the variable."""

    env: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class TableSpec:
    classes: tuple[type[BaseModel], ...]
    own: bool
    prefixes: tuple[str, ...]


def parse_spec(spec: str) -> TableSpec:
    classes: list[type[BaseModel]] = []
    own = False
    prefixes: tuple[str, ...] = ()
    for word in spec.split():
        if word == "own":
            own = True
        elif word.startswith("prefix="):
            prefixes = tuple(p for p in word.removeprefix("prefix=").split(",") if p)
        elif ":" in word:
            module, _, name = word.partition(":")
            cls = getattr(importlib.import_module(module), name)
            if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
                raise ValueError(f"{word} is not a pydantic model")
            classes.append(cls)
        else:
            raise ValueError(f"settings-table: cannot read {word!r} in {spec!r}")
    if not classes:
        raise ValueError(f"settings-table names no class: {spec!r}")
    return TableSpec(tuple(classes), own, prefixes)


def _own_names(cls: type[BaseModel]) -> set[str]:
    return set(inspect.get_annotations(cls))


@cache
def source_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment above its line (contiguous `#` lines) or at its end."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    tree = ast.parse(source)
    comments: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        i = node.lineno - 2  # the line before the field, 0-based
        while i >= 0 and lines[i].strip().startswith("#"):
            above.insert(0, lines[i].strip().lstrip("#").strip())
            i -= 1
        trailing = ""
        last = lines[(node.end_lineno or node.lineno) - 1]
        if "#" in last:
            trailing = _NOQA.sub("", last[last.index("#") :]).strip().lstrip("#").strip()
        text = " ".join([*above, trailing]).strip()
        if text:
            comments[node.target.id] = text
    return comments


def _description(cls: type[BaseModel], name: str, info: FieldInfo) -> str:
    if info.description:
        return info.description
    for klass in cls.__mro__:
        if name in inspect.get_annotations(klass):
            return source_comments(klass).get(name, "")
    return ""


def type_name(annotation: Any) -> str:
    """A reader's name of a field's type: `int`, `kafka` \\| `kinesis`, `JSON list`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " | ".join(names)
    if origin in (list, tuple, set, frozenset):
        return "JSON list"
    if origin is dict or annotation is dict:
        return "JSON object"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(f"`{m.value}`" for m in annotation)
    if annotation is SecretStr:
        return "secret"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


def default_text(info: FieldInfo) -> str:
    """The default as a reader would write it in the environment."""
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, (list, tuple, dict)):
        return f"`{json.dumps(value)}`"
    if value == "":
        return "empty"
    return f"`{value}`"


def settings_docs(spec: TableSpec) -> list[SettingDoc]:
    rows: list[SettingDoc] = []
    seen: set[str] = set()
    for cls in spec.classes:
        own = _own_names(cls) if spec.own else None
        for name, info in cls.model_fields.items():
            if own is not None and name not in own:
                continue
            if spec.prefixes and not name.startswith(spec.prefixes):
                continue
            if name in seen:
                continue
            seen.add(name)
            rows.append(
                SettingDoc(
                    env=name.upper(),
                    type=type_name(info.annotation),
                    default=default_text(info),
                    description=_description(cls, name, info),
                )
            )
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(rows: Iterable[SettingDoc]) -> str:
    out = ["| variable | type | default | meaning |", "| --- | --- | --- | --- |"]
    for row in rows:
        out.append(
            f"| `{row.env}` | {_cell(row.type)} | {_cell(row.default)} | {_cell(row.description)} |"
        )
    return "\n".join(out) + "\n"


def render_document(text: str) -> str:
    """The document with every settings table regenerated."""

    def replace(match: re.Match[str]) -> str:
        table = render_table(settings_docs(parse_spec(match["spec"])))
        return match["open"] + table + match["close"]

    return MARKER.sub(replace, text)


def documents(root: Path) -> Iterator[Path]:
    for path in sorted([*root.glob("docs/**/*.md"), root / "README.md"]):
        if path.is_file() and "<!-- settings-table " in path.read_text():
            yield path


def repo_root() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "docs").is_dir():
            return parent
    raise SystemExit("config_docs: not run from a checkout (no docs/ above this module)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clickstream_common.config_docs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a table is stale")
    parser.add_argument("--root", type=Path, default=None, help="the repository (default: found)")
    args = parser.parse_args(argv)
    root = args.root or repo_root()
    stale: list[Path] = []
    found = 0
    for path in documents(root):
        found += 1
        text = path.read_text()
        rendered = render_document(text)
        if rendered == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(rendered)
    if found == 0:
        print("config_docs: no settings-table markers found", file=sys.stderr)
        return 1
    if args.check and stale:
        names = ", ".join(str(p.relative_to(root)) for p in stale)
        print(
            f"settings tables out of date in {names}: run "
            "`uv run python -m clickstream_common.config_docs` and commit the result",
            file=sys.stderr,
        )
        return 1
    for path in stale:
        print(f"rewrote {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
