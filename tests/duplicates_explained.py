"""Fail on a pair `duplicates` lists that docs/design-decisions.md does not explain.

    python tests/duplicates_explained.py            # runs `duplicates` on the repository
    python tests/duplicates_explained.py FILE       # reads a saved listing instead

The explanations are the rows of the table under "What `duplicates` still lists, and why":
the first cell holds two `fnmatch` patterns (`a` ~ `b`, matched in either order). `make
duplicates-check` runs this; it is not part of `make lint`, since `duplicates` is a tool of
the development machines, not something the repository installs.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "design-decisions.md"
SECTION = "## What `duplicates` still lists, and why"
ROW = re.compile(r"^\|\s*`([^`]+)`\s*~\s*`([^`]+)`\s*\|\s*(.+?)\s*\|\s*$")
PAIR = re.compile(r"^D\d+\s+(\S+?):\d+-\d+\s+~\s+(\S+?):\d+-\d+")


def explanations(text: str) -> list[tuple[str, str, str]]:
    """(pattern, pattern, reason) per row of the section's table."""
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return [m.groups() for line in section.splitlines() if (m := ROW.match(line))]  # type: ignore[misc]


def pairs(listing: str) -> list[tuple[str, str]]:
    return [m.groups() for line in listing.splitlines() if (m := PAIR.match(line))]  # type: ignore[misc]


def explained(a: str, b: str, rules: list[tuple[str, str, str]]) -> bool:
    match = fnmatch.fnmatchcase
    return any((match(a, x) and match(b, y)) or (match(a, y) and match(b, x)) for x, y, _ in rules)


def main(argv: list[str]) -> int:
    if argv:
        listing = Path(argv[0]).read_text()
    else:
        tool = shutil.which("duplicates")
        if tool is None:
            print("duplicates is not installed here: nothing to check", file=sys.stderr)
            return 2
        listing = subprocess.run(
            [tool, "--most", "200", "--seconds", "300"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    if "incomplete:" in listing:
        print("duplicates did not read the whole tree:\n" + listing, file=sys.stderr)
        return 2
    rules = explanations(DOC.read_text())
    found = pairs(listing)
    unexplained = [(a, b) for a, b in found if not explained(a, b, rules)]
    for a, b in unexplained:
        print(f"unexplained: {a} ~ {b}")
    print(f"{len(found)} pairs, {len(found) - len(unexplained)} explained by {len(rules)} rows")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
