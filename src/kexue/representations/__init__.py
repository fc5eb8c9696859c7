"""Part V of the book: representations (``chapters/representations``)."""

from __future__ import annotations

import importlib

# Names are loaded from their modules on first use (PEP 562).
_MODULES = {
    "WordPieceTokenizer": "encoder",
    "BertEncoder": "encoder",
    "load_minilm": "encoder",
    "mean_pool": "encoder",
    "encode_sentences": "encoder",
    "Whitening": "whitening",
    "fit_whitening": "whitening",
    "spearman": "whitening",
}

__all__ = sorted(_MODULES, key=str.lower)


def __getattr__(name: str) -> object:
    if name not in _MODULES:
        raise AttributeError(f"kexue.representations has no attribute {name!r}")
    module = importlib.import_module(f"kexue.representations.{_MODULES[name]}")
    return getattr(module, name)
