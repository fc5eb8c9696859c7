"""Growing a Transformer without changing its function, after Su Jianlin's
kexue.fm/archives/8444 (and Net2Net, arXiv 1511.05641).

Every hidden vector ``h`` of width ``d`` of the small model becomes, in the model
``k`` times as wide, ``repeat(h) / sqrt(k)``: each feature repeated ``k`` times in
place (``[h1, h1, h2, h2, ...]`` for ``k = 2``) and divided by ``sqrt(k)``, a map that
keeps norms and inner products. A linear layer keeps that form when its weight is
repeated along both dimensions and divided by ``k`` and its bias is repeated and
divided by ``sqrt(k)``; LayerNorm keeps it when its gain and bias are repeated and
divided by ``sqrt(k)`` and its ``eps`` is divided by ``k``; the feed-forward block with
GELU keeps it when the first layer is multiplied by ``sqrt(k)`` more than that rule
(so GELU sees exactly its old input) and the second divided by ``sqrt(k)`` more; the
queries and keys get an extra ``k^(1/4)`` each, because the attention scale becomes
``1 / sqrt(k d')``. :func:`widen_linear` states all of these as one rule: the input is
``repeat(x) * in_scale``, the output ``repeat(y) * out_scale``.

With these factors the widened ``BertEncoder`` computes ``repeat(h) / sqrt(k)`` of the
small one's hidden states at every layer, exactly up to floating-point rounding. The
article's summary table as written (second feed-forward bias ``b/2``, ``eps`` kept) is
available as ``widen_bert(..., scheme="article")``, so that it can be measured.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import Tensor, nn

from kexue import _checks
from kexue.representations.encoder import BertEncoder, _Embeddings, _Layer

__all__ = [
    "repeat_features",
    "widen_bert",
    "widen_embedding",
    "widen_layer_norm",
    "widen_linear",
]


# ---------------------------------------------------------------- repetition
def repeat_features(x: Tensor, factor: int = 2, *, pairs: bool = False) -> Tensor:
    """Repeat each feature (the last dimension) ``factor`` times in place.

    ``[x1, x2, x3, x4] -> [x1, x1, x2, x2, x3, x3, x4, x4]`` for ``factor = 2``; with
    ``pairs`` the features are repeated two by two, ``[x1, x2, x1, x2, x3, x4, x3,
    x4]``, which keeps the pairs that rotary position embedding rotates together.
    Nothing is scaled: the widened model's states are ``repeat_features(h) /
    sqrt(factor)``.

    Args:
        x: ``(..., d)`` real tensor (any real dtype, any device); ``d`` even with
            ``pairs``.
        factor: how many copies of each feature (>= 1).
        pairs: repeat pairs ``(x[2i], x[2i+1])`` instead of single features.

    Returns:
        ``(..., factor * d)`` tensor of ``x``'s dtype and device (a new tensor).

    Raises:
        TypeError: ``x`` is not a real tensor (bool or complex), ``factor`` not an
            int, ``pairs`` not a bool.
        ValueError: ``x`` is 0-dimensional, ``factor < 1``, or ``pairs`` with an odd
            last dimension.
    """
    _checks.tensor(x, "x", min_ndim=1, kind="real")
    factor = _checks.positive_int(factor, "factor")
    _checks.flag(pairs, "pairs")
    if not pairs:
        return x.repeat_interleave(factor, dim=-1)
    if x.shape[-1] % 2:
        raise ValueError(
            f"x must have an even last dimension with pairs=True, got {tuple(x.shape)}"
        )
    return x.unflatten(-1, (-1, 2)).repeat_interleave(factor, dim=-2).flatten(-2)


def _widened(t: Tensor, factor: int, scale: float, dims: int) -> Tensor:
    """``t`` repeated ``factor`` times along its last ``dims`` dimensions (1 or 2),
    times ``scale``: the product is formed in float64 (float32 on MPS) on the small
    tensor and rounded once to ``t``'s dtype, then copied into place once."""
    exact = torch.float32 if t.device.type == "mps" else torch.float64
    scaled = (t.detach().to(exact) * scale).to(t.dtype)
    if dims == 1:
        shape = (*scaled.shape[:-1], scaled.shape[-1], factor)
        return scaled.unsqueeze(-1).expand(shape).flatten(-2)
    rows, cols = scaled.shape
    grid = scaled.reshape(rows, 1, cols, 1).expand(rows, factor, cols, factor)
    return grid.reshape(rows * factor, cols * factor)


def _scale(value: object, name: str, factor: int) -> float:
    """A scale: None means ``1 / sqrt(factor)``; else a positive finite number."""
    if value is None:
        return factor**-0.5
    return _checks.real(value, name, positive=True)


