"""Sphinx extension local to the book.

It serves MathJax offline, keys the notebook cache on the library, renders each chapter from the
execution its test already ran, shows library code without docstrings, collects every chapter's
claims into the claims ledger, gives figures alt text, and numbers the parts of the book.

1. MathJax. The HTML must render with no network (CI has none, and readers may be offline), so MathJax 3
   is copied from the pinned ``django-static-mathjax`` wheel into ``_static/mathjax`` and ``mathjax_path``
   points there (set in ``_config.yml``).
2. Cache key. jupyter-cache re-executes a notebook only when its own code cells change, so a change to
   ``src/kexue`` would otherwise be served from stale outputs. Before myst-nb opens the cache, we hash
   the package source, the pinned environment and the committed benchmark results (which the appendix
   plots); if the hash differs from the one stored beside the cache, the cache is wiped and every
   chapter runs again.
3. One execution. The chapter test (nbval, ``conftest.py``) leaves each executed notebook in
   ``_build/.executed``, stamped with the library hash; :func:`ingest_executed_notebooks` puts those
   into the cache, so the book build renders them instead of running every chapter again.
4. ``literalinclude`` gains ``:no-docstring:``; the prose explains the code.
5. Claims. ``kexue.book.ClaimsTable`` displays its rows as JSON beside the markdown table; after a
   chapter is read its rows are collected from the executed notebook, and the page holding the
   ``claims-ledger`` directive (read last) lists them all, grouped by verdict, with totals.
6. Figures get their caption as alt text; claims tables get the class ``kexue-claims``; parts of
   the table of contents made of chapters are numbered "Part I", "Part II", ... in order.
7. API reference. A page of ``book/api/`` holds a ``kexue-api`` block per part; before the page is
   parsed, the block becomes the part's reference, generated from its ``__all__``: a section per
   module, linked to the chapter that derives it, with an autodoc entry per name. References
   written through a name's module resolve to its part's entry.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import textwrap
from pathlib import Path
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.directives.code import LiteralInclude
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from kexue.book import (  # one definition for the chapters and the ledger
    CLAIMS_MIME,
    VERDICTS,
)

logger = logging.getLogger(__name__)

# What MathJax's tex-mml-chtml component loads: itself, its fonts, and TeX extensions loaded on demand.
MATHJAX_FILES = (
    "tex-mml-chtml.js",
    "output/chtml/fonts/woff-v2",
    "input/tex/extensions",
    "ui",
    "a11y",
)
KEY_FILE = "kexue-source.sha256"


def mathjax_source() -> Path:
    import mathjax  # the django-static-mathjax distribution; no Django needed to read its files

    root = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (root / "tex-mml-chtml.js").is_file():
        raise FileNotFoundError(
            f"MathJax 3 not found under {root}; is django-static-mathjax installed?"
        )
    return root


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source, target = mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    for item in MATHJAX_FILES:
        src, dst = source / item, target / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)


def source_hash(root: Path) -> str:
    """SHA-256 over the library's source files, the pinned environment, and the benchmark code and
    results files (read by chapters/appendix/benchmarks.md), in a stable order."""
    digest = hashlib.sha256()
    files = sorted((root / "src" / "kexue").rglob("*.py"))
    files += [root / "requirements.txt", root / "pyproject.toml"]
    files += sorted((root / "benchmarks").glob("*.py"))
    files += sorted((root / "benchmarks" / "results").glob("*.json"))
    for path in files:
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def key_cache_on_library(app: Sphinx, config: Config) -> None:
    if config.nb_execution_mode != "cache":
        return
    cache = Path(
        config.nb_execution_cache_path or Path(app.outdir).parent / ".jupyter_cache"
    )
    if not cache.is_absolute():
        cache = Path(app.srcdir) / cache
    key = source_hash(Path(app.srcdir))
    key_file = cache.parent / KEY_FILE
    stored = key_file.read_text().strip() if key_file.is_file() else None
    app.config._kexue_library_changed = stored != key  # read by mark_chapters_outdated
    if stored != key:
        if cache.exists():
            logger.info(
                "[kexue] src/kexue or the environment changed: clearing %s", cache
            )
            shutil.rmtree(cache)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(key + "\n")


def mark_chapters_outdated(app: Sphinx, env, added, changed, removed) -> list[str]:
    """Re-read every page when the library changed, so a plain (incremental) build is not stale either."""
    if getattr(app.config, "_kexue_library_changed", False):
        return sorted(env.found_docs - set(added) - set(changed))
    return []


def drop_duplicate_scripts(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree
) -> None:
    """Render each inline script once.

    Jupyter Book 1 registers the inline set-up scripts of sphinx-thebe and sphinx-togglebutton twice (once
    under the file names None and ""), and the second ``const THEBE_JS_URL`` is a SyntaxError in the browser.
    """
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (
            getattr(script, "filename", script) or "",
            getattr(script, "attributes", {}).get("body", ""),
        )
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def offer_notebook_download(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree
) -> None:
    """Offer each chapter as an executed .ipynb in the page's download menu, beside its .md source.

    sphinx-book-theme only does this when a launch service (Binder, Colab, ...) is configured, and this book
    configures none: it must build and read offline. The executed notebook, with the outputs
    myst-nb took from its cache (:func:`executed_notebook`), is written to ``_sources`` where the
    theme's download button points.
    """
    if "kernelspec" not in app.env.metadata.get(pagename, {}):
        return
    notebook = executed_notebook(app, pagename)
    if not notebook:
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        json.dumps(notebook, indent=1, ensure_ascii=False), encoding="utf8"
    )
    context["ipynb_source"] = f"{pagename}.ipynb"


# --- one execution: notebooks executed by the chapter test, put into the cache ------------------

EXECUTED_DIR = (
    ".executed"  # under _build: conftest.py writes there, this extension reads
)


def ingest_executed_notebooks(app: Sphinx) -> None:
    """Cache the notebooks the chapter test executed with the current library, then drop them.

    A notebook stamped with another library hash, or whose code no longer matches its chapter,
    is skipped: the book then executes that chapter itself.
    """
    config = app.config
    if config.nb_execution_mode != "cache":
        return
    build = Path(app.outdir).parent
    executed = build / EXECUTED_DIR
    if not executed.is_dir():
        return
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from myst_nb.core.read import read_myst_markdown_notebook

    cache = get_cache(_cache_path(app, config))
    key = source_hash(Path(app.srcdir))
    for path in sorted(executed.rglob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        stamp = notebook.metadata.get("kexue", {})
        source = Path(app.srcdir) / stamp.get("source", "")
        if stamp.get("source_hash") != key or not source.is_file():
            logger.info("[kexue] %s is stale: the book will execute it", path.name)
            continue
        current = read_myst_markdown_notebook(source.read_text(encoding="utf8"))
        if (
            cache.create_hashed_notebook(current)[1]
            != cache.create_hashed_notebook(notebook)[1]
        ):
            logger.info(
                "[kexue] %s changed since its test ran: the book executes it", source
            )
            continue
        bundle = CacheBundleIn(notebook, str(source), data=stamp.get("data", {}))
        cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
        logger.info(
            "[kexue] %s: rendering the execution of the chapter test", source.name
        )
    shutil.rmtree(executed)


def _cache_path(app: Sphinx, config: Config) -> Path:
    cache = Path(
        config.nb_execution_cache_path or Path(app.outdir).parent / ".jupyter_cache"
    )
    return cache if cache.is_absolute() else Path(app.srcdir) / cache


# --- library code without its docstrings ---------------------------------------------------------


def strip_docstrings(source: str) -> str:
    """``source`` (a function, a class or a module, possibly indented) without its docstrings.

    A body that held only a docstring keeps ``...``; one blank line after a removed docstring
    goes with it.
    """
    lines = source.splitlines()
    dedented = textwrap.dedent(source)
    tree = ast.parse(dedented)
    drop: set[int] = set()
    ellipsis: dict[int, str] = {}
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list) or not body:
            continue
        first = body[0]
        if not (
            isinstance(
                node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
            )
            and isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            continue
        span = range(first.lineno - 1, first.end_lineno)
        drop.update(span)
        after = first.end_lineno
        if after < len(lines) and not lines[after].strip():
            drop.add(after)
        if len(body) == 1:
            ellipsis[first.lineno - 1] = lines[first.lineno - 1][
                : len(lines[first.lineno - 1]) - len(lines[first.lineno - 1].lstrip())
            ]
    kept = []
    for number, line in enumerate(lines):
        if number in ellipsis:
            kept.append(ellipsis[number] + "...")
        elif number not in drop:
            kept.append(line)
    return "\n".join(kept) + ("\n" if source.endswith("\n") else "")


class KexueLiteralInclude(LiteralInclude):
    """Sphinx's ``literalinclude`` with one more flag, ``:no-docstring:``."""

    option_spec: ClassVar[dict] = dict(
        LiteralInclude.option_spec, **{"no-docstring": directives.flag}
    )

    def run(self) -> list[nodes.Node]:
        strip = "no-docstring" in self.options
        self.options.pop("no-docstring", None)
        result = super().run()
        if not strip:
            return result
        for node in result:
            for block in node.findall(nodes.literal_block):
                text = strip_docstrings(block.astext())
                block.children = [nodes.Text(text)]
                block.rawsource = text
        return result


