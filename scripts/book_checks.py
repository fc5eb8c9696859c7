"""The book's table of contents and structural checks of its sources.

Used by tests/book/test_structure.py, by the root conftest.py (which chapters nbval runs) and by
scripts/lint_chapters.py. pytest finds this module through ``pythonpath`` in pyproject.toml.

Each check returns a list of problems (empty when the source is fine), so the tests can show all of
them at once and can be tested themselves on deliberately broken chapters.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import yaml

ROOT = Path(__file__).resolve().parents[1]

#: The sections every chapter has, in this order (CONTRIBUTING.md, "The anatomy").
SECTIONS = (
    "Derivation",
    "Implementation",
    "Verification",
    "Experiments and figures",
    "Claims checked",
    "What we learned",
    "Exercises",
)
#: The longest code cell a chapter may have, in lines (split it, or move reusable code to kexue).
MAX_CELL_LINES = 40
#: Words of how the book was made, which the book's prose never uses.
WORKSHOP_WORDS = re.compile(r"\b(briefs?|brief's|tickets?|issues?|the seed)\b", re.I)
#: A labelled display equation, MyST's ``$$ ... $$ (label)``.
LABELLED_EQUATION = re.compile(r"\$\$\s*\([\w:-]+\)\s*$", re.M)
#: A verdict written by hand rather than derived from ``Claim(..., passed=...)``.
WRITTEN_VERDICT = re.compile(
    r"\bverdict\s*=|\bverdict\(|import[^\n]*\bverdict\b|\"not reproduced|\bpassed\s*=\s*(True|False)\b"
)
#: Parts whose pages are not chapters with the full anatomy (reference material, plots of results).
EXEMPT_PARTS = ("appendix",)

CITE = re.compile(r"\{cite(?::\w+)?\}`([^`]+)`")
LITERALINCLUDE = re.compile(r"```\{literalinclude\}\s+(\S+)\s*\n((?::[^\n]*\n)*)")
MARKDOWN_TABLE = re.compile(r"^\|.*\|\s*\n\|[\s:|-]+\|\s*$", re.M)


def toc_files(root: Path = ROOT) -> list[str]:
    """Every file named in _toc.yml, without suffix, in order."""

    def walk(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node[key] for key in ("root", "file") if key in node]
            return found + [f for value in node.values() for f in walk(value)]
        if isinstance(node, list):
            return [f for value in node for f in walk(value)]
        return []

    return walk(yaml.safe_load((root / "_toc.yml").read_text()))


def chapter_files(root: Path = ROOT) -> list[Path]:
    return sorted((root / "chapters").rglob("*.md"))


@dataclass
class Section:
    title: str
    code: list[str] = field(default_factory=list)
    markdown: list[str] = field(default_factory=list)


def split_sections(path: Path) -> tuple[str | None, Section, list[Section]]:
    """The chapter's H1 title, the text before the first H2 (the question), and its H2 sections."""
    notebook = jupytext.read(path)
    title, preamble, sections = None, Section("(question)"), []
    current = preamble
    for cell in notebook.cells:
        if cell.cell_type == "code":
            current.code.append(cell.source)
            continue
        if cell.cell_type != "markdown":
            continue
        lines: list[str] = []
        in_fence = False
        for line in cell.source.splitlines():
            stripped = line.strip()
            if (
                in_fence
            ):  # headings inside fenced blocks (code, directives) are not headings
                in_fence = stripped not in ("```", "````", ":::")
            elif stripped.startswith(("```", ":::")):
                in_fence = True
            if not in_fence and line.startswith("# ") and title is None:
                title = line[2:].strip()
                continue
            if not in_fence and line.startswith("## "):
                current.markdown.append("\n".join(lines))
                lines = []
                current = Section(line[3:].strip())
                sections.append(current)
                continue
            lines.append(line)
        current.markdown.append("\n".join(lines))
    return title, preamble, sections


