"""The peer libraries (requirements-bench.txt), imported when present.

Each function returns the module, or None when it is not installed, so that the harness (and its unit
tests, in CI without the peers) runs and records the missing rows as skipped with the reason.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import warnings
from types import ModuleType

PEER_DISTRIBUTIONS = (
    "rotary-embedding-torch",
    "performer-pytorch",
    "nystrom-attention",
)


def _import(name: str) -> ModuleType | None:
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # performer-pytorch imports distutils (DeprecationWarning) and prints about missing CUDA code
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except ImportError:
        return None


def rotary_embedding_torch() -> ModuleType | None:
    return _import("rotary_embedding_torch")


def performer_pytorch() -> ModuleType | None:
    return _import("performer_pytorch")


def nystrom_attention() -> ModuleType | None:
    return _import("nystrom_attention")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for dist in PEER_DISTRIBUTIONS:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found
