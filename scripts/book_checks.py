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

#: The sections every chapter has, in this order (DEVELOPERS.md, "Anatomy of a chapter").
SECTIONS = ("Derivation", "Implementation", "Verification", "Experiments and figures", "Claims checked")
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
            if in_fence:  # headings inside fenced blocks (code, directives) are not headings
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
        problems.append("the question paragraph before the first section must cite its source ({cite})")
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
    if derivation and not any("assert" in c and re.search(r"\b(sp|sympy)\.", c) for c in derivation.code):
        problems.append("Derivation has no SymPy code cell with an assert")
    implementation = section("Implementation")
    if implementation and not any(":pyobject:" in m for m in implementation.markdown):
        problems.append("Implementation shows no library code ({literalinclude} with :pyobject:)")
    verification = section("Verification")
    if verification and not any("assert" in c for c in verification.code):
        problems.append("Verification has no code cell with an assert")
    experiments = section("Experiments and figures")
    if experiments and not any(re.search(r"\b(plt|fig|ax|axes)\b", c) for c in experiments.code):
        problems.append("Experiments and figures draws no figure")
    claims = section("Claims checked")
    if claims and not (
        any("ClaimsTable" in c for c in claims.code) or any(MARKDOWN_TABLE.search(m) for m in claims.markdown)
    ):
        problems.append("Claims checked has no claims table (ClaimsTable cell or markdown table)")
    return problems


def header_problems(path: Path) -> list[str]:
    """The jupytext header every chapter needs to open as a notebook and run with the python3 kernel."""
    metadata = jupytext.read(path).metadata
    problems = []
    if metadata.get("jupytext", {}).get("text_representation", {}).get("format_name") != "myst":
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
            problems.append(f"literalinclude :pyobject: {match.group(1)} not found in {target}")
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
    return set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", (root / "book" / "references.bib").read_text()))


def cited_keys(path: Path) -> set[str]:
    return {key.strip() for group in CITE.findall(path.read_text()) for key in group.split(",")}