# ---------------------------------------------------------------- layers
def widen_linear(
    layer: nn.Linear, factor: int = 2, *, in_scale: float, out_scale: float
) -> nn.Linear:
    """A linear layer ``factor`` times as wide in both dimensions that maps
    ``repeat(x) * in_scale`` to ``repeat(layer(x)) * out_scale``.

    Weight: ``repeat(W) * out_scale / (factor * in_scale)`` (repeated along both
    dimensions); bias: ``repeat(b) * out_scale``. The article's rules are the cases
    ``in_scale = out_scale = 1/sqrt(k)`` (``W/k``, ``b/sqrt(k)``), the first
    feed-forward layer ``in_scale = 1/sqrt(k), out_scale = 1`` (``W/sqrt(k)``, ``b``),
    the second ``in_scale = 1, out_scale = 1/sqrt(k)`` (``W/(k sqrt(k))``,
    ``b/sqrt(k)``), and queries and keys ``out_scale = k^(-1/4)``.

    Args:
        layer: an ``nn.Linear`` (float weights; bias optional).
        factor: the widening factor ``k`` (>= 1).
        in_scale: the factor on the repeated input (positive).
        out_scale: the factor wanted on the repeated output (positive).

    Returns:
        A new ``nn.Linear(k * in_features, k * out_features)`` of the layer's dtype
        and device, with ``requires_grad`` as the layer's; weights are computed in
        float64 and rounded once.

    Raises:
        TypeError: ``layer`` is not an ``nn.Linear``, ``factor`` not an int, a scale
            not a number.
        ValueError: ``factor < 1``, a scale not positive and finite.
    """
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
    factor = _checks.positive_int(factor, "factor")
    in_scale = _checks.real(in_scale, "in_scale", positive=True)
    out_scale = _checks.real(out_scale, "out_scale", positive=True)
    weight = layer.weight
    wide = nn.Linear(
        factor * layer.in_features,
        factor * layer.out_features,
        bias=layer.bias is not None,
        device="meta",  # no random initialisation: every parameter is assigned
    )
    scale = out_scale / (factor * in_scale)
    wide.weight = _parameter(_widened(weight, factor, scale, 2), weight)
    if layer.bias is not None:
        wide.bias = _parameter(_widened(layer.bias, factor, out_scale, 1), layer.bias)
    return wide


# widen_layer_norm keeps the layer's class (a LayerNorm subclass such as BERT's).
_Norm = TypeVar("_Norm", bound=nn.LayerNorm)


def widen_layer_norm(
    layer: _Norm,
    factor: int = 2,
    *,
    in_scale: float | None = None,
    out_scale: float | None = None,
) -> _Norm:
    """A LayerNorm ``factor`` times as wide that maps ``repeat(x) * in_scale`` to
    ``repeat(layer(x)) * out_scale``.

    Mean and standard deviation of ``repeat(x) * s`` are ``s`` times those of ``x``,
    so the normalised vector is ``repeat`` of the old one; gain and bias become
    ``repeat(.) * out_scale``, and ``eps`` becomes ``eps * in_scale**2`` (the article
    leaves ``eps`` unchanged, which is exact only as ``eps -> 0``).

    Args:
        layer: an ``nn.LayerNorm`` over one dimension with gain (and optional bias);
            its class is kept (a subclass must take ``nn.LayerNorm``'s arguments).
        factor: the widening factor ``k`` (>= 1).
        in_scale: the factor on the repeated input; default ``1/sqrt(k)``.
        out_scale: the factor wanted on the repeated output; default ``1/sqrt(k)``.

    Returns:
        A new LayerNorm of width ``k * d`` of the layer's class, dtype and device.

    Raises:
        TypeError: ``layer`` is not an ``nn.LayerNorm``, ``factor`` not an int, a
            scale not a number.
        ValueError: ``layer`` normalises over more than one dimension or has no gain;
            ``factor < 1``; a scale not positive and finite.
    """
    if not isinstance(layer, nn.LayerNorm):
        raise TypeError(f"layer must be an nn.LayerNorm, got {type(layer).__name__}")
    if len(layer.normalized_shape) != 1 or not layer.elementwise_affine:
        raise ValueError(
            "layer must normalise over one dimension with a gain (elementwise_affine),"
            f" got normalized_shape={tuple(layer.normalized_shape)}, "
            f"elementwise_affine={layer.elementwise_affine}"
        )
    factor = _checks.positive_int(factor, "factor")
    in_scale = _scale(in_scale, "in_scale", factor)
    out_scale = _scale(out_scale, "out_scale", factor)
    wide = type(layer)(
        factor * layer.normalized_shape[0],
        eps=layer.eps * in_scale**2,  # var(s x) + s^2 eps = s^2 (var(x) + eps)
        bias=layer.bias is not None,
        device="meta",
    )
    wide.weight = _parameter(_widened(layer.weight, factor, out_scale, 1), layer.weight)
    if layer.bias is not None:
        wide.bias = _parameter(_widened(layer.bias, factor, out_scale, 1), layer.bias)
    return wide


