"""The duplicates checker's reading of the design note and of the tool's listing (no tool run)."""

from tests.duplicates_explained import DOC, explained, explanations, pairs

LISTING = """3 pairs of places (9 files read), each sharing runs of 6 or more lines
D1 services/a/Dockerfile:11-63 ~ services/b/Dockerfile:11-63
D2 src/x.py:1-9 ~ tests/y.py:4-12 shape (+1 more run)
D3 src/x.py:20-30 ~ src/z.py:1-11 shape boilerplate
"""


def test_the_listing_s_rows_become_file_pairs() -> None:
    assert pairs(LISTING) == [
        ("services/a/Dockerfile", "services/b/Dockerfile"),
        ("src/x.py", "tests/y.py"),
        ("src/x.py", "src/z.py"),
    ]


def test_a_pair_is_explained_by_a_row_in_either_order() -> None:
    rules = [("tests/*", "src/x.py", "why")]
    assert explained("src/x.py", "tests/y.py", rules)
    assert explained("tests/y.py", "src/x.py", rules)
    assert not explained("src/x.py", "src/z.py", rules)


def test_the_design_note_s_rows_are_read_with_their_reasons() -> None:
    rules = explanations(DOC.read_text())
    assert ("services/*/Dockerfile", "services/*/Dockerfile") in [(a, b) for a, b, _ in rules]
    assert all(reason.strip() for _, _, reason in rules)
