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
    - The official code uses an additive mask of -10000; here padded scores are set to
      the most negative finite number of the dtype and padded queries and ``p_i`` are
      zeroed before pooling, so real tokens never see padding (not even a NaN stored
      there), and their outputs do not depend on how much padding follows.
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
        token; output ``(batch, seq, dim)``. Outputs at padded positions are computed
        like any other but carry nothing to real tokens; ignore them downstream.
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
        for name, value in (("dim", dim), ("heads", heads)):
            _check_positive_int(name, value)
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
                ``(batch, seq, heads)`` and summing to 1 over ``seq`` (zero at padding).

        Returns:
            ``(batch, seq, dim)``, or ``(out, alpha, beta)`` with ``return_weights``.
        """
        _check_input(x, mask, self.dim)
        batch, seq, _ = x.shape
        split = (batch, seq, self.heads, self.head_dim)
        scale = 1.0 / math.sqrt(self.head_dim)

        q = self.query(x)  # (batch, seq, dim)
        k = self.key(x)
        alpha = _masked_softmax(
            self.query_score(q) * scale, mask
        )  # (batch, seq, heads)
        q_heads = _zero_padding(q.view(split), mask)
        # the global query, (batch, heads, head_dim)
        q_bar = torch.einsum("bnh,bnhe->bhe", alpha, q_heads)

        p = k.view(split) * q_bar.unsqueeze(1)  # p_i = k_i * q_bar, per head
        beta = _masked_softmax(
            self.key_score(p.reshape(batch, seq, self.dim)) * scale, mask
        )
        # the global key, (batch, heads, head_dim)
        k_bar = torch.einsum("bnh,bnhe->bhe", beta, _zero_padding(p, mask))

        v = q_heads if self.value is None else self.value(x).view(split)
        u = (k_bar.unsqueeze(1) * v).reshape(batch, seq, self.dim)  # u_i = k_bar * v_i
        out = self.transform(u)
        if self.query_residual:
            out = out + q
        if return_weights:
            return out, alpha, beta
        return out


class FastformerBlock(nn.Module):
    """A Fastformer layer: additive attention, then the post-LayerNorm output and FFN.

    ``h = LN(x + Dropout(Dense(FastformerAttention(x))))`` and
    ``out = LN(h + Dropout(Dense(GELU(Dense(h)))))``, as BERT's (and the official
    Fastformer's) layers.

    Args:
        dim, heads, share_query_value, query_residual: passed to
            :class:`FastformerAttention`.
        ffn_dim: width of the feed-forward hidden layer (default ``4 * dim``).
        dropout: dropout after the two output projections.

    Shapes:
        ``x``: ``(batch, seq, dim)``; ``mask``: ``(batch, seq)`` boolean, True = real
        token.
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
        _check_positive_int("ffn_dim", ffn_dim)
        if not 0.0 <= dropout < 1.0:
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
        h = self.attention_norm(
            x + self.dropout(self.attention_out(self.attention(x, mask)))
        )
        return self.ffn_norm(h + self.dropout(self.ffn(h)))


