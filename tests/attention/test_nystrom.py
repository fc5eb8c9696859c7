"""kexue.attention.nystrom against exact attention, torch.linalg.pinv and a reference written here."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.attention.nystrom import (
    NystromAttention,
    filter_factors,
    hyperpower_step,
    iterative_pinv,
    kmeans_landmarks,
    local_sequence,
    nystrom_attention,
    nystrom_factors,
    pinv_residuals,
    predicted_pinv_residuals,
    segment_landmarks,
    smooth_sequence,
    steps_to_tolerance,
)


def _qkv(
    batch, heads, seq, d, *, dtype=torch.float64, device="cpu", seed=0, spread=1.0
):
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (
        spread
        * torch.randn(batch, heads, seq, d, dtype=torch.float64, generator=generator)
        for _ in "qkv"
    )
    return q.to(device, dtype), k.to(device, dtype), v.to(device, dtype)


def _reference(q, k, v, m, *, pinv):
    """The paper's formula written out for seq divisible by m, with loops over segments."""
    seq, d = q.shape[-2], q.shape[-1]
    size = seq // m
    q_tilde = torch.stack(
        [q[..., i * size : (i + 1) * size, :].mean(-2) for i in range(m)], dim=-2
    )
    k_tilde = torch.stack(
        [k[..., i * size : (i + 1) * size, :].mean(-2) for i in range(m)], dim=-2
    )
    scale = d**-0.5
    kernel_f = torch.softmax(q @ k_tilde.mT * scale, -1)
    kernel_a = torch.softmax(q_tilde @ k_tilde.mT * scale, -1)
    kernel_b = torch.softmax(q_tilde @ k.mT * scale, -1)
    return kernel_f @ pinv(kernel_a) @ kernel_b @ v


# ----------------------------------------------------------------------------------------- the pseudo-inverse


def test_pinv_matches_torch_on_well_conditioned_batches(device):
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(
        3, 5, 12, 12, dtype=torch.float64, generator=generator
    ) + 6 * torch.eye(12, dtype=torch.float64)
    a = a.to(device)
    gap = (iterative_pinv(a, iterations=12) - torch.linalg.pinv(a)).abs().max().item()
    assert gap < 1e-12


def test_pinv_of_rectangular_and_rank_deficient_matrices(device):
    generator = torch.Generator().manual_seed(2)
    tall = torch.randn(2, 9, 4, dtype=torch.float64, generator=generator).to(device)
    wide = torch.randn(2, 4, 9, dtype=torch.float64, generator=generator).to(device)
    low_rank = tall @ wide  # 9 x 9 of rank 4
    for a in (tall, wide, low_rank):
        z = iterative_pinv(a, iterations=10)
        assert z.shape == a.mT.shape
        assert torch.allclose(z, torch.linalg.pinv(a), atol=1e-10)


def test_rounding_in_the_null_space_grows_by_thirteen_quarters_per_step():
    """Singular A: once converged, Z's rounding error along ker(A^T) grows by g(0) = 13/4 per step."""
    generator = torch.Generator().manual_seed(2)
    a = torch.randn(9, 4, dtype=torch.float64, generator=generator) @ torch.randn(
        4, 9, dtype=torch.float64, generator=generator
    )
    exact = torch.linalg.pinv(a)
    errors = [
        (iterative_pinv(a, iterations=k) - exact).abs().max().item()
        for k in (20, 25, 40)
    ]
    assert 3.25**5 / 3 < errors[1] / errors[0] < 3.25**5 * 3
    assert errors[2] > 1


@settings(max_examples=25, deadline=None)
@given(size=st.integers(2, 10), seed=st.integers(0, 10_000))
def test_pinv_error_follows_the_cubic_recursion(size, seed):
    """E_{k+1} = (3 E_k^3 + E_k^4) / 4 with E = I - A Z_k, and its spectral norm never grows."""
    a = torch.randn(
        size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )
    identity = torch.eye(size, dtype=torch.float64)
    previous = identity - a @ iterative_pinv(a, iterations=0)
    assert torch.linalg.matrix_norm(previous, ord=2) <= 1 + 1e-12
    for step in range(1, 5):
        error = identity - a @ iterative_pinv(a, iterations=step)
        predicted = 0.75 * torch.linalg.matrix_power(
            previous, 3
        ) + 0.25 * torch.linalg.matrix_power(previous, 4)
        assert torch.allclose(error, predicted, atol=1e-9)
        assert (
            torch.linalg.matrix_norm(error, ord=2)
            <= torch.linalg.matrix_norm(previous, ord=2) + 1e-12
        )
        previous = error


