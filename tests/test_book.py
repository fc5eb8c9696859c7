"""kexue.book: claims whose verdicts are derived from what a chapter computed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kexue.book import CLAIMS_MIME, VERDICTS, Claim, ClaimsTable


def table_of_four() -> ClaimsTable:
    claims = ClaimsTable()
    claims.add(
        Claim("$|x|$ is convex", "textbook", "checked on 100 points", passed=True)
    )
    claims.add(
        Claim(
            "holds at small n",
            "paper §2",
            "n <= 8 only",
            passed=True,
            partly=True,
            why="n > 8 fails",
        )
    )
    claims.add(
        Claim(
            "residual lowers loss",
            "paper §4",
            "+0.14 error",
            passed=False,
            why="error rose",
        )
    )
    claims.add(
        Claim("big model wins", "paper §5", "not run", passed=None, why="needs a GPU")
    )
    return claims


@pytest.mark.parametrize(
    ("passed", "partly", "expected"),
    [
        (True, False, "reproduced"),
        (True, True, "partly"),
        (False, False, "contradicted"),
        (None, False, "not tested"),
        (np.bool_(True), False, "reproduced"),
        (np.float64(1.0) > 2.0, False, "contradicted"),
    ],
)
def test_the_verdict_follows_from_passed(passed, partly: bool, expected: str) -> None:
    why = "" if expected == "reproduced" else "a reason"
    claim = Claim("c", "s", "m", passed=passed, partly=partly, why=why)
    assert claim.verdict == expected
    assert claim.as_dict()["passed"] is (None if passed is None else bool(passed))


def test_there_are_exactly_four_verdicts() -> None:
    assert VERDICTS == ("reproduced", "partly", "contradicted", "not tested")


def test_a_verdict_cannot_be_written() -> None:
    with pytest.raises(TypeError):
        Claim("c", "s", "m", passed=True, verdict="reproduced")  # type: ignore[call-arg]


@pytest.mark.parametrize("passed", [1, 0.0, "yes", [True]])
def test_passed_must_be_a_boolean(passed) -> None:
    with pytest.raises(TypeError, match="passed must be a bool or None"):
        Claim("c", "s", "m", passed=passed, why="w")


@pytest.mark.parametrize(
    ("passed", "partly"), [(False, False), (None, False), (True, True)]
)
def test_every_verdict_but_reproduced_needs_a_reason(passed, partly: bool) -> None:
    with pytest.raises(ValueError, match="needs a reason"):
        Claim("c", "s", "m", passed=passed, partly=partly)


@pytest.mark.parametrize("passed", [False, None])
def test_partly_only_qualifies_a_claim_that_passed(passed) -> None:
    with pytest.raises(ValueError, match="partly=True"):
        Claim("c", "s", "m", passed=passed, partly=True, why="w")


def test_a_claim_needs_text_and_source() -> None:
    with pytest.raises(ValueError, match="its text and its source"):
        Claim(" ", "s", "m", passed=True)
    with pytest.raises(TypeError, match="measured must be a string"):
        Claim("c", "s", 0.5, passed=True)  # type: ignore[arg-type]


def test_table_rows_escape_pipes_and_end_with_a_tally() -> None:
    markdown = table_of_four()._repr_markdown_()
    lines = markdown.splitlines()
    assert lines[0] == "| Claim | Measured here | Verdict |"
    assert lines[2].startswith("| **1.** $\\|x\\|$ is convex (textbook) |")
    assert lines[2].count(" | ") == 2  # three columns survive the escaped pipes
    assert lines[3].endswith("| **partly**: n > 8 fails |")
    assert lines[4].endswith("| **contradicted**: error rose |")
    assert lines[5].endswith("| **not tested**: needs a GPU |")
    assert (
        lines[-1] == "4 claims: 1 reproduced, 1 partly, 1 contradicted, 1 not tested."
    )


def test_the_equation_a_claim_rests_on_is_referenced() -> None:
    claims = ClaimsTable(
        [
            Claim(
                "rotation is relative",
                "article §2",
                "exact",
                passed=True,
                rests_on="rope-relative",
            )
        ]
    )
    assert "(article §2, {eq}`rope-relative`)" in claims._repr_markdown_()


def test_the_display_carries_the_rows_as_json() -> None:
    bundle = table_of_four()._repr_mimebundle_()
    assert set(bundle) == {"text/markdown", "text/plain", CLAIMS_MIME}
    rows = json.loads(json.dumps(bundle[CLAIMS_MIME]))[
        "claims"
    ]  # survives JSON, as in a notebook
    assert [r["verdict"] for r in rows] == list(VERDICTS)
    assert rows[2] == {
        "claim": "residual lowers loss",
        "source": "paper §4",
        "measured": "+0.14 error",
        "passed": False,
        "partly": False,
        "why": "error rose",
        "rests_on": None,
        "verdict": "contradicted",
    }


def test_counts_and_empty_tables() -> None:
    assert table_of_four().counts() == dict.fromkeys(VERDICTS, 1)
    with pytest.raises(ValueError, match="at least one claim"):
        ClaimsTable()._repr_markdown_()


def test_a_claim_is_added_once_and_must_be_a_claim() -> None:
    claims = ClaimsTable()
    claims.add(Claim("c", "s", "m", passed=True))
    with pytest.raises(ValueError, match="added twice"):
        claims.add(Claim("c", "s", "m2", passed=True))
    with pytest.raises(TypeError, match="expected a Claim"):
        claims.add("c")  # type: ignore[arg-type]


def test_an_empty_table_tallies_zero_claims() -> None:
    assert ClaimsTable().tally() == "0 claims."
    assert repr(ClaimsTable()) == "ClaimsTable([])"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"partly": "yes"}, "partly must be a bool"),
        ({"rests_on": 3}, "rests_on must be"),
    ],
)
def test_qualifiers_of_the_wrong_type_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        Claim("c", "s", "m", passed=True, why="w", **kwargs)


def test_numpy_bools_are_plain_bools() -> None:
    claim = Claim("c", "s", "m", passed=np.bool_(True), partly=np.bool_(True), why="w")
    assert claim.passed is True and claim.partly is True and claim.verdict == "partly"


def test_claims_must_be_an_iterable_of_claims() -> None:
    with pytest.raises(TypeError, match="claims must be an iterable"):
        ClaimsTable(5)  # type: ignore[arg-type]
