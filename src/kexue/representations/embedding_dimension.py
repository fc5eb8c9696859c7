"""How many dimensions a word vector needs, after Su Jianlin's kexue.fm/archives/7695
and 8711.

A Skip-Gram-like model gives the word pair ``(w_i, w_j)`` the probability
``p_ij = exp(<u_i, v_j>) / Z``. With ``N`` words whose vectors lie uniformly on the
sphere of radius ``sqrt(n)``, the sums in its entropy become expectations over the
angle ``theta`` between two random vectors, ``<u, v> = n cos(theta)`` with density
proportional to ``sin(theta)^(n - 2)``, and

    H ~ 2 log N + h_n,
    h_n = log E[exp(n cos)] - n E[cos exp(n cos)] / E[exp(n cos)].

``h_n / n`` tends to ``-log(phi) / 2 = -0.2406`` (``phi`` the golden ratio), and asking
``H < 0`` gives the article's rule ``n > 8.33 log N``. :func:`pair_entropy` computes
``h_n``, :func:`min_dimension` the rule; :func:`cooccurrence`,
:func:`fit_log_bilinear`, :func:`log_bilinear_cross_entropy` and
:func:`log_bilinear_entropy` count word pairs in a corpus and fit and score the model
itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kexue import _checks
from kexue.training import train

__all__ = [
    "cooccurrence",
    "fit_log_bilinear",
    "log_bilinear_cross_entropy",
    "log_bilinear_entropy",
    "min_dimension",
    "pair_entropy",
]

#: ``log(phi) / 2``, the limit of ``-h_n / n`` (the article's 0.24).
HALF_LOG_PHI = 0.5 * math.log((1 + math.sqrt(5)) / 2)
#: The article's rounded coefficient ``2 / 0.24`` of ``log N``.
ROUNDED_COEFFICIENT = 2 / 0.24
#: Past this many ``(n, node)`` pairs, :func:`pair_entropy` works through ``n`` in
#: chunks, so that its memory stays bounded.
_CHUNK = 1 << 22


def _dimensions(n: object, name: str, smallest: int) -> int | Tensor:
    """``n`` as an int ``>= smallest`` or an integer tensor whose entries all are."""
    if isinstance(n, Tensor):
        _checks.tensor(n, name, kind="integer")
        if n.device.type == "meta":
            raise ValueError(f"{name} is a meta tensor: its values cannot be checked")
        if n.numel() and int(n.min()) < smallest:
            raise ValueError(f"{name} must be >= {smallest}, got {int(n.min())}")
        return n
    value = _checks.positive_int(n, name)
    if value < smallest:
        raise ValueError(f"{name} must be >= {smallest}, got {value}")
    return value


def _tanh_sinh(largest: float, device: torch.device) -> tuple[Tensor, ...]:
    """Nodes of a tanh-sinh rule on ``[0, pi]``, resolving a peak of width
    ``~ 0.67 / sqrt(largest)``: ``log sin(theta)``, ``cos(theta)`` and the log of the
    weights ``dtheta/dt``, in float64.

    ``theta = pi/2 (1 + tanh(pi/2 sinh t))`` crowds the nodes into the ends, so the
    trapezoidal rule in ``t`` converges exponentially even where ``sin^(n-2)`` has a
    kink (odd ``n``). The distance to the nearer end, ``pi sigmoid(-2|u|)``, is formed
    directly so that ``log sin`` keeps its digits there.
    """
    step = min(1 / 32, 0.15 / math.sqrt(largest))  # node spacing <= sigma / 2
    half = math.ceil(3.5 / step)  # weights beyond |t| = 3.5 are below 1e-20
    t = torch.arange(-half, half + 1, dtype=torch.float64, device=device) * step
    u = math.pi / 2 * torch.sinh(t)
    to_end = math.pi * torch.sigmoid(-2 * u.abs())
    log_sin = torch.log(torch.sin(to_end))
    cos = -torch.sign(u) * torch.cos(to_end)
    log_cosh_u = u.abs() + torch.log1p(torch.exp(-2 * u.abs())) - math.log(2)
    log_weight = math.log(math.pi**2 / 4) + torch.log(torch.cosh(t)) - 2 * log_cosh_u
    return log_sin, cos, log_weight


def _quadrature(n: Tensor) -> Tensor:
    """``h_n`` for a 1-D float64 tensor of dimensions ``n >= 2``, in chunks."""
    log_sin, cos, log_weight = _tanh_sinh(float(n.max()), n.device)
    rows = max(1, _CHUNK // cos.numel())
    out = []
    for part in n.split(rows):
        base = log_weight + (part[:, None] - 2) * log_sin  # sin^(n-2) dtheta
        tilted = base + part[:, None] * cos  # ... e^(n cos)
        log_mean = torch.logsumexp(tilted, -1) - torch.logsumexp(base, -1)
        mean_cos = (torch.softmax(tilted, -1) * cos).sum(-1)
        out.append(log_mean - part * mean_cos)
    return torch.cat(out)


def pair_entropy(n: int | Tensor, *, method: str = "quadrature") -> float | Tensor:
    """The article's ``h_n``: the entropy of the pair model beyond ``2 log N``.

    ``h_n = log E[e^(n c)] - n E[c e^(n c)] / E[e^(n c)]``, ``c = cos(theta)`` the
    cosine between two vectors drawn uniformly on the sphere in ``n`` dimensions
    (density proportional to ``sin(theta)^(n - 2)`` on ``[0, pi]``).

    Args:
        n: the dimension, an int ``>= 2``, or an integer tensor of them (any shape).
        method: ``"quadrature"``: the integrals by a tanh-sinh rule in float64
            (225 nodes up to ``n = 22``, about 10^3 at ``n = 512``, growing like
            ``sqrt(n)``; relative error ``~ 1e-15``); ``"laplace"``: the article's
            leading-order Laplace estimate ``-n log(phi) / 2 = -0.2406 n``, which is
            ``h_n`` up to a constant ``-0.074`` and a term of order ``1/n``.

    Returns:
        A float for an int ``n``; for a tensor, a float64 tensor of its shape on its
        device (empty in, empty out).

    Raises:
        TypeError: ``n`` is not an int or an integer tensor (a bool, a float, a float
            tensor); ``method`` is not a string.
        ValueError: ``n < 2`` (one dimension has no sphere to be uniform on);
            ``method`` is not one of the two; ``n`` is a meta tensor.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__}")
    method = _checks.choice(method, "method", ("quadrature", "laplace"))
    dims = _dimensions(n, "n", 2)
    values = torch.as_tensor(dims, dtype=torch.float64)
    if method == "laplace":
        out = -HALF_LOG_PHI * values
    elif values.numel() == 0:
        out = values.clone()
    else:
        out = _quadrature(values.reshape(-1)).reshape(values.shape)
    return out if isinstance(dims, Tensor) else float(out)


