"""Run ruff on the code cells of every chapter (chapters are MyST markdown, which ruff cannot read).

Each chapter's code cells are joined into one Python file, in memory, and given to ``ruff check`` under
the chapter's own name with a .py suffix, so that pyproject.toml's per-file rules for chapters apply
and the messages point at the chapter. IPython magics (lines starting with % or !) are commented out.
Exits non-zero if ruff finds anything in any chapter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jupytext
from book_checks import ROOT, chapter_files


def chapter_source(path: Path) -> str:
    """The code cells of a chapter as one Python module, cells separated by ``# %%`` markers."""
    notebook = jupytext.read(path)
    cells = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        lines = [
            f"# {line}" if line.lstrip().startswith(("%", "!")) else line
            for line in cell.source.splitlines()
        ]
        cells.append("# %%\n" + "\n".join(lines))
    return "\n\n".join(cells) + "\n"


def main() -> int:
    ruff = Path(sys.executable).parent / "ruff"
    failed = 0
    chapters = chapter_files()
    for path in chapters:
        name = path.relative_to(ROOT).with_suffix(".py").as_posix()
        result = subprocess.run(
            [str(ruff), "check", "--stdin-filename", name, "-"],
            input=chapter_source(path),
            text=True,
            capture_output=True,
            cwd=ROOT,
        )
        if result.returncode != 0:
            failed += 1
            print(
                f"--- {path.relative_to(ROOT)} (line numbers count code-cell lines only)"
            )
            print(result.stdout + result.stderr)
    print(
        f"ruff on chapter code cells: {len(chapters) - failed} clean, {failed} with findings"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
