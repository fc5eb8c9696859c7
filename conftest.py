"""Repository-level pytest plugin: run the book's chapters with nbval straight from their .md sources.

``pytest --nbval-lax chapters/`` collects every chapter listed in ``_toc.yml``, reads it with jupytext
(in memory: no .ipynb is written next to it), and hands its code cells to nbval, which executes them in a
fresh kernel whose working directory is the chapter's folder, as in the book build. With ``--nbval-lax``
outputs are not compared, but any exception, including a failing ``assert``, fails the chapter.

It also prints how long each chapter took, and fails the run when one takes longer than
``FAIL_CHAPTER_SECONDS``. Each chapter that ran whole without a failure is written, with its
outputs, to ``_build/.executed/``, stamped with the library's hash: the book build
(``book/_ext/kexue_book.py``) renders that execution instead of running the chapter again.
Chapters run in parallel under pytest-xdist (``-n 2 --dist loadfile``: one kernel per worker).
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from pathlib import Path

import jupytext
import nbformat
import pytest
from book_checks import ROOT, toc_files
from nbval.plugin import IPyNbCell, IPyNbFile, find_comment_markers, find_metadata_tags

SLOW_CHAPTER_SECONDS = 30.0  # the budget in DEVELOPERS.md, on a two-core CPU
FAIL_CHAPTER_SECONDS = 45.0  # past this, `make test` fails
EXECUTED = ROOT / "_build" / ".executed"


def _book_extension():
    spec = importlib.util.spec_from_file_location(
        "kexue_book", ROOT / "book" / "_ext" / "kexue_book.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    if isinstance(item, IPyNbCell) and outcome.get_result().failed:
        item.parent.kexue_failed = True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    yield
    if not isinstance(item, IPyNbCell):
        return
    outputs = list(getattr(item, "test_outputs", None) or [])
    if item.cell.source.rstrip().endswith(";"):
        # IPython hides a cell's value after a trailing semicolon; nbval's kernel does not
        outputs = [o for o in outputs if o.get("output_type") != "execute_result"]
    item.cell.outputs = outputs
    item.cell.execution_count = item.cell_num + 1
    for output in item.cell.outputs:
        if output.get("output_type") == "execute_result":
            output["execution_count"] = item.cell_num + 1
    last = nextitem is None or nextitem.parent is not item.parent
    if last and not getattr(item.parent, "kexue_failed", False):
        write_executed(item.parent)


def write_executed(notebook_file: IPyNbFile) -> None:
    """Leave the executed chapter where the book build takes it from (see the module docstring)."""
    cells = [c for c in notebook_file.nb.cells if c.cell_type == "code"]
    if any(c.get("execution_count") is None for c in cells):
        return  # not every cell ran (for example under -k): nothing to render from
    path = Path(str(notebook_file.path)).resolve()
    relative = path.relative_to(ROOT)
    notebook = nbformat.from_dict(notebook_file.nb)
    notebook.metadata["kexue"] = {
        "source": relative.as_posix(),
        "source_hash": _book_extension().source_hash(ROOT),
    }
    target = EXECUTED / relative.with_suffix(".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::")[0]
    if not path.endswith(".md"):
        return
    _chapter_seconds[path] += (
        report.duration
    )  # setup (the kernel's start), call and teardown
    if report.failed:
        _chapter_failed[path] = True


def _too_slow() -> list[str]:
    return [c for c, s in _chapter_seconds.items() if s > FAIL_CHAPTER_SECONDS]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _too_slow() and not hasattr(session.config, "workerinput"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(
    terminalreporter, exitstatus: int, config: pytest.Config
) -> None:
    if not _chapter_seconds:
        return
    terminalreporter.section("chapter execution time (kernel start to last cell)")
    for chapter, seconds in sorted(_chapter_seconds.items(), key=lambda kv: -kv[1]):
        flags = []
        if seconds > FAIL_CHAPTER_SECONDS:
            flags.append(f"FAILED: over the {FAIL_CHAPTER_SECONDS:.0f} s limit")
        elif seconds > SLOW_CHAPTER_SECONDS:
            flags.append(f"over the {SLOW_CHAPTER_SECONDS:.0f} s budget")
        if _chapter_failed.get(chapter):
            flags.append("FAILED")
        terminalreporter.write_line(
            f"{seconds:7.1f} s  {chapter}"
            + (f"  ({', '.join(flags)})" if flags else "")
        )
    terminalreporter.write_line(
        f"{sum(_chapter_seconds.values()):7.1f} s  total (summed over workers)"
    )
