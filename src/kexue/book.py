"""Presentation helpers shared by the chapters: the claims table and the figure style.

Nothing here computes a result; it only shows one. A chapter collects a :class:`Claim`
in the cell that measured it (``claims.add(Claim(...))``) and shows the
:class:`ClaimsTable` once, at the end. The verdict of a claim is never written by hand:
it follows from the boolean the chapter computed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

__all__ = [
    "Claim",
    "ClaimsTable",
    "use_book_style",
]

Verdict = Literal["reproduced", "partly", "contradicted", "not tested"]
#: The four verdicts, in the order tables and the ledger list them.
VERDICTS: tuple[str, ...] = ("reproduced", "partly", "contradicted", "not tested")
#: The MIME type under which a claims table carries its rows as JSON, beside the
#: markdown; the book's extension collects them from every chapter into the ledger.
CLAIMS_MIME = "application/vnd.kexue.claims+json"


def _verdict(passed: bool | None, *, partly: bool = False) -> Verdict:
    """The verdict a measured check earns.

    ``True`` is "reproduced" (or "partly" when ``partly``: the claim holds with a stated
    restriction); ``False`` is "contradicted"; ``None`` is "not tested".
    """
    if passed is None:
        return "not tested"
    if isinstance(passed, np.bool_):
        passed = bool(passed)
    if not isinstance(
        passed, bool
    ):  # a number or a tensor would hide what was compared
        raise TypeError(f"passed must be a bool or None, got {type(passed).__name__}")
    if passed:
        return "partly" if partly else "reproduced"
    return "contradicted"


@dataclass(frozen=True)
class Claim:
    """One row of a chapter's "Claims checked" table.

    Attributes:
        claim: what the source says, in a sentence (MyST markdown; ``$...$`` math
            is allowed).
        source: where it says it, e.g. ``{cite}`su2021rope` §2``.
        measured: what this book measured, with numbers.
        passed: the boolean the chapter computed from its measurement (``True`` if the
            measurement agrees with the claim, ``False`` if it disagrees), or ``None``
            when the claim cannot be tested here.
        partly: with ``passed=True``, the claim holds only in part (``why`` says
            which part).
        why: required for every verdict but "reproduced": the restriction, the
            disagreement, or why the claim cannot be tested (data, scale, nothing
            measurable in the source).
        rests_on: for a claim the derivation proves, the label of the equation it
            rests on.
    """

    claim: str
    source: str
    measured: str
    passed: bool | None
    partly: bool = False
    why: str = ""
    rests_on: str | None = None
    verdict: Verdict = field(init=False)  # derived from passed and partly; never given

    def __post_init__(self) -> None:
        for name in ("claim", "source", "measured", "why"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(
                    f"{name} must be a string, got {type(getattr(self, name)).__name__}"
                )
        if not self.claim.strip() or not self.source.strip():
            raise ValueError("a claim needs its text and its source")
        for name in ("passed", "partly"):
            if isinstance(getattr(self, name), np.bool_):
                object.__setattr__(self, name, bool(getattr(self, name)))
        if not isinstance(self.partly, bool):
            raise TypeError(f"partly must be a bool, got {type(self.partly).__name__}")
        if self.rests_on is not None and not isinstance(self.rests_on, str):
            raise TypeError(
                f"rests_on must be an equation label (str) or None, "
                f"got {type(self.rests_on).__name__}"
            )
        object.__setattr__(self, "verdict", _verdict(self.passed, partly=self.partly))
        if self.partly and self.passed is not True:
            raise ValueError("partly=True only qualifies a claim that passed")
        if self.verdict != "reproduced" and not self.why.strip():
            raise ValueError(f"a claim judged {self.verdict!r} needs a reason in `why`")

    def as_dict(self) -> dict[str, object]:
        """The row as plain JSON types, with its verdict."""
        return asdict(self)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


class ClaimsTable:
    """The claims of one chapter, collected where they are measured and rendered once.

    >>> claims = ClaimsTable()
    >>> claims.add(Claim("1 + 1 = 2", "arithmetic", "2", passed=True))
    >>> claims.counts()["reproduced"]
    1

    In a notebook the table shows as markdown (three columns: the claim with its source,
    the measurement, the verdict with its reason) followed by a one-line tally; the same
    display carries the rows as JSON under ``CLAIMS_MIME`` for the book's claims
    ledger.
    """

    def __init__(self, claims: Iterable[Claim] = ()) -> None:
        if isinstance(claims, str) or not isinstance(claims, Iterable):
            raise TypeError(
                f"claims must be an iterable of Claim, got {type(claims).__name__}"
            )
        self.claims: list[Claim] = []
        for claim in claims:
            self.add(claim)

    def add(self, claim: Claim) -> None:
        """Add one claim (in the cell that measured it)."""
        if not isinstance(claim, Claim):
            raise TypeError(f"expected a Claim, got {type(claim).__name__}")
        if any(c.claim == claim.claim for c in self.claims):
            raise ValueError(f"claim added twice: {claim.claim[:60]!r}")
        self.claims.append(claim)

    def counts(self) -> dict[str, int]:
        """How many claims got each verdict."""
        return {v: sum(c.verdict == v for c in self.claims) for v in VERDICTS}

    def tally(self) -> str:
        """One line: the number of claims and how many got each verdict."""
        parts = [f"{n} {v}" for v, n in self.counts().items() if n]
        if not parts:
            return "0 claims."
        return f"{len(self.claims)} claims: " + ", ".join(parts) + "."

    def _repr_markdown_(self) -> str:
        if not self.claims:
            raise ValueError("a claims table needs at least one claim")
        lines = ["| Claim | Measured here | Verdict |", "|---|---|---|"]
        for i, c in enumerate(self.claims, start=1):
            source = c.source + (f", {{eq}}`{c.rests_on}`" if c.rests_on else "")
            shown = f"**{c.verdict}**" + (f": {c.why}" if c.why else "")
            row = [f"**{i}.** {c.claim} ({source})", c.measured, shown]
            lines.append("| " + " | ".join(_cell(x) for x in row) + " |")
        return "\n".join(lines) + "\n\n" + self.tally()

    def _repr_mimebundle_(
        self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
    ) -> dict[str, object]:
        return {
            "text/markdown": self._repr_markdown_(),
            "text/plain": self.tally(),
            CLAIMS_MIME: {"claims": [c.as_dict() for c in self.claims]},
        }

    def __repr__(self) -> str:
        return self.tally() if self.claims else "ClaimsTable([])"

    def to_json(self) -> str:
        return json.dumps([c.as_dict() for c in self.claims], ensure_ascii=False)


def use_book_style() -> None:
    """Set matplotlib defaults for the book's figures (legible at the column width).

    Figures render as PNG at 200 dpi and 6.4 x 3.6 inches, the width of the book's text
    column, so a figure is shown close to its natural size and its 9-point labels stay
    legible; no figure has more than two panels side by side. Needs matplotlib
    (``pip install kexue[plot]``).
    """
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": 200,
            "savefig.dpi": 200,
            "figure.constrained_layout.use": True,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": "medium",
            "legend.frameon": False,
            "legend.fontsize": "small",
            "font.size": 10,
            "lines.linewidth": 1.6,
            "image.cmap": "viridis",
            "svg.hashsalt": "kexue",  # deterministic ids if a chapter saves SVG
        }
    )
