"""One test over every registered preset (timm style)."""

import pytest
import torch

from vjepa_world import PRESETS, MaskedPredictor, VideoEncoder, get_preset
from vjepa_world.config import mlp_hidden_dim


def expected_encoder_params(c) -> int:
    hidden = mlp_hidden_dim(c.dim, c.mlp_ratio)
    patch = c.dim * 3 * c.tubelet_size * c.patch_size**2 + c.dim
    block = (
        (3 * c.dim * c.dim + 3 * c.dim)
        + (c.dim * c.dim + c.dim)
        + 2 * c.dim * hidden
        + hidden
        + c.dim
        + 4 * c.dim
    )
    return patch + c.depth * block + 2 * c.dim


def expected_predictor_params(c) -> int:
    hidden = mlp_hidden_dim(c.dim, c.mlp_ratio)
    block = 4 * c.dim * c.dim + 4 * c.dim + 2 * c.dim * hidden + hidden + c.dim + 4 * c.dim
    embed_and_proj = 2 * c.encoder_dim * c.dim + c.dim + c.encoder_dim
    return embed_and_proj + c.num_mask_tokens * c.dim + c.depth * block + 2 * c.dim


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset(name):
    preset = get_preset(name)
    big = preset.encoder.dim >= 1024
    with torch.device("meta" if big else "cpu"):
        encoder, predictor = VideoEncoder(preset.encoder), MaskedPredictor(preset.predictor)
    assert count(encoder) == expected_encoder_params(preset.encoder)
    assert count(predictor) == expected_predictor_params(preset.predictor)
    assert predictor.config.encoder_dim == encoder.config.dim
    if preset.params_millions is not None:  # the released table in the facts page
        assert round(count(encoder) / 1e6) == preset.params_millions
    if not big:
        c = preset.encoder
        video = torch.randn(1, 3, c.tubelet_size * 2, c.patch_size * 2, c.patch_size * 3)
        assert encoder(video).shape == (1, 2 * 2 * 3, c.dim)


def test_giant_is_the_released_22_head_layout():
    c = get_preset("vit_giant").encoder
    assert (c.num_heads, c.head_dim, mlp_hidden_dim(c.dim, c.mlp_ratio)) == (22, 64, 6144)
    assert get_preset("vit_giant_384").encoder.image_size == 384


def test_presets_are_copies():
    get_preset("vit_micro").encoder.depth = 99
    assert get_preset("vit_micro").encoder.depth == 2


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="vit_large"):
        get_preset("vit_enormous")


def test_every_preset_registry_and_lookup_lives_in_config():
    """Model, action-conditioned and planner presets: defined, and looked up, in config.py only."""
    from pathlib import Path

    from vjepa_world import config, planning

    source = Path(config.__file__).parent
    for path in source.rglob("*.py"):
        text = path.read_text()
        for name in (
            "PRESETS: dict",
            "AC_PRESETS: dict",
            "PLANNER_PRESETS = {",
            "def preset_config(",
            "def planner_config(",
        ):
            assert name not in text or path.name == "config.py", f"{name} in {path}"
    assert (
        planning.PLANNER_PRESETS is config.PLANNER_PRESETS
        and planning.planner_config is config.planner_config
    )
    with pytest.raises(
        ValueError, match="unknown action-conditioned preset 'ac_huge': choose one of ac_tiny"
    ):
        config.preset_config("ac_huge", "ac_predictor")
    with pytest.raises(ValueError, match="unknown planner preset 'fastest'"):
        config.planner_config("fastest")
    assert config.planner_config("fast") is not config.planner_config("fast")  # fresh copies
