"""WorldModel: encode RGB observations, step and roll out with the action-conditioned predictor."""

import pytest
import torch
import torch.nn.functional as F

from vjepa_world import VideoEncoder, get_preset
from vjepa_world.jepa import VJEPAModel
from vjepa_world.world_model import ActionConditionedVJEPA, WorldModel


def micro_world_model(action_dim=2):
    torch.manual_seed(0)
    return WorldModel(VideoEncoder(get_preset("vit_micro").encoder), action_dim=action_dim, dim=32, depth=2)


def frames(*lead, size=32, seed=0):
    return torch.randint(0, 256, (*lead, size, size, 3), generator=torch.Generator().manual_seed(seed)).to(
        torch.uint8
    )


def test_encode_duplicates_each_frame_into_a_tubelet_and_layer_norms():
    model = micro_world_model()
    obs = frames(2)
    z = model.encode(obs)
    assert z.shape == (2, 16, 64)  # 32 px / patch 8 = 4 x 4 tokens per frame
    images = (obs.permute(0, 3, 1, 2).float() / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / (
        torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    )
    video = images[:, :, None].expand(-1, -1, 2, -1, -1)  # (B, 3, 2, H, W): one tubelet
    expected = F.layer_norm(model.encoder(video), (64,))
    torch.testing.assert_close(z, expected)
    assert model.encode(frames(2, 3)).shape == (2, 3, 16, 64)  # sequences keep their time axis


def test_two_frame_observations_are_one_tubelet_of_the_previous_and_current_frame(tmp_path):
    torch.manual_seed(0)
    encoder = VideoEncoder(get_preset("vit_micro").encoder)
    model = WorldModel(encoder, action_dim=2, dim=32, depth=2, observation_frames=2)
    now, before = frames(2, 3), frames(2, 3, seed=1)  # (B, T, H, W, 3)
    z = model.encode(now, before)
    assert z.shape == (2, 3, 16, 64)
    to_images = lambda x: model._images(x).unflatten(0, (2, 3))  # (2, 3, 3, S, S) normalised
    video = torch.stack([to_images(before), to_images(now)], dim=3).flatten(0, 1)  # (6, 3, 2, S, S)
    torch.testing.assert_close(z, F.layer_norm(model.encoder(video), (64,)).unflatten(0, (2, 3)))
    torch.testing.assert_close(model.encode(now), model.encode(now, now))  # no previous: at rest
    assert not torch.allclose(model.encode(now), z)  # motion shows
    model.save_pretrained(tmp_path / "wm")
    assert WorldModel.from_pretrained(tmp_path / "wm").observation_frames == 2
    with pytest.raises(ValueError, match="sees single frames"):
        micro_world_model().encode(now, before)
    with pytest.raises(ValueError, match="observation_frames must be 1 or the encoder's tubelet size 2"):
        WorldModel(encoder, action_dim=2, observation_frames=3)


def test_rollout_feeds_normed_predictions_back_and_shares_one_start():
    model = micro_world_model().eval()
    z0 = model.encode(frames(1))
    actions = torch.randn(5, 3, 2)
    rolled = model.rollout(z0, actions)
    assert rolled.shape == (5, 3, 16, 64)
    # the same thing by hand with full block-causal passes on the growing sequence
    sequence = z0.expand(5, -1, -1)
    for t in range(3):
        out = model.predictor(sequence, actions[:, : t + 1])[:, -16:]
        nxt = F.layer_norm(out, (64,))
        torch.testing.assert_close(rolled[:, t], nxt, atol=1e-5, rtol=1e-5)
        sequence = torch.cat([sequence, nxt], dim=1)
    assert not torch.allclose(rolled[0], rolled[1])  # different actions, different futures


def test_encoder_is_frozen_and_the_bundle_round_trips(tmp_path):
    vjepa = VJEPAModel(preset="vit_micro")
    model = ActionConditionedVJEPA(vjepa, action_dim=3, state_dim=4, dim=32, depth=1)
    assert model.encoder is vjepa.target_encoder
    assert not any(p.requires_grad for p in model.encoder.parameters())
    model.train()
    assert not model.encoder.training and model.predictor.training
    model.save_pretrained(tmp_path / "wm")
    loaded = WorldModel.from_pretrained(tmp_path / "wm").eval()
    z = model.encode(frames(2))
    torch.testing.assert_close(loaded.encode(frames(2)), z)
    a, s = torch.randn(2, 3), torch.randn(2, 4)
    torch.testing.assert_close(loaded.step(z, a, s)[0], model.eval().step(z, a, s)[0])


def test_bad_inputs():
    model = micro_world_model()
    with pytest.raises(ValueError, match=r"actions must be \(B, H, 2\)"):
        model.rollout(model.encode(frames(1)), torch.randn(4, 3, 5))
    with pytest.raises(ValueError, match="no encoder yet"):
        WorldModel().encode(frames(1))
    with pytest.raises(ValueError, match="already takes 2-D actions"):
        model.add_action_input(3)
    with pytest.raises(ValueError, match="frames must be uint8"):
        model.encode(torch.zeros(1, 32, 32, 4, dtype=torch.uint8))