# --- claims: collected from every chapter, listed on the ledger page -----------------------------

CLAIMS_HEADER = "Claim Measured here Verdict"
LEDGER_DOC_OPTION = "claims-ledger"


def claims_of_notebook(notebook: dict) -> list[dict]:
    """Every claim row a notebook displayed (``kexue.book.ClaimsTable``), in order."""
    rows = []
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            bundle = output.get("data", {}).get(CLAIMS_MIME)
            if isinstance(bundle, str):
                bundle = json.loads(bundle)
            if bundle:
                rows.extend(bundle["claims"])
    return rows


def mark_claims_tables(tree: nodes.Element) -> None:
    """Give every claims table (by its header row) the class the stylesheet lays out."""
    for table in tree.findall(nodes.table):
        head = next(iter(table.findall(nodes.thead)), None)
        if head is not None and " ".join(head.astext().split()) == CLAIMS_HEADER:
            table["classes"].append("kexue-claims")


def collect_claims(app: Sphinx, doctree: nodes.document) -> None:
    """After a chapter is read: keep its claims for the ledger; mark its claims tables."""
    env = app.env
    mark_claims_tables(doctree)
    if not hasattr(env, "kexue_claims"):
        env.kexue_claims = {}
    env.kexue_claims.pop(env.docname, None)
    if "kernelspec" not in env.metadata.get(env.docname, {}):
        return
    rows = claims_of_notebook(executed_notebook(app, env.docname))
    if rows:
        title = next(iter(doctree.findall(nodes.title)), None)
        env.kexue_claims[env.docname] = {
            "title": title.astext() if title is not None else env.docname,
            "claims": rows,
        }


