"""The docs' settings tables: rendered from the Settings classes, and checked against them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from clickstream_common import config_docs


class _Base(BaseSettings):
    # Shared: the base's own comment.
    shared_name: str = "base"


class _Example(_Base):
    # The first line
    # and the second.
    example_plain: int = 5
    example_host: str = "0.0.0.0"  # on every interface
    example_described: float = Field(default=2.0, description="From the description.")
    example_mode: Literal["a", "b"] = "a"
    example_unset: str | None = None
    example_empty: str = ""
    example_list: tuple[str, ...] = ("*",)
    example_secret: SecretStr = SecretStr("redis://x")

    # A section heading, kept apart by a blank line.

    example_flag: bool = False


def _rows(spec: str) -> dict[str, config_docs.SettingDoc]:
    return {row.env: row for row in config_docs.settings_docs(config_docs.parse_spec(spec))}


def test_rows_take_type_default_and_the_comment_beside_the_field() -> None:
    rows = _rows(f"{__name__}:_Example own")
    assert list(rows) == [
        "EXAMPLE_PLAIN",
        "EXAMPLE_HOST",
        "EXAMPLE_DESCRIBED",
        "EXAMPLE_MODE",
        "EXAMPLE_UNSET",
        "EXAMPLE_EMPTY",
        "EXAMPLE_LIST",
        "EXAMPLE_SECRET",
        "EXAMPLE_FLAG",
    ]
    assert rows["EXAMPLE_PLAIN"] == config_docs.SettingDoc(
        "EXAMPLE_PLAIN", "int", "`5`", "The first line and the second."
    )
    assert rows["EXAMPLE_HOST"].description == "on every interface"
    assert rows["EXAMPLE_DESCRIBED"].description == "From the description."
    assert rows["EXAMPLE_DESCRIBED"].default == "`2`"
    assert rows["EXAMPLE_MODE"].type == "`a` | `b`"
    assert rows["EXAMPLE_UNSET"].default == "unset"
    assert rows["EXAMPLE_EMPTY"].default == "empty"
    assert rows["EXAMPLE_LIST"].default == '`["*"]`'
    assert rows["EXAMPLE_SECRET"].default == "`redis://x`"
    assert rows["EXAMPLE_FLAG"].default == "`false`"
    # A heading separated by a blank line describes no field.
    assert rows["EXAMPLE_FLAG"].description == ""


def test_inherited_fields_unless_own_and_prefix_filters() -> None:
    assert "SHARED_NAME" in _rows(f"{__name__}:_Example")
    shared = _rows(f"{__name__}:_Example")["SHARED_NAME"]
    assert shared.description == "Shared: the base's own comment."
    assert "SHARED_NAME" not in _rows(f"{__name__}:_Example own")
    assert list(_rows(f"{__name__}:_Example prefix=example_m,example_f")) == [
        "EXAMPLE_MODE",
        "EXAMPLE_FLAG",
    ]


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="names no class"):
        config_docs.parse_spec("own")
    with pytest.raises(ValueError, match="cannot read"):
        config_docs.parse_spec(f"{__name__}:_Example bogus")


def test_check_fails_on_a_stale_table_and_the_rewrite_fixes_it(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "x.md"
    doc.write_text(
        f"before\n<!-- settings-table {__name__}:_Example own prefix=example_plain -->\n"
        "| stale |\n<!-- /settings-table -->\nafter\n"
    )
    assert config_docs.main(["--check", "--root", str(tmp_path)]) == 1
    assert config_docs.main(["--root", str(tmp_path)]) == 0
    text = doc.read_text()
    assert "| `EXAMPLE_PLAIN` | int | `5` | The first line and the second. |" in text
    assert text.startswith("before\n") and text.endswith("<!-- /settings-table -->\nafter\n")
    assert config_docs.main(["--check", "--root", str(tmp_path)]) == 0


# Every Settings class a process reads; each must have a table in the docs.
SETTINGS_CLASSES = {
    "clickstream_common.settings:CommonSettings",
    "clickstream_common.kafka_security:KafkaSecuritySettings",
    "clickstream_common.settings:S3Settings",
    "clickstream_common.settings:KinesisSettings",
    "ingest_api.config:Settings",
    "stream_processor.config:Settings",
    "warehouse_loader.config:Settings",
    "anomaly_detector.config:Settings",
    "recommender.config:Settings",
    "orchestration.settings:Settings",
}


def _specs() -> list[str]:
    root = config_docs.repo_root()
    return [
        m["spec"]
        for path in config_docs.documents(root)
        for m in config_docs.MARKER.finditer(path.read_text())
    ]


def test_the_repository_docs_are_current() -> None:
    assert config_docs.main(["--check"]) == 0


def test_every_settings_class_has_a_table_and_every_field_a_meaning() -> None:
    named = {word for spec in _specs() for word in spec.split() if ":" in word}
    assert named >= SETTINGS_CLASSES
    undescribed = [
        row.env
        for spec in _specs()
        for row in config_docs.settings_docs(config_docs.parse_spec(spec))
        if not row.description
    ]
    assert not undescribed, f"give these fields a comment or a description: {undescribed}"


def test_the_contracts_page_shows_every_field_of_every_class() -> None:
    contracts = (config_docs.repo_root() / "docs" / "contracts.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", contracts, re.MULTILINE))
    for ref in SETTINGS_CLASSES:
        cls = config_docs.parse_spec(ref).classes[0]
        missing = {name.upper() for name in cls.model_fields} - documented
        assert not missing, f"{ref}: {sorted(missing)} not in contracts.md"
