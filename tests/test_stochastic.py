"""Uncertain futures: the stochastic latent and the ensemble against hand values and closed forms."""

import math

import pytest
import torch

from vjepa_world import VideoEncoder, WorldModel, get_preset
from vjepa_world.nn.stochastic import EnsembleHead, StochasticHead, kl_balance
from vjepa_world.planning import PlannerConfig, make_objective
from vjepa_world.train.config import UncertaintyConfig
from vjepa_world.train.uncertainty import Transitions, fit_head, stochastic_loss


def test_categorical_kl_with_unimix_matches_a_hand_computation():
    head = StochasticHead(groups=2, classes=2, unimix=0.01)
    posterior = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0]]])  # softmax: (1/4, 3/4) and (1/2, 1/2)
    prior = torch.tensor([[[0.0, 0.0], [math.log(9.0), 0.0]]])  # (1/2, 1/2) and (9/10, 1/10)
    mix = lambda p: [0.99 * x + 0.005 for x in p]
    kl = lambda q, p: sum(a * math.log(a / b) for a, b in zip(mix(q), mix(p), strict=True))
    expected = kl([0.25, 0.75], [0.5, 0.5]) + kl([0.5, 0.5], [0.9, 0.1])  # summed over the groups
    assert float(head.kl(posterior, prior)) == pytest.approx(expected, rel=1e-5)


def test_gaussian_kl_matches_the_closed_form():
    head = StochasticHead(kind="gaussian", groups=1)
    posterior = torch.tensor([[[0.0, 1.0]]])  # N(0, 1)
    prior = torch.tensor([[[1.0, 2.0]]])  # N(1, 2^2)
    assert float(head.kl(posterior, prior)) == pytest.approx(math.log(2.0) + 2.0 / 8.0 - 0.5, rel=1e-6)


def test_kl_balancing_routes_gradients_and_free_bits_clip_them():
    posterior = torch.tensor([0.0, 4.0], requires_grad=True)  # logits of one 2-way categorical
    prior = torch.tensor([2.0, 0.0], requires_grad=True)
    head = StochasticHead(groups=1, classes=2, unimix=0.0)
    q, p = posterior[None, None], prior[None, None]
    kl_dynamics, kl_representation = head.kl(q.detach(), p), head.kl(q, p.detach())
    value = float(kl_dynamics.detach())  # = KL[q || p] by hand:
    probs = lambda logits: torch.softmax(logits.detach(), 0)
    by_hand = float((probs(posterior) * (probs(posterior) / probs(prior)).log()).sum())
    assert value == pytest.approx(by_hand, rel=1e-6) and value > 1.0  # above the free nat
    loss = kl_balance(kl_dynamics, kl_representation, dynamics=0.5, representation=0.1, free_nats=1.0)
    assert float(loss.detach()) == pytest.approx(0.6 * value, rel=1e-6)
    loss.sum().backward()
    # the prior gets 0.5 x dKL/dp, the posterior 0.1 x dKL/dq: recompute each alone
    p_alone, q_alone = prior.detach().clone().requires_grad_(), posterior.detach().clone().requires_grad_()
    head.kl(posterior.detach()[None, None], p_alone[None, None]).sum().backward()
    head.kl(q_alone[None, None], prior.detach()[None, None]).sum().backward()
    torch.testing.assert_close(prior.grad, 0.5 * p_alone.grad)
    torch.testing.assert_close(posterior.grad, 0.1 * q_alone.grad)
    # free bits: a KL below 1 nat is held at 1 and pulls nothing
    close = torch.tensor([0.0, 0.1], requires_grad=True)
    small = head.kl(close[None, None], prior.detach()[None, None])
    assert float(small.detach()) < 1.0
    clipped = kl_balance(small, small, 0.5, 0.1, 1.0)
    assert float(clipped.detach()) == pytest.approx(0.6)
    clipped.sum().backward()
    assert float(close.grad.abs().sum()) == 0.0


def micro_world_model(**heads):
    torch.manual_seed(0)
    encoder = VideoEncoder(get_preset("vit_micro").encoder)
    return WorldModel(encoder, action_dim=2, dim=32, depth=2, num_heads=2, **heads).eval()