def test_pinv_scales_each_matrix_on_its_own():
    generator = torch.Generator().manual_seed(3)
    a = torch.randn(2, 6, 6, dtype=torch.float64, generator=generator)
    a[1] *= 1000  # a huge neighbour must not change the first matrix's iterates
    together = iterative_pinv(a, iterations=3)
    alone = iterative_pinv(a[:1], iterations=3)
    assert torch.allclose(together[:1], alone, rtol=0, atol=1e-15)


def test_pinv_of_zero_is_zero():
    assert torch.equal(
        iterative_pinv(torch.zeros(3, 3), iterations=4), torch.zeros(3, 3)
    )


def test_six_iterations_are_not_always_enough():
    """An ill-conditioned softmax matrix: 6 steps leave a large error, 30 reach torch.linalg.pinv."""
    logits = (
        torch.randn(
            8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4)
        )
        * 0.3
    )
    a = logits.softmax(-1)
    assert torch.linalg.cond(a) > 20
    exact = torch.linalg.pinv(a)
    assert (iterative_pinv(a, iterations=6) - exact).abs().max() > 0.1
    assert (iterative_pinv(a, iterations=30) - exact).abs().max() < 1e-8


@pytest.mark.parametrize(
    ("bad", "error"),
    [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("6", TypeError)],
)
def test_pinv_rejects_bad_iterations(bad, error):
    with pytest.raises(error, match="iterations"):
        iterative_pinv(torch.eye(3), iterations=bad)


def test_pinv_rejects_vectors_and_integers():
    with pytest.raises(ValueError, match="shape"):
        iterative_pinv(torch.ones(3))
    with pytest.raises(TypeError, match="floating"):
        iterative_pinv(torch.eye(3, dtype=torch.int64))


# ------------------------------------------------------------------------------------------------- landmarks


@settings(max_examples=40, deadline=None)
@given(length=st.integers(1, 40), m=st.integers(1, 12))
def test_segments_are_contiguous_and_balanced(length, m):
    positions = torch.arange(length, dtype=torch.float64).reshape(1, 1, length, 1)
    means, exists = segment_landmarks(
        positions, m, torch.ones(1, length, dtype=torch.bool)
    )
    used = min(m, length)
    assert exists[0].tolist() == [True] * used + [False] * (m - used)
    # means of consecutive integers: contiguous segments of sizes floor or ceil of length / used
    bounds = [
        -(-length * i // used) for i in range(used + 1)
    ]  # segment i holds ranks ceil(iL/u) ...
    sizes = torch.tensor([bounds[i + 1] - bounds[i] for i in range(used)])
    starts = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)[:-1]])
    expected = starts + (sizes - 1) / 2
    assert torch.allclose(means[0, 0, :used, 0], expected.double())
    assert set(sizes.tolist()) <= {length // used, -(-length // used)}


def test_landmarks_are_the_papers_segment_means_when_m_divides_seq():
    q, _, _ = _qkv(2, 3, 24, 5)
    means, exists = segment_landmarks(q, 6)
    assert exists.all()
    assert torch.allclose(means, q.reshape(2, 3, 6, 4, 5).mean(-2))
    general, _ = segment_landmarks(
        q, 6, torch.ones(2, 24, dtype=torch.bool)
    )  # the masked code path
    assert torch.allclose(means, general)


# ------------------------------------------------------------------------------------------------- attention


def test_matches_the_reference_formula(device):
    q, k, v = _qkv(2, 3, 48, 8, device=device)
    for pinv, iterations in (
        (torch.linalg.pinv, None),
        (lambda a: iterative_pinv(a, iterations=6), 6),
    ):
        expected = _reference(q, k, v, 12, pinv=pinv)
        actual = nystrom_attention(
            q, k, v, num_landmarks=12, pinv_iterations=iterations
        )
        assert torch.allclose(
            actual, expected, atol=1e-11
        )  # measured: 4e-13 with the exact pinv


@settings(max_examples=30, deadline=None)
@given(
    seq=st.integers(1, 24),
    extra=st.integers(0, 8),
    iterations=st.sampled_from([0, 6, None]),
)
def test_exact_when_there_are_at_least_as_many_landmarks_as_tokens(
    seq, extra, iterations
):
    q, k, v = _qkv(2, 2, seq, 4, seed=seq, spread=2.0)
    exact = F.scaled_dot_product_attention(q, k, v)
    out = nystrom_attention(
        q, k, v, num_landmarks=seq + extra, pinv_iterations=iterations
    )
    assert torch.allclose(out, exact, atol=1e-12)


def test_the_factorisation_is_exact_at_m_equal_n_with_the_exact_inverse():
    q, k, v = _qkv(1, 2, 16, 4)
    kernel_f, kernel_a, kernel_b = nystrom_factors(q, k, num_landmarks=16)
    exact = F.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(
        kernel_f @ torch.linalg.pinv(kernel_a) @ kernel_b @ v, exact, atol=1e-10
    )


def test_rows_sum_to_one_but_entries_can_be_negative():
    q, k, _ = _qkv(1, 4, 64, 8, spread=1.5)
    kernel_f, kernel_a, kernel_b = nystrom_factors(q, k, num_landmarks=8)
    weights = kernel_f @ torch.linalg.inv(kernel_a) @ kernel_b
    assert torch.allclose(
        weights.sum(-1), torch.ones(1, 4, 64, dtype=torch.float64), atol=1e-9
    )
    assert (weights < 0).any()
    for kernel in (
        kernel_f,
        kernel_a,
        kernel_b,
    ):  # each factor is a softmax: a stochastic matrix
        assert (kernel >= 0).all() and torch.allclose(
            kernel.sum(-1), torch.ones_like(kernel[..., 0])
        )


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(1, 9))
def test_masked_tokens_change_nothing_at_real_tokens(seed, m):
    """Any mask: the output at real tokens equals the output of the sequence with masked tokens removed."""
    generator = torch.Generator().manual_seed(seed)
    seq = 20
    q, k, v = _qkv(2, 2, seq, 4, seed=seed)
    mask = torch.rand(2, seq, generator=generator) < 0.7
    mask[:, 0] = True
    out = nystrom_attention(q, k, v, num_landmarks=m, mask=mask)
    for b in range(2):
        keep = mask[b]
        alone = nystrom_attention(
            q[b : b + 1, :, keep],
            k[b : b + 1, :, keep],
            v[b : b + 1, :, keep],
            num_landmarks=m,
        )
        assert torch.allclose(
            out[b][:, keep], alone[0], atol=1e-12
        )  # measured: below 5e-15
        assert torch.equal(out[b][:, ~keep], torch.zeros_like(out[b][:, ~keep]))


