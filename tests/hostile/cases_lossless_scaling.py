"""Hostile inputs for ``kexue.representations`` lossless widening (``repeat_features``,
``widen_linear``, ``widen_layer_norm``, ``widen_embedding``, ``widen_bert``), against
float64 references written here from the index formula x~_i = x_ceil(i/k)."""

from __future__ import annotations

import math

import torch
from hostile import Registry, close, odd_view
from torch import nn

import kexue.representations as R

F64 = torch.float64
META = torch.device("meta")
CASES = Registry("kexue.")
case, error = CASES.case, CASES.error


def repeat64(x: torch.Tensor, k: int) -> torch.Tensor:
    """x~_i = x_ceil(i/k) (1-based), by an index loop in float64 on the CPU."""
    x = x.detach().double().cpu()
    index = [math.ceil((i + 1) / k) - 1 for i in range(k * x.shape[-1])]
    return torch.stack([x[..., j] for j in index], dim=-1)


def tiny(device, dtype=F64) -> R.BertEncoder:
    torch.manual_seed(0)
    model = R.BertEncoder(
        vocab_size=20,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=12,
        max_position_embeddings=8,
        type_vocab_size=1,
        layer_norm_eps=1e-2,
    )
    return model.to(device=device, dtype=dtype).eval()


# ---------------------------------------------------------------- repeat_features
@case("representations.repeat_features", "float64 against the index formula", "value")
def _(device):
    x = torch.randn(3, 5, dtype=F64, device=device)
    for k in (1, 2, 3):
        close(R.repeat_features(x, k), repeat64(x, k), atol=0)


@case("representations.repeat_features", "odd-offset view and transpose", "device")
def _(device):
    x = odd_view(4, 6, device=device)
    close(R.repeat_features(x), repeat64(x, 2), atol=0)
    close(R.repeat_features(x.T), repeat64(x.T, 2), atol=0)


@case("representations.repeat_features", "empty batch and empty features", "empty")
def _(device):
    assert R.repeat_features(torch.zeros(0, 3, device=device)).shape == (0, 6)
    assert R.repeat_features(torch.zeros(2, 0, device=device), 3).shape == (2, 0)


@case("representations.repeat_features", "meta tensor propagates the shape", "device")
def _(device):
    out = R.repeat_features(torch.zeros(2, 4, device=META), 3, pairs=True)
    assert out.is_meta and out.shape == (2, 12)


error("representations.repeat_features", "a list", TypeError, "x",
      lambda d: R.repeat_features([1.0, 2.0]))  # fmt: skip
error("representations.repeat_features", "complex", TypeError, "x",
      lambda d: R.repeat_features(torch.ones(2, dtype=torch.complex64, device=d)))  # fmt: skip
error("representations.repeat_features", "factor 0", ValueError, "factor",
      lambda d: R.repeat_features(torch.ones(2, device=d), 0))  # fmt: skip
error("representations.repeat_features", "factor 2.5", TypeError, "factor",
      lambda d: R.repeat_features(torch.ones(2, device=d), 2.5))  # fmt: skip
error("representations.repeat_features", "odd width with pairs", ValueError, "even",
      lambda d: R.repeat_features(torch.ones(3, device=d), pairs=True))  # fmt: skip


# ---------------------------------------------------------------- widen_linear
@case(
    "representations.widen_linear", "float64 layer: repeat(x)a -> repeat(y)c", "value"
)
def _(device):
    layer = nn.Linear(4, 3).to(device=device, dtype=F64)
    x = torch.randn(5, 4, dtype=F64, device=device)
    wide = R.widen_linear(layer, 3, in_scale=0.4, out_scale=1.7)
    close(wide(R.repeat_features(x, 3) * 0.4), repeat64(layer(x), 3) * 1.7, atol=1e-13)


