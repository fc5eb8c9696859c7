"""kexue.positions.sinusoidal against independent references.

References: the defining formula evaluated term by term with Python's math module (float64), mpmath for
large positions, and the angle-addition identities for the shift matrix.
"""

from __future__ import annotations

import math

import mpmath
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.positions.sinusoidal import (
    SinusoidalEmbedding,
    covariance_dominance,
    decay_integral,
    frequencies,
    power_decay_integral,
    relative_shift_matrix,
    sinusoidal_embedding,
    toeplitz_share,
)


def reference(position: float, dim: int, base: float = 10000.0) -> list[float]:
    """PE(position) straight from the 2017 definition, one component at a time."""
    out = []
    for i in range(dim // 2):
        angle = position / base ** (2 * i / dim)
        out += [math.sin(angle), math.cos(angle)]
    return out


def test_frequencies_are_the_geometric_table() -> None:
    theta = frequencies(8, base=100.0)
    assert theta.dtype == torch.float64 and theta.shape == (4,)
    assert theta.tolist() == pytest.approx(
        [100.0 ** (-2 * i / 8) for i in range(4)], rel=1e-15
    )
    assert frequencies(8, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("dim", [2, 4, 16, 128])
@pytest.mark.parametrize("base", [10000.0, 1000.0, 2.5])
def test_matches_the_definition(dim: int, base: float) -> None:
    positions = torch.tensor([0, 1, 2, 7, 100, 4095])
    got = sinusoidal_embedding(positions, dim, base=base, dtype=torch.float64)
    expected = torch.tensor(
        [reference(float(m), dim, base) for m in positions], dtype=torch.float64
    )
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_layout_is_interleaved_sin_cos() -> None:
    pe = sinusoidal_embedding(torch.tensor(0), 6)
    assert pe.tolist() == [
        0.0,
        1.0,
        0.0,
        1.0,
        0.0,
        1.0,
    ]  # sin 0 = 0, cos 0 = 1, pair by pair


@pytest.mark.parametrize("shape", [(), (5,), (2, 3), (2, 3, 4)])
def test_shape_is_positions_shape_plus_dim(
    shape: tuple[int, ...], device: torch.device
) -> None:
    positions = torch.randint(0, 1000, shape, device=device)
    pe = sinusoidal_embedding(positions, 10)
    assert pe.shape == (*shape, 10)
    assert pe.device.type == device.type


def test_float_positions_interpolate_the_integer_ones() -> None:
    pe = sinusoidal_embedding(torch.tensor([2.5]), 8, dtype=torch.float64)[0]
    torch.testing.assert_close(
        pe, torch.tensor(reference(2.5, 8), dtype=torch.float64), rtol=0, atol=1e-14
    )


def test_python_numbers_and_lists_are_accepted() -> None:
    assert sinusoidal_embedding(3, 4).shape == (4,)
    assert sinusoidal_embedding([1, 2, 3], 4).shape == (3, 4)


@pytest.mark.parametrize(
    "dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64]
)
def test_dtype_is_respected(dtype: torch.dtype) -> None:
    pe = sinusoidal_embedding(torch.arange(4), 8, dtype=dtype)
    assert pe.dtype == dtype
    exact = sinusoidal_embedding(torch.arange(4), 8, dtype=torch.float64)
    assert (pe.double() - exact).abs().max() <= torch.finfo(dtype).eps


def test_default_dtype_follows_torch_default() -> None:
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        assert sinusoidal_embedding(torch.arange(3), 4).dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)
    assert sinusoidal_embedding(torch.arange(3), 4).dtype == previous


@pytest.mark.parametrize("position", [1e5, 123_457, 1e6, 3e7])
def test_large_positions_stay_accurate_in_float32(position: float) -> None:
    """float32 output, float64 angles: every component within one float32 rounding of the exact value."""
    pe = sinusoidal_embedding(torch.tensor([position]), 64, dtype=torch.float32)[
        0
    ].double()
    mpmath.mp.dps = 40
    exact = []
    for i in range(32):
        angle = mpmath.mpf(position) / mpmath.mpf(10000) ** (mpmath.mpf(2 * i) / 64)
        exact += [float(mpmath.sin(angle)), float(mpmath.cos(angle))]
    error = (pe - torch.tensor(exact, dtype=torch.float64)).abs().max().item()
    # The float64 angle carries a relative error ~1e-16, i.e. ~1e-16 * position rad in absolute terms.
    assert error < torch.finfo(torch.float32).eps + 4e-16 * position


def test_float32_angles_would_not_be_accurate() -> None:
    """Why the angles are float64: the same computation in float32 is visibly wrong at m = 1e5."""
    position, theta = torch.tensor([1e5]), frequencies(64, dtype=torch.float32)
    naive = torch.sin(position[:, None] * theta)[0].double()
    exact = torch.sin(
        torch.tensor([1e5], dtype=torch.float64)[:, None] * frequencies(64)
    )[0]
    assert (naive - exact).abs().max() > 1e-3
    kexue = sinusoidal_embedding(position, 64)[0, 0::2].double()
    assert (kexue - exact).abs().max() < 1e-6


@settings(max_examples=100, deadline=None)
@given(
    m=st.integers(-(10**6), 10**6),
    n=st.integers(-(10**6), 10**6),
    shift=st.integers(-(10**6), 10**6),
    dim=st.sampled_from([2, 8, 64]),
)
def test_inner_product_depends_only_on_the_offset(
    m: int, n: int, shift: int, dim: int
) -> None:
    """<PE(m), PE(n)> = sum_i cos((m - n) theta_i) = <PE(m + s), PE(n + s)>."""
    pe = sinusoidal_embedding(
        torch.tensor([m, n, m + shift, n + shift]), dim, dtype=torch.float64
    )
    expected = torch.cos((m - n) * frequencies(dim)).sum()
    torch.testing.assert_close(pe[0] @ pe[1], expected, rtol=0, atol=1e-9)
    torch.testing.assert_close(pe[2] @ pe[3], expected, rtol=0, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    m=st.integers(-(10**5), 10**5),
    k=st.integers(-(10**5), 10**5),
    dim=st.sampled_from([2, 6, 32]),
)
def test_shift_matrix_moves_every_position_by_k(m: int, k: int, dim: int) -> None:
    shift = relative_shift_matrix(k, dim, dtype=torch.float64)
    pe = sinusoidal_embedding(torch.tensor([m, m + k]), dim, dtype=torch.float64)
    torch.testing.assert_close(shift @ pe[0], pe[1], rtol=0, atol=1e-9)


def test_shift_matrices_are_orthogonal_and_compose(device: torch.device) -> None:
    k = torch.tensor([3.0, -7.5, 1000.0], device=device)
    shifts = relative_shift_matrix(k, 16, dtype=torch.float64)
    assert shifts.shape == (3, 16, 16)
    eye = torch.eye(16, dtype=torch.float64, device=device)
    torch.testing.assert_close(
        shifts @ shifts.mT, eye.expand(3, 16, 16), rtol=0, atol=1e-12
    )
    composed = relative_shift_matrix(k[0] + k[1], 16, dtype=torch.float64)
    torch.testing.assert_close(shifts[0] @ shifts[1], composed, rtol=0, atol=1e-12)
    inverse = relative_shift_matrix(-k, 16, dtype=torch.float64)
    torch.testing.assert_close(shifts.mT, inverse, rtol=0, atol=1e-12)


def test_shift_matrix_is_block_diagonal() -> None:
    shift = relative_shift_matrix(5, 8, dtype=torch.float64)
    mask = torch.block_diag(*[torch.ones(2, 2)] * 4).bool()
    assert torch.all(shift[~mask] == 0)


def test_module_table_matches_the_function_and_grows(device: torch.device) -> None:
    module = SinusoidalEmbedding(16, initial_length=8).to(device)
    positions = torch.tensor([[0, 3, 7], [100, 2, 5]], device=device)
    out = module(positions)
    assert len(module.table) >= 101
    torch.testing.assert_close(
        out, sinusoidal_embedding(positions, 16), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        module(torch.tensor([-3.5], device=device)),
        sinusoidal_embedding([-3.5], 16).to(device),
    )
    assert module.state_dict() == {}


def test_module_follows_dtype() -> None:
    module = SinusoidalEmbedding(8).to(torch.float64)
    assert module(torch.arange(3)).dtype == torch.float64


@pytest.mark.parametrize("dim", [0, -2, 3, 7])
def test_bad_dim_is_rejected(dim: int) -> None:
    with pytest.raises(ValueError, match="dim must be a positive even number"):
        sinusoidal_embedding(torch.arange(3), dim)


def test_non_integer_dim_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="dim must be an int"):
        sinusoidal_embedding(torch.arange(3), 8.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("base", [1.0, 0.5, -10.0, math.inf, math.nan])
def test_bad_base_is_rejected(base: float) -> None:
    with pytest.raises(ValueError, match="base must be a finite number greater than 1"):
        sinusoidal_embedding(torch.arange(3), 8, base=base)


@pytest.mark.parametrize("positions", [torch.tensor([True]), torch.tensor([1j]), "abc"])
def test_bad_positions_are_rejected(positions: object) -> None:
    with pytest.raises(TypeError, match="positions must be"):
        sinusoidal_embedding(positions, 8)  # type: ignore[arg-type]


def test_integer_dtype_for_the_output_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"dtype must be a floating torch\.dtype"):
        sinusoidal_embedding(torch.arange(3), 8, dtype=torch.int64)


