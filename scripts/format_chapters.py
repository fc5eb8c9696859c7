"""Format the code cells of chapters with ruff, leaving everything else in the .md file byte for byte.

(``jupytext --pipe`` would also re-serialise the cells' YAML metadata, figure captions included.)
Usage: ``python scripts/format_chapters.py [chapters/...md ...]`` (all chapters by default).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jupytext
from book_checks import ROOT, chapter_files


def format_source(source: str, ruff: Path) -> str:
    result = subprocess.run(
        [str(ruff), "format", "--stdin-filename", "cell.py", "-"],
        input=source + "\n",
        text=True,
        capture_output=True,
        cwd=ROOT,
        check=True,
    )
    return result.stdout.rstrip("\n")


def format_chapter(path: Path, ruff: Path) -> bool:
    text = path.read_text()
    position, changed = 0, False
    for cell in jupytext.read(path).cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        start = text.index(cell.source, position)
        formatted = format_source(cell.source, ruff)
        text = text[:start] + formatted + text[start + len(cell.source) :]
        position = start + len(formatted)
        changed |= formatted != cell.source
    if changed:
        path.write_text(text)
    return changed


def main(arguments: list[str]) -> int:
    ruff = Path(sys.executable).parent / "ruff"
    paths = [Path(a).resolve() for a in arguments] or chapter_files()
    for path in paths:
        if format_chapter(path, ruff):
            print(f"formatted {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
