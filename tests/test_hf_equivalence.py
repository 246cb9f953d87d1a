"""Numerical equivalence with transformers' VJEPA2Model (random weights, no download).

Tolerance: 1e-5 max abs difference in float32, encoder and predictor outputs.
"""

import pytest
import torch
from transformers import VJEPA2Config, VJEPA2Model

from conftest import randomize_
from vjepa_world import MaskedPredictor, VideoEncoder

CONFIGS = {
    "head_dim_32": dict(
        hidden_size=64, num_attention_heads=2, pred_hidden_size=32, pred_num_attention_heads=1
    ),
    "head_dim_64": dict(
        hidden_size=128, num_attention_heads=2, pred_hidden_size=64, pred_num_attention_heads=1
    ),
    "head_dim_80": dict(
        hidden_size=160, num_attention_heads=2, pred_hidden_size=80, pred_num_attention_heads=1
    ),
    # the released ViT-g layout (width 1408, 22 heads of 64, MLP ratio 48/11) at depth 2
    "giant_layout": dict(
        hidden_size=1408,
        num_attention_heads=22,
        mlp_ratio=48 / 11,
        pred_hidden_size=384,
        pred_num_attention_heads=12,
    ),
}
ATOL = 1e-5


def make_hf(name: str) -> VJEPA2Model:
    config = VJEPA2Config(
        patch_size=16,
        crop_size=64,
        frames_per_clip=4,
        tubelet_size=2,
        num_hidden_layers=2,
        pred_num_hidden_layers=2,
        **CONFIGS[name],
    )
    return randomize_(VJEPA2Model(config)).eval()


def split_masks(batch: int, num_tokens: int, num_context: int):
    order = torch.stack([torch.randperm(num_tokens) for _ in range(batch)])
    return order[:, :num_context], order[:, num_context:]


@pytest.fixture(scope="module", params=list(CONFIGS))
def hf_dir(request, tmp_path_factory):
    torch.manual_seed(1)
    model = make_hf(request.param)
    directory = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(directory)
    return model, directory


@pytest.mark.parametrize(("batch", "frames"), [(1, 4), (2, 4), (2, 1)])
def test_their_directory_in_ours_gives_their_numbers(hf_dir, batch, frames):
    theirs, directory = hf_dir
    encoder = VideoEncoder.from_pretrained(directory).eval()
    predictor = MaskedPredictor.from_pretrained(directory).eval()
    video = torch.randn(batch, 3, frames, 64, 64)
    num_tokens = max(frames // 2, 1) * 16
    context, target = split_masks(batch, num_tokens, num_tokens // 2)
    with torch.no_grad():
        expected = theirs(video.transpose(1, 2), context_mask=[context], target_mask=[target])
        tokens = encoder(video)
        predicted = predictor(
            torch.gather(tokens, 1, context[..., None].expand(-1, -1, tokens.shape[-1])), context, target
        )
    assert (tokens - expected.last_hidden_state).abs().max() < ATOL
    assert (predicted - expected.predictor_output.last_hidden_state).abs().max() < ATOL


def test_our_directory_loads_in_transformers(hf_dir, tmp_path):
    _theirs, directory = hf_dir
    encoder = randomize_(VideoEncoder.from_pretrained(directory)).eval()  # new weights: a real round trip
    predictor = randomize_(MaskedPredictor.from_pretrained(directory)).eval()
    encoder.save_pretrained(tmp_path, predictor=predictor)
    loaded = VJEPA2Model.from_pretrained(tmp_path).eval()
    video = torch.randn(2, 3, 4, 64, 64)
    context, target = split_masks(2, 32, 12)
    with torch.no_grad():
        out = loaded(video.transpose(1, 2), context_mask=[context], target_mask=[target])
        tokens = encoder(video)
        predicted = predictor(
            torch.gather(tokens, 1, context[..., None].expand(-1, -1, tokens.shape[-1])), context, target
        )
    assert (out.last_hidden_state - tokens).abs().max() < ATOL
    assert (out.predictor_output.last_hidden_state - predicted).abs().max() < ATOL
    # and back into ours, exactly
    again = VideoEncoder.from_pretrained(tmp_path)
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.state_dict().values(), encoder.state_dict().values(), strict=True)
    )
