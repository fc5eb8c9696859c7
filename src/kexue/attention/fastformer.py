"""Fastformer's additive attention (Wu et al., arXiv 2108.09084), as the official code.

The official code is wuch15/Fastformer. One head of width ``d_h`` sees queries ``q_i``
and keys ``k_i`` and computes, in O(N d) time,

- ``alpha = softmax_i(w_q(q_i) / sqrt(d_h))`` and the global query
  ``q_bar = sum_i alpha_i q_i``;
- ``p_i = k_i * q_bar`` (elementwise), ``beta = softmax_i(w_k(p_i) / sqrt(d_h))`` and
  the global key ``k_bar = sum_i beta_i p_i``;
- ``u_i = k_bar * v_i`` with ``v_i = q_i`` (the paper shares the value and the query
  transform);
- ``out_i = W_T u_i + b_T + q_i``: an output projection plus the query as a residual.

No ``(N, N)`` matrix appears: every token is weighted by the same two distributions
``alpha`` and ``beta`` (one per head), which depend on the token but not on who is
asking. Inputs are ``(batch, seq, dim)``; padding masks are boolean ``(batch, seq)``
with True at real tokens.

The module also holds the small models and the textbook softmax attention that the
chapter compares the layer with (:func:`explicit_softmax_attention`,
:class:`TokenRegressor`, :class:`SequenceClassifier`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue import _checks
from kexue.foundations.masking import masked_mean, masked_softmax

__all__ = [
    "FastformerAttention",
    "FastformerBlock",
    "SequenceClassifier",
    "TokenRegressor",
    "explicit_softmax_attention",
]


class FastformerAttention(nn.Module):
    """Fastformer's additive self-attention, as the official ``FastSelfAttention``.

    Where the paper's text and the official code differ, this follows the code:

    - The paper scores each head with its own vector,
      ``alpha_i = softmax(w_q^T q_i / sqrt(d_h))`` with ``w_q`` of size ``d_h``. The
      code scores all heads with one ``Linear(dim, heads)`` (with bias) applied to the
      concatenated queries, so head ``h``'s weights may depend on the other heads'
      queries. So does this layer (``query_score``, ``key_score``); a per-head vector is
      the special case of a block-diagonal weight.
    - Both divide the scores by ``sqrt(d_h)`` and both pool ``p_i = k_i * q_bar`` (not
      ``k_i``) into the global key; the code adds the query to the output, as the
      paper's text says.
    - The official code uses an additive mask of -10000; here padded tokens are zeroed
      before any arithmetic and get exactly zero pooling weight
      (:func:`~kexue.foundations.masking.masked_softmax`), so real tokens never see
      padding (not even a NaN stored there), and their outputs do not depend on how
      much padding follows.
    - Initialisation is PyTorch's default for ``nn.Linear`` (the official code draws
      weights from ``N(0, 0.02^2)`` and zeroes biases; call
      ``reset_parameters(std=0.02)`` for that).

    Args:
        dim: model width ``D``; must be divisible by ``heads``.
        heads: number of heads ``H``; each has width ``d_h = D / H``.
        share_query_value: if True (the paper and the code), the values are the
            queries, ``u_i = k_bar * q_i``; if False, a separate ``Linear(dim, dim)``
            computes values.
        query_residual: add the query back to the output (``out_i = W_T u_i + q_i``),
            as the paper and the code do; False drops that term (for ablations).
        bias: whether the projections have biases (True in the official code).

    Shapes:
        ``x``: ``(batch, seq, dim)``; ``mask``: ``(batch, seq)`` boolean, True = real
        token; output ``(batch, seq, dim)``, zero at padded positions (a sequence with
        no real token gives zeros). Half precision: the projections run in the
        layer's dtype, the pooling (softmaxes, products, sums) in float32.

    Raises:
        TypeError: ``dim``/``heads`` not ints, flags not bools; in ``forward``, ``x``
            not a floating tensor of the layer's dtype, ``mask`` not boolean.
        ValueError: sizes out of range; ``x`` or ``mask`` of the wrong shape or on
            another device than the layer.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        share_query_value: bool = True,
        query_residual: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        dim = _checks.positive_int(dim, "dim")
        heads = _checks.positive_int(heads, "heads")
        for name, flag in (
            ("share_query_value", share_query_value),
            ("query_residual", query_residual),
            ("bias", bias),
        ):
            _checks.flag(flag, name)
        if dim % heads != 0:
            raise ValueError(
                f"dim must be divisible by heads, got dim={dim}, heads={heads}"
            )
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.share_query_value = share_query_value
        self.query_residual = query_residual
        self.query = nn.Linear(dim, dim, bias=bias)
        self.key = nn.Linear(dim, dim, bias=bias)
        self.value = None if share_query_value else nn.Linear(dim, dim, bias=bias)
        # one score per head, from all heads' queries (the official code's layout)
        self.query_score = nn.Linear(dim, heads, bias=bias)
        self.key_score = nn.Linear(dim, heads, bias=bias)
        self.transform = nn.Linear(dim, dim, bias=bias)

    def reset_parameters(self, std: float | None = None) -> None:
        """Re-initialise: PyTorch's default if ``std`` is None.

        Otherwise weights are drawn from ``N(0, std^2)`` and biases set to zero.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                if std is None:
                    module.reset_parameters()
                else:
                    nn.init.normal_(module.weight, std=std)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, *, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """Additive attention over the sequence.

        Args:
            x: ``(batch, seq, dim)``.
            mask: ``(batch, seq)`` boolean, True at real tokens; None means no padding.
            return_weights: also return the pooling weights ``alpha`` and ``beta``, each
                ``(batch, seq, heads)`` and summing to 1 over ``seq`` (zero at padding,
                zero everywhere for a sequence with no real token).

        Returns:
            ``(batch, seq, dim)``, or ``(out, alpha, beta)`` with ``return_weights``.
        """
        _check_input(x, mask, self.query.weight, "x")
        batch, seq, _ = x.shape
        split = (batch, seq, self.heads, self.head_dim)
        scale = 1.0 / math.sqrt(self.head_dim)
        keep = None if mask is None else mask.unsqueeze(-1)  # (batch, seq, 1)
        work = _checks.compute_dtype(x.dtype)  # pooling in float32 for half precision
        x = _zero_padding(x, mask)  # a NaN stored in padding cannot leak

        q = self.query(x).to(work)  # (batch, seq, dim)
        k = self.key(x).to(work)
        # (batch, seq, heads), zero at padding
        alpha = masked_softmax(_linear(self.query_score, q) * scale, keep, dim=1)
        # the global query, (batch, heads, head_dim)
        q_bar = torch.einsum("bnh,bnhe->bhe", alpha, q.view(split))

        p = k.view(split) * q_bar.unsqueeze(1)  # p_i = k_i * q_bar, per head
        p_scores = _linear(self.key_score, p.reshape(batch, seq, self.dim)) * scale
        beta = masked_softmax(p_scores, keep, dim=1)
        # the global key, (batch, heads, head_dim)
        k_bar = torch.einsum("bnh,bnhe->bhe", beta, p)

        v = q.view(split) if self.value is None else self.value(x).to(work).view(split)
        u = (k_bar.unsqueeze(1) * v).reshape(batch, seq, self.dim)  # u_i = k_bar * v_i
        out = _linear(self.transform, u)
        if self.query_residual:
            out = out + q
        out = _zero_padding(out, mask).to(x.dtype)
        if return_weights:
            return out, alpha.to(x.dtype), beta.to(x.dtype)
        return out


class FastformerBlock(nn.Module):
    """A Fastformer layer: additive attention, then the post-LayerNorm output and FFN.

    ``h = LN(x + Dropout(Dense(FastformerAttention(x))))`` and
    ``out = LN(h + Dropout(Dense(GELU(Dense(h)))))``, as BERT's (and the official
    Fastformer's) layers.

    Args:
        dim, heads, share_query_value, query_residual: passed to
            :class:`FastformerAttention`.
        ffn_dim: width of the feed-forward hidden layer, a positive int (default
            ``4 * dim``).
        dropout: dropout after the two output projections, a number in ``[0, 1)``.

    Shapes:
        ``x``: ``(batch, seq, dim)``; ``mask``: ``(batch, seq)`` boolean, True = real
        token; output ``(batch, seq, dim)``, zero at padded positions.

    Raises:
        TypeError, ValueError: naming the argument, as :class:`FastformerAttention`.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
        share_query_value: bool = True,
        query_residual: bool = True,
    ) -> None:
        super().__init__()
        self.attention = FastformerAttention(
            dim,
            heads,
            share_query_value=share_query_value,
            query_residual=query_residual,
        )
        ffn_dim = 4 * dim if ffn_dim is None else ffn_dim
        ffn_dim = _checks.positive_int(ffn_dim, "ffn_dim")
        if not 0.0 <= _checks.real(dropout, "dropout") < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.attention_out = nn.Linear(dim, dim)
        self.attention_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim)
        )
        self.ffn_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``(batch, seq, dim)`` to ``(batch, seq, dim)``; ``mask`` as in the layer."""
        _check_input(x, mask, self.attention.query.weight, "x")
        x = _zero_padding(x, mask)  # what padding holds (NaN) reaches nothing
        h = self.attention_norm(
            x + self.dropout(self.attention_out(self.attention(x, mask)))
        )
        return _zero_padding(self.ffn_norm(h + self.dropout(self.ffn(h))), mask)


def explicit_softmax_attention(mha: nn.MultiheadAttention, x: Tensor) -> Tensor:
    """Softmax self-attention with ``mha``'s weights, storing every ``(N, N)`` matrix.

    The textbook form of ``mha(x, x, x)`` (no masks, no dropout): it materialises the
    weights of every head, which the fused kernel behind ``nn.MultiheadAttention``
    never does, so its memory grows as ``N^2``.

    Args:
        mha: a batch-first ``nn.MultiheadAttention`` with a packed input projection
            (the default, equal query, key and value widths).
        x: ``(batch, seq, embed_dim)`` in ``mha``'s dtype and on its device. Half
            precision is computed in float32 (logits and their exponentials overflow
            it) and returned in its dtype.

    Returns:
        ``(batch, seq, embed_dim)``, equal to ``mha(x, x, x)[0]`` up to rounding.

    Raises:
        TypeError: ``mha`` of another type; ``x`` not a floating tensor of its dtype.
        ValueError: ``mha`` not batch-first or packed; ``x`` of the wrong shape or
            on another device.
    """
    if not isinstance(mha, nn.MultiheadAttention):
        raise TypeError(f"mha must be nn.MultiheadAttention, got {type(mha).__name__}")
    if not mha.batch_first or mha.in_proj_weight is None:
        raise ValueError("mha must be batch_first with a packed input projection")
    _check_input(x, None, mha.in_proj_weight, "x", width=mha.embed_dim)
    batch, length, width = x.shape
    heads = mha.num_heads
    work = _checks.compute_dtype(x.dtype)
    qkv = _linear(mha.in_proj_weight, x.to(work), mha.in_proj_bias)
    q, k, v = qkv.view(batch, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.mT / math.sqrt(width // heads), dim=-1)  # (N, N)
    out = (weights @ v).transpose(1, 2).reshape(batch, length, width)
    return _linear(mha.out_proj, out).to(x.dtype)


class TokenRegressor(nn.Module):
    """A linear embedding, one block, and a per-token linear read-out to one number.

    Args:
        kind: ``"Fastformer"`` (a :class:`FastformerBlock`) or ``"softmax attention"``
            (``nn.TransformerEncoderLayer`` with the same width, heads and feed-forward
            width, GELU, no dropout, post-LayerNorm).
        features: input features per token, a positive int.
        width: model width, a positive multiple of 4; 4 heads, feed-forward width
            ``2 * width``.

    Shapes:
        ``(batch, seq, features)`` to ``(batch, seq)``; ``features`` in the model's
        dtype and on its device, else a TypeError / ValueError naming it.
    """

    KINDS = ("Fastformer", "softmax attention")

    def __init__(self, kind: str, features: int, width: int = 32) -> None:
        super().__init__()
        kind = _checks.choice(kind, "kind", self.KINDS)
        self.features = _checks.positive_int(features, "features")
        width = _check_width(width)
        self.embed = nn.Linear(features, width)
        self.block: FastformerBlock | nn.TransformerEncoderLayer
        if kind == "Fastformer":
            self.block = FastformerBlock(width, 4, ffn_dim=2 * width)
        else:
            self.block = nn.TransformerEncoderLayer(
                width, 4, 2 * width, dropout=0.0, activation="gelu", batch_first=True
            )
        self.read_out = nn.Linear(width, 1)

    def forward(self, features: Tensor) -> Tensor:
        _check_input(features, None, self.embed.weight, "features", self.features)
        return self.read_out(self.block(self.embed(features)))[..., 0]


class SequenceClassifier(nn.Module):
    """Embedding, a Fastformer block (or no token mixing), masked mean, classifier.

    Args:
        query_residual: passed to the :class:`FastformerBlock`; None replaces the block
            by a per-token feed-forward layer (a model without any token mixing).
        init_std: re-initialise the attention layer with weights ``N(0, init_std^2)``
            (0.02 is the official code's), a positive number; None keeps PyTorch's
            default.
        features: input features per token; classes: output classes (positive ints).
        width: model width, a positive multiple of 4; 4 heads, feed-forward width
            ``2 * width``.

    Shapes:
        ``features``: ``(batch, seq, features)``, ``mask``: ``(batch, seq)`` boolean
        (True = real token, required); output logits ``(batch, classes)``. A sequence
        with no real token has a zero mean, so its logits are the classifier's bias.
    """

    def __init__(
        self,
        query_residual: bool | None,
        init_std: float | None,
        *,
        features: int = 5,
        classes: int = 4,
        width: int = 32,
    ) -> None:
        super().__init__()
        if query_residual is not None:
            _checks.flag(query_residual, "query_residual")
        if init_std is not None:
            _checks.real(init_std, "init_std", positive=True)
        self.features = _checks.positive_int(features, "features")
        classes = _checks.positive_int(classes, "classes")
        width = _check_width(width)
        self.embed = nn.Linear(features, width)
        if query_residual is None:
            self.block = None
            self.ffn = nn.Sequential(
                nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
            )
        else:
            self.block = FastformerBlock(
                width, 4, ffn_dim=2 * width, query_residual=query_residual
            )
            self.block.attention.reset_parameters(std=init_std)
        self.classify = nn.Linear(width, classes)

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        if mask is None:
            raise TypeError(
                "mask must be a boolean tensor (True = real token), got None"
            )
        _check_input(features, mask, self.embed.weight, "features", self.features)
        hidden = self.embed(_zero_padding(features, mask))
        hidden = self.ffn(hidden) if self.block is None else self.block(hidden, mask)
        return self.classify(masked_mean(hidden, mask.unsqueeze(-1), dim=1))


def _linear(layer: nn.Linear | Tensor, t: Tensor, bias: Tensor | None = None) -> Tensor:
    """``layer`` (or the weight ``layer`` with ``bias``) applied in ``t``'s dtype: the
    float32 pooling of a half-precision layer."""
    if isinstance(layer, nn.Linear):
        weight, bias = layer.weight, layer.bias
    else:
        weight = layer
    return F.linear(t, weight.to(t.dtype), None if bias is None else bias.to(t.dtype))


def _zero_padding(t: Tensor, mask: Tensor | None) -> Tensor:
    """Zero the padded tokens of ``(batch, seq, ...)``.

    ``where``, not a product: a NaN stored there cannot leak, nor its gradient.
    """
    if mask is None:
        return t
    keep = mask.view(*mask.shape, *([1] * (t.dim() - 2)))
    return torch.where(keep, t, torch.zeros((), dtype=t.dtype, device=t.device))


def _check_width(width: object) -> int:
    width = _checks.positive_int(width, "width")
    if width % 4:
        raise ValueError(f"width must be a multiple of 4 (the heads), got {width}")
    return width


def _check_input(
    x: object,
    mask: object,
    weight: Tensor,
    name: str,
    width: int | None = None,
) -> None:
    """``x`` ``(batch, seq, width)`` in ``weight``'s dtype and on its device (width:
    ``weight``'s input width by default); ``mask`` None or boolean ``(batch, seq)``."""
    width = weight.shape[-1] if width is None else width
    _checks.tensor(x, name, ndim=3)
    assert isinstance(x, Tensor)
    if x.shape[-1] != width:
        raise ValueError(
            f"{name} must have shape (batch, seq, {width}), got {tuple(x.shape)}"
        )
    _checks.same_device(("the weights", weight), **{name: x})
    _checks.same_dtype(("the weights", weight), **{name: x})
    if mask is None:
        return
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"mask must be a boolean tensor (True = real token), got {got}")
    if mask.shape != x.shape[:2]:
        raise ValueError(
            f"mask must have shape (batch, seq) = {tuple(x.shape[:2])}, "
            f"got {tuple(mask.shape)}"
        )
    _checks.same_device((name, x), mask=mask)