def explicit_softmax_attention(mha: nn.MultiheadAttention, x: Tensor) -> Tensor:
    """Softmax self-attention with ``mha``'s weights, storing every ``(N, N)`` matrix.

    The textbook form of ``mha(x, x, x)`` (no masks, no dropout): it materialises the
    weights of every head, which the fused kernel behind ``nn.MultiheadAttention``
    never does, so its memory grows as ``N^2``.

    Args:
        mha: a batch-first ``nn.MultiheadAttention`` with a packed input projection
            (the default, equal query, key and value widths).
        x: ``(batch, seq, embed_dim)``.

    Returns:
        ``(batch, seq, embed_dim)``, equal to ``mha(x, x, x)[0]`` up to rounding.
    """
    if not isinstance(mha, nn.MultiheadAttention):
        raise TypeError(f"mha must be nn.MultiheadAttention, got {type(mha).__name__}")
    if not mha.batch_first or mha.in_proj_weight is None:
        raise ValueError("mha must be batch_first with a packed input projection")
    _check_input(x, None, mha.embed_dim)
    batch, length, width = x.shape
    heads = mha.num_heads
    qkv = F.linear(x, mha.in_proj_weight, mha.in_proj_bias)
    q, k, v = qkv.view(batch, length, 3, heads, -1).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.mT / math.sqrt(width // heads), dim=-1)  # (N, N)
    return mha.out_proj((weights @ v).transpose(1, 2).reshape(batch, length, width))


class TokenRegressor(nn.Module):
    """A linear embedding, one block, and a per-token linear read-out to one number.

    Args:
        kind: ``"Fastformer"`` (a :class:`FastformerBlock`) or ``"softmax attention"``
            (``nn.TransformerEncoderLayer`` with the same width, heads and feed-forward
            width, GELU, no dropout, post-LayerNorm).
        features: input features per token.
        width: model width; 4 heads, feed-forward width ``2 * width``.

    Shapes:
        ``(batch, seq, features)`` to ``(batch, seq)``.
    """

    KINDS = ("Fastformer", "softmax attention")

    def __init__(self, kind: str, features: int, width: int = 32) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        self.embed = nn.Linear(features, width)
        if kind == "Fastformer":
            self.block = FastformerBlock(width, 4, ffn_dim=2 * width)
        else:
            self.block = nn.TransformerEncoderLayer(
                width, 4, 2 * width, dropout=0.0, activation="gelu", batch_first=True
            )
        self.read_out = nn.Linear(width, 1)

    def forward(self, features: Tensor) -> Tensor:
        return self.read_out(self.block(self.embed(features)))[..., 0]


class SequenceClassifier(nn.Module):
    """Embedding, a Fastformer block (or no token mixing), masked mean, classifier.

    Args:
        query_residual: passed to the :class:`FastformerBlock`; None replaces the block
            by a per-token feed-forward layer (a model without any token mixing).
        init_std: re-initialise the attention layer with weights ``N(0, init_std^2)``
            (0.02 is the official code's); None keeps PyTorch's default.
        features: input features per token; classes: output classes.
        width: model width; 4 heads, feed-forward width ``2 * width``.

    Shapes:
        ``features``: ``(batch, seq, features)``, ``mask``: ``(batch, seq)`` boolean;
        output logits ``(batch, classes)``.
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
        hidden = self.embed(features)
        hidden = self.ffn(hidden) if self.block is None else self.block(hidden, mask)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return self.classify((hidden * weights).sum(1) / weights.sum(1))


def _masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the sequence axis (1) of ``(batch, seq, heads)``, ignoring padding.

    Padded scores become the most negative finite value rather than -inf, so that a
    sequence with no real token gives uniform (finite) weights instead of NaN; with at
    least one real token ``exp`` of the gap underflows to exactly 0.
    """
    if mask is not None:
        fill = torch.finfo(scores.dtype).min
        scores = scores.masked_fill(~mask.unsqueeze(-1), fill)
    return F.softmax(scores, dim=1)


def _zero_padding(t: Tensor, mask: Tensor | None) -> Tensor:
    """Zero the padded tokens of ``(batch, seq, ...)``.

    ``where``, not a product: a NaN stored there cannot leak.
    """
    if mask is None:
        return t
    keep = mask.view(*mask.shape, *([1] * (t.dim() - 2)))
    return torch.where(keep, t, torch.zeros((), dtype=t.dtype, device=t.device))


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_input(x: Tensor, mask: Tensor | None, dim: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[-1] != dim:
        raise ValueError(f"x must have shape (batch, seq, {dim}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor, got {x.dtype}")
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
    if mask.device != x.device:
        raise ValueError(f"mask must be on x's device {x.device}, got {mask.device}")