def executed_notebook(app: Sphinx, docname: str) -> dict:
    """The executed notebook of a chapter, with its outputs.

    In cache mode myst-nb writes ``jupyter_execute/<doc>.ipynb`` without the outputs it merged
    from the cache, so the outputs are taken from the cache itself.
    """
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{docname}.ipynb"
    notebook = (
        json.loads(executed.read_text(encoding="utf8")) if executed.is_file() else {}
    )
    if any(c.get("outputs") for c in notebook.get("cells", [])):
        return notebook
    if app.config.nb_execution_mode != "cache":
        return notebook
    from jupyter_cache import get_cache
    from myst_nb.core.read import read_myst_markdown_notebook

    source = Path(app.env.doc2path(docname))
    cache = get_cache(_cache_path(app, app.config))
    try:
        _, merged = cache.merge_match_into_notebook(
            read_myst_markdown_notebook(source.read_text("utf8"))
        )
    except KeyError:
        return notebook
    return merged


def purge_claims(app: Sphinx, env, docname: str) -> None:
    getattr(env, "kexue_claims", {}).pop(docname, None)


def merge_claims(app: Sphinx, env, docnames, other) -> None:
    if not hasattr(env, "kexue_claims"):
        env.kexue_claims = {}
    env.kexue_claims.update(getattr(other, "kexue_claims", {}))