def test_trailing_padding_of_any_length(device):
    q, k, v = _qkv(1, 2, 30, 8, device=device)
    alone = nystrom_attention(q, k, v, num_landmarks=8)
    for padding in (1, 7, 64):
        noise = _qkv(1, 2, padding, 8, device=device, seed=padding, spread=10.0)
        padded = [
            torch.cat([t, n], dim=2) for t, n in zip((q, k, v), noise, strict=True)
        ]
        mask = torch.arange(30 + padding, device=device)[None] < 30
        out = nystrom_attention(*padded, num_landmarks=8, mask=mask)
        assert torch.allclose(out[:, :, :30], alone, atol=1e-10)


def test_a_fully_masked_sequence_gives_zeros_not_nan():
    q, k, v = _qkv(2, 1, 10, 4)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1] = False
    out = nystrom_attention(q, k, v, num_landmarks=3, mask=mask)
    assert torch.isfinite(out).all() and torch.equal(out[1], torch.zeros_like(out[1]))


def test_error_falls_as_landmarks_grow_on_a_smooth_sequence():
    """Queries and keys on a smooth curve: neighbours are alike, so segment means are good landmarks."""
    generator = torch.Generator().manual_seed(5)
    t = torch.linspace(0, 1, 256, dtype=torch.float64)[:, None]
    features = torch.cat(
        [torch.cos(2 * torch.pi * t * j) for j in (1, 2, 3)]
        + [torch.sin(2 * torch.pi * t)],
        -1,
    )
    q, k = (
        features
        @ torch.randn(4, 32, dtype=torch.float64, generator=generator)
        / 32**0.25
        for _ in "qk"
    )
    v = torch.randn(256, 32, dtype=torch.float64, generator=generator)
    q, k, v = q[None, None], k[None, None], v[None, None]
    exact = F.scaled_dot_product_attention(q, k, v, scale=1.0)
    errors = [
        (
            (nystrom_attention(q, k, v, num_landmarks=m, scale=1.0) - exact).norm()
            / exact.norm()
        ).item()
        for m in (4, 16, 64)
    ]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(device, dtype):
    q, k, v = _qkv(2, 2, 64, 16, dtype=torch.float32, device=device)
    reference = nystrom_attention(q, k, v, num_landmarks=16)
    out = nystrom_attention(q.to(dtype), k.to(dtype), v.to(dtype), num_landmarks=16)
    assert out.dtype == dtype and torch.isfinite(out).all()
    tolerance = (
        1e-2 if dtype == torch.bfloat16 else 1.5e-3
    )  # measured: 3.0e-3 and 3.9e-4
    assert ((out.float() - reference).norm() / reference.norm()).item() < tolerance


