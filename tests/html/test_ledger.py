"""The claims ledger counts every claim of every chapter, as the chapter pages show them.

Read from the built HTML without a browser: each chapter's rendered claims tables (class
``kexue-claims``) are tallied by verdict, and the ledger's summary table must have one row per chapter
with exactly those numbers, and a total row and opening sentence that add them up.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin

import pytest
from book_checks import EXEMPT_PARTS
from bs4 import BeautifulSoup, Tag

VERDICTS = ("reproduced", "partly", "contradicted", "not tested")
LEDGER = "book/claims.html"


def soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def verdict_of(row: Tag) -> str:
    """The verdict of one claims-table row: the bold word(s) opening its last cell."""
    cell = row.find_all("td")[-1]
    strong = cell.find("strong")
    text = (strong or cell).get_text(" ", strip=True).lower()
    found = [v for v in VERDICTS if text.startswith(v)]
    assert found, f"a claims row whose verdict cell reads {text!r}"
    return found[0]


def chapter_tally(path: Path) -> dict[str, int]:
    counts = dict.fromkeys(VERDICTS, 0)
    for table in soup(path).select(
        "article table.kexue-claims, main table.kexue-claims"
    ):
        for row in table.select("tbody tr"):
            counts[verdict_of(row)] += 1
    return counts


def ledger_summary(site_root: Path) -> tuple[str, dict[str, dict[str, int]], list[int]]:
    """The ledger's opening sentence, its per-chapter rows (page path → counts) and total row."""
    page = soup(site_root / LEDGER)
    summary = next(
        t
        for t in page.find_all("table")
        if t.find("th") and t.find("th").get_text(strip=True) == "Chapter"
    )
    rows: dict[str, dict[str, int]] = {}
    total: list[int] = []
    for tr in summary.select("tbody tr"):
        cells = [td.get_text(strip=True) for td in tr.find_all("td")]
        numbers = [int(c) for c in cells[1:]]
        link = tr.find("a")
        if link is None:  # the **All** row
            total = numbers
            continue
        target = urljoin(LEDGER, link["href"]).split("#")[0]
        assert target not in rows, f"the ledger lists {target} twice"
        rows[target] = dict(zip(VERDICTS, numbers[:-1], strict=True))
        assert sum(numbers[:-1]) == numbers[-1], f"{target}: its row does not add up"
    sentence = page.find(string=re.compile(r"^\s*\d+ claims from \d+ chapters?:"))
    assert sentence, "the ledger has no opening tally"
    return str(sentence).strip(), rows, total


def test_the_ledger_counts_every_claim_of_every_chapter(site_root: Path) -> None:
    if not (site_root / LEDGER).is_file():
        pytest.skip(f"no {LEDGER} in this build")
    chapters = sorted(
        p.relative_to(site_root).as_posix()
        for p in (site_root / "chapters").rglob("*.html")
        if p.parent.name not in EXEMPT_PARTS
    )
    tallies = {c: chapter_tally(site_root / c) for c in chapters}
    missing = [c for c, t in tallies.items() if not sum(t.values())]
    assert not missing, f"chapters without a claims row: {missing}"

    sentence, rows, total = ledger_summary(site_root)
    assert sorted(rows) == chapters, (
        f"not in the ledger: {sorted(set(chapters) - set(rows))}; "
        f"in the ledger but not a chapter: {sorted(set(rows) - set(chapters))}"
    )
    for chapter, tally in tallies.items():
        assert rows[chapter] == tally, (
            f"{chapter}: page {tally}, ledger {rows[chapter]}"
        )

    sums = [sum(t[v] for t in tallies.values()) for v in VERDICTS]
    assert total == [*sums, sum(sums)], f"ledger total {total}, chapters add to {sums}"
    expected = f"{sum(sums)} claims from {len(chapters)} chapters: " + ", ".join(
        f"{n} {v}" for v, n in zip(VERDICTS, sums, strict=True)
    )
    assert sentence.startswith(expected), f"{sentence!r} should open with {expected!r}"