def min_dimension(vocab_size: int | Tensor, *, exact: bool = False) -> float | Tensor:
    """The article's threshold ``8.33 log N``: the dimension past which ``N`` words fit.

    ``H ~ 2 log N + h_n`` with ``h_n ~ -0.24 n`` is negative once
    ``n > 2 log N / 0.24 = 8.33 log N``; with ``exact`` the coefficient is the limit
    ``2 / (log(phi) / 2) = 4 / log(phi) = 8.3123`` instead of the rounded ``2 / 0.24``.

    Args:
        vocab_size: ``N``, an int ``>= 1`` or an integer tensor of them.
        exact: use ``4 / log(phi)`` rather than ``2 / 0.24``.

    Returns:
        The threshold (natural logarithm): a float for an int, a float64 tensor of the
        same shape and device for a tensor. ``N = 1`` gives 0.

    Raises:
        TypeError: ``vocab_size`` is not an int or an integer tensor; ``exact`` not a
            bool.
        ValueError: ``vocab_size < 1``; a meta tensor.
    """
    exact = _checks.flag(exact, "exact")
    sizes = _dimensions(vocab_size, "vocab_size", 1)
    coefficient = 2 / HALF_LOG_PHI if exact else ROUNDED_COEFFICIENT
    out = coefficient * torch.log(torch.as_tensor(sizes, dtype=torch.float64))
    return out if isinstance(sizes, Tensor) else float(out)