@case("representations.widen_linear", "float16 layer keeps its dtype", "finite")
def _(device):
    layer = nn.Linear(4, 3).to(device=device, dtype=torch.float16)
    wide = R.widen_linear(layer, 2, in_scale=2**-0.5, out_scale=2**-0.5)
    assert wide.weight.dtype == torch.float16 and torch.isfinite(wide.weight).all()
    close(wide.weight, repeat64(repeat64(layer.weight, 2).T, 2).T / 2, atol=1e-3)


@case("representations.widen_linear", "zero input features: empty weight", "empty")
def _(device):
    wide = R.widen_linear(nn.Linear(0, 2, device=device), 2, in_scale=1, out_scale=1)
    assert wide.weight.shape == (4, 0)


@case("representations.widen_linear", "meta layer gives a meta layer", "device")
def _(device):
    wide = R.widen_linear(nn.Linear(3, 2, device=META), 2, in_scale=1, out_scale=1)
    assert wide.weight.is_meta and wide.weight.shape == (4, 6)


error("representations.widen_linear", "not a Linear", TypeError, "layer",
      lambda d: R.widen_linear(nn.Conv1d(2, 2, 1), 2, in_scale=1, out_scale=1))  # fmt: skip
error("representations.widen_linear", "in_scale 0", ValueError, "in_scale",
      lambda d: R.widen_linear(nn.Linear(2, 2), 2, in_scale=0, out_scale=1))  # fmt: skip
error("representations.widen_linear", "out_scale nan", ValueError, "out_scale",
      lambda d: R.widen_linear(nn.Linear(2, 2), 2, in_scale=1, out_scale=math.nan))  # fmt: skip
error("representations.widen_linear", "out_scale a tensor", TypeError, "out_scale",
      lambda d: R.widen_linear(nn.Linear(2, 2), 2, in_scale=1,
                               out_scale=torch.tensor(1.0)))  # fmt: skip
error("representations.widen_linear", "factor True", TypeError, "factor",
      lambda d: R.widen_linear(nn.Linear(2, 2), True, in_scale=1, out_scale=1))  # fmt: skip


# ---------------------------------------------------------------- widen_layer_norm
@case("representations.widen_layer_norm", "exact with eps = 0.1", "value")
def _(device):
    layer = nn.LayerNorm(5, eps=0.1).to(device=device, dtype=F64)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(3, 5, dtype=F64, device=device)
    wide = R.widen_layer_norm(layer, 2)
    close(
        wide(R.repeat_features(x) / 2**0.5), repeat64(layer(x), 2) / 2**0.5, atol=1e-14
    )


@case("representations.widen_layer_norm", "float16 input computed finite", "finite")
def _(device):
    layer = R.widen_layer_norm(
        nn.LayerNorm(4).to(device=device, dtype=torch.float16), 2
    )
    out = layer(torch.full((2, 8), 300.0, device=device, dtype=torch.float16))
    assert torch.isfinite(out).all()


@case("representations.widen_layer_norm", "empty batch through the wide norm", "empty")
def _(device):
    wide = R.widen_layer_norm(nn.LayerNorm(3, device=device), 2)
    assert wide(torch.zeros(0, 6, device=device)).shape == (0, 6)


error("representations.widen_layer_norm", "not a LayerNorm", TypeError, "layer",
      lambda d: R.widen_layer_norm(nn.Linear(2, 2)))  # fmt: skip
error("representations.widen_layer_norm", "2-D normalized_shape", ValueError, "layer",
      lambda d: R.widen_layer_norm(nn.LayerNorm((2, 3))))  # fmt: skip
error("representations.widen_layer_norm", "no gain", ValueError, "elementwise",
      lambda d: R.widen_layer_norm(nn.LayerNorm(3, elementwise_affine=False)))  # fmt: skip
error("representations.widen_layer_norm", "in_scale -1", ValueError, "in_scale",
      lambda d: R.widen_layer_norm(nn.LayerNorm(3), in_scale=-1))  # fmt: skip


# ---------------------------------------------------------------- widen_embedding
@case("representations.widen_embedding", "rows repeated over sqrt(k)", "value")
def _(device):
    emb = nn.Embedding(6, 3, padding_idx=2).to(device=device, dtype=F64)
    wide = R.widen_embedding(emb, 3)
    close(wide.weight, repeat64(emb.weight, 3) / 3**0.5, atol=1e-15)
    assert wide.padding_idx == 2