def test_module_rejects_positions_on_another_device() -> None:
    module = SinusoidalEmbedding(8)
    module.table = module.table.to("meta")
    with pytest.raises(ValueError, match="move them to one device"):
        module(torch.arange(3))


def test_toeplitz_share_is_one_for_a_relative_gram_matrix(device: torch.device) -> None:
    pe = sinusoidal_embedding(torch.arange(64, device=device), 32, dtype=torch.float64)
    assert toeplitz_share(pe @ pe.T).item() == pytest.approx(1.0, abs=1e-12)


def test_toeplitz_share_against_a_direct_least_squares_fit() -> None:
    """Independent reference: regress the entries on one indicator column per diagonal."""
    matrix = torch.randn(2, 7, 7, dtype=torch.float64)
    offsets = (torch.arange(7)[:, None] - torch.arange(7)).flatten() + 6
    design = torch.nn.functional.one_hot(offsets, 13).double()
    for batch in range(2):
        target = matrix[batch].flatten()
        fitted = design @ torch.linalg.lstsq(design, target[:, None]).solution[:, 0]
        expected = (
            1 - ((target - fitted) ** 2).sum() / ((target - target.mean()) ** 2).sum()
        )
        torch.testing.assert_close(toeplitz_share(matrix)[batch], expected)


