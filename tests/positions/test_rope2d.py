"""kexue.positions.rope2d: 2-D RoPE against a block-matrix reference, its relativity, and bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.positions.rope import apply_rope
from kexue.positions.rope2d import (
    ENCODINGS,
    MixedRotaryEmbedding2d,
    PatchAttention,
    additive_residual,
    apply_rope_2d,
    grid_coords,
    offset_share,
    symbol_above_task,
)


def rotation_1d(position: float, dim: int, base: float = 10000.0) -> torch.Tensor:
    matrix = torch.zeros(dim, dim, dtype=torch.float64)
    for i in range(dim // 2):
        angle = torch.tensor(position * base ** (-2 * i / dim), dtype=torch.float64)
        matrix[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.stack(
            [
                torch.stack([angle.cos(), -angle.sin()]),
                torch.stack([angle.sin(), angle.cos()]),
            ]
        )
    return matrix


def test_grid_coords_are_row_major() -> None:
    coords = grid_coords(2, 3)
    assert coords.tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]
    assert coords.dtype == torch.int64


@pytest.mark.parametrize("dim", [4, 8, 32])
def test_matches_blockdiag_of_two_1d_rotations(dim: int) -> None:
    x = torch.randn(12, dim, dtype=torch.float64)
    coords = grid_coords(3, 4)
    got = apply_rope_2d(x, coords)
    for row, (cx, cy), out in zip(x, coords.tolist(), got, strict=True):
        matrix = torch.block_diag(rotation_1d(cx, dim // 2), rotation_1d(cy, dim // 2))
        torch.testing.assert_close(out, matrix @ row, rtol=0, atol=1e-12)


def test_reuses_the_1d_rope_on_each_half() -> None:
    x = torch.randn(2, 3, 20, 16, dtype=torch.float64)
    coords = grid_coords(4, 5)
    got = apply_rope_2d(x, coords)
    torch.testing.assert_close(got[..., :8], apply_rope(x[..., :8], coords[:, 0]))
    torch.testing.assert_close(got[..., 8:], apply_rope(x[..., 8:], coords[:, 1]))


@settings(max_examples=100, deadline=None)
@given(
    a=st.tuples(st.integers(-500, 500), st.integers(-500, 500)),
    b=st.tuples(st.integers(-500, 500), st.integers(-500, 500)),
    shift=st.tuples(st.integers(-500, 500), st.integers(-500, 500)),
    seed=st.integers(0, 2**16),
)
def test_scores_depend_only_on_the_2d_offset(a, b, shift, seed) -> None:
    q, k = torch.randn(
        2, 1, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )
    coords = torch.tensor(
        [a, b, (a[0] + shift[0], a[1] + shift[1]), (b[0] + shift[0], b[1] + shift[1])]
    )
    rq, rk = (
        apply_rope_2d(q.expand(4, 16), coords),
        apply_rope_2d(k.expand(4, 16), coords),
    )
    torch.testing.assert_close(rq[0] @ rk[1], rq[2] @ rk[3], rtol=0, atol=1e-9)
    offset = torch.tensor([[b[0] - a[0], b[1] - a[1]]])
    torch.testing.assert_close(
        rq[0] @ rk[1], q[0] @ apply_rope_2d(k, offset)[0], rtol=0, atol=1e-9
    )


def test_offset_share_is_one_for_2d_rope_and_detects_absolute_terms(
    device: torch.device,
) -> None:
    coords = grid_coords(6, 6, device=device)
    q, k = torch.randn(2, 32, dtype=torch.float64, device=device)
    scores = (
        apply_rope_2d(q.expand(36, 32), coords)
        @ apply_rope_2d(k.expand(36, 32), coords).T
    )
    assert offset_share(scores, coords).item() == pytest.approx(1.0, abs=1e-12)
    noisy = scores + torch.randn(36, 36, dtype=torch.float64, device=device)
    assert offset_share(noisy, coords).item() < 0.99


def test_offset_share_against_least_squares() -> None:
    coords = grid_coords(2, 3)
    scores = torch.randn(6, 6, dtype=torch.float64)
    offsets = (coords[None] - coords[:, None]).reshape(-1, 2)
    _, group = torch.unique(offsets, dim=0, return_inverse=True)
    design = torch.nn.functional.one_hot(group).double()
    target = scores.flatten()
    fitted = design @ torch.linalg.lstsq(design, target[:, None]).solution[:, 0]
    expected = (
        1 - ((target - fitted) ** 2).sum() / ((target - target.mean()) ** 2).sum()
    )
    torch.testing.assert_close(offset_share(scores, coords), expected)


def test_mixed_frequencies_keep_relativity_and_learn(device: torch.device) -> None:
    rope = MixedRotaryEmbedding2d(
        16, heads=2, generator=torch.Generator().manual_seed(0)
    ).to(device)
    coords = grid_coords(5, 5, device=device)
    q = torch.randn(1, 2, 1, 16, device=device).expand(1, 2, 25, 16)
    scores = rope(q, coords) @ rope(q, coords).mT
    assert offset_share(scores[0, 0].double(), coords).item() == pytest.approx(
        1.0, abs=1e-5
    )
    scores.sum().backward()
    assert (
        rope.frequencies.grad is not None
        and torch.isfinite(rope.frequencies.grad).all()
    )
    assert rope.frequencies.norm(dim=-1)[0].tolist() == pytest.approx(
        [1e4 ** (-i / 8) for i in range(8)], rel=1e-5
    )


def test_mixed_frequencies_can_point_along_a_diagonal() -> None:
    """A frequency along (1, 1)/sqrt 2 ignores moves along (1, -1): beyond what axis-aligned RoPE can do."""
    rope = MixedRotaryEmbedding2d(2)
    with torch.no_grad():
        rope.frequencies.copy_(torch.tensor([[[0.7071, 0.7071]]]))
    q = torch.tensor([[[[1.0, 0.0]]]]).expand(1, 1, 3, 2)
    out = rope(q, torch.tensor([[0, 0], [1, -1], [1, 1]]))
    torch.testing.assert_close(out[0, 0, 1], out[0, 0, 0])
    assert not torch.allclose(out[0, 0, 2], out[0, 0, 0])


@pytest.mark.parametrize("dim", [2, 6, 10])
def test_dim_must_be_divisible_by_four(dim: int) -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        apply_rope_2d(torch.randn(4, dim), grid_coords(2, 2))


def test_coords_must_be_pairs() -> None:
    with pytest.raises(ValueError, match=r"coords must have shape \(\.\.\., seq, 2\)"):
        apply_rope_2d(torch.randn(4, 8), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="must broadcast"):
        apply_rope_2d(torch.randn(4, 8), grid_coords(3, 3))


@pytest.mark.parametrize(
    ("height", "width", "error"),
    [(-1, 3, ValueError), (3, -1, ValueError), (2.0, 2, TypeError)],
)
def test_grid_sides_must_be_non_negative_ints(height, width, error) -> None:
    with pytest.raises(error, match=r"must be (a non-negative int|an int)"):
        grid_coords(height, width)


def test_an_empty_grid_has_no_coordinates() -> None:
    assert grid_coords(0, 3).shape == (0, 2)


def test_mixed_module_checks_shapes() -> None:
    rope = MixedRotaryEmbedding2d(8, heads=2)
    with pytest.raises(ValueError, match=r"x must be \(batch, 2, seq, 8\)"):
        rope(torch.randn(1, 3, 4, 8), grid_coords(2, 2))
    with pytest.raises(ValueError, match=r"coords must be \(seq, 2\)"):
        rope(torch.randn(1, 2, 4, 8), grid_coords(3, 3))


def test_additive_residual_against_float64_least_squares() -> None:
    surface = torch.randn(5, 7, dtype=torch.float64)
    rows = torch.nn.functional.one_hot(torch.arange(5).repeat_interleave(7)).double()
    cols = torch.nn.functional.one_hot(torch.arange(7).repeat(5)).double()
    design = torch.cat((rows, cols), dim=1)
    target = surface.flatten()
    fitted = design @ torch.linalg.lstsq(design, target[:, None]).solution[:, 0]
    expected = ((target - fitted) ** 2).sum() / ((target - target.mean()) ** 2).sum()
    assert additive_residual(surface) == pytest.approx(expected.item(), abs=1e-12)
    additive = torch.randn(5, 1, dtype=torch.float64) + torch.randn(1, 7)
    assert additive_residual(additive) < 1e-28


def test_additive_residual_rejects_bad_surfaces() -> None:
    with pytest.raises(ValueError, match="surface must have 2 dimensions"):
        additive_residual(torch.zeros(3))
    with pytest.raises(TypeError, match="surface must have a floating dtype"):
        additive_residual(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="constant"):
        additive_residual(torch.ones(3, 3))


def test_symbol_above_task_targets_the_row_above() -> None:
    inputs, targets, coords = symbol_above_task(
        torch.Generator().manual_seed(0), 3, 4, 5, symbols=6
    )
    assert inputs.shape == targets.shape == (3, 20) and coords.shape == (20, 2)
    assert int(inputs.max()) < 6 and int(inputs.min()) >= 0
    assert (targets[:, :5] == -100).all()
    torch.testing.assert_close(targets[:, 5:], inputs[:, :-5])
    with pytest.raises(ValueError, match="count must be a non-negative int"):
        symbol_above_task(torch.Generator(), -1, 4, 5)
    with pytest.raises(ValueError, match="width must be a positive int"):
        symbol_above_task(torch.Generator(), 2, 4, 0)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_patch_attention_shapes_and_gradients(encoding: str) -> None:
    model = PatchAttention(encoding, symbols=6, dim=16)
    inputs, targets, coords = symbol_above_task(
        torch.Generator().manual_seed(1), 2, 3, 4, symbols=6
    )
    logits = model(inputs, coords)
    assert logits.shape == (2, 12, 6)
    loss = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=-100
    )
    loss.backward()
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all()
        for p in (model.embed.weight, model.qkv.weight)
    )


def test_patch_attention_with_2d_rope_is_translation_equivariant() -> None:
    """Shifting the grid coordinates changes nothing: attention sees offsets only."""
    model = PatchAttention("2-D RoPE", dim=16).double()
    inputs, _, coords = symbol_above_task(torch.Generator().manual_seed(2), 2, 3, 4)
    torch.testing.assert_close(
        model(inputs, coords), model(inputs, coords + torch.tensor([7, -3]))
    )


def test_patch_attention_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="encoding must be one of"):
        PatchAttention("learned")
    with pytest.raises(ValueError, match="multiple of 4"):
        PatchAttention("none", dim=6)


def test_learned_absolute_encoding_sees_absolute_position() -> None:
    """Unlike 2-D RoPE, the learned encoding changes with a shift of the grid."""
    model = PatchAttention("learned absolute 2-D", dim=16, max_side=12).double()
    inputs, _, coords = symbol_above_task(torch.Generator().manual_seed(3), 2, 3, 4)
    shifted = model(inputs, coords + torch.tensor([2, 1]))
    assert (model(inputs, coords) - shifted).abs().max() > 1e-6
    with pytest.raises(ValueError, match="coords must lie in"):
        model(inputs, coords + 10)
    with pytest.raises(ValueError, match="max_side must be a positive int"):
        PatchAttention("learned absolute 2-D", max_side=0)
