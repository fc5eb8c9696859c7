"""The introduction's map of the book links every chapter of the table of contents, and no other."""

from __future__ import annotations

import re

from book_checks import ROOT, toc_files

INTRO = ROOT / "book" / "intro.md"


def test_the_map_in_the_introduction_links_every_chapter() -> None:
    text = INTRO.read_text(encoding="utf-8")
    assert "## A map of the book" in text
    mapped = re.findall(
        r"\{doc\}`\.\./(chapters/[\w/]+)`", text.split("## A map of the book")[1]
    )
    chapters = [f for f in toc_files() if f.startswith("chapters/")]
    assert sorted(set(mapped)) == sorted(chapters), (
        f"chapters missing from the map: {sorted(set(chapters) - set(mapped))}; "
        f"mapped but not in the table of contents: {sorted(set(mapped) - set(chapters))}"
    )
    assert len(mapped) == len(set(mapped)), "a chapter appears twice in the map"
    assert all((ROOT / f"{c}.md").is_file() for c in mapped)