def ledger_markdown(chapters: dict[str, dict], order: list[str]) -> str:
    """The ledger as MyST markdown: totals, then one table per verdict.

    ``chapters`` maps a docname to ``{"title", "claims"}``; ``order`` lists docnames in book order.
    """

    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    docs = [d for d in order if d in chapters] + sorted(set(chapters) - set(order))
    rows = [
        (d, i, c) for d in docs for i, c in enumerate(chapters[d]["claims"], start=1)
    ]
    total = {v: sum(c["verdict"] == v for _, _, c in rows) for v in VERDICTS}
    lines = [
        f"{len(rows)} claims from {len(docs)} chapter{'s' if len(docs) != 1 else ''}: "
        + ", ".join(f"{n} {v}" for v, n in total.items())
        + ".",
        "",
        "| Chapter | " + " | ".join(v.capitalize() for v in VERDICTS) + " | All |",
        "|---|" + "---:|" * (len(VERDICTS) + 1),
    ]
    for d in docs:
        counts = [
            sum(c["verdict"] == v for c in chapters[d]["claims"]) for v in VERDICTS
        ]
        numbers = " | ".join(str(n) for n in counts)
        lines.append(f"| {{doc}}`/{d}` | {numbers} | {sum(counts)} |")
    numbers = " | ".join(str(n) for n in total.values())
    lines += [f"| **All** | {numbers} | **{len(rows)}** |", ""]
    for v in VERDICTS:
        group = [(d, i, c) for d, i, c in rows if c["verdict"] == v]
        lines += [f"## {v.capitalize()} ({len(group)})", ""]
        if not group:
            lines += ["No claim of the book has this verdict.", ""]
            continue
        lines += ["| Claim | Measured here | Verdict |", "|---|---|---|"]
        for d, i, c in group:
            source = c["source"] + (
                f", {{eq}}`{c['rests_on']}`" if c.get("rests_on") else ""
            )
            short = re.split(r"[:,]", chapters[d]["title"])[0].strip()
            claim = f"{{doc}}`{short} <{'/' + d}>`, claim {i}: {c['claim']} ({source})"
            shown = f"**{c['verdict']}**" + (f": {c['why']}" if c.get("why") else "")
            lines.append(f"| {cell(claim)} | {cell(c['measured'])} | {cell(shown)} |")
        lines.append("")
    return "\n".join(lines)


