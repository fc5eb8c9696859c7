"""RoPE on the CPU: kexue against the eager forms people actually use. Run with ``make bench``.

Two pairs of comparisons, each at the same shape and dtype:

* inside a model (tables cached once): ``kexue.positions.rope.RotaryEmbedding`` with each layout, against
  Llama-style ``x * cos + rotate_half(x) * sin`` (``rotate_half`` = ``cat(-x2, x1)``, cos/sin duplicated to
  full width) and against Meta-Llama-style complex multiplication (``view_as_complex`` of float32 pairs);
* as a function (tables computed on every call): ``apply_rope`` against the same two forms, each
  computing its own tables.

pytest-benchmark groups the rows by comparison; ratios within a group come from one process, interleaved.
Nothing here asserts a speed: machines differ. The numbers go in the chapter's issue notes.
"""

from __future__ import annotations

import pytest
import torch

from kexue.positions.rope import RotaryEmbedding, apply_rope

SHAPES = {"small (1, 8, 128, 64)": (1, 8, 128, 64), "llm (4, 16, 1024, 64)": (4, 16, 1024, 64)}


def tables(seq: int, dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    theta = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    angles = torch.arange(seq, dtype=torch.float32)[:, None] * theta
    return angles.cos(), angles.sin()


def rotate_half_reference(x: torch.Tensor, cos_full: torch.Tensor, sin_full: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos_full + torch.cat((-x2, x1), dim=-1) * sin_full


def complex_reference(x: torch.Tensor, cis: torch.Tensor) -> torch.Tensor:
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * cis).flatten(-2).type_as(x)


@pytest.fixture(params=list(SHAPES), ids=list(SHAPES))
def x(request: pytest.FixtureRequest) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(SHAPES[request.param])


@pytest.mark.parametrize("candidate", ["kexue interleaved", "kexue half", "rotate_half", "complex"])
def test_cached_tables(benchmark, x: torch.Tensor, candidate: str) -> None:
    seq, dim = x.shape[-2], x.shape[-1]
    benchmark.group = f"cached tables, {tuple(x.shape)}"
    cos, sin = tables(seq, dim)
    if candidate.startswith("kexue"):
        rope = RotaryEmbedding(dim, layout=candidate.split()[1])
        rope(x)  # fill the cache
        with torch.no_grad():
            benchmark(rope, x)
    elif candidate == "rotate_half":
        cos_full, sin_full = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)
        benchmark(rotate_half_reference, x, cos_full, sin_full)
    else:
        benchmark(complex_reference, x, torch.complex(cos, sin))


@pytest.mark.parametrize("candidate", ["kexue interleaved", "kexue half", "rotate_half", "complex"])
def test_function_with_tables_per_call(benchmark, x: torch.Tensor, candidate: str) -> None:
    seq, dim = x.shape[-2], x.shape[-1]
    benchmark.group = f"tables per call, {tuple(x.shape)}"
    if candidate.startswith("kexue"):
        benchmark(apply_rope, x, layout=candidate.split()[1])
    elif candidate == "rotate_half":

        def run() -> torch.Tensor:
            cos, sin = tables(seq, dim)
            return rotate_half_reference(x, torch.cat((cos, cos), -1), torch.cat((sin, sin), -1))

        benchmark(run)
    else:

        def run() -> torch.Tensor:
            cos, sin = tables(seq, dim)
            return complex_reference(x, torch.complex(cos, sin))

        benchmark(run)


def test_the_candidates_agree() -> None:
    """The timings compare equal computations: all four forms give the same rotation."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 64, 32)
    cos, sin = tables(64, 32)
    P = torch.cat([torch.arange(0, 32, 2), torch.arange(1, 32, 2)])  # interleaved -> half ordering
    interleaved = apply_rope(x, layout="interleaved")
    torch.testing.assert_close(complex_reference(x, torch.complex(cos, sin)), interleaved, atol=1e-5, rtol=0)
    half = rotate_half_reference(x[..., P], torch.cat((cos, cos), -1), torch.cat((sin, sin), -1))
    torch.testing.assert_close(half, interleaved[..., P], atol=1e-5, rtol=0)
    torch.testing.assert_close(apply_rope(x[..., P], layout="half"), interleaved[..., P], atol=1e-5, rtol=0)
