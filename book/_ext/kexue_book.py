"""Sphinx extension local to the book: offline MathJax, a cache keyed on the library, notebook downloads.

1. MathJax. The HTML must render with no network (CI has none, and readers may be offline), so MathJax 3
   is copied from the pinned ``django-static-mathjax`` wheel into ``_static/mathjax`` and ``mathjax_path``
   points there (set in ``_config.yml``).
2. Cache key. jupyter-cache re-executes a notebook only when its own code cells change, so a change to
   ``src/kexue`` would otherwise be served from stale outputs. Before myst-nb opens the cache, we hash
   the package source, the pinned environment and the committed benchmark results (which the appendix
   plots); if the hash differs from the one stored beside the cache, the cache is wiped and every
   chapter runs again.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

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
    """SHA-256 over the library's source files, the pinned environment and the benchmark results files
    (read by chapters/appendix/benchmarks.md), in a stable order."""
    digest = hashlib.sha256()
    files = sorted((root / "src" / "kexue").rglob("*.py"))
    files += [root / "requirements.txt", root / "pyproject.toml"]
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
    configures none: it must build and read offline. myst-nb has already written the executed notebook to
    ``_build/jupyter_execute``; it is copied to ``_sources`` where the theme's download button points.
    """
    if "kernelspec" not in app.env.metadata.get(pagename, {}):
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.is_file():
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def setup(app: Sphinx) -> dict[str, object]:
    # Runs before myst-nb's own config-inited handlers, which open the cache.
    app.connect("config-inited", key_cache_on_library, priority=100)
    app.connect("env-get-outdated", mark_chapters_outdated)
    # Before sphinx-book-theme builds its header buttons (priority 501) from the context.
    app.connect("html-page-context", offer_notebook_download, priority=400)
    app.connect(
        "html-page-context", drop_duplicate_scripts, priority=900
    )  # after the themes add theirs
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