def test_toeplitz_share_rejects_non_square_input() -> None:
    with pytest.raises(ValueError, match=r"shape \(\.\.\., n, n\)"):
        toeplitz_share(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="matrix must have a floating dtype"):
        toeplitz_share(torch.zeros(3, 3, dtype=torch.int64))


def midpoint(integrand, nodes: int = 1_000_000) -> float:
    """Float64 reference: the midpoint rule on [0, 1] (error ~ max|f''| / (24 nodes^2))."""
    t = (torch.arange(nodes, dtype=torch.float64) + 0.5) / nodes
    return integrand(t).mean().item()


@pytest.mark.parametrize("k", [0.5, 1.0, 10.0, 100.0, -37.0])
@pytest.mark.parametrize("base", [10000.0, 1000.0])
def test_decay_integral_against_the_midpoint_rule(k: float, base: float) -> None:
    expected = midpoint(lambda t: torch.cos(k * base ** (-t)))
    assert decay_integral(k, base=base).item() == pytest.approx(expected, abs=1e-8)


def test_decay_integral_keeps_the_shape_and_is_one_at_zero() -> None:
    got = decay_integral(torch.tensor([[0, 10], [-10, 1000]]))
    assert got.shape == (2, 2) and got.dtype == torch.float64
    assert got[0, 0].item() == 1.0 and got[0, 1].item() == got[1, 0].item()
    # the values quoted by the chapter, to five decimals
    assert got[1, 1].item() == pytest.approx(0.18769, abs=5e-6)


