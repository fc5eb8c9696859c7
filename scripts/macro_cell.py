"""Write (or refresh) the hidden macro cell at the top of every chapter, from ``_config.yml``.

Usage: ``python scripts/macro_cell.py [chapters/...md ...]`` (all chapters by default). The cell is
the first thing after the jupytext header, followed by a cell break (``+++``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from book_checks import MACRO_CELL_OPEN, ROOT, chapter_files, macro_cell

HEADER = re.compile(r"\A---\n.*?\n---\n", re.S)
OLD_CELL = re.compile(
    r"\A\n*" + re.escape(MACRO_CELL_OPEN) + r".*?</div>\n+(\+\+\+\n+)?", re.S
)


def write_macro_cell(path: Path) -> bool:
    text = path.read_text()
    header = HEADER.match(text)
    if header is None:
        raise ValueError(f"{path}: no jupytext header")
    body = OLD_CELL.sub("", text[header.end() :]).lstrip("\n")
    new = text[: header.end()] + "\n" + macro_cell() + "\n\n+++\n\n" + body
    if new != text:
        path.write_text(new)
    return new != text


def main(arguments: list[str]) -> int:
    for path in [Path(a).resolve() for a in arguments] or chapter_files():
        if write_macro_cell(path):
            print(f"macro cell written in {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
