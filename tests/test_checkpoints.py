import os
from pathlib import Path

import pytest
import torch

from conftest import randomize_
from vjepa_world import EncoderConfig, MaskedPredictor, PredictorConfig, VideoEncoder
from vjepa_world.files import atomic_torch_save

ENCODER = EncoderConfig(dim=64, depth=2, num_heads=2, patch_size=8, image_size=32, num_frames=4)
PREDICTOR = PredictorConfig(
    encoder_dim=64, dim=32, depth=2, num_heads=1, patch_size=8, image_size=32, num_frames=4
)


def official(state, prefix="module.backbone."):
    return {prefix + k: v.clone() for k, v in state.items()}


@pytest.fixture
def networks():
    encoder, target = randomize_(VideoEncoder(ENCODER)).eval(), randomize_(VideoEncoder(ENCODER)).eval()
    return encoder, target, randomize_(MaskedPredictor(PREDICTOR)).eval()


@pytest.fixture
def official_file(tmp_path, networks):
    """An official-layout training checkpoint: three networks, prefixes, a stray pos_embed, extras."""
    encoder, target, predictor = networks
    checkpoint = {
        "encoder": official(encoder.state_dict()) | {"module.backbone.pos_embed": torch.zeros(1, 8, 64)},
        "predictor": official(predictor.state_dict()),
        "target_encoder": official(target.state_dict())
        | {"module.backbone.pos_embed": torch.zeros(1, 8, 64)},
        "epoch": 3,
        "opt": {"state": {}, "param_groups": [{"lr": 1e-4}]},
    }
    path = tmp_path / "vitl.pt"
    torch.save(checkpoint, path)
    return path


def test_official_file_loads_target_encoder_by_default(official_file, networks):
    encoder, target, predictor = networks
    video = torch.randn(2, 3, 4, 32, 32)
    loaded = VideoEncoder.from_pretrained(official_file, num_heads=2).eval()
    torch.testing.assert_close(loaded(video), target(video), atol=0, rtol=0)
    online = VideoEncoder.from_pretrained(official_file, key="encoder", num_heads=2).eval()
    torch.testing.assert_close(online(video), encoder(video), atol=0, rtol=0)
    assert (loaded.config.patch_size, loaded.config.depth, loaded.config.mlp_ratio) == (8, 2, 4.0)

    pred = MaskedPredictor.from_pretrained(official_file, num_heads=1, image_size=32).eval()
    tokens = target(video)
    context, tgt = torch.tensor([[0, 5, 9], [2, 3, 30]]), torch.tensor([[1, 2], [7, 31]])
    args = (torch.gather(tokens, 1, context[..., None].expand(-1, -1, 64)), context, tgt)
    torch.testing.assert_close(pred(*args), predictor(*args), atol=1e-6, rtol=0)


def test_released_widths_infer_heads_and_mlp_ratio(tmp_path):
    """A 1408-wide file is ViT-g: 22 heads, MLP 48/11; the 384-wide predictor has 12 heads."""
    giant = VideoEncoder(EncoderConfig(dim=1408, depth=1, num_heads=22, mlp_ratio=48 / 11))
    predictor = MaskedPredictor(PredictorConfig(encoder_dim=1408, depth=1))
    torch.save(
        {"target_encoder": official(giant.state_dict()), "predictor": official(predictor.state_dict())},
        tmp_path / "g.pt",
    )
    loaded = VideoEncoder.from_pretrained(tmp_path / "g.pt")
    assert (loaded.config.num_heads, loaded.config.mlp_ratio, loaded.config.depth) == (22, 48 / 11, 1)
    pred = MaskedPredictor.from_pretrained(tmp_path / "g.pt")
    assert (pred.config.num_heads, pred.config.image_size, pred.config.num_mask_tokens) == (12, 256, 10)


def test_unreleased_width_asks_for_the_head_count(official_file):
    with pytest.raises(ValueError, match=r"cannot infer the head count of a 64-wide encoder.*num_heads="):
        VideoEncoder.from_pretrained(official_file)


def test_wrong_shapes_name_the_offending_keys(official_file):
    with pytest.raises(
        ValueError,
        match=r"wrong shapes: patch_embed\.proj\.weight \(64, 3, 2, 8, 8\) vs "
        r"\(192, 3, 2, 8, 8\)",
    ) as info:
        VideoEncoder.from_pretrained(official_file, preset="vit_tiny")
    assert "missing keys: blocks.2." in str(info.value) and "\n" not in str(info.value)


def test_truncated_state_names_missing_keys(tmp_path, networks):
    state = official(networks[1].state_dict())
    del state["module.backbone.blocks.1.mlp.fc2.weight"], state["module.backbone.norm.bias"]
    torch.save({"target_encoder": state}, tmp_path / "cut.pt")
    with pytest.raises(ValueError, match=r"missing keys: blocks\.1\.mlp\.fc2\.weight, norm\.bias"):
        VideoEncoder.from_pretrained(tmp_path / "cut.pt", num_heads=2)


def test_truncated_file_is_a_clear_error(official_file, tmp_path):
    data = official_file.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        VideoEncoder.from_pretrained(cut, num_heads=2)


class Payload:
    def __reduce__(self):
        return (os.mkdir, ("/tmp/vjepa_world_pwned",))


