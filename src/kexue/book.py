"""Presentation helpers shared by the chapters: the claims table and the figure style.

Nothing here computes a result; it only shows one. Chapters import it so that every page of the book
reports its verdicts and draws its figures the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["reproduced", "partly", "not reproduced here"]
VERDICTS: tuple[str, ...] = ("reproduced", "partly", "not reproduced here")


@dataclass(frozen=True)
class Claim:
    """One row of a chapter's "Claims checked" table.

    Attributes:
        claim: what the source says, in a sentence (MyST markdown; ``$...$`` math is allowed).
        source: where it says it, e.g. ``{cite}`su2021rope` §2`` or "this chapter's derivation".
        measured: what the chapter measured, with numbers.
        verdict: one of :data:`VERDICTS`.
        why: for anything short of "reproduced", the reason (scale, missing data, a real mismatch).
    """

    claim: str
    source: str
    measured: str
    verdict: Verdict
    why: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.verdict != "reproduced" and not self.why.strip():
            raise ValueError(f"a claim judged {self.verdict!r} needs a reason in `why`")


def verdict(passed: bool, *, partly: bool = False) -> Verdict:
    """Turn a measured check into a verdict: ``passed`` wins; otherwise ``partly`` or not reproduced."""
    if passed:
        return "reproduced"
    return "partly" if partly else "not reproduced here"


class ClaimsTable:
    """A table of :class:`Claim` rows that notebooks (and the built book) render as markdown.

    Three columns, claim (numbered, with its source), measurement and verdict (with its reason), so the
    verdict stays in view on a narrow page; the book's stylesheet gives markdown output tables a fixed
    layout at full width.
    """

    def __init__(self, claims: Iterable[Claim]) -> None:
        self.claims = list(claims)
        if not self.claims:
            raise ValueError("a claims table needs at least one claim")

    def _repr_markdown_(self) -> str:
        def cell(text: str) -> str:
            return " ".join(text.split()).replace("|", "\\|")

        lines = ["| Claim | Measured here | Verdict |", "|---|---|---|"]
        for i, c in enumerate(self.claims, start=1):
            shown = f"**{c.verdict}**" + (f": {c.why}" if c.why else "")
            row = [f"**{i}.** {c.claim} ({c.source})", c.measured, shown]
            lines.append("| " + " | ".join(cell(x) for x in row) + " |")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self._repr_markdown_()

    def counts(self) -> dict[str, int]:
        """How many claims got each verdict."""
        return {v: sum(c.verdict == v for c in self.claims) for v in VERDICTS}


def use_book_style() -> None:
    """Set matplotlib defaults for the book's figures (readable on screen, consistent across pages).

    Figures render as PNG at a fixed DPI, so pages stay light and builds stay comparable.
    Needs matplotlib (``pip install kexue[plot]``).
    """
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": 110,
            "savefig.dpi": 110,
            "figure.constrained_layout.use": True,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": "medium",
            "legend.frameon": False,
            "font.size": 10,
            "lines.linewidth": 1.6,
            "image.cmap": "viridis",
            "svg.hashsalt": "kexue",  # deterministic ids if a chapter saves SVG
        }
    )