def anatomy_problems(path: Path) -> list[str]:
    """What the chapter at ``path`` lacks of the six-part anatomy (empty if nothing)."""
    title, question, sections = split_sections(path)
    problems = []
    if not title:
        problems.append("no title (a '# ' heading)")
    question_text = "\n".join(question.markdown)
    if len(question_text.split()) < 5 or not CITE.search(question_text):
        problems.append(
            "the question paragraph before the first section must cite its source ({cite})"
        )
    titles = [s.title for s in sections]
    missing = [name for name in SECTIONS if not any(t.startswith(name) for t in titles)]
    if missing:
        problems.append(f"missing sections: {missing}")
    positions = [
        next(i for i, t in enumerate(titles) if t.startswith(name))
        for name in SECTIONS
        if name not in missing
    ]
    if positions != sorted(positions):
        problems.append(f"sections out of order: {titles}")

    def section(name: str) -> Section | None:
        return next((s for s in sections if s.title.startswith(name)), None)

    derivation = section("Derivation")
    if derivation and not any(
        "assert" in c and re.search(r"\b(sp|sympy)\.", c) for c in derivation.code
    ):
        problems.append("Derivation has no SymPy code cell with an assert")
    if derivation and not LABELLED_EQUATION.search("\n".join(derivation.markdown)):
        problems.append(
            "Derivation has no labelled display equation ($$ ... $$ (label))"
        )
    implementation = section("Implementation")
    if implementation:
        includes = LITERALINCLUDE.findall("\n".join(implementation.markdown))
        if not any(":pyobject:" in options for _, options in includes):
            problems.append(
                "Implementation shows no library code ({literalinclude} with :pyobject:)"
            )
        if any(":no-docstring:" not in options for _, options in includes):
            problems.append(
                "a {literalinclude} without :no-docstring: (the prose explains the code)"
            )
    verification = section("Verification")
    if verification and not any("assert" in c for c in verification.code):
        problems.append("Verification has no code cell with an assert")
    experiments = section("Experiments and figures")
    if experiments and not any(
        re.search(r"\b(plt|fig|ax|axes)\b", c) for c in experiments.code
    ):
        problems.append("Experiments and figures draws no figure")
    claims = section("Claims checked")
    if claims and not any("ClaimsTable" in c or "claims" in c for c in claims.code):
        problems.append("Claims checked does not show the chapter's ClaimsTable")
    exercises = section("Exercises")
    if exercises:
        problems += exercise_problems(exercises)
    problems += code_problems(path)
    prose = "\n".join(m for s in [question, *sections] for m in s.markdown)
    prose = re.sub(r"```.*?```", "", prose, flags=re.S)
    words = sorted({m.group(0).lower() for m in WORKSHOP_WORDS.finditer(prose)})
    if words:
        problems.append(f"words of how the book was made in the prose: {words}")
    return problems


def exercise_problems(exercises: Section) -> list[str]:
    """2-4 exercises, each with a solution; at least one solution runs code that asserts."""
    text = "\n".join(exercises.markdown)
    count = len(re.findall(r"^```\{exercise\}", text, re.M))
    problems = []
    if not 2 <= count <= 4:
        problems.append(f"Exercises has {count} exercises (2-4 with {{exercise}})")
    solutions = len(re.findall(r"^```\{solution(-start)?\}", text, re.M))
    if solutions < count:
        problems.append(f"Exercises: {count} exercises but {solutions} solutions")
    if not any("assert" in c for c in exercises.code) or "{solution-start}" not in text:
        problems.append(
            "Exercises has no computational solution (solution-start, a code cell with assert)"
        )
    return problems