def _documents(tokens: object) -> list[Sequence[str]]:
    """``tokens`` as a list of documents: one sequence of strings, or a sequence of
    such sequences (windows never cross from one document to the next)."""
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(
            "tokens must be a sequence of strings or a sequence of such sequences, "
            f"got {type(tokens).__name__}"
        )
    if all(isinstance(t, str) for t in tokens):
        return [tokens]  # one document (also the empty corpus)
    for doc in tokens:
        if isinstance(doc, str) or not isinstance(doc, Sequence):
            raise TypeError(
                "tokens must be a sequence of strings or a sequence of such "
                f"sequences, got an element of type {type(doc).__name__}"
            )
        if not all(isinstance(t, str) for t in doc):
            raise TypeError("tokens: every token of every document must be a string")
    return list(tokens)


def _vocabulary(vocab: object) -> dict[str, int]:
    """``vocab`` (a sequence of distinct strings) as a word -> index map."""
    if isinstance(vocab, str) or not isinstance(vocab, Sequence):
        raise TypeError(
            f"vocab must be a sequence of strings, got {type(vocab).__name__}"
        )
    if not all(isinstance(w, str) for w in vocab):
        raise TypeError("vocab must be a sequence of strings")
    index = {w: i for i, w in enumerate(vocab)}
    if len(index) != len(vocab):
        raise ValueError("vocab has repeated words")
    return index


def cooccurrence(
    tokens: Sequence[str] | Sequence[Sequence[str]],
    vocab: Sequence[str],
    *,
    window: int,
    device: torch.device | str | None = None,
) -> Tensor:
    """Counts of word pairs within ``window`` positions of each other.

    ``C[i, j]`` counts the pairs of positions ``a != b`` with ``|a - b| <= window``,
    word ``vocab[i]`` at ``a`` and ``vocab[j]`` at ``b``, within one document: ``C`` is
    symmetric, every pair counted once in each direction, and a word that occurs twice
    within the window co-occurs with itself. Tokens outside ``vocab`` keep their
    positions (they are counted in the distance) but form no pairs.

    Args:
        tokens: one document as a sequence of token strings, or a sequence of such
            documents.
        vocab: ``N`` distinct words; row and column ``i`` belong to ``vocab[i]``.
        window: the largest distance counted, ``>= 1``.
        device: where the counts are made and returned (default: the CPU).

    Returns:
        ``(N, N)`` float64 counts (integers, exact below ``2^53``) on ``device``. An
        empty vocabulary gives ``(0, 0)``; an empty corpus all zeros.

    Raises:
        TypeError: ``tokens`` or ``vocab`` is not a sequence of strings (or of such
            sequences), a bare string; ``window`` not an int; ``device`` not a device.
        ValueError: ``window < 1``; ``vocab`` has repeated words.
    """
    docs = _documents(tokens)
    index = _vocabulary(vocab)
    window = _checks.positive_int(window, "window")
    where = _checks.device("cpu" if device is None else device)
    size = len(index)
    gap = [-1] * window  # no window reaches across a document boundary
    ids = [i for doc in docs for i in (*(index.get(t, -1) for t in doc), *gap)]
    ids_t = torch.tensor(ids, dtype=torch.int64, device=where)
    counts = torch.zeros(size * size, dtype=torch.float64, device=where)
    for offset in range(1, min(window, max(len(ids) - 1, 0)) + 1):
        left, right = ids_t[:-offset], ids_t[offset:]
        keep = (left >= 0) & (right >= 0)
        pair = left[keep] * size + right[keep]
        counts += torch.bincount(pair, minlength=size * size).to(torch.float64)
    counts = counts.view(size, size)
    return counts + counts.T


