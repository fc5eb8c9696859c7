"""Repository-level pytest plugin: run the book's chapters with nbval straight from their .md sources.

``pytest --nbval-lax chapters/`` collects every chapter listed in ``_toc.yml``, reads it with jupytext
(in memory: no .ipynb is written next to it), and hands its code cells to nbval, which executes them in a
fresh kernel whose working directory is the chapter's folder, as in the book build. With ``--nbval-lax``
outputs are not compared, but any exception, including a failing ``assert``, fails the chapter.

It also prints how long each chapter took, so slow chapters are visible.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import jupytext
import pytest
from book_checks import ROOT, toc_files
from nbval.plugin import IPyNbCell, IPyNbFile, find_comment_markers, find_metadata_tags

SLOW_CHAPTER_SECONDS = 30.0  # the budget in DEVELOPERS.md, on a two-core CPU


def toc_chapters() -> set[Path]:
    """Every file listed in _toc.yml, as absolute .md paths."""
    return {(ROOT / f).with_suffix(".md").resolve() for f in toc_files()}


class MarkdownNotebook(IPyNbFile):
    """An nbval notebook whose cells come from a jupytext MyST markdown file instead of an .ipynb."""

    def collect(self):  # type: ignore[override]  # same items as IPyNbFile.collect, another reader
        self.nb = jupytext.read(self.path)
        code_cells = (cell for cell in self.nb.cells if cell.cell_type == "code")
        for number, cell in enumerate(code_cells):
            options = defaultdict(bool, find_metadata_tags(cell.metadata))
            options.update(find_comment_markers(cell.source))
            options.setdefault("check", self.compare_outputs)
            yield IPyNbCell.from_parent(
                self, name=f"Cell {number}", cell_num=number, cell=cell, options=options
            )


def pytest_collect_file(
    file_path: Path, parent: pytest.Collector
) -> pytest.Collector | None:
    option = parent.config.option
    if not (getattr(option, "nbval", False) or getattr(option, "nbval_lax", False)):
        return None
    if file_path.suffix != ".md" or "chapters" not in file_path.parts:
        return None
    if file_path.resolve() not in toc_chapters():
        return None
    return MarkdownNotebook.from_parent(parent, path=file_path)


_chapter_seconds: dict[str, float] = defaultdict(float)
_chapter_failed: dict[str, bool] = defaultdict(bool)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    start = time.perf_counter()
    yield
    path = Path(str(item.path))
    if path.suffix == ".md":
        _chapter_seconds[path.relative_to(ROOT).as_posix()] += (
            time.perf_counter() - start
        )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::")[0]
    if path.endswith(".md") and report.failed:
        _chapter_failed[path] = True


def pytest_terminal_summary(
    terminalreporter, exitstatus: int, config: pytest.Config
) -> None:
    if not _chapter_seconds:
        return
    terminalreporter.section("chapter execution time (kernel start to last cell)")
    for chapter, seconds in sorted(_chapter_seconds.items(), key=lambda kv: -kv[1]):
        flags = []
        if seconds > SLOW_CHAPTER_SECONDS:
            flags.append(f"over the {SLOW_CHAPTER_SECONDS:.0f} s budget")
        if _chapter_failed.get(chapter):
            flags.append("FAILED")
        terminalreporter.write_line(
            f"{seconds:7.1f} s  {chapter}"
            + (f"  ({', '.join(flags)})" if flags else "")
        )
    terminalreporter.write_line(f"{sum(_chapter_seconds.values()):7.1f} s  total")