def test_scale_argument(device):
    q, k, v = _qkv(1, 2, 12, 4, device=device)
    out = nystrom_attention(q, k, v, num_landmarks=12, scale=0.3)
    assert torch.allclose(
        out, F.scaled_dot_product_attention(q, k, v, scale=0.3), atol=1e-12
    )


def test_convolution_residual_is_a_depthwise_convolution_along_the_sequence():
    q, k, v = _qkv(2, 3, 20, 4)
    weight = torch.randn(3, 5, dtype=torch.float64)
    plain = nystrom_attention(q, k, v, num_landmarks=4)
    with_conv = nystrom_attention(q, k, v, num_landmarks=4, conv_weight=weight)
    padded = F.pad(v, (0, 0, 2, 2))
    expected = torch.zeros_like(v)
    for offset in range(5):  # out_i = sum_j w_j v_{i + j - 2}, per head
        expected += (
            weight[None, :, offset, None, None] * padded[:, :, offset : offset + 20]
        )
    assert torch.allclose(with_conv - plain, expected, atol=1e-12)


def test_module_shapes_masks_and_gradients(device):
    torch.manual_seed(0)
    layer = NystromAttention(32, 4, num_landmarks=8, conv_kernel=5).to(device)
    x = torch.randn(2, 40, 32, device=device, requires_grad=True)
    mask = torch.ones(2, 40, dtype=torch.bool, device=device)
    mask[1, 25:] = False
    out = layer(x, mask)
    assert out.shape == x.shape
    out[mask].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[1, 25:].abs().max() == 0
    assert layer.conv_weight.grad is not None and layer.qkv.weight.grad.abs().sum() > 0
    # trailing padding of the real tokens changes nothing (the convolution sees zeros there either way)
    alone = layer(x[1:, :25].detach())
    assert torch.allclose(out[1:, :25], alone, atol=1e-5)


def test_bad_input_gets_clear_errors():
    q, k, v = _qkv(1, 2, 8, 4)
    with pytest.raises(ValueError, match="num_landmarks must be a positive int"):
        nystrom_attention(q, k, v, num_landmarks=0)
    with pytest.raises(TypeError, match="num_landmarks must be an int"):
        nystrom_attention(q, k, v, num_landmarks=4.0)
    with pytest.raises(ValueError, match="q must have 4 dimensions"):
        nystrom_attention(q[0], k, v, num_landmarks=4)
    with pytest.raises(ValueError, match="must share their leading dimensions"):
        nystrom_attention(q, k[:, :, :6], v, num_landmarks=4)
    with pytest.raises(TypeError, match="mask must be a boolean"):
        nystrom_attention(q, k, v, num_landmarks=4, mask=torch.ones(1, 8))
    with pytest.raises(ValueError, match=r"mask must be \(batch, seq\)"):
        nystrom_attention(
            q, k, v, num_landmarks=4, mask=torch.ones(1, 2, 8, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="conv_weight"):
        nystrom_attention(
            q, k, v, num_landmarks=4, conv_weight=torch.ones(2, 4, dtype=torch.float64)
        )
    with pytest.raises(ValueError, match="multiple of heads"):
        NystromAttention(30, 4)
    with pytest.raises(ValueError, match="conv_kernel"):
        NystromAttention(32, 4, conv_kernel=4)
    with pytest.raises(ValueError, match="x must have 3 dimensions"):
        NystromAttention(32, 4)(torch.randn(40, 32))


# ------------------------------------------------------------------------------ the convergence law


def test_hyperpower_step_maps_the_residual_cubically():
    e = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(
        1 - hyperpower_step(1 - e), 0.75 * e**3 + 0.25 * e**4, atol=1e-15
    )


def test_filter_factors_match_the_iteration_on_a_diagonal_matrix():
    """A = diag(sigma): Z_k = diag(x_k(sigma^2 / s) / sigma), with s = max(sigma)^2."""
    sigma = torch.tensor([1.0, 0.3, 0.05, 1e-3], dtype=torch.float64)
    a = torch.diag(sigma)
    factors = filter_factors(sigma**2 / sigma.max() ** 2, 8)
    assert factors.shape == (9, 4)
    for k in (0, 3, 8):
        z = iterative_pinv(a, iterations=k)
        assert torch.allclose(torch.diagonal(z) * sigma, factors[k], atol=1e-13)


def test_residual_law_matches_the_measured_residuals():
    """float64 reference: the law f^(k)(e_0) against ||I - A Z_k||_2 measured with svd."""
    generator = torch.Generator().manual_seed(7)
    a = (0.5 * torch.randn(3, 6, 6, dtype=torch.float64, generator=generator)).softmax(
        -1
    )
    measured = pinv_residuals(a, 10)
    predicted = predicted_pinv_residuals(a, 10)
    assert measured.shape == predicted.shape == (11, 3)
    assert (measured - predicted).abs().max() < 1e-12  # measured: about 1e-15
    assert (measured[1:] <= measured[:-1] + 1e-15).all()


def test_steps_to_tolerance_is_the_third_order_bound():
    e0 = 0.9
    k = steps_to_tolerance(e0, 1e-12)
    assert e0 ** (3**k) <= 1e-12 < e0 ** (3 ** (k - 1))
    assert steps_to_tolerance(1e-20, 1e-12) == 0


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: filter_factors(torch.ones(3), -1), ValueError),
        (lambda: filter_factors(torch.ones(3), 2.0), TypeError),
        (lambda: pinv_residuals(torch.ones(2, 3), 2), ValueError),
        (lambda: predicted_pinv_residuals(torch.ones(3), 2), ValueError),
        (lambda: steps_to_tolerance(1.0), ValueError),
        (lambda: steps_to_tolerance(0.5, 2.0), ValueError),
        (lambda: smooth_sequence(1, 4), ValueError),
        (lambda: local_sequence(8, -1.0), ValueError),
    ],
)
def test_law_helpers_reject_bad_input(call, error):
    with pytest.raises(error):
        call()


