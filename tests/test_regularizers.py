"""SIGReg and VICReg on hand cases: what a Gaussian batch, a collapse, a shift and a scale score."""

import math

import pytest
import torch

from vjepa_world.nn.regularizers import dimension_std, effective_rank, regularizer, sigreg, vicreg


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_sigreg_is_small_for_standard_normal_and_large_for_collapse_shift_and_scale():
    torch.manual_seed(0)
    normal = torch.randn(512, 32)
    score = lambda x: float(sigreg(x, generator=_generator()))
    assert score(normal) < 1.5
    collapsed = torch.randn(512, 1).expand(512, 32) + 1e-3 * torch.randn(512, 32)
    assert score(collapsed) > 20 * score(normal)
    assert score(normal + 1.0) > 20 * score(normal)  # shifted mean
    assert score(3.0 * normal) > 20 * score(normal)  # too wide
    assert score(0.1 * normal) > 20 * score(normal)  # too narrow
    assert score(torch.zeros(512, 32)) > 20 * score(normal)


def test_sigreg_matches_a_float64_recomputation_of_the_epps_pulley_statistic():
    torch.manual_seed(1)
    x = torch.randn(64, 5, dtype=torch.float64) * 1.3 + 0.2
    directions, knots = 7, 17
    got = sigreg(x, directions=directions, knots=knots, generator=_generator(3))
    projection = torch.randn(5, directions, generator=_generator(3)).double()
    projection = projection / projection.norm(dim=0, keepdim=True)
    total = 0.0
    for p in range(directions):
        values = (x @ projection[:, p]).tolist()
        statistic = 0.0
        for k in range(knots):
            t = 3.0 * k / (knots - 1)
            weight = (3.0 / (knots - 1)) * (0.5 if k in (0, knots - 1) else 1.0) * math.exp(-t * t / 2)
            real = sum(math.cos(t * v) for v in values) / len(values) - math.exp(-t * t / 2)
            imaginary = sum(math.sin(t * v) for v in values) / len(values)
            statistic += weight * (real**2 + imaginary**2)
        total += len(values) * statistic
    assert float(got) == pytest.approx(total / directions, rel=1e-5)


def test_sigreg_gradients_are_finite_and_push_a_collapsed_batch_apart():
    x = (0.01 * torch.randn(128, 16)).requires_grad_()
    sigreg(x, generator=_generator()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    spread = x - 0.1 * x.grad  # one descent step: the batch must grow wider
    assert spread.std() > x.std()


def test_vicreg_is_zero_for_whitened_batches_and_positive_for_collapse():
    torch.manual_seed(0)
    whitened = torch.linalg.qr(torch.randn(4096, 8))[0] * math.sqrt(4095)  # orthogonal columns, std 1
    whitened = whitened - whitened.mean(0)
    assert float(vicreg(whitened * 1.01)) < 0.05
    collapsed = torch.randn(256, 1).expand(256, 8).clone()
    assert float(vicreg(collapsed)) > 1.0
    assert float(vicreg(torch.zeros(256, 8))) == pytest.approx(1.0, abs=0.02)  # variance hinge: 1 - 0


def test_regularizer_by_name_collapse_signals_and_bad_input():
    x = torch.randn(64, 8)
    assert torch.equal(regularizer("vicreg", x), vicreg(x))
    with pytest.raises(ValueError, match="unknown regulariser"):
        regularizer("barlow", x)
    with pytest.raises(ValueError, match=r"\(N >= 2, D\)"):
        sigreg(torch.randn(8))
    collapsed = torch.randn(256, 1).expand(256, 64)
    assert effective_rank(collapsed) < 1.5 and effective_rank(torch.randn(256, 64)) > 40
    assert dimension_std(collapsed).shape == (64,)
    assert float(dimension_std(torch.zeros(10, 4)).max()) == 0.0
