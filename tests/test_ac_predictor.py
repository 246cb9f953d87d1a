"""ActionConditionedPredictor: float64 reference, KV-cache steps, block causality, checkpoints, errors."""

import pytest
import torch

from reference import reference_ac_predictor
from vjepa_world import ACPredictorConfig, ActionConditionedPredictor, VideoEncoder
from vjepa_world.config import get_preset
from vjepa_world.nn.ac_predictor import KVCache

SMALL = ACPredictorConfig(encoder_dim=32, dim=48, depth=2, num_heads=4, action_dim=3, state_dim=5)


def randomized(config=SMALL, seed=0):
    """A predictor with every weight random (biases and norms too), so nothing cancels by accident."""
    torch.manual_seed(seed)
    model = ActionConditionedPredictor(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.ndim == 1 and p.shape[0] == config.dim else 0.0))
    return model


def inputs(batch=2, steps=3, grid=(2, 3), config=SMALL, seed=1):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(batch, steps * grid[0] * grid[1], config.encoder_dim, generator=g)
    actions = torch.randn(batch, steps, config.action_dim, generator=g)
    states = torch.randn(batch, steps, config.state_dim, generator=g) if config.state_dim else None
    return frames, actions, states


@pytest.mark.parametrize("state_dim", [5, 0])
def test_matches_the_float64_reference(state_dim):
    config = ACPredictorConfig(**{**SMALL.__dict__, "state_dim": state_dim})
    model = randomized(config)
    frames, actions, states = inputs(config=config)
    out = model(frames, actions, states, grid_hw=(2, 3))
    for b in range(2):
        expected = reference_ac_predictor(
            model, frames[b], actions[b], None if states is None else states[b], (2, 3)
        )
        torch.testing.assert_close(out[b].double(), expected, atol=1e-4, rtol=1e-4)


def test_kv_cache_steps_equal_the_full_pass():
    model = randomized()
    frames, actions, states = inputs(steps=4, grid=(2, 2))
    full = model(frames, actions, states)  # 4 tokens per step: a square grid is inferred
    cache, outputs = None, []
    for t in range(4):
        out, cache = model.step(frames[:, 4 * t : 4 * t + 4], actions[:, t], states[:, t], cache=cache)
        outputs.append(out)
    assert cache.steps == 4
    torch.testing.assert_close(torch.cat(outputs, dim=1), full, atol=1e-5, rtol=1e-5)


def test_a_cache_filled_by_the_full_pass_continues_like_steps():
    model = randomized()
    frames, actions, states = inputs(steps=4, grid=(2, 2))
    full = model(frames, actions, states)
    cache = KVCache(model.config.depth)
    torch.testing.assert_close(
        model(frames[:, :12], actions[:, :3], states[:, :3], cache=cache), full[:, :12]
    )
    assert cache.steps == 3
    for kept in (3, 1):  # continue after all three steps, or after the first only
        start = 4 * kept
        out, _ = model.step(
            frames[:, start : start + 4], actions[:, kept], states[:, kept], cache=cache.first(kept)
        )
        torch.testing.assert_close(out, full[:, start : start + 4], atol=1e-5, rtol=1e-5)
    assert cache.steps == 3  # continuing never changes the cache it started from
    with pytest.raises(ValueError, match="empty KVCache"):
        model(frames, actions, states, cache=cache)


def test_a_repeated_cache_serves_many_candidates():
    model = randomized()
    frames, actions, states = inputs(batch=1, steps=2, grid=(2, 2))
    _, cache = model.step(frames[:, :4], actions[:, 0], states[:, 0])
    many = cache.repeat(3)
    candidates = torch.randn(3, 3)  # three different second actions
    out, _ = model.step(frames[:, 4:].expand(3, -1, -1), candidates, states[:, 1].expand(3, -1), cache=many)
    for i in range(3):
        second = torch.stack([actions[0, 0], candidates[i]])[None]
        full = model(frames, second, states)
        torch.testing.assert_close(out[i], full[0, 4:], atol=1e-5, rtol=1e-5)
    assert isinstance(many, KVCache) and many.steps == 2 and cache.steps == 1  # the original is untouched


