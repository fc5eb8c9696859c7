"""The presentation helpers of kexue.book (claims table, verdicts)."""

from __future__ import annotations

import pytest

from kexue.book import Claim, ClaimsTable, verdict


def test_table_has_one_row_per_claim_and_escapes_pipes() -> None:
    table = ClaimsTable(
        [
            Claim("$|x|$ is convex", "textbook", "checked on 100 points", "reproduced"),
            Claim(
                "big model wins",
                "paper §4",
                "not run",
                "not reproduced here",
                why="needs a GPU",
            ),
        ]
    )
    lines = table._repr_markdown_().splitlines()
    assert len(lines) == 4  # header, rule, two rows
    assert lines[0] == "| Claim | Measured here | Verdict |"
    assert r"$\|x\|$" in lines[2]
    assert lines[2].count(" | ") == 2  # three columns survive the escaped pipes
    assert lines[2].startswith("| **1.** $\\|x\\|$ is convex (textbook)")
    assert lines[3].endswith("| **not reproduced here**: needs a GPU |")
    assert table.counts() == {"reproduced": 1, "partly": 0, "not reproduced here": 1}


def test_unknown_verdict_is_rejected() -> None:
    with pytest.raises(ValueError, match="verdict must be one of"):
        Claim("c", "s", "m", "probably")  # type: ignore[arg-type]


def test_a_verdict_short_of_reproduced_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="needs a reason"):
        Claim("c", "s", "m", "partly")


def test_empty_table_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one claim"):
        ClaimsTable([])


@pytest.mark.parametrize(
    ("passed", "partly", "expected"),
    [
        (True, False, "reproduced"),
        (True, True, "reproduced"),
        (False, True, "partly"),
        (False, False, "not reproduced here"),
    ],
)
def test_verdict_from_a_check(passed: bool, partly: bool, expected: str) -> None:
    assert verdict(passed, partly=partly) == expected