def test_pickled_arbitrary_object_is_refused(tmp_path, networks):
    path = tmp_path / "evil.pt"
    torch.save({"target_encoder": official(networks[1].state_dict()), "x": Payload()}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        VideoEncoder.from_pretrained(path, num_heads=2)
    assert not os.path.exists("/tmp/vjepa_world_pwned")


def test_missing_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoEncoder.from_pretrained(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        VideoEncoder.from_pretrained(tmp_path)


def test_own_directory_round_trip_keeps_the_exact_config(tmp_path, networks):
    encoder = VideoEncoder(EncoderConfig(**{**ENCODER.__dict__, "out_layers": [0, 1]}))
    encoder.load_state_dict(networks[0].state_dict())
    encoder.save_pretrained(tmp_path / "enc")
    again = VideoEncoder.from_pretrained(tmp_path / "enc")
    assert again.config == encoder.config
    with pytest.raises(ValueError, match="holds no predictor"):
        MaskedPredictor.from_pretrained(tmp_path / "enc")
    networks[2].save_pretrained(tmp_path / "pred")
    assert MaskedPredictor.from_pretrained(tmp_path / "pred").config == networks[2].config


def test_saves_are_atomic(tmp_path):
    path = tmp_path / "state.pt"
    atomic_torch_save({"step": 1}, path)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"step": 2, "bad": Unsaveable()}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_one_encoder_fingerprint_keys_every_cache():
    """One function, and it sees every byte: two encoders that differ only by two values swapped far
    past the first 4 KB of a tensor (same sum: what the probe cache's old key hashed) do not match."""
    from pathlib import Path

    from vjepa_world.checkpoints import encoder_fingerprint

    source = Path(__file__).resolve().parents[1] / "src"
    definitions = [p for p in source.rglob("*.py") if "def encoder_fingerprint(" in p.read_text()]
    assert [p.name for p in definitions] == ["checkpoints.py"]
    one = randomize_(VideoEncoder(ENCODER))
    two = VideoEncoder(ENCODER)
    two.load_state_dict(one.state_dict())
    assert encoder_fingerprint(one) == encoder_fingerprint(two)
    weight = two.blocks[1].mlp.fc1.weight  # (256, 64) float32: 64 KB
    with torch.no_grad():
        weight[-1, -1], weight[-1, -2] = weight[-1, -2].clone(), weight[-1, -1].clone()
    assert float(weight.detach().sum()) == pytest.approx(float(one.blocks[1].mlp.fc1.weight.detach().sum()))
    assert encoder_fingerprint(one) != encoder_fingerprint(two)
    assert encoder_fingerprint(one, torch.nn.Linear(2, 2)) != encoder_fingerprint(one)  # the projector counts


def test_a_stored_config_survives_preset_and_contradictions_are_refused(tmp_path):
    """preset= on a directory fills in nothing the directory says: its stored config (here extra
    output layers and the predictor's mask types) is kept; a preset or keyword that contradicts it
    (another image size, head count) is a one-line error, not a silent replacement."""
    from vjepa_world.config import get_preset
    from vjepa_world.jepa import VJEPAModel

    model = VJEPAModel({"preset": "vit_micro", "temporal_mask_ratio": 0.5})
    model.target_encoder.config.out_layers = [0, 1]
    model.save_pretrained(tmp_path / "run")
    encoder = VideoEncoder.from_pretrained(tmp_path / "run", preset="vit_micro")
    assert encoder.config == model.target_encoder.config and encoder.config.out_layers == [0, 1]
    predictor = MaskedPredictor.from_pretrained(tmp_path / "run", preset="vit_micro", num_heads=1)
    assert predictor.config.mask_types == ["multiblock_8x0.15", "multiblock_2x0.7", "future_0.5"]
    assert predictor.config != get_preset("vit_micro").predictor  # what preset= used to return
    with pytest.raises(
        ValueError, match=r"config stored in .* differs from preset 'vit_tiny': dim 192 \(stored: 64\)"
    ):
        VideoEncoder.from_pretrained(tmp_path / "run", preset="vit_tiny")
    with pytest.raises(ValueError, match=r"differs from keywords: num_heads 4 \(stored: 2\); drop them"):
        VideoEncoder.from_pretrained(tmp_path / "run", num_heads=4)
    bigger = get_preset("vit_micro").encoder
    bigger.image_size = 64
    VideoEncoder(bigger).save_pretrained(tmp_path / "big")
    with pytest.raises(ValueError, match=r"image_size 32 \(stored: 64\)"):
        VideoEncoder.from_pretrained(tmp_path / "big", preset="vit_micro")


def test_save_pretrained_returns_the_directory_everywhere(tmp_path):
    import inspect

    from vjepa_world import ActionConditionedPredictor, VJEPAModel, WorldModel
    from vjepa_world.config import AC_PRESETS

    encoder = VideoEncoder(ENCODER)
    saved = {
        "encoder": encoder.save_pretrained(tmp_path / "encoder"),
        "predictor": MaskedPredictor(PREDICTOR).save_pretrained(tmp_path / "predictor"),
        "ac": ActionConditionedPredictor(AC_PRESETS["ac_tiny"]).save_pretrained(str(tmp_path / "ac")),
        "jepa": VJEPAModel({"preset": "vit_micro"}).save_pretrained(tmp_path / "jepa"),
        "world_model": WorldModel(encoder, action_dim=2, dim=32, depth=1, num_heads=2).save_pretrained(
            tmp_path / "world_model"
        ),
    }
    for name, path in saved.items():
        assert path == tmp_path / name and (path / "config.json").is_file(), name
    for cls in (VideoEncoder, MaskedPredictor, ActionConditionedPredictor, VJEPAModel, WorldModel):
        assert inspect.signature(cls.save_pretrained).return_annotation in ("Path", Path), cls