def widen_embedding(
    embedding: nn.Embedding, factor: int = 2, *, scale: float | None = None
) -> nn.Embedding:
    """An embedding table ``factor`` times as wide: row ``i`` becomes
    ``repeat(E[i]) * scale`` (default ``1/sqrt(k)``: "repeat and divide by sqrt(k)").

    Args:
        embedding: an ``nn.Embedding`` (``padding_idx``, ``max_norm`` and the other
            options are kept, ``max_norm`` scaled by ``scale * sqrt(k)``).
        factor: the widening factor ``k`` (>= 1).
        scale: the factor on the repeated rows (positive); default ``1/sqrt(k)``.

    Returns:
        A new ``nn.Embedding(num_embeddings, k * embedding_dim)`` of the table's dtype
        and device.

    Raises:
        TypeError: ``embedding`` is not an ``nn.Embedding``, ``factor`` not an int,
            ``scale`` not a number.
        ValueError: ``factor < 1``; ``scale`` not positive and finite.
    """
    if not isinstance(embedding, nn.Embedding):
        raise TypeError(
            f"embedding must be an nn.Embedding, got {type(embedding).__name__}"
        )
    factor = _checks.positive_int(factor, "factor")
    scale = _scale(scale, "scale", factor)
    max_norm = embedding.max_norm
    wide = nn.Embedding(
        embedding.num_embeddings,
        factor * embedding.embedding_dim,
        padding_idx=embedding.padding_idx,
        # the norm of repeat(e) * s is ||e|| * s * sqrt(k)
        max_norm=None if max_norm is None else max_norm * scale * math.sqrt(factor),
        norm_type=embedding.norm_type,
        scale_grad_by_freq=embedding.scale_grad_by_freq,
        sparse=embedding.sparse,
        device="meta",
    )
    weight = embedding.weight
    wide.weight = _parameter(_widened(weight, factor, scale, 1), weight)
    return wide


def _parameter(value: Tensor, like: Tensor) -> nn.Parameter:
    return nn.Parameter(value, requires_grad=like.requires_grad)


# ---------------------------------------------------------------- BERT
def widen_bert(
    encoder: BertEncoder,
    factor: int = 2,
    *,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    scheme: str = "exact",
) -> BertEncoder:
    """A :class:`BertEncoder` ``factor`` times as wide (hidden and feed-forward
    widths; same layers, heads, vocabulary and positions) whose hidden states are
    ``repeat_features(h, factor) / sqrt(factor)`` of ``encoder``'s, at every layer.

    Embeddings and LayerNorms: "repeat and divide by sqrt(k)" (LayerNorm ``eps`` / k).
    Attention: values and output ``W/k, b/sqrt(k)``; queries and keys
    ``W k^(1/4)/k, b k^(1/4)/sqrt(k)``, so that ``q.k / sqrt(k d')`` equals the old
    ``q.k / sqrt(d')``. Feed-forward (GELU): ``W/sqrt(k), b`` then
    ``W/(k sqrt(k)), b/sqrt(k)``. Each head keeps its features (repetition is in
    place, never a tiling), so the attention probabilities are the old ones. Exact up
    to rounding: the widened sums add ``k`` times as many terms.

    Copies of a feature receive identical gradients, so training keeps them equal
    and the wide model stays a small one. ``noise > 0`` breaks the tie: every linear
    weight gets Gaussian noise of standard deviation ``noise`` times the root mean
    square of that weight, which moves the function by a small measurable amount.

    ``scheme="article"`` applies the summary table of the article as written (with 2
    replaced by ``k``): the second feed-forward bias is ``b/k`` (the table's ``b/2``)
    instead of ``b/sqrt(k)``, and every LayerNorm keeps its ``eps``. It is not
    lossless; it exists so that the article's own recipe can be measured.

    Args:
        encoder: the model to widen (left unchanged).
        factor: the widening factor ``k`` (>= 1).
        noise: relative noise on the linear weights (>= 0; 0 keeps the function).
        generator: a CPU generator for the noise (default: torch's global one);
            the noise is drawn on the CPU and moved to the model's device.
        scheme: ``"exact"`` (this module's factors) or ``"article"`` (the
            article's table as written: FFN-2 bias ``b/k``, ``eps`` unchanged).

    Returns:
        A new ``BertEncoder`` on ``encoder``'s device and in its dtype, in the
        same training/eval mode.

    Raises:
        TypeError: ``encoder`` is not a ``BertEncoder``, ``factor`` not an int,
            ``noise`` not a number, ``generator`` not a ``torch.Generator``.
        ValueError: ``factor < 1``; ``noise`` negative or not finite; ``generator``
            not on the CPU; ``scheme`` not ``"exact"`` or ``"article"``.
    """
    if not isinstance(encoder, BertEncoder):
        raise TypeError(f"encoder must be a BertEncoder, got {type(encoder).__name__}")
    k = _checks.positive_int(factor, "factor")
    noise = _checks.real(noise, "noise", nonnegative=True)
    generator = _checks.generator(generator)
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU generator (the noise is drawn on the CPU), got "
            f"one on {generator.device}"
        )
    article = _checks.choice(scheme, "scheme", ("exact", "article")) == "article"
    config = encoder.config.copy()
    config["hidden_size"] *= k
    config["intermediate_size"] *= k
    if not article:
        config["layer_norm_eps"] /= k  # the LayerNorm inputs carry 1/sqrt(k)
    with torch.device("meta"):  # shapes only: every parameter is replaced below
        wide = BertEncoder(**config)
    _widen_embeddings(encoder.embeddings, k, wide.embeddings)
    for i, layer in enumerate(encoder.encoder.layer):
        wide.encoder.layer[i] = _widen_layer(layer, k, wide.encoder.layer[i])
    if article:
        _as_in_the_article(encoder, k, wide)
    if noise > 0:
        _perturb(wide, noise, generator)
    return wide.train(encoder.training)