@case("representations.widen_embedding", "empty table", "empty")
def _(device):
    wide = R.widen_embedding(nn.Embedding(0, 3, device=device), 2)
    assert wide.weight.shape == (0, 6)


error("representations.widen_embedding", "not an Embedding", TypeError, "embedding",
      lambda d: R.widen_embedding(torch.zeros(3, 2)))  # fmt: skip
error("representations.widen_embedding", "scale inf", ValueError, "scale",
      lambda d: R.widen_embedding(nn.Embedding(3, 2), scale=math.inf))  # fmt: skip


# ---------------------------------------------------------------- widen_bert
@case("representations.widen_bert", "every layer repeat/sqrt(k), float64", "value")
def _(device):
    model = tiny(device)
    ids = torch.randint(0, 20, (2, 7), device=device)
    mask = torch.ones(2, 7, dtype=torch.bool, device=device)
    mask[0, 4:] = False
    _, small = model(ids, mask, output_hidden_states=True)
    for k in (2, 3):
        _, wide = R.widen_bert(model, k)(ids, mask, output_hidden_states=True)
        for h, hw in zip(small, wide, strict=True):
            close(hw[mask], repeat64(h[mask], k) / k**0.5, atol=1e-13)


@case("representations.widen_bert", "float16 model: float16, finite", "finite")
def _(device):
    wide = R.widen_bert(tiny(device, torch.float16), 2)
    ids = torch.randint(0, 20, (2, 5), device=device)
    out = wide(ids, torch.ones(2, 5, dtype=torch.bool, device=device))
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


@case("representations.widen_bert", "empty batch gives (0, seq, 2d)", "empty")
def _(device):
    wide = R.widen_bert(tiny(device), 2)
    ids = torch.zeros(0, 4, dtype=torch.long, device=device)
    assert wide(ids, torch.ones(0, 4, dtype=torch.bool, device=device)).shape == (
        0,
        4,
        16,
    )


@case("representations.widen_bert", "gradients flow to every wide weight", "grad")
def _(device):
    wide = R.widen_bert(tiny(device).train(), 2)
    ids = torch.randint(0, 20, (2, 5), device=device)
    wide(ids, torch.ones(2, 5, dtype=torch.bool, device=device)).pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in wide.parameters())  # fmt: skip


@case("representations.widen_bert", "scheme='article': FFN-2 bias b/k, eps kept",
      "value")  # fmt: skip
def _(device):
    model = tiny(device)
    for k in (2, 3):
        wide = R.widen_bert(model, k, scheme="article")
        small_bias = model.encoder.layer[0].output.dense.bias
        close(wide.encoder.layer[0].output.dense.bias, repeat64(small_bias, k) / k,
              atol=1e-15)  # fmt: skip
        assert {m.eps for m in wide.modules() if isinstance(m, nn.LayerNorm)} == {1e-2}


error("representations.widen_bert", "a Linear", TypeError, "encoder",
      lambda d: R.widen_bert(nn.Linear(2, 2)))  # fmt: skip
error("representations.widen_bert", "factor 0", ValueError, "factor",
      lambda d: R.widen_bert(tiny("cpu"), 0))  # fmt: skip
error("representations.widen_bert", "negative noise", ValueError, "noise",
      lambda d: R.widen_bert(tiny("cpu"), noise=-0.1))  # fmt: skip
error("representations.widen_bert", "generator an int", TypeError, "generator",
      lambda d: R.widen_bert(tiny("cpu"), noise=0.1, generator=3))  # fmt: skip
error("representations.widen_bert", "scheme misspelt", ValueError, "scheme",
      lambda d: R.widen_bert(tiny("cpu"), scheme="exactly"))  # fmt: skip
error("representations.widen_bert", "scheme not a string", ValueError, "scheme",
      lambda d: R.widen_bert(tiny("cpu"), scheme=None))  # fmt: skip