def test_stochastic_rollouts_differ_between_samples_and_the_deterministic_mode_is_the_plain_predictor():
    plain = micro_world_model()
    stochastic = StochasticHead(tokens=16, latent_dim=64, action_dim=2, hidden_dim=32)
    model = micro_world_model(stochastic=stochastic)
    start, actions = torch.randn(3, 16, 64), torch.rand(3, 4, 2) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.rollout(start, actions), plain.rollout(start, actions))  # exactly
        futures = model.rollout(start, actions, samples=5, generator=torch.Generator().manual_seed(0))
        again = model.rollout(start, actions, samples=5, generator=torch.Generator().manual_seed(0))
    assert futures.shape == (3, 5, 4, 16, 64)
    torch.testing.assert_close(futures, again)  # the same generator draws the same futures
    spread = (futures[:, 0] - futures[:, 1]).abs().mean(dim=(-1, -2))  # (3, 4) per step
    assert (spread > 1e-3).all()  # every step of every sequence differs between two samples
    # the first step's futures are the prior's draws decoded around the plain prediction
    with torch.no_grad():
        first, _ = plain.step(start, actions[:, 0])
    assert not torch.allclose(futures[:, 0, 0], first)


def test_ensemble_futures_follow_one_member_each_and_planning_reduces_their_energies():
    ensemble = EnsembleHead(members=2, tokens=16, latent_dim=64, action_dim=2, hidden_dim=32)
    model = micro_world_model(ensemble=ensemble)
    start, actions = torch.randn(2, 16, 64), torch.rand(2, 3, 2) * 2 - 1
    with torch.no_grad():
        futures = model.rollout(start, actions, samples=4)  # futures 0, 2 follow member 0; 1, 3 member 1
        torch.testing.assert_close(futures[:, 0], futures[:, 2])
        assert not torch.allclose(futures[:, 0], futures[:, 1])
        predicted, _ = model.step(start, actions[:, 0])
        by_member = ensemble(start, actions[:, 0], predicted)  # (2 members, B, N, D)
    normalize = lambda z: torch.nn.functional.layer_norm(z, z.shape[-1:])
    torch.testing.assert_close(futures[:, 1, 0], normalize(by_member[1]))
    with pytest.raises(ValueError, match="no stochastic head"):
        model.rollout(start, actions, samples=2, uncertainty="stochastic")
    # planning: mean energy, plus risk x std over the futures
    goal = torch.zeros(16, 64)
    base = make_objective(model, goal, PlannerConfig(objective="latent", energy="l2", reduce="final"))
    for risk in (0.0, 1.0, -1.0):
        config = PlannerConfig(objective="latent", energy="l2", reduce="final", futures=4, risk=risk)
        energies = base(futures.flatten(0, 1)).view(2, 4)
        expected = energies.mean(1) + risk * energies.std(1)
        torch.testing.assert_close(make_objective(model, goal, config)(futures), expected)


def test_a_categorical_latent_learns_a_two_way_future_that_one_gaussian_cannot():
    """Next latents = prediction +- c (a fair coin): the best single Gaussian per dimension has
    std |c| (NLL 1/2 + log|c| + log(2 pi)/2 per dimension); the fitted categorical latent must put
    its mass on the two outcomes and beat it clearly."""
    torch.manual_seed(0)
    count, dim = 2048, 4
    c = torch.tensor([1.0, -0.5, 0.8, 0.3])
    latents, actions = torch.randn(count, 1, dim), torch.randn(count, 2)
    predicted = latents.clone()
    coin = torch.randint(0, 2, (count, 1, 1)).float() * 2 - 1
    targets = predicted + coin * c
    data = Transitions(latents, actions, predicted, targets)
    head = StochasticHead(tokens=1, latent_dim=dim, action_dim=2, hidden_dim=64, groups=4, classes=4)
    config = UncertaintyConfig(steps=400, batch_size=128, lr=3e-3)
    fit_head(head, data[:1536], config, stochastic_loss, progress=False)
    held_out = data[1536:]
    nll = -head.log_likelihood(held_out.targets, held_out.latents, held_out.actions, held_out.predicted, 64)
    gaussian = float((0.5 + c.abs().log() + 0.5 * math.log(2 * math.pi)).sum())
    assert float(nll.mean()) < gaussian - 2.0  # nats per transition (4 dimensions)