def test_future_inputs_never_change_past_predictions():
    model = randomized()
    frames, actions, states = inputs(steps=4, grid=(2, 2))
    base = model(frames, actions, states)
    for change in ("frames", "actions", "states"):
        f, a, s = frames.clone(), actions.clone(), states.clone()
        {"frames": f[:, 8:], "actions": a[:, 2:], "states": s[:, 2:]}[change].add_(1.0)
        out = model(f, a, s)
        assert torch.equal(out[:, :8], base[:, :8]), change  # steps 0 and 1 are untouched
        assert not torch.allclose(out[:, 8:], base[:, 8:]), change


def test_released_ac_checkpoint_loads_with_inferred_config(tmp_path):
    """The released AC file: `encoder` and `predictor` with `module.` prefixes, no config; the
    predictor at width 1024 has 16 heads (here 1 block, to stay small)."""
    released = ACPredictorConfig(
        encoder_dim=64, dim=1024, depth=1, action_dim=7, state_dim=7, extrinsics_dim=6
    )
    predictor = randomized(released)
    encoder = VideoEncoder(get_preset("vit_micro").encoder)
    checkpoint = {
        "encoder": {f"module.{k}": v for k, v in encoder.state_dict().items()},
        "predictor": {f"module.{k}": v for k, v in predictor.state_dict().items()},
        "epoch": 3,
    }
    torch.save(checkpoint, tmp_path / "vjepa2-ac.pt")
    loaded = ActionConditionedPredictor.from_pretrained(tmp_path / "vjepa2-ac.pt")
    assert loaded.config == released and loaded.config.num_heads == 16
    frames, actions, states = inputs(batch=1, steps=2, grid=(2, 2), config=released)
    torch.testing.assert_close(loaded(frames, actions, states), predictor(frames, actions, states))


def test_save_and_load_our_directory_with_the_encoder(tmp_path):
    predictor = randomized()
    encoder = VideoEncoder(get_preset("vit_micro").encoder)
    predictor.save_pretrained(tmp_path / "wm", encoder=encoder)
    loaded = ActionConditionedPredictor.from_pretrained(tmp_path / "wm")
    assert loaded.config == SMALL
    frames, actions, states = inputs()
    torch.testing.assert_close(
        loaded(frames, actions, states, grid_hw=(2, 3)), predictor(frames, actions, states, grid_hw=(2, 3))
    )
    again = VideoEncoder.from_pretrained(tmp_path / "wm")
    assert torch.equal(again.norm.weight, encoder.norm.weight)
    encoder.save_pretrained(tmp_path / "encoder_only")
    with pytest.raises(ValueError, match="holds no ac_predictor"):
        ActionConditionedPredictor.from_pretrained(tmp_path / "encoder_only")


def test_bad_inputs_give_one_line_errors():
    model = randomized()
    frames, actions, states = inputs(steps=2, grid=(2, 2))
    cases = [
        ((frames, actions[..., :2], states), "actions must be"),
        ((frames, actions, None), "pass states"),
        ((frames, actions, states[:, :1]), "states must be"),
        ((frames[..., :16], actions, states), "frame_tokens must be"),
        ((frames[:, :7], actions, states), "do not split into 2 steps"),
        ((frames[:, :6], actions, states), "not a square grid"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            model(*args)
    with pytest.raises(ValueError, match="does not hold"):
        model(frames, actions, states, grid_hw=(3, 3))


def test_forward_and_step_take_the_same_arguments_in_the_same_order():
    import inspect

    names = lambda f: list(inspect.signature(f).parameters)
    assert (
        names(ActionConditionedPredictor.forward)[1:]
        == names(ActionConditionedPredictor.step)[1:]
        == [
            "frame_tokens",
            "actions",
            "states",
            "extrinsics",
            "grid_hw",
            "cache",
        ]
    )