def _joint(joint: object) -> Tensor:
    """``joint`` checked: a 2-D floating tensor of finite non-negative entries."""
    joint = _checks.tensor(joint, "joint", ndim=2)
    if joint.device.type != "meta" and joint.numel():
        if not bool(torch.isfinite(joint).all()) or bool((joint < 0).any()):
            raise ValueError("joint must have finite non-negative entries")
        if not bool(joint.sum() > 0):
            raise ValueError("joint must have a positive total")
    return joint


def _logits(u: Tensor, v: Tensor) -> Tensor:
    return u @ v.T


class _LogBilinear(nn.Module):
    """The pair model's two tables of word vectors, as trainable parameters."""

    def __init__(self, u: Tensor, v: Tensor) -> None:
        super().__init__()
        self.u, self.v = nn.Parameter(u), nn.Parameter(v)


def _cross_entropy(target: Tensor, logits: Tensor) -> Tensor:
    """``-sum target * log softmax(logits)`` over all entries, ``target`` summing to
    one."""
    return torch.logsumexp(logits.reshape(-1), 0) - (target * logits).sum()


def fit_log_bilinear(
    joint: Tensor,
    dim: int,
    *,
    steps: int,
    lr: float = 0.05,
    scale: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Fit ``p_ij = exp(<u_i, v_j>) / Z`` to an empirical joint distribution.

    Minimises the cross-entropy ``-sum_ij q_ij log p_ij`` of the normalised ``joint``
    ``q`` (the Skip-Gram-like model of the article, ``Z`` summed over all ``N M``
    pairs, no biases) with :func:`kexue.training.train` (Adam, full batch).

    Args:
        joint: ``(N, M)`` non-negative counts or probabilities (normalised here), e.g.
            :func:`cooccurrence`.
        dim: the dimension ``n`` of the word vectors, ``>= 1``.
        steps: Adam steps, ``>= 0`` (0 returns the initial vectors).
        lr: Adam's learning rate.
        scale: the standard deviation of the initial entries.
        generator: a ``torch.Generator`` for the initial vectors (they are drawn on its
            device and moved to ``joint``'s), or None for torch's global one.

    Returns:
        ``(u, v)``, of shapes ``(N, dim)`` and ``(M, dim)``, in ``joint``'s dtype and
        on its device, without gradient. Half precision is fitted in float32 (the
        normaliser ``Z`` sums ``N M`` exponentials). An empty ``joint`` gives zeros.

    Raises:
        TypeError: ``joint`` is not a 2-D floating tensor; ``dim`` or ``steps`` not an
            int; ``lr`` or ``scale`` not a number; ``generator`` not a generator.
        ValueError: ``joint`` is not 2-D, has a negative or non-finite entry, a zero
            total, or is a meta tensor; ``dim < 1``, ``steps < 0``; ``lr`` or
            ``scale`` not positive and finite.
    """
    joint = _joint(joint)
    if joint.device.type == "meta":
        raise ValueError("joint is a meta tensor: there is nothing to fit")
    dim = _checks.positive_int(dim, "dim")
    steps = _checks.nonnegative_int(steps, "steps")
    lr = _checks.real(lr, "lr", positive=True)
    scale = _checks.real(scale, "scale", positive=True)
    generator = _checks.generator(generator)
    rows, cols = joint.shape
    dtype = _checks.compute_dtype(joint.dtype)
    if joint.numel() == 0:
        zeros = joint.new_zeros
        return zeros(rows, dim), zeros(cols, dim)
    draw_on = joint.device if generator is None else generator.device
    start = torch.randn(rows + cols, dim, generator=generator, device=draw_on)
    start = (scale * start).to(device=joint.device, dtype=dtype)
    model = _LogBilinear(start[:rows].clone(), start[rows:].clone())
    target = joint.to(dtype) / joint.to(dtype).sum()
    train(
        model, lambda _: _cross_entropy(target, _logits(model.u, model.v)), steps, lr=lr
    )
    return model.u.detach().to(joint.dtype), model.v.detach().to(joint.dtype)


def _tables(u: object, v: object) -> tuple[Tensor, Tensor]:
    """``u (N, n)`` and ``v (M, n)``: floating, one dtype and device, one width."""
    u = _checks.tensor(u, "u", ndim=2)
    v = _checks.tensor(v, "v", ndim=2)
    _checks.same_device(("u", u), v=v)
    _checks.same_dtype(("u", u), v=v)
    if u.shape[1] != v.shape[1]:
        raise ValueError(
            f"u (N, n) and v (M, n) must have the same width, got {tuple(u.shape)} "
            f"and {tuple(v.shape)}"
        )
    return u, v


def log_bilinear_cross_entropy(joint: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """``-sum_ij q_ij log p_ij`` (nats): how well the pair model ``(u, v)`` predicts
    the normalised ``joint`` ``q``, e.g. held-out co-occurrence counts.

    Args:
        joint: ``(N, M)`` non-negative counts or probabilities, floating.
        u, v: ``(N, n)`` and ``(M, n)`` word vectors, ``joint``'s dtype and device.

    Returns:
        A scalar tensor in ``joint``'s dtype (half precision computed in float32),
        differentiable in ``u`` and ``v``. An empty ``joint`` gives 0.

    Raises:
        TypeError: an argument is not a 2-D floating tensor; dtypes differ.
        ValueError: a tensor is not 2-D; shapes do not fit; devices differ; ``joint``
            has a negative or non-finite entry or a zero total.
    """
    joint = _joint(joint)
    u, v = _tables(u, v)
    _checks.same_device(("joint", joint), u=u, v=v)
    _checks.same_dtype(("joint", joint), u=u, v=v)
    if joint.shape != (u.shape[0], v.shape[0]):
        raise ValueError(
            f"joint must have shape (N, M) = ({u.shape[0]}, {v.shape[0]}) from u and "
            f"v, got {tuple(joint.shape)}"
        )
    if joint.numel() == 0:
        return (u.sum() + v.sum()) * 0  # zero, keeping the graph and the device
    dtype = _checks.compute_dtype(joint.dtype)
    target = joint.to(dtype) / joint.to(dtype).sum()
    return _cross_entropy(target, _logits(u.to(dtype), v.to(dtype))).to(joint.dtype)


def log_bilinear_entropy(u: Tensor, v: Tensor) -> Tensor:
    """The entropy ``H = log Z - sum_ij p_ij <u_i, v_j>`` of the pair model (nats).

    Exact over all ``N M`` pairs: the quantity the article approximates by
    ``2 log N + h_n`` for random vectors. It lies in ``[0, log(N M)]``.

    Args:
        u, v: ``(N, n)`` and ``(M, n)`` floating word vectors of one dtype and device.

    Returns:
        A scalar tensor in ``u``'s dtype (half precision computed in float32),
        differentiable. No pair (``N M = 0``) gives 0.

    Raises:
        TypeError: ``u`` or ``v`` is not a floating tensor; their dtypes differ.
        ValueError: not 2-D; widths differ; devices differ.
    """
    u, v = _tables(u, v)
    if u.shape[0] * v.shape[0] == 0:
        return (u.sum() + v.sum()) * 0
    dtype = _checks.compute_dtype(u.dtype)
    logits = _logits(u.to(dtype), v.to(dtype))
    p = torch.softmax(logits.reshape(-1), 0)
    return (torch.logsumexp(logits.reshape(-1), 0) - (p * logits.reshape(-1)).sum()).to(
        u.dtype
    )