@pytest.mark.parametrize("k", [0.5, 3.0, 30.0, -12.0])
@pytest.mark.parametrize("alpha", [1.0, 2.0, 4.0, 0.5])
def test_power_decay_integral_against_the_midpoint_rule(k: float, alpha: float) -> None:
    expected = midpoint(lambda t: torch.cos(k * t**alpha))
    got = power_decay_integral(k, alpha).item()
    assert got == pytest.approx(expected, abs=1e-8)


def test_linear_schedule_is_sin_k_over_k() -> None:
    k = torch.tensor([0.0, 1.0, math.pi, 50.0], dtype=torch.float64)
    expected = [1.0, math.sin(1.0), 0.0, math.sin(50.0) / 50.0]
    got = power_decay_integral(k, 1)
    assert got.tolist() == pytest.approx(expected, abs=1e-14)


@pytest.mark.parametrize("bad", [math.inf, math.nan, [1.0, -math.inf]])
def test_decay_integrals_reject_non_finite_distances(bad: object) -> None:
    with pytest.raises(ValueError, match="distances must be finite"):
        decay_integral(bad)
    with pytest.raises(ValueError, match="distances must be finite"):
        power_decay_integral(bad, 2.0)


def test_decay_integrals_reject_bad_arguments() -> None:
    with pytest.raises(TypeError, match="distances must be"):
        decay_integral(torch.tensor([True]))
    with pytest.raises(ValueError, match="base must be a finite number greater than 1"):
        decay_integral(1.0, base=1.0)
    with pytest.raises(TypeError, match="alpha must be a number"):
        power_decay_integral(1.0, "2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha must be positive"):
        power_decay_integral(1.0, 0.0)


def test_covariance_dominance_against_a_float64_loop() -> None:
    """Reference: the covariance entry by entry, with Python floats."""
    table = torch.randn(50, 4, dtype=torch.float64) * torch.tensor([1.0, 2.0, 3.0, 0.5])
    table[:, 1] += 0.9 * table[:, 0]
    cols = table.T.tolist()
    means = [sum(c) / 50 for c in cols]
    cov = [
        [
            sum(
                (a - means[i]) * (b - means[j])
                for a, b in zip(cols[i], cols[j], strict=True)
            )
            / 49
            for j in range(4)
        ]
        for i in range(4)
    ]
    off = [abs(cov[i][j]) for i in range(4) for j in range(4) if i != j]
    diag = [abs(cov[i][i]) for i in range(4)]
    got = covariance_dominance(table.float())
    assert got["mean ratio"] == pytest.approx(
        (sum(diag) / 4) / (sum(off) / 12), rel=1e-5
    )
    energy = sum(d**2 for d in diag) / sum(
        cov[i][j] ** 2 for i in range(4) for j in range(4)
    )
    assert got["diagonal energy"] == pytest.approx(energy, rel=1e-5)
    dominated = [
        diag[i] > max(abs(cov[i][j]) for j in range(4) if j != i) for i in range(4)
    ]
    assert got["rows dominated"] == sum(dominated) / 4


def test_covariance_dominance_of_independent_and_of_rank_one_tables() -> None:
    generator = torch.Generator().manual_seed(0)
    independent = torch.randn(20_000, 8, generator=generator, dtype=torch.float64)
    assert covariance_dominance(independent)["rows dominated"] == 1.0
    shared = torch.randn(1000, 1, generator=generator, dtype=torch.float64)
    rank_one = shared * torch.ones(1, 8, dtype=torch.float64)
    assert covariance_dominance(rank_one)["diagonal energy"] == pytest.approx(1 / 8)


def test_covariance_dominance_rejects_bad_tables() -> None:
    with pytest.raises(TypeError, match="table must have a floating dtype"):
        covariance_dominance(torch.ones(4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"shape \(samples, dim\)"):
        covariance_dominance(torch.ones(4))
    with pytest.raises(ValueError, match=r"shape \(samples, dim\)"):
        covariance_dominance(torch.ones(1, 4))
