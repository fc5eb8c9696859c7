"""Masks, in one place and one convention: torch SDPA's.

An attention mask is either boolean, True where a query may attend to a key, or
floating, added to the logits (0 to keep, ``-inf`` to drop, any finite value as a bias,
ALiBi-style). Integer masks are ambiguous (0/1 keep-flags or additive biases?) and are
rejected by name. A row with nothing to attend gives zeros, with zero gradient,
everywhere in the package.

Padding masks for reductions (``masked_sum``, ``masked_mean``, ``masked_max``) are
boolean, True at the valid entries; a row with no valid entry reduces to 0. Whatever a
masked entry holds (NaN, inf) never reaches a result or a gradient.

``causal_mask`` follows SDPA's ``is_causal`` (query ``i`` sees keys ``j <= i``, aligned
at the top left, also when there are more keys than queries); ``align="bottom_right"``
gives the KV-cache alignment of ``torch.nn.attention.bias.causal_lower_right``.

Recurrences cannot be masked afterwards: ``reverse_padded`` reverses each sequence
within its length, ``padded_bidirectional`` runs a backward layer on that reversal so
that it never reads the padding, and ``split_bidirectional`` turns a bidirectional
``nn.RNN``/``nn.GRU``/``nn.LSTM`` into the two layers it takes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from kexue import _checks

__all__ = [
    "as_sdpa_mask",
    "causal_mask",
    "keep_mask",
    "lengths_to_mask",
    "mask_to_bias",
    "masked_max",
    "masked_mean",
    "masked_softmax",
    "masked_sum",
    "padded_bidirectional",
    "reverse_padded",
    "split_bidirectional",
]

# A sequence layer as padded_bidirectional calls it: (batch, seq, features) in,
# (batch, seq, ...) out, or a tuple whose first element is that (nn.GRU's (y, h_n)).
_SequenceLayer = Callable[[Tensor], "Tensor | tuple[Tensor, ...]"]


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """Boolean padding mask ``(batch, max_len)``, True at positions ``< lengths[b]``.

    Args:
        lengths: ``(batch,)`` non-negative integers (any integer dtype), any device.
        max_len: the mask's width, an int >= every length; defaults to the largest
            length (0 for an empty batch). Required for ``meta`` lengths, whose values
            are unknown.

    Returns:
        A bool tensor ``(batch, max_len)`` on ``lengths``' device.

    Raises:
        TypeError: ``lengths`` is not an integer tensor, ``max_len`` not an int.
        ValueError: ``lengths`` is not 1-D or has a negative entry; ``max_len`` is
            negative or below a length; ``meta`` lengths without ``max_len``.
    """
    _checks.tensor(lengths, "lengths", ndim=1, kind="integer")
    if max_len is not None:
        max_len = _checks.nonnegative_int(max_len, "max_len")
    if lengths.device.type == "meta":
        if max_len is None:
            raise ValueError(
                "max_len must be given for lengths on the meta device (no values)"
            )
    elif lengths.numel():
        high = _largest(lengths, "lengths")
        if max_len is None:
            max_len = high
        if high > max_len:
            raise ValueError(f"lengths must be at most max_len = {max_len}, got {high}")
    steps = torch.arange(max_len or 0, device=lengths.device)
    return steps < lengths[:, None]  # (batch, max_len)


def causal_mask(
    n: int,
    m: int | None = None,
    *,
    device: torch.device | str | None = None,
    align: str = "top_left",
) -> Tensor:
    """Boolean causal mask ``(n, m)`` (``m = n`` by default), True = may attend.

    ``align="top_left"`` (default) is SDPA's ``is_causal``: query ``i`` sees keys
    ``j <= i`` whatever ``m`` is (with ``n > m`` the last queries see every key).
    ``align="bottom_right"`` keeps ``j <= i + m - n``: the ``n`` queries are the last
    ``n`` of ``m`` positions, as when decoding with a KV cache (with ``n > m`` the first
    ``n - m`` queries then see nothing).

    Raises:
        TypeError: ``n`` or ``m`` is not an int; ``device`` not a device.
        ValueError: ``n`` or ``m`` is negative; ``device`` or ``align`` is unknown.
    """
    n = _checks.nonnegative_int(n, "n")
    m = n if m is None else _checks.nonnegative_int(m, "m")
    align = _checks.choice(align, "align", ("top_left", "bottom_right"))
    device = None if device is None else _checks.device(device, "device")
    diagonal = 0 if align == "top_left" else m - n
    return torch.ones(n, m, dtype=torch.bool, device=device).tril(diagonal)


def as_sdpa_mask(mask: Tensor | None, name: str = "mask") -> Tensor | None:
    """``mask`` checked against SDPA's convention: boolean or floating (or None).

    Returned unchanged (any shape, any device).

    Raises:
        TypeError: ``mask`` (called ``name`` in the message) is not a tensor, or has an
            integer or complex dtype.
    """
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor or None, got {type(mask).__name__}"
        )
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(
            f"{name} must be boolean (True = attend) or floating (added to the "
            f"logits), got {mask.dtype}; for 0/1 keep-flags pass {name}.bool()"
        )
    return mask


def keep_mask(mask: Tensor) -> Tensor:
    """Where an SDPA-convention mask lets a query attend: the boolean mask itself, or
    ``mask > -inf`` for a float mask (a NaN bias counts as dropped). Same shape.

    Raises:
        TypeError: ``mask`` is not a boolean or floating tensor.
    """
    if mask is None:
        raise TypeError("mask must be a torch.Tensor, got None")
    mask = as_sdpa_mask(mask)  # type: ignore[assignment]
    return mask if mask.dtype == torch.bool else mask > -torch.inf


def mask_to_bias(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """The additive form of an SDPA-convention mask, in the floating ``dtype``: 0 /
    ``-inf`` for a boolean mask (also 0-d), the float mask itself cast to ``dtype``
    (a finite bias beyond ``dtype``'s range rounds to ``±inf``); None for None.

    Raises:
        TypeError: ``dtype`` is not a floating torch dtype; ``mask`` as
            :func:`as_sdpa_mask`.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    mask = as_sdpa_mask(mask)
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        zero = torch.zeros((), dtype=dtype, device=mask.device)
        return torch.where(mask, zero, torch.full_like(zero, -torch.inf))
    return mask.to(dtype)


def masked_softmax(logits: Tensor, mask: Tensor | None = None, dim: int = -1) -> Tensor:
    """Softmax of ``logits`` over ``dim`` under an SDPA-convention ``mask``.

    Args:
        logits: floating tensor ``(..., n, ...)`` of at least one dimension.
        mask: None, boolean (True = keep) or floating (added to the logits; ``-inf``
            drops), broadcastable to ``logits``' shape (it never broadcasts
            ``logits``), on ``logits``' device.
        dim: the dimension to normalise over.

    Returns:
        Weights of ``logits``' shape and dtype. A row with nothing to attend gives zeros
        and zero gradient; what a dropped entry holds (NaN, inf) never reaches the
        result. Half precision is computed in float32. As ``torch.softmax``, a kept
        ``+inf`` or NaN gives NaN.

    Raises:
        TypeError: ``logits`` is not a floating tensor, ``mask`` not boolean or
            floating, ``dim`` not an int.
        ValueError: ``logits`` is 0-d, ``dim`` out of range, ``mask`` does not
            broadcast to ``logits`` or is on another device.
    """
    _checks.tensor(logits, "logits", min_ndim=1)
    mask = as_sdpa_mask(mask)
    _checks.same_device(("logits", logits), mask=mask)
    dim = _dim(dim, logits, "logits")
    scores = logits.to(_checks.compute_dtype(logits.dtype))
    if mask is not None:
        _checks.broadcasts(mask, tuple(logits.shape), "mask", "logits' shape")
        if mask.dtype != torch.bool:
            scores = scores + mask.to(scores.dtype)
        # Dropped entries become -inf whatever they held: NaN + -inf is NaN otherwise
        # (torch.where is faster than masked_fill with a broadcast mask).
        scores = torch.where(keep_mask(mask), scores, -torch.inf)
    if scores.shape[dim] == 0:
        return scores.to(logits.dtype)
    live = scores.amax(dim, keepdim=True) != -torch.inf  # False: nothing to attend
    if scores.device.type == "cpu" and bool(live.all()):
        # On the CPU reading `live` synchronises nothing: every row live, the two
        # passes below are identities and torch's fused softmax is the whole answer.
        return torch.softmax(scores, dim).to(logits.dtype)
    # Rows with nothing live read zeros (softmax and its gradient finite there) and
    # give zeros; no host read chooses the path on an accelerator. NaN or +inf kept
    # in a row leaves it live, and softmax makes it NaN.
    weights = torch.softmax(torch.where(live, scores, 0.0), dim)
    return torch.where(live, weights, 0.0).to(logits.dtype)


def masked_sum(x: Tensor, mask: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """Sum of ``x`` over ``dim`` at the entries where the boolean ``mask`` is True.

    Args:
        x: real tensor (floating or integer, not bool or complex), at least 1-D.
        mask: boolean, broadcastable to ``x``'s shape, on ``x``'s device.
        dim: the dimension to reduce; ``keepdim`` keeps it with size 1.

    Returns:
        ``x``'s shape without ``dim``; ``x``'s dtype (half precision summed in float32)
        for floating ``x``, int64 for integer ``x`` (as ``torch.sum``). A row with no
        valid entry sums to 0.

    Raises:
        TypeError: ``x`` is not a real tensor, ``mask`` not boolean, ``dim`` not an int.
        ValueError: ``dim`` out of range, ``mask`` does not broadcast to ``x`` or is on
            another device.
    """
    mask, dim = _padding_mask(x, mask, dim)
    values = x.to(_checks.compute_dtype(x.dtype))
    zero = torch.zeros((), dtype=values.dtype, device=x.device)
    total = torch.where(mask, values, zero).sum(dim, keepdim=keepdim)
    return total.to(x.dtype) if x.is_floating_point() else total


def masked_mean(x: Tensor, mask: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """Mean of the floating ``x`` over ``dim`` at the valid entries; 0 (with zero
    gradient) for a row with none. Arguments, shape and errors as :func:`masked_sum`,
    but ``x`` must be floating (TypeError otherwise); half precision in float32."""
    _checks.tensor(x, "x", min_ndim=1)
    mask, dim = _padding_mask(x, mask, dim)
    values = x.to(_checks.compute_dtype(x.dtype))
    total = masked_sum(values, mask, dim, keepdim)
    count = mask.expand(x.shape).sum(dim, keepdim=keepdim)
    return (total / count.clamp_min(1).to(total.dtype)).to(x.dtype)


def masked_max(x: Tensor, mask: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """Largest ``x`` over ``dim`` at the valid entries; 0 for a row with none (also for
    an empty ``dim``). Arguments and errors as :func:`masked_sum`; the result keeps
    ``x``'s dtype. Valid entries that are all ``-inf`` give ``-inf``."""
    mask, dim = _padding_mask(x, mask, dim)
    if x.shape[dim] == 0:
        shape = list(x.shape)
        shape[dim : dim + 1] = [1] if keepdim else []
        return x.new_zeros(shape)
    low = -torch.inf if x.is_floating_point() else torch.iinfo(x.dtype).min
    best = x.masked_fill(~mask, low).amax(dim, keepdim=keepdim)
    some = mask.expand(x.shape).any(dim, keepdim=keepdim)
    return torch.where(some, best, torch.zeros_like(best))


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of ``x`` ``(batch, seq, ...)`` within its length, leaving
    the padding after it in place (what a bidirectional RNN over padding needs).

    Args:
        x: tensor ``(batch, seq, ...)`` of any dtype.
        lengths: ``(batch,)`` integers in ``[0, seq]``, on ``x``'s device.

    Returns:
        A tensor of ``x``'s shape, dtype and device (differentiable in ``x``).

    Raises:
        TypeError: ``x`` is not a tensor, ``lengths`` not an integer tensor.
        ValueError: ``x`` has fewer than 2 dimensions; ``lengths`` is not
            ``(batch,)``, is on another device or has an entry outside ``[0, seq]``.
    """
    _checks.tensor(x, "x", min_ndim=2, kind="any")
    _check_lengths(x, lengths)
    batch, seq = x.shape[:2]
    steps = torch.arange(seq, device=x.device).expand(batch, seq)
    ends = lengths[:, None].long()
    source = torch.where(steps < ends, ends - 1 - steps, steps)
    index = source.view(batch, seq, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


def padded_bidirectional(
    forward: _SequenceLayer,
    backward: _SequenceLayer,
    x: Tensor,
    lengths: Tensor,
    *,
    merge: str = "concat",
) -> Tensor:
    """A bidirectional layer over a right-padded batch whose backward half never reads
    the padding: ``backward`` runs on ``reverse_padded(x, lengths)`` and its output is
    reversed back, so both halves start at a real entry and stay aligned.

    ``forward`` and ``backward`` must be causal sequence layers (output ``t`` reads
    inputs ``<= t``, as an RNN does), e.g. the two halves of
    :func:`split_bidirectional`; the padding then reaches no real position.

    Args:
        forward, backward: callables from ``(batch, seq, features)`` to ``(batch, seq,
            ...)``, or to a tuple whose first element is that (``nn.GRU``'s
            ``(output, h_n)``). Torch RNN modules must have ``batch_first=True``.
        x: floating ``(batch, seq, features)``, each sequence first, padding after it.
        lengths: ``(batch,)`` integers in ``[0, seq]``, on ``x``'s device.
        merge: ``"concat"`` joins the last dimensions; ``"sum"`` adds the halves (same
            shapes).

    Returns:
        ``(batch, seq, ...)``, the layers' output dtype, zeros at the padding. The
        layers see zeros in the padding, so what it held (NaN, inf) reaches neither the
        result nor a gradient. For ``seq = 0`` the layers run on one
        padding step to learn the width, and ``(batch, 0, ...)`` comes back.

    Raises:
        TypeError: ``forward`` or ``backward`` is not callable or returns no tensor;
            ``x`` is not floating; ``lengths`` not an integer tensor.
        ValueError: ``x`` is not 3-D; a torch RNN without ``batch_first``; ``lengths``
            as :func:`reverse_padded`; ``merge`` unknown; an output not ``(batch, seq,
            ...)`` or, for ``"sum"``, halves of different shapes.
    """
    for name, layer in (("forward", forward), ("backward", backward)):
        _check_layer(layer, name)
    merge = _checks.choice(merge, "merge", ("concat", "sum"))
    _checks.tensor(x, "x", ndim=3)
    _check_lengths(x, lengths)
    batch, seq, features = x.shape
    if seq == 0:  # torch RNNs reject empty sequences; one padding step gives the width
        step = x.new_zeros(batch, 1, features)
        out = padded_bidirectional(forward, backward, step, lengths, merge=merge)
        return out[:, :0]
    real = lengths_to_mask(lengths, seq)  # (batch, seq)
    # Zeros in the padding: NaN there would reach the gradients through the layers'
    # Jacobians (0 * NaN), even where their outputs are discarded.
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    x = torch.where(real[..., None], x, zero)
    ahead = _layer_output(forward(x), "forward", x)
    behind = _layer_output(backward(reverse_padded(x, lengths)), "backward", x)
    behind = reverse_padded(behind, lengths)
    if merge == "sum":
        fits = ahead.shape == behind.shape
    else:  # torch.cat along the last dimension
        fits = ahead.shape[:-1] == behind.shape[:-1]
    if not fits:
        raise ValueError(
            f"forward and backward outputs of shapes {tuple(ahead.shape)} and "
            f"{tuple(behind.shape)} cannot be merged by {merge!r}"
        )
    both = ahead + behind if merge == "sum" else torch.cat([ahead, behind], -1)
    real = real.view(batch, seq, *([1] * (both.dim() - 2)))
    return torch.where(real, both, torch.zeros((), dtype=both.dtype, device=x.device))


def split_bidirectional(rnn: nn.RNNBase) -> tuple[nn.RNNBase, nn.RNNBase]:
    """The two directions of a one-layer bidirectional ``nn.RNN``, ``nn.GRU`` or
    ``nn.LSTM`` as two unidirectional layers for :func:`padded_bidirectional`.

    The halves are new modules of ``rnn``'s class, size, bias, nonlinearity and
    ``proj_size``, dtype, device and training mode, holding copies of its forward and
    ``_reverse`` weights, with ``batch_first=True`` whatever ``rnn`` has. Then
    ``padded_bidirectional(*split_bidirectional(rnn), x, lengths)`` is ``rnn`` run on
    ``pack_padded_sequence(x, lengths)`` and padded back with zeros.

    Raises:
        TypeError: ``rnn`` is not an ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM``.
        ValueError: ``rnn`` is not bidirectional, or has more than one layer (a second
            layer reads both directions of the first, so the stack does not split).
    """
    kinds = (nn.LSTM, nn.GRU, nn.RNN)
    kind = next((k for k in kinds if isinstance(rnn, k)), None)
    if kind is None:
        raise TypeError(
            f"rnn must be an nn.RNN, nn.GRU or nn.LSTM, got {type(rnn).__name__}"
        )
    if not rnn.bidirectional or rnn.num_layers != 1:
        raise ValueError(
            "rnn must be bidirectional with one layer, got bidirectional="
            f"{rnn.bidirectional}, num_layers={rnn.num_layers}"
        )
    options: dict[str, object] = {"bias": rnn.bias, "batch_first": True}
    if kind is nn.RNN:
        options["nonlinearity"] = rnn.nonlinearity
    if kind is nn.LSTM:
        options["proj_size"] = rnn.proj_size
    weight = rnn.weight_ih_l0
    halves = []
    for suffix in ("", "_reverse"):
        half = kind(
            rnn.input_size,
            rnn.hidden_size,
            device=weight.device,
            dtype=weight.dtype,
            **options,
        )
        with torch.no_grad():
            for name, parameter in half.named_parameters():
                parameter.copy_(getattr(rnn, name + suffix))
        halves.append(half.train(rnn.training))
    return halves[0], halves[1]


def _check_layer(layer: object, name: str) -> None:
    """``layer`` callable, and batch-first if it is a torch RNN."""
    if not callable(layer):
        raise TypeError(
            f"{name} must be callable (a sequence layer), got {type(layer).__name__}"
        )
    if isinstance(layer, nn.RNNBase) and not layer.batch_first:
        raise ValueError(f"{name} must have batch_first=True (x is (batch, seq, ...))")


def _layer_output(out: object, name: str, x: Tensor) -> Tensor:
    """The ``(batch, seq, ...)`` tensor a sequence layer returned for ``x``."""
    if isinstance(out, tuple) and out:
        out = out[0]
    if not isinstance(out, Tensor):
        raise TypeError(
            f"{name} must return a tensor (or a tuple starting with one), got "
            f"{type(out).__name__}"
        )
    if out.dim() < 3 or out.shape[:2] != x.shape[:2]:
        raise ValueError(
            f"{name} must return (batch, seq, ...) = {tuple(x.shape[:2])} + (...), got "
            f"shape {tuple(out.shape)}"
        )
    return out


def _check_lengths(x: Tensor, lengths: Tensor) -> None:
    """``lengths`` fits ``x`` ``(batch, seq, ...)``: ``(batch,)`` integers in
    ``[0, seq]`` on ``x``'s device (values unchecked on ``meta``)."""
    _checks.tensor(lengths, "lengths", ndim=1, kind="integer")
    _checks.same_device(("x", x), lengths=lengths)
    batch, seq = x.shape[:2]
    if lengths.shape[0] != batch:
        raise ValueError(
            f"lengths must have {batch} entries (x's batch), got {lengths.shape[0]}"
        )
    if lengths.numel() and lengths.device.type != "meta":
        high = _largest(lengths, "lengths")
        if high > seq:
            raise ValueError(f"lengths must lie in [0, {seq}] (x's length), got {high}")


def _largest(lengths: Tensor, name: str) -> int:
    """The largest of non-empty integer ``lengths`` (one sync with the smallest, which
    must be non-negative)."""
    low, high = (int(v) for v in torch.aminmax(lengths))
    if low < 0:
        raise ValueError(f"{name} must be non-negative, got minimum {low}")
    return high


def _dim(dim: object, x: Tensor, x_name: str) -> int:
    """``dim`` as a non-negative index into ``x``'s dimensions."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(
            f"dim must be in [{-x.dim()}, {x.dim() - 1}] for {x_name} of shape "
            f"{tuple(x.shape)}, got {dim}"
        )
    return dim % x.dim()


def _padding_mask(x: Tensor, mask: Tensor, dim: object) -> tuple[Tensor, int]:
    """Check a reduction's arguments; return the boolean mask and ``dim`` (an index)."""
    _checks.tensor(x, "x", min_ndim=1, kind="real")
    _checks.tensor(mask, "mask", kind="any")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be boolean (True = valid entry), got {mask.dtype}")
    _checks.same_device(("x", x), mask=mask)
    _checks.broadcasts(mask, tuple(x.shape), "mask", "x's shape")
    return mask, _dim(dim, x, "x")