class ClaimsLedger(SphinxDirective):
    """``claims-ledger``: every claim of every chapter (this page is read after the chapters)."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        env = self.env
        env.kexue_ledger_doc = env.docname
        chapters = getattr(env, "kexue_claims", {})
        order = list(getattr(env.app.config, "external_site_map", None) or [])
        order = [d for d in _toc_order(env.app) if d in chapters] or order
        if not chapters:
            return [nodes.paragraph(text="No chapter displayed a claims table.")]
        container = nodes.container(classes=["kexue-ledger"])
        text = ledger_markdown(chapters, order)
        self.state.nested_parse(
            StringList(text.splitlines()), self.content_offset, container
        )
        mark_claims_tables(container)
        return container.children


def _toc_order(app: Sphinx) -> list[str]:
    site_map = getattr(app.config, "external_site_map", None)
    if site_map is None:
        return []
    seen: list[str] = []

    def walk(docname: str) -> None:
        if docname in seen or docname not in site_map:
            return
        seen.append(docname)
        for tree in site_map[docname].subtrees:
            for item in tree.items:
                walk(str(item))

    walk(site_map.root.docname)
    return seen


def read_ledger_last(app: Sphinx, env, docnames: list[str]) -> None:
    """Read the ledger page after every chapter (Sphinx reads in sorted order otherwise)."""
    ledgers = [d for d in docnames if _is_ledger(app, d)]
    for d in ledgers:
        docnames.remove(d)
        docnames.append(d)


def reread_ledger(app: Sphinx, env, added, changed, removed) -> list[str]:
    """Any page read again may change the ledger: read the ledger again too."""
    if added or changed or removed:
        return [d for d in env.found_docs if _is_ledger(app, d)]
    return []


def _is_ledger(app: Sphinx, docname: str) -> bool:
    path = Path(app.srcdir) / f"{docname}.md"
    return path.is_file() and "```{claims-ledger}" in path.read_text(encoding="utf8")


# --- presentation: alt text, part numbers ----------------------------------------------------------

FILENAME_ALT = re.compile(r"^[\w./-]+\.(png|jpe?g|svg|gif)$|^$", re.I)


def alt_text_from_captions(app: Sphinx, doctree: nodes.document) -> None:
    """A figure's image gets its caption as alt text, unless it has a real one."""
    for figure in doctree.findall(nodes.figure):
        caption = next(iter(figure.findall(nodes.caption)), None)
        if caption is None:
            continue
        text = " ".join(caption.astext().split())
        for image in figure.findall(nodes.image):
            if FILENAME_ALT.match(image.get("alt", "") or ""):
                image["alt"] = text


ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII")
UNNUMBERED_PARTS = ("chapters/foundations/", "chapters/appendix/")


def number_parts(app: Sphinx, config: Config) -> None:
    """Prefix "Part I · ", "Part II · ", ... to the captions of the parts made of chapters.

    Foundations and the appendix are not parts; neither are the front and back matter.
    """
    site_map = getattr(config, "external_site_map", None)
    if site_map is None:
        return
    number = 0
    for tree in site_map[site_map.root.docname].subtrees:
        items = [str(item) for item in tree.items]
        if not tree.caption or not items:
            continue
        if not all(
            i.startswith("chapters/") and not i.startswith(UNNUMBERED_PARTS)
            for i in items
        ):
            continue
        tree.caption = f"Part {ROMAN[number]} · {tree.caption.split(' · ')[-1]}"
        number += 1


# --- the API reference: pages generated from each part's __all__ -----------------------------------

#: A page of ``book/api/`` asks for a part's reference with this block, which
#: :func:`expand_api_blocks` replaces, before the page is parsed, by :func:`api_markdown`.
API_BLOCK = re.compile(
    r"^```\{kexue-api\}[ \t]+(?P<part>[\w.]+)[ \t]*\n```[ \t]*$", re.M
)
#: At most this many chapters are named under a module that no chapter mirrors.
USED_IN_SHOWN = 4
_KEXUE_NAME = re.compile(r"\bkexue(?:\.\w+)+")
_FROM_IMPORT = re.compile(
    r"^[ \t]*from[ \t]+(kexue(?:\.\w+)*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.M
)


def api_parts(text: str) -> list[str]:
    """The parts whose reference a page asks for, in order."""
    return [match["part"] for match in API_BLOCK.finditer(text)]


def _import(name: str):
    import importlib

    return importlib.import_module(name)


def _object_module(part: str, name: str) -> str:
    """The module that defines ``part.name`` (the part itself for data such as a version string)."""
    module = getattr(getattr(_import(part), name), "__module__", None)
    return module if isinstance(module, str) and module.startswith("kexue") else part


def _source_line(obj: object) -> int:
    import inspect

    try:
        return inspect.getsourcelines(inspect.unwrap(obj))[1]
    except (TypeError, OSError):
        return 0  # data (a version string) first