def code_problems(path: Path) -> list[str]:
    """Cells short enough to read; verdicts never written; hidden cells only draw."""
    problems = []
    for cell in jupytext.read(path).cells:
        if cell.cell_type != "code":
            continue
        first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
        lines = len(cell.source.strip().splitlines())
        if lines > MAX_CELL_LINES:
            problems.append(
                f"a code cell of {lines} lines (at most {MAX_CELL_LINES}): {first[:50]!r}"
            )
        if WRITTEN_VERDICT.search(cell.source):
            problems.append(
                f"a verdict written by hand (use Claim(..., passed=...)): {first[:50]!r}"
            )
        hidden = "hide-input" in cell.metadata.get(
            "tags", []
        ) or "remove-input" in cell.metadata.get("tags", [])
        if hidden and "claims.add(" in cell.source:
            problems.append(
                f"a claim measured in a hidden cell (hidden cells only draw): {first[:50]!r}"
            )
    return problems


def header_problems(path: Path) -> list[str]:
    """The jupytext header every chapter needs to open as a notebook and run with the python3 kernel."""
    metadata = jupytext.read(path).metadata
    problems = []
    if (
        metadata.get("jupytext", {}).get("text_representation", {}).get("format_name")
        != "myst"
    ):
        problems.append("not a jupytext MyST notebook (format_name: myst)")
    if metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append("kernelspec is not python3")
    return problems


def literalinclude_problems(path: Path) -> list[str]:
    """Every {literalinclude} names an existing file and, with :pyobject:, an existing object in it."""
    problems = []
    for target, options in LITERALINCLUDE.findall(path.read_text()):
        file = (path.parent / target).resolve()
        if not file.is_file():
            problems.append(f"literalinclude of a missing file {target}")
            continue
        match = re.search(r":pyobject:\s*(\S+)", options)
        if match and match.group(1) not in python_objects(file):
            problems.append(
                f"literalinclude :pyobject: {match.group(1)} not found in {target}"
            )
    return problems


def python_objects(path: Path) -> set[str]:
    """Top-level functions and classes of a module, and methods as Class.method."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    return names


def bibliography_keys(root: Path = ROOT) -> set[str]:
    return set(
        re.findall(
            r"@\w+\s*\{\s*([^,\s]+)\s*,", (root / "book" / "references.bib").read_text()
        )
    )


def cited_keys(path: Path) -> set[str]:
    return {
        key.strip()
        for group in CITE.findall(path.read_text())
        for key in group.split(",")
    }


# --- the book's macros, for a chapter opened outside the book ------------------------------------

#: The first cell of every chapter: the MathJax macros of _config.yml as TeX definitions, inside a
#: hidden HTML block. JupyterLab (MathJax) and VS Code (KaTeX) typeset the definitions, so the rest
#: of the notebook renders; the book ignores the block (its MathJax only reads the `.math` nodes).
MACRO_CELL_OPEN = '<div class="kexue-macros" style="display: none">'


def book_macros(root: Path = ROOT) -> dict[str, str | list]:
    """The TeX macros the book's MathJax defines (``_config.yml``), by name."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    return config["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]


def macro_cell(root: Path = ROOT) -> str:
    """The markdown of the hidden macro cell, generated from ``_config.yml``.

    ``\\renewcommand`` for the one macro LaTeX already has (``\\vec``), which KaTeX insists on;
    ``\\newcommand`` for the rest. No blank line inside: the block stays one HTML block.
    """
    lines = [MACRO_CELL_OPEN, "$"]
    for name, body in book_macros(root).items():
        text, arguments = (body, 0) if isinstance(body, str) else body
        command = "\\renewcommand" if name in ("vec",) else "\\newcommand"
        lines.append(
            f"{command}{{\\{name}}}"
            + (f"[{arguments}]" if arguments else "")
            + f"{{{text}}}"
        )
    lines += ["$", "</div>"]
    return "\n".join(lines)


def macro_cell_problems(path: Path, root: Path = ROOT) -> list[str]:
    """The chapter's first cell must be the current macro cell (``scripts/macro_cell.py`` writes it)."""
    cells = jupytext.read(path).cells
    if (
        not cells
        or cells[0].cell_type != "markdown"
        or cells[0].source.strip() != macro_cell(root)
    ):
        return [
            "the first cell is not the book's macro cell (run scripts/macro_cell.py)"
        ]
    return []
