"""kexue.generative.common against float64 formulas written out here and torch's own
distributions (``torch.distributions.kl_divergence``, ``Bernoulli.log_prob``)."""

from __future__ import annotations

import pytest
import torch
from torch import distributions as D

from kexue.generative import Decoder, Encoder, bernoulli_nll, gaussian_kl, mlp

F64 = torch.float64


def test_mlp_shapes_and_depth() -> None:
    net = mlp(5, 3, hidden=7, layers=3)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (5, 7),
        (7, 7),
        (7, 3),
    ]
    assert isinstance(net[-1], torch.nn.Linear)  # no activation on the output
    assert mlp(4, 2, layers=1)(torch.ones(6, 4)).shape == (6, 2)


def test_encoder_heads_and_decoder(device: torch.device) -> None:
    torch.manual_seed(0)
    enc = Encoder(10, 4, heads=3, hidden=8).to(device)
    out = enc(torch.randn(2, 5, 10, device=device))
    assert len(out) == 3 and all(t.shape == (2, 5, 4) for t in out)
    dec = Decoder(4, 10, hidden=8).to(device)
    assert dec(out[0]).shape == (2, 5, 10)
    with pytest.raises(ValueError, match="x"):
        enc(torch.randn(2, 9, device=device))
    with pytest.raises(ValueError, match="z"):
        dec(torch.randn(2, 5, device=device))


def test_bernoulli_nll_matches_torch(device: torch.device) -> None:
    g = torch.Generator().manual_seed(1)
    logits = (4 * torch.randn(6, 9, generator=g, dtype=F64)).to(device)
    x = torch.randint(0, 2, (6, 9), generator=g).to(device, F64)
    ref = -D.Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(bernoulli_nll(logits, x), ref, rtol=0, atol=1e-12)
    # grey levels: the cross-entropy of the relaxation, written out
    grey = torch.rand(6, 9, generator=g, dtype=F64).to(device)
    p = torch.sigmoid(logits)
    ref = -(grey * p.log() + (1 - grey) * (1 - p).log()).sum(-1)
    torch.testing.assert_close(bernoulli_nll(logits, grey), ref, rtol=1e-10, atol=0)


def test_bernoulli_nll_extreme_logits_half(device: torch.device) -> None:
    logits = torch.tensor([[60000.0, -60000.0]], device=device, dtype=torch.float16)
    x = torch.tensor([[0.0, 1.0]], device=device, dtype=torch.float16)
    out = bernoulli_nll(logits, x)
    assert out.dtype == torch.float16 and torch.isinf(out).all()  # 1.2e5 > 65504
    small = bernoulli_nll(logits / 1000, x).double()
    torch.testing.assert_close(small, torch.tensor([120.0], device=device, dtype=F64))


def test_gaussian_kl_matches_torch(device: torch.device) -> None:
    g = torch.Generator().manual_seed(2)
    mean = torch.randn(5, 4, generator=g, dtype=F64).to(device)
    log_var = torch.randn(5, 4, generator=g, dtype=F64).to(device)
    q = D.Normal(mean, (0.5 * log_var).exp())
    p = D.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    ref = D.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(gaussian_kl(mean, log_var), ref, rtol=1e-12, atol=1e-14)
    zero = gaussian_kl(
        torch.zeros(3, 2, device=device), torch.zeros(3, 2, device=device)
    )
    assert torch.equal(zero, torch.zeros(3, device=device))


def test_validation() -> None:
    with pytest.raises(ValueError, match="layers"):
        mlp(3, 2, layers=0)
    with pytest.raises(TypeError, match="hidden"):
        mlp(3, 2, hidden=2.5)
    with pytest.raises(ValueError, match="shape"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bernoulli_nll(torch.zeros(2), torch.tensor([0.5, 1.5]))