def _widen_embeddings(embeddings: _Embeddings, k: int, wide: _Embeddings) -> None:
    """The embedding block widened into the (meta) module ``wide``."""
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        setattr(wide, name, widen_embedding(getattr(embeddings, name), k))
    wide.LayerNorm = widen_layer_norm(embeddings.LayerNorm, k)


def _widen_layer(layer: nn.Module, k: int, wide: nn.Module) -> nn.Module:
    """One encoder layer widened into the (meta) module ``wide``."""
    assert isinstance(layer, _Layer) and isinstance(wide, _Layer)  # BERT's layers
    s = k**-0.5
    attention, block = layer.attention, wide.attention
    # q.k gets k * (k^(-1/4))^2 = sqrt(k): it cancels the scale 1/sqrt(k d')
    for name in ("query", "key"):
        old = getattr(attention.self, name)
        setattr(block.self, name, widen_linear(old, k, in_scale=s, out_scale=k**-0.25))
    block.self.value = widen_linear(attention.self.value, k, in_scale=s, out_scale=s)
    block.output.dense = widen_linear(
        attention.output.dense, k, in_scale=s, out_scale=s
    )
    block.output.LayerNorm = widen_layer_norm(attention.output.LayerNorm, k)
    # GELU(x / sqrt(k)) != GELU(x) / sqrt(k): the first layer keeps GELU's input
    # exact (out_scale 1), the second takes the missing 1/sqrt(k)
    wide.intermediate.dense = widen_linear(
        layer.intermediate.dense, k, in_scale=s, out_scale=1.0
    )
    wide.output.dense = widen_linear(layer.output.dense, k, in_scale=1.0, out_scale=s)
    wide.output.LayerNorm = widen_layer_norm(layer.output.LayerNorm, k)
    return wide


def _as_in_the_article(encoder: BertEncoder, k: int, wide: BertEncoder) -> None:
    """Turn the exact widening ``wide`` into the article's table as written: the
    second feed-forward bias ``b/k`` instead of ``b/sqrt(k)``, LayerNorm ``eps``
    kept."""
    for layer, wide_layer in zip(
        encoder.encoder.layer, wide.encoder.layer, strict=True
    ):
        assert isinstance(layer, _Layer) and isinstance(wide_layer, _Layer)
        bias = layer.output.dense.bias
        if bias is not None:
            wide_layer.output.dense.bias = _parameter(_widened(bias, k, 1 / k, 1), bias)
    for small, large in zip(encoder.modules(), wide.modules(), strict=True):
        if isinstance(small, nn.LayerNorm) and isinstance(large, nn.LayerNorm):
            large.eps = small.eps


def _perturb(model: nn.Module, noise: float, generator: torch.Generator | None) -> None:
    """Add ``noise * rms(W) * N(0, 1)`` to every linear weight ``W`` of ``model``
    (drawn on the CPU, so the draw does not depend on the device)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                w = module.weight
                draw = torch.randn(w.shape, generator=generator).to(w.device)
                rms = w.float().pow(2).mean().sqrt()
                w.add_((draw * (rms * noise)).to(w.dtype))
