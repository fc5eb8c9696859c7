"""kexue.positions.rope against an explicit block-rotation-matrix reference, and its properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.positions.rope import (
    IGNORE_INDEX,
    LAYOUTS,
    OneLayerAttention,
    RotaryEmbedding,
    apply_rope,
    decay_bound,
    lag_copy_batch,
    rope_cos_sin,
    rope_linear_attention,
)


def rotation_matrix(
    position: float, dim: int, base: float = 10000.0, layout: str = "interleaved"
) -> torch.Tensor:
    """R_m as a dense (dim, dim) float64 matrix, built entry by entry from the definition."""
    matrix = torch.zeros(dim, dim, dtype=torch.float64)
    for i in range(dim // 2):
        angle = position * base ** (-2 * i / dim)
        a, b = (2 * i, 2 * i + 1) if layout == "interleaved" else (i, i + dim // 2)
        matrix[a, a], matrix[a, b] = math.cos(angle), -math.sin(angle)
        matrix[b, a], matrix[b, b] = math.sin(angle), math.cos(angle)
    return matrix


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dim", [2, 4, 8, 64])
def test_matches_the_block_rotation_matrix(layout: str, dim: int) -> None:
    x = torch.randn(3, 5, dim, dtype=torch.float64)
    positions = torch.tensor([0, 1, 7, 100, 4095])
    got = apply_rope(x, positions, layout=layout)
    expected = torch.stack(
        [
            torch.stack(
                [
                    rotation_matrix(float(m), dim, layout=layout) @ row
                    for row, m in zip(xb, positions, strict=True)
                ]
            )
            for xb in x
        ]
    )
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_default_positions_count_along_the_sequence_axis(layout: str) -> None:
    x = torch.randn(2, 4, 6, 8, dtype=torch.float64)
    torch.testing.assert_close(
        apply_rope(x, layout=layout), apply_rope(x, torch.arange(6), layout=layout)
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_per_batch_positions_broadcast(layout: str) -> None:
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    positions = torch.tensor([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]])[
        :, None, :
    ]  # (batch, 1, seq)
    got = apply_rope(x, positions, layout=layout)
    torch.testing.assert_close(
        got[1], apply_rope(x[1], torch.arange(10, 15), layout=layout)
    )


def test_layouts_are_related_by_the_pair_permutation() -> None:
    """half(x[P]) == interleaved(x)[P] with P = [0, 2, 4, ..., 1, 3, 5, ...], and q.k is unchanged."""
    dim = 16
    P = torch.cat([torch.arange(0, dim, 2), torch.arange(1, dim, 2)])
    q, k = torch.randn(2, 9, dim, dtype=torch.float64)
    torch.testing.assert_close(
        apply_rope(q[:, P], layout="half"), apply_rope(q, layout="interleaved")[:, P]
    )
    scores_interleaved = (
        apply_rope(q, layout="interleaved") @ apply_rope(k, layout="interleaved").T
    )
    scores_half = (
        apply_rope(q[:, P], layout="half") @ apply_rope(k[:, P], layout="half").T
    )
    torch.testing.assert_close(scores_half, scores_interleaved)


@settings(max_examples=100, deadline=None)
@given(
    m=st.integers(-(10**5), 10**5),
    n=st.integers(-(10**5), 10**5),
    shift=st.integers(-(10**5), 10**5),
    layout=st.sampled_from(LAYOUTS),
    seed=st.integers(0, 2**16),
)
def test_scores_depend_only_on_the_offset(
    m: int, n: int, shift: int, layout: str, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 1, 32, dtype=torch.float64, generator=generator)
    score = (
        apply_rope(q, torch.tensor([m]), layout=layout)
        @ apply_rope(k, torch.tensor([n]), layout=layout).T
    )
    moved = (
        apply_rope(q, torch.tensor([m + shift]), layout=layout)
        @ apply_rope(k, torch.tensor([n + shift]), layout=layout).T
    )
    relative = (
        q @ apply_rope(k, torch.tensor([n - m]), layout=layout).T
    )  # q^T R_(n-m) k
    torch.testing.assert_close(score, moved, rtol=0, atol=1e-9)
    torch.testing.assert_close(score, relative, rtol=0, atol=1e-9)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rotation_preserves_norms(layout: str, device: torch.device) -> None:
    x = torch.randn(4, 64, 32, device=device, dtype=torch.float64)
    y = apply_rope(
        x, torch.randint(-(10**6), 10**6, (64,), device=device), layout=layout
    )
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-12, atol=0)
    assert y.device.type == device.type


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_close_to_float32(layout: str, dtype: torch.dtype) -> None:
    x = torch.randn(2, 8, 128, 64)
    reference = apply_rope(
        x.to(dtype).float(), layout=layout
    )  # same inputs, float32 arithmetic
    got = apply_rope(x.to(dtype), layout=layout)
    assert got.dtype == dtype
    # computed in float32 and rounded once: within half an ulp of the float32 result (the last term is half
    # the spacing of subnormal numbers, where the relative bound does not hold)
    info = torch.finfo(dtype)
    assert (
        (got.float() - reference).abs() <= (reference.abs() + info.tiny) * info.eps / 2
    ).all()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_float64_stays_float64_and_float32_stays_float32(layout: str) -> None:
    for dtype in (torch.float32, torch.float64):
        assert apply_rope(torch.randn(3, 4, dtype=dtype), layout=layout).dtype == dtype


@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_input(layout: str) -> None:
    x = torch.randn(
        2, 7, 3, 16, dtype=torch.float64
    )  # (batch, seq, heads, dim), as after a projection
    transposed = x.transpose(1, 2)  # (batch, heads, seq, dim), not contiguous
    torch.testing.assert_close(
        apply_rope(transposed, layout=layout),
        apply_rope(transposed.contiguous(), layout=layout),
    )
    sliced = torch.randn(2, 7, 48, dtype=torch.float64)[
        ..., 16:32
    ]  # a q/k/v split of a fused projection
    torch.testing.assert_close(
        apply_rope(sliced, layout=layout),
        apply_rope(sliced.contiguous(), layout=layout),
    )
    odd_offset = torch.randn(2, 7, 17, dtype=torch.float64)[..., 1:]  # storage offset 1
    torch.testing.assert_close(
        apply_rope(odd_offset, layout=layout),
        apply_rope(odd_offset.contiguous(), layout=layout),
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradients(layout: str) -> None:
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    positions = torch.tensor([0.0, 1.0, 2.5, 10.0, -3.0])
    assert torch.autograd.gradcheck(
        lambda t: apply_rope(t, positions, layout=layout), (x,)
    )
    # the gradient of a rotation is the inverse rotation of the upstream gradient
    upstream = torch.randn(2, 5, 8, dtype=torch.float64)
    (grad,) = torch.autograd.grad(
        (apply_rope(x, positions, layout=layout) * upstream).sum(), x
    )
    torch.testing.assert_close(grad, apply_rope(upstream, -positions, layout=layout))


def test_large_positions_use_accurate_angles() -> None:
    cos, sin = rope_cos_sin(torch.tensor([10**7]), 64)
    theta = 10000.0 ** (-torch.arange(0, 64, 2, dtype=torch.float64) / 64)
    exact = torch.tensor(10.0**7, dtype=torch.float64) * theta
    # angle reduced to [-pi, pi] in float64, then one float32 rounding (<= 1.2e-7 rad) and the cosine's own
    assert (cos.double() - exact.cos()).abs().max() < 3e-7
    assert (sin.double() - exact.sin()).abs().max() < 3e-7
    # whereas the float32 product m * theta puts the cosine off by several hundredths at m = 1e7
    naive = torch.tensor([1e7]) * theta.float()
    assert (naive.double().cos() - exact.cos()).abs().max() > 0.05


@pytest.mark.parametrize("layout", LAYOUTS)
def test_module_equals_the_function_and_its_cache_grows(
    layout: str, device: torch.device
) -> None:
    rope = RotaryEmbedding(16, layout=layout, initial_length=4)
    x = torch.randn(2, 3, 10, 16, device=device)
    torch.testing.assert_close(rope(x), apply_rope(x, layout=layout))
    key = (torch.device(device), torch.float32)
    assert rope._cache[key][0].shape[0] >= 10  # tables grow along positions
    long = torch.randn(1, 1, 100, 16, device=device)
    torch.testing.assert_close(rope(long), apply_rope(long, layout=layout))
    assert rope._cache[key][0].shape[0] >= 10  # tables grow along positions0
    # positions beyond the cache, negative and real positions all agree with the function
    for positions in (
        torch.arange(200, 300),
        torch.arange(-50, 50),
        torch.linspace(0, 3, 100),
    ):
        positions = positions.to(device)
        torch.testing.assert_close(
            rope(long, positions), apply_rope(long, positions, layout=layout)
        )


def test_module_keeps_one_cache_per_dtype() -> None:
    rope = RotaryEmbedding(8)
    rope(torch.randn(4, 8))
    rope(torch.randn(4, 8, dtype=torch.float64))
    assert {dtype for _, dtype in rope._cache} == {torch.float32, torch.float64}
    assert rope.state_dict() == {}


def test_module_checks_the_head_dimension() -> None:
    with pytest.raises(ValueError, match="built for 8"):
        RotaryEmbedding(8)(torch.randn(3, 16))


@pytest.mark.parametrize("dim", [3, 7])
def test_odd_dimension_is_rejected(dim: int) -> None:
    with pytest.raises(ValueError, match="must be even"):
        apply_rope(torch.randn(4, dim))


def test_unknown_layout_is_rejected() -> None:
    with pytest.raises(ValueError, match="layout must be one of"):
        apply_rope(torch.randn(4, 8), layout="llama")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="layout must be one of"):
        RotaryEmbedding(8, layout="complex")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(5,), (4, 2), (3, 1, 4)])
def test_positions_that_do_not_broadcast_are_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"must broadcast to x.shape\[:-1\]"):
        apply_rope(torch.randn(2, 4, 8), torch.zeros(shape, dtype=torch.long))


def test_integer_input_and_boolean_positions_are_type_errors() -> None:
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        apply_rope(torch.ones(4, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="positions must be integer or real"):
        apply_rope(torch.randn(4, 8), torch.ones(4, dtype=torch.bool))


def test_positions_on_another_device_are_rejected() -> None:
    with pytest.raises(ValueError, match="positions is on meta but x is on cpu"):
        apply_rope(torch.randn(4, 8), torch.arange(4, device="meta"))


def test_x_without_a_sequence_axis_is_rejected() -> None:
    with pytest.raises(ValueError, match="x must have at least 2 dimensions"):
        apply_rope(torch.randn(8))


def test_decay_bound_reproduces_the_articles_curve() -> None:
    """d = 128, base 10000: f(0) = (d/2 + 1)/2 = 32.5 exactly, then 17.95, 12.63, 10.23, 6.54."""
    values = decay_bound(torch.tensor([0, 10, 50, 100, 256]), 128)
    assert values[0].item() == pytest.approx(32.5, abs=1e-12)
    assert values[1:].tolist() == pytest.approx([17.95, 12.63, 10.23, 6.54], abs=5e-3)


def test_decay_bound_bounds_actual_scores() -> None:
    """|q^T R_s k| <= max_i |h_(i+1) - h_i| * sum_j |S_j| for random q, k (h_(d/2) = 0)."""
    torch.manual_seed(1)
    dim, distances = 64, torch.arange(0, 300)
    for _ in range(20):
        q, k = torch.randn(2, dim, dtype=torch.float64)
        scores = (
            (q * apply_rope(k[None].expand(len(distances), dim), distances))
            .sum(-1)
            .abs()
        )
        h = (
            torch.view_as_complex(q.view(-1, 2))
            * torch.view_as_complex(k.view(-1, 2)).conj()
        )
        steps = torch.diff(torch.cat([h, torch.zeros(1, dtype=h.dtype)])).abs().max()
        bound = steps * decay_bound(distances, dim) * (dim // 2)
        assert (scores <= bound + 1e-9).all()


def rope_attention_quadratic(q, k, v, positions, rotate_denominator=False):
    """Reference: the same linear attention written with the full (seq, seq) weight matrix."""
    phi_q, phi_k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    rotated = apply_rope(phi_q, positions) @ apply_rope(phi_k, positions).transpose(
        -1, -2
    )
    plain = phi_q @ phi_k.transpose(-1, -2)
    denominator = (rotated if rotate_denominator else plain).sum(-1, keepdim=True)
    return rotated @ v / denominator


@pytest.mark.parametrize("rotate_denominator", [False, True])
def test_linear_attention_matches_its_quadratic_form(rotate_denominator: bool) -> None:
    q, k, v = torch.randn(3, 2, 4, 10, 8, dtype=torch.float64)
    positions = torch.arange(10)
    got = rope_linear_attention(
        q, k, v, positions, rotate_denominator=rotate_denominator
    )
    expected = rope_attention_quadratic(q, k, v, positions, rotate_denominator)
    torch.testing.assert_close(got, expected)


def test_linear_attention_keeps_the_relative_property() -> None:
    q, k, v = torch.randn(3, 12, 16, dtype=torch.float64)
    out = rope_linear_attention(q, k, v, torch.arange(12))
    shifted = rope_linear_attention(q, k, v, torch.arange(12) + 1000)
    torch.testing.assert_close(out, shifted)


def test_linear_attention_checks_shapes() -> None:
    with pytest.raises(ValueError, match="must share their leading dimensions"):
        rope_linear_attention(torch.randn(4, 8), torch.randn(5, 8), torch.randn(4, 8))
    with pytest.raises(ValueError, match="k must have the shape of q"):
        rope_linear_attention(torch.randn(4, 8), torch.randn(5, 8), torch.randn(5, 8))


def test_lag_copy_batch_targets_are_the_tokens_lag_places_back() -> None:
    tokens, targets = lag_copy_batch(
        torch.Generator().manual_seed(0), 4, 10, vocab=5, lag=3
    )
    assert tokens.shape == targets.shape == (4, 10)
    assert tokens.dtype == targets.dtype == torch.int64
    assert 0 <= int(tokens.min()) and int(tokens.max()) < 5
    assert (targets[:, :3] == IGNORE_INDEX).all()
    torch.testing.assert_close(targets[:, 3:], tokens[:, :-3])


def test_lag_copy_batch_is_reproducible_from_its_generator() -> None:
    first = lag_copy_batch(torch.Generator().manual_seed(7), 2, 6, vocab=9, lag=1)
    again = lag_copy_batch(torch.Generator().manual_seed(7), 2, 6, vocab=9, lag=1)
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"size": -1}, ValueError, "size must be a non-negative int"),
        ({"length": 2.5}, TypeError, "length must be an int"),
        ({"vocab": True}, TypeError, "vocab must be an int"),
        ({"lag": 0}, ValueError, "lag must be a positive int"),
        ({"lag": 8}, ValueError, r"lag must be an int in \[1, length"),
    ],
)
def test_lag_copy_batch_rejects_bad_sizes(
    kwargs: dict, error: type[Exception], message: str
) -> None:
    arguments = {"size": 2, "length": 8, "vocab": 4, "lag": 3} | kwargs
    size, length = arguments.pop("size"), arguments.pop("length")
    with pytest.raises(error, match=message):
        lag_copy_batch(torch.Generator(), size, length, **arguments)


def test_lag_copy_batch_needs_a_generator() -> None:
    with pytest.raises(TypeError, match=r"torch\.Generator"):
        lag_copy_batch(0, 2, 8, vocab=4, lag=3)


@pytest.mark.parametrize("encoding", ["none", "sinusoidal", "rope"])
def test_one_layer_attention_is_causal_and_shaped(encoding: str) -> None:
    torch.manual_seed(0)
    model = OneLayerAttention(7, 8, encoding).double()
    tokens = torch.randint(0, 7, (3, 12))
    logits = model(tokens)
    assert logits.shape == (3, 12, 7) and logits.dtype == torch.float64
    changed = tokens.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 7  # the future must not matter
    torch.testing.assert_close(model(changed)[:, :8], logits[:, :8])


def test_one_layer_attention_matches_a_float64_reference() -> None:
    """Written out: embed, q k v, rotate q and k, causal softmax(q k^T / sqrt(d)) v, read-out."""
    torch.manual_seed(1)
    model = OneLayerAttention(5, 6, "rope").double()
    tokens = torch.randint(0, 5, (2, 9))
    x = model.embed(tokens)
    q, k, v = (x @ model.qkv.weight.T).chunk(3, dim=-1)
    q, k = apply_rope(q), apply_rope(k)
    scores = q @ k.mT / math.sqrt(6)
    scores = scores.masked_fill(torch.ones(9, 9).triu(1).bool(), float("-inf"))
    expected = model.read_out(torch.softmax(scores, -1) @ v)
    torch.testing.assert_close(model(tokens), expected)


def test_without_positions_attention_cannot_tell_a_shift() -> None:
    """With encoding "none", the last output sees a set of tokens: reordering the earlier
    tokens changes nothing, while RoPE does see the order."""
    torch.manual_seed(2)
    tokens = torch.tensor([[1, 2, 3, 4, 0]])
    reordered = torch.tensor([[4, 3, 2, 1, 0]])
    plain = OneLayerAttention(5, 8, "none").double()
    torch.testing.assert_close(plain(tokens)[:, -1], plain(reordered)[:, -1])
    rotary = OneLayerAttention(5, 8, "rope").double()
    assert not torch.allclose(rotary(tokens)[:, -1], rotary(reordered)[:, -1])


def test_one_layer_attention_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="encoding must be one of"):
        OneLayerAttention(5, 8, "alibi")
    with pytest.raises(ValueError, match="width must be a positive even number"):
        OneLayerAttention(5, 0)
    model = OneLayerAttention(5, 8)
    with pytest.raises(TypeError, match="tokens must have an integer dtype"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="tokens must have 2 dimensions"):
        model(torch.zeros(3, dtype=torch.long))