def part_modules(part: str, root: Path) -> list[tuple[str, list[str]]]:
    """``part.__all__`` grouped by defining module: ``(module, names)`` with the part's own module
    first, then the modules in the order of their chapters in ``_toc.yml``, then the rest by name;
    names in the order of their module's source."""
    package = _import(part)
    groups: dict[str, list[str]] = {}
    for name in package.__all__:
        groups.setdefault(_object_module(part, name), []).append(name)
    order = _toc_files(root)

    def key(module: str) -> tuple[int, int, str]:
        doc = mirror_chapter(module)
        if module == part:
            return (0, 0, module)
        if doc in order:
            return (1, order.index(doc), module)
        return (2, 0, module)

    return [
        (
            module,
            sorted(groups[module], key=lambda n: _source_line(getattr(package, n))),
        )
        for module in sorted(groups, key=key)
    ]


def _toc_files(root: Path) -> list[str]:
    import yaml

    def walk(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [str(node[key]) for key in ("root", "file") if key in node]
            return found + [f for value in node.values() for f in walk(value)]
        if isinstance(node, list):
            return [f for value in node for f in walk(value)]
        return []

    path = root / "_toc.yml"
    return walk(yaml.safe_load(path.read_text())) if path.is_file() else []


def mirror_chapter(module: str) -> str:
    """``kexue.<part>.<topic>`` -> ``chapters/<part>/<topic>`` (the mirror rule)."""
    return "chapters/" + "/".join(module.split(".")[1:])


def api_label(module: str) -> str:
    """The label of a module's section in the reference: ``api-positions-rope``, ``api-kexue``."""
    return "api-" + ("-".join(module.split(".")[1:]) or "kexue")


def chapters_using(module: str, root: Path, chapters: list[str]) -> list[str]:
    """The chapters (docnames, in the given order) whose text imports or names something that
    ``module`` defines, or the module itself."""
    used = []
    for doc in chapters:
        path = root / f"{doc}.md"
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf8")
        dotted = set(_KEXUE_NAME.findall(text))
        for source, names in _FROM_IMPORT.findall(text):
            dotted.update(
                f"{source}.{n.split(' as ')[0].strip()}"
                for n in names.strip("()").replace("\n", ",").split(",")
                if n.split("#")[0].strip()
            )
        if any(_defined_in(name, module) for name in dotted):
            used.append(doc)
    return used


def _defined_in(dotted: str, module: str) -> bool:
    """Whether ``dotted`` (``kexue.x.y`` as a chapter writes it) is ``module`` or an object that
    ``module`` defines."""
    if dotted == module:
        return True
    head, _, name = dotted.rpartition(".")
    try:
        obj = getattr(_import(head), name)
    except (ImportError, AttributeError):
        return False
    return (
        getattr(obj, "__module__", None) == module
        or getattr(obj, "__name__", None) == module
    )


def _entry(part: str, name: str) -> list[str]:
    import inspect

    obj = getattr(_import(part), name)
    if inspect.isclass(obj):
        return [
            f".. autoclass:: {part}.{name}",
            "   :members:",
            "   :show-inheritance:",
            "",
        ]
    if callable(obj):
        return [f".. autofunction:: {part}.{name}", ""]
    return [f".. autodata:: {part}.{name}", ""]


def api_markdown(part: str, root: Path, docs: set[str] | None = None) -> str:
    """The MyST markdown of ``part``'s reference: a section per defining module, labelled
    :func:`api_label`, with a link to the chapter that derives it (or the chapters that use it),
    the module's docstring, and an autodoc entry for each name of ``part.__all__``.

    ``docs`` are the documents the book builds (``_toc.yml`` when None); a chapter outside it is
    not linked.
    """
    import inspect

    toc = _toc_files(root)
    docs = set(toc) if docs is None else docs
    chapters = [d for d in toc if d.startswith("chapters/") and d in docs]
    lines: list[str] = []
    declared = set()
    groups = part_modules(part, root)
    if any(module != part for module, _ in groups):
        lines += ["```{eval-rst}", f".. py:module:: {part}", "```", ""]
        declared.add(part)
    for module, names in groups:
        lines += [f"({api_label(module)})=", f"## `{module}`", ""]
        chapter = mirror_chapter(module)
        if chapter in docs:
            lines += [f"Derived in the chapter {{doc}}`/{chapter}`.", ""]
        else:
            users = chapters_using(module, root, chapters)
            if users:
                links = [f"{{doc}}`/{d}`" for d in users[:USED_IN_SHOWN]]
                rest = len(users) - len(links)
                if rest:
                    links.append(f"{rest} more chapter{'s' if rest > 1 else ''}")
                listed = (
                    ", ".join(links[:-1]) + " and " + links[-1]
                    if len(links) > 1
                    else links[0]
                )
                lines += [f"Used in {listed}.", ""]
        lines += ["```{eval-rst}"]
        if module not in declared:
            lines += [f".. py:module:: {module}", ""]
            declared.add(module)
        lines += [f".. currentmodule:: {part}", ""]
        docstring = inspect.getdoc(_import(module))
        if docstring:
            lines += [*docstring.splitlines(), ""]
        for name in names:
            lines += _entry(part, name)
        lines += ["```", ""]
    return "\n".join(lines)


def expand_api_blocks(app: Sphinx, docname: str, source: list[str]) -> None:
    """Replace each ``kexue-api`` block of a page by its part's reference (:func:`api_markdown`)."""
    if "{kexue-api}" not in source[0]:
        return
    root, docs = Path(app.srcdir), set(app.env.found_docs)
    source[0] = API_BLOCK.sub(
        lambda match: api_markdown(match["part"], root, docs), source[0]
    )


def documented_name(dotted: str) -> str | None:
    """Where the reference documents ``dotted``, an object's path through its module
    (``kexue.positions.rope.apply_rope`` -> ``kexue.positions.apply_rope``); None if nowhere."""
    parts = dotted.split(".")
    if len(parts) < 4 or parts[0] != "kexue":
        return None
    part, name = ".".join(parts[:2]), parts[-1]
    try:
        package = _import(part)
        obj = getattr(_import(".".join(parts[:-1])), name)
    except (ImportError, AttributeError):
        return None
    if name in getattr(package, "__all__", ()) and getattr(package, name) is obj:
        return f"{part}.{name}"
    return None


def resolve_module_paths(app: Sphinx, env, node, contnode):
    """Resolve a reference written through a name's module (``kexue.foundations.masking.masked_softmax``)
    to the entry of its part (``kexue.foundations.masked_softmax``), where the reference shows it."""
    if node.get("refdomain") != "py":
        return None
    target = documented_name(node.get("reftarget", ""))
    if target is None:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], target, node, contnode
    )