def test_synthetic_sequences_have_the_stated_kernels():
    generator = torch.Generator().manual_seed(0)
    smooth = smooth_sequence(64, 8, generator=generator)
    assert smooth.shape == (1, 1, 64, 8) and smooth.dtype == torch.float64
    # a closed curve: the first and last tokens sit at t = 0 and t = 1, the same point
    assert torch.allclose(smooth[0, 0, 0], smooth[0, 0, -1], atol=1e-12)
    local = local_sequence(50, 0.5, frequencies=4)
    t = torch.linspace(0, 1, 50, dtype=torch.float64)
    w = 2 * torch.pi * torch.arange(1, 5, dtype=torch.float64)
    kernel = 0.5 * torch.cos(w * (t[:, None, None] - t[None, :, None])).sum(-1)
    assert torch.allclose(local[0, 0] @ local[0, 0].T, kernel, atol=1e-12)


def _naive_lloyd(points, start, iterations):
    centres = [points[i].clone() for i in start]
    for _ in range(iterations):
        clusters = [[] for _ in centres]
        for p in points:
            distances = [float(((p - c) ** 2).sum()) for c in centres]
            clusters[distances.index(min(distances))].append(p)
        centres = [
            torch.stack(members).mean(0) if members else c
            for members, c in zip(clusters, centres, strict=True)
        ]
    return torch.stack(centres)


def test_kmeans_landmarks_match_a_naive_lloyd_loop(device):
    x = torch.randn(2, 2, 40, 3, dtype=torch.float64)
    centres = kmeans_landmarks(
        x.to(device), 5, iterations=4, generator=torch.Generator().manual_seed(3)
    )
    start = torch.randperm(40, generator=torch.Generator().manual_seed(3))[:5]
    assert centres.shape == (2, 2, 5, 3)
    for b in range(2):
        for h in range(2):
            expected = _naive_lloyd(x[b, h], start.tolist(), 4)
            torch.testing.assert_close(
                centres[b, h].cpu(), expected, rtol=0, atol=1e-12
            )


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: kmeans_landmarks(torch.zeros(2, 3), 2), ValueError),
        (
            lambda: kmeans_landmarks(torch.zeros(1, 1, 4, 2, dtype=torch.long), 2),
            TypeError,
        ),
        (lambda: kmeans_landmarks(torch.zeros(1, 1, 4, 2), 5), ValueError),
        (lambda: kmeans_landmarks(torch.zeros(1, 1, 4, 2), 0), ValueError),
        (
            lambda: kmeans_landmarks(torch.zeros(1, 1, 4, 2), 2, iterations=-1),
            ValueError,
        ),
    ],
)
def test_kmeans_landmarks_reject_bad_input(call, error):
    with pytest.raises(error):
        call()