def setup(app: Sphinx) -> dict[str, object]:
    # Runs before myst-nb's own config-inited handlers, which open the cache.
    app.connect("config-inited", key_cache_on_library, priority=100)
    app.connect(
        "config-inited", number_parts, priority=950
    )  # after sphinx-external-toc (900)
    app.connect("builder-inited", ingest_executed_notebooks)
    app.add_directive("literalinclude", KexueLiteralInclude, override=True)
    app.add_directive("claims-ledger", ClaimsLedger)
    app.connect("doctree-read", collect_claims)
    app.connect("doctree-read", alt_text_from_captions)
    app.connect("env-purge-doc", purge_claims)
    app.connect("env-merge-info", merge_claims)
    app.connect("env-before-read-docs", read_ledger_last)
    app.connect("env-get-outdated", reread_ledger)
    app.connect("env-get-outdated", mark_chapters_outdated)
    # Before sphinx-book-theme builds its header buttons (priority 501) from the context.
    app.connect("html-page-context", offer_notebook_download, priority=400)
    app.connect(
        "html-page-context", drop_duplicate_scripts, priority=900
    )  # after the themes add theirs
    app.connect("build-finished", copy_mathjax)
    app.connect("source-read", expand_api_blocks)
    app.connect("missing-reference", resolve_module_paths)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
