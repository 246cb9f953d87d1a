import dataclasses

import pytest
import torch
import torch.nn.functional as F

from conftest import randomize_
from reference import reference_vjepa_loss
from vjepa_world import MaskedPredictor, PredictorConfig, VideoEncoder
from vjepa_world.jepa import VJEPAConfig, VJEPAModel
from vjepa_world.nn.regularizers import effective_rank
from vjepa_world.nn.sincos import sincos_embedding
from vjepa_world.nn.tokens import latest_same_position

CONFIG = {
    "preset": "vit_micro",
    "encoder_dim": 64,
    "predictor_dim": 32,
    "num_frames": 4,
    "mask_ratio": 0.75,
    "temporal_mask_ratio": 0.5,
}


def test_config_accepts_the_seed_api_keys():
    model = VJEPAModel(CONFIG)
    assert model.context_encoder.config.dim == 64 and model.predictor.config.dim == 32
    assert [s.name for s in model.mask_specs] == ["multiblock_8x0.15", "multiblock_2x0.7", "future_0.5"]
    wide = VJEPAModel(VJEPAConfig(preset="vit_micro", encoder_dim=128, predictor_dim=64))
    assert wide.context_encoder.config.num_heads == 4 and wide.predictor.config.num_heads == 2
    with pytest.raises(ValueError, match="head width 32"):
        VJEPAModel(preset="vit_micro", encoder_dim=48)
    with pytest.raises(TypeError):
        VJEPAModel({"preset": "vit_micro", "encoder_width": 64})


def test_loss_is_the_weighted_mean_of_l1_to_layer_normed_targets():
    model = VJEPAModel(
        {**CONFIG, "masks": [{"type": "multiblock", "weight": 1.0}, {"type": "future", "weight": 3.0}]}
    )
    randomize_(model.predictor)
    video = torch.randn(2, 3, 4, 32, 32)
    masks = model.sample_masks(model.grid(video), 2)
    loss, metrics = model(video, masks)
    targets = F.layer_norm(model.target_encoder(video), (64,))
    per_type = []
    for i, (context, target) in enumerate(masks):
        z = model.context_encoder(video, context_idx=context)
        predicted = model.predictor(z, context, target, mask_index=i, grid_hw=(4, 4))
        expected = torch.gather(targets, 1, target[..., None].expand(-1, -1, 64))
        per_type.append((predicted - expected).abs().mean())
    torch.testing.assert_close(loss, (per_type[0] + 3 * per_type[1]) / 4)
    torch.testing.assert_close(metrics["loss/future_0.5"], per_type[1].detach())
    l2, _ = VJEPAModel({**CONFIG, "loss": "l2"})(video)
    assert l2.item() > 0


def test_gradients_reach_context_encoder_and_predictor_only():
    model = VJEPAModel(CONFIG)
    loss, metrics = model(torch.randn(2, 3, 4, 32, 32))
    loss.backward()
    assert all(p.grad is None for p in model.target_encoder.parameters())
    assert model.context_encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.predictor.predictor_proj.weight.grad.abs().sum() > 0
    assert {"loss", "target_std", "target_rank", "pred_std/future_0.5"} <= set(metrics)
    assert all(torch.isfinite(v) for v in metrics.values())


def test_ema_update_math():
    model = VJEPAModel(CONFIG)
    randomize_(model.context_encoder)
    before = [p.clone().double() for p in model.target_encoder.parameters()]
    online = [p.clone().double() for p in model.context_encoder.parameters()]
    model.update_target(0.9)
    for b, o, after in zip(before, online, model.target_encoder.parameters(), strict=True):
        torch.testing.assert_close(after.double(), 0.9 * b + 0.1 * o, atol=1e-6, rtol=0)
    model.update_target(0.0)
    assert all(
        torch.equal(t, c)
        for t, c in zip(model.target_encoder.parameters(), model.context_encoder.parameters(), strict=True)
    )


def test_effective_rank_detects_collapse():
    collapsed = torch.randn(256, 1) * torch.randn(1, 64)
    assert effective_rank(collapsed) < 1.5
    assert effective_rank(torch.randn(256, 64)) > 40


def test_encode_and_save_use_the_target_encoder(tmp_path):
    model = VJEPAModel(CONFIG)
    randomize_(model.target_encoder)
    video = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(
        model.encode(video, pool="mean"), model.target_encoder.encode(video, pool="mean")
    )
    model.save_pretrained(tmp_path)
    loaded = VideoEncoder.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded(video), model.target_encoder(video))


@pytest.mark.parametrize(
    ("target", "weight", "samples", "pos_embed", "center", "copy_last"),
    [
        ("ema", 0.0, "tokens", False, False, False),
        ("ema", 0.2, "tokens", False, False, False),
        ("online", 0.2, "tokens", False, False, False),
        ("online", 0.0, "tokens", False, False, False),
        ("frozen", 0.0, "tokens", False, False, False),
        ("ema", 0.2, "clips", False, False, False),
        ("ema", 0.0, "tokens", True, False, False),
        ("frozen", 0.0, "tokens", True, True, False),
        ("ema", 0.2, "tokens", False, False, True),
    ],
)
def test_loss_and_gradients_match_an_independent_float64_reference(
    target, weight, samples, pos_embed, center, copy_last
):
    """The whole training step on fixed weights, clip and masks: loss, and the gradient of every
    context-encoder and predictor parameter, against tests/reference.py (written from the paper),
    with the EMA, online or frozen target, with and without SIGReg (on tokens or on clip means),
    with and without the predictor's sine-cosine positions, the per-clip centring and copy-last."""
    masks = [
        {"type": "multiblock", "weight": 1.0},
        {"type": "multiblock", "num_blocks": 2, "scale": 0.7, "weight": 1.0},
        {"type": "future", "weight": 2.0},
    ]
    model = VJEPAModel(
        {
            **CONFIG,
            "masks": masks,
            "target": target,
            "sigreg": weight,
            "sigreg_samples": samples,
            "predictor_pos_embed": pos_embed,
            "center_per_clip": center,
            "predictor_copy_last": copy_last,
        }
    )
    for module in (model.context_encoder, model.target_encoder, model.predictor):
        randomize_(module)  # the target differs from the context encoder, as after EMA steps
    video = torch.randn(2, 3, 4, 32, 32)
    masks = model.sample_masks(model.grid(video), 2, torch.Generator().manual_seed(1))
    loss, metrics = model(video, masks, torch.Generator().manual_seed(2))
    loss.backward()
    ours = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    expected = reference_vjepa_loss(model, video, masks, torch.Generator().manual_seed(2))
    expected.backward()
    theirs = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    torch.testing.assert_close(loss.double(), expected, atol=1e-5, rtol=1e-5)
    assert ("loss/sigreg" in metrics) == bool(weight)
    unused = {f"predictor.mask_tokens.{i}" for i in range(3, 10)}  # three mask types use tokens 0-2
    trained = {n for n, _ in model.named_parameters() if not n.startswith("target_encoder")} - unused
    assert set(ours) == set(theirs) == trained
    for name in trained:
        torch.testing.assert_close(ours[name].double(), theirs[name].double(), atol=1e-5, rtol=1e-5, msg=name)


def test_a_rope_only_predictor_starts_position_blind_and_sincos_positions_cure_it():
    """At initialisation V-JEPA 2's predictor gives every masked position nearly the same output
    (one mask token, near-uniform attention: RoPE alone barely tells them apart); with
    `pos_embed` the outputs differ by position from the first step."""
    config = PredictorConfig(encoder_dim=32, dim=48, depth=2, num_heads=2, patch_size=8, image_size=32)
    context = torch.randn(2, 32, 32)
    context_idx, target_idx = torch.arange(32).expand(2, -1), torch.arange(32, 64).expand(2, -1)
    spread = {}
    for pos_embed in (False, True):
        torch.manual_seed(0)
        predictor = MaskedPredictor(dataclasses.replace(config, pos_embed=pos_embed))
        with torch.no_grad():
            out = predictor(context, context_idx, target_idx, grid_hw=(4, 4))  # (2, 32, 32)
        spread[pos_embed] = (out - out.mean(1, keepdim=True)).abs().mean() / out.abs().mean()
    assert spread[False] < 0.01 and spread[True] > 0.1, spread


def test_sincos_embedding_closed_form():
    t, h, w = torch.tensor([0, 3]), torch.tensor([0, 1]), torch.tensor([0, 2])
    embedding = sincos_embedding(t, h, w, dim=16)  # 2 frequencies per axis, 4 zero dims
    assert embedding.shape == (2, 16)
    torch.testing.assert_close(embedding[0], torch.tensor([0.0, 0, 1, 1] * 3 + [0] * 4))
    omega = torch.tensor([1.0, 0.01])
    for axis, pos in enumerate((3.0, 1.0, 2.0)):
        segment = embedding[1, 4 * axis : 4 * axis + 4]
        torch.testing.assert_close(segment, torch.cat([(pos * omega).sin(), (pos * omega).cos()]))
    with pytest.raises(ValueError, match="dim >= 6"):
        sincos_embedding(t, h, w, dim=4)


@pytest.mark.parametrize("center", [False, True])
def test_centring_per_clip_makes_a_shared_per_clip_output_worthless(center):
    """With `center_per_clip` a vector added to every predicted token of a clip changes neither the
    loss nor its gradient elsewhere: the one-vector-per-clip answer earns nothing. Without it, it
    changes the loss."""
    model = VJEPAModel({**CONFIG, "center_per_clip": center})
    video = torch.randn(2, 3, 4, 32, 32)
    masks = model.sample_masks(model.grid(video), 2, torch.Generator().manual_seed(1))
    shift = torch.randn(2, 1, model.predictor.config.encoder_dim)  # one vector per clip
    plain, _ = model(video, masks)
    handle = model.predictor.register_forward_hook(lambda module, inputs, output: output + shift)
    shifted, _ = model(video, masks)
    handle.remove()
    assert torch.isclose(plain, shifted, atol=1e-6).item() == center


def test_predictor_learns_to_copy_a_static_context_into_its_targets():
    """Future masking on a static scene: the targets (the last two of four steps) repeat the context
    (the first two) at the same spatial positions. Predicting the mean scores ~0.8 (E|N(0, 1)|);
    the predictor must find each target's context token through its RoPE positions alone."""
    torch.manual_seed(0)
    config = PredictorConfig(encoder_dim=32, dim=64, depth=2, num_heads=2, patch_size=8, image_size=32)
    predictor = MaskedPredictor(config)
    optimizer = torch.optim.AdamW(predictor.parameters(), lr=1e-3, weight_decay=0.0)
    per_step = 16  # a 4 x 4 grid
    context = torch.arange(2 * per_step).expand(8, -1)
    target = torch.arange(2 * per_step, 4 * per_step).expand(8, -1)
    losses = []
    for _ in range(400):
        scene = torch.randn(8, 1, per_step, 32).expand(-1, 4, -1, -1).flatten(1, 2)  # (8, 64, 32) static
        predicted = predictor(scene[:, : 2 * per_step], context, target, grid_hw=(4, 4))
        loss = (predicted - scene[:, 2 * per_step :]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert first > 0.75 and last < 0.3, (first, last)


def test_latest_same_position_finds_the_last_earlier_token_at_each_place():
    """A 3-step grid of 2 positions: each query takes the context token at its position in the latest
    strictly earlier step; a position never seen before gets zeros."""
    tokens = torch.tensor([[[10.0], [11.0], [12.0]]])  # at (t, s) = (0, 0), (0, 1), (1, 0)
    context_idx = torch.tensor([[0, 1, 2]])
    queries = torch.tensor([[3, 4, 5, 2, 0]])  # (1, 1), (2, 0), (2, 1), (1, 0), (0, 0)
    found = latest_same_position(tokens, context_idx, queries, per_step=2)
    torch.testing.assert_close(found.flatten(), torch.tensor([11.0, 12.0, 11.0, 10.0, 0.0]))


def test_a_copy_last_predictor_starts_from_the_last_observed_tokens_and_round_trips(tmp_path):
    """With its output projection zeroed, a `copy_last` predictor returns exactly the layer-normed
    context token at the same place in the latest earlier step (step 0 where step 1 hid the place);
    the flag survives save and load. Never-seen places (zeros) are the hand test's above."""
    config = PredictorConfig(
        encoder_dim=32, dim=32, depth=1, num_heads=2, patch_size=8, image_size=32, copy_last=True
    )
    predictor = MaskedPredictor(config)
    torch.nn.init.zeros_(predictor.predictor_proj.weight)
    torch.nn.init.zeros_(predictor.predictor_proj.bias)
    context = torch.randn(2, 30, 32)  # steps 0 and 1 of a 4 x 4 grid, the last two places of step 1 hidden
    context_idx, target_idx = torch.arange(30).expand(2, -1), torch.arange(30, 64).expand(2, -1)
    predicted = predictor(context, context_idx, target_idx, grid_hw=(4, 4))  # (2, 34, 32)
    normed = F.layer_norm(context, (32,))
    torch.testing.assert_close(predicted[:, :2], normed[:, 14:16])  # (1, 14), (1, 15) <- step 0
    step_1 = torch.cat([normed[:, 16:30], normed[:, 14:16]], dim=1)  # its hidden places from step 0
    torch.testing.assert_close(predicted[:, 2:18], step_1)
    torch.testing.assert_close(predicted[:, 18:], predicted[:, 2:18])  # step 3 also copies step 1
    predictor.save_pretrained(tmp_path)
    assert MaskedPredictor.from_pretrained(tmp_path).config.copy_last


def test_a_same_place_predictor_reads_only_the_token_at_each_targets_place():
    """Each target comes from its same-place token in the latest earlier step, its own position and
    the blocks with attention to itself only (attention then reduces to `proj(v)`): equal to that
    recomputation, blind to every other context token, and different per horizon."""
    config = PredictorConfig(
        encoder_dim=32, dim=32, depth=2, num_heads=2, patch_size=8, image_size=32, same_place=True
    )
    predictor = MaskedPredictor(config).double()
    context = torch.randn(2, 32, 32, dtype=torch.float64)  # steps 0 and 1 of a 4 x 4 grid
    context_idx, target_idx = torch.arange(32).expand(2, -1), torch.arange(32, 64).expand(2, -1)
    predicted = predictor(context, context_idx, target_idx, mask_index=0, grid_hw=(4, 4))  # (2, 32, 32)

    t, h, w = target_idx // 16, target_idx % 16 // 4, target_idx % 4
    x = predictor.predictor_embed(context[:, 16:32].repeat(1, 2, 1)) + predictor.mask_tokens[0]
    x = x + sincos_embedding(t, h, w, 32).double()
    for block in predictor.predictor_blocks:
        v = F.linear(block.norm1(x), block.attn.qkv.weight[64:], block.attn.qkv.bias[64:])
        x = x + block.attn.proj(v)
        x = x + block.mlp(block.norm2(x))
    torch.testing.assert_close(predicted, predictor.predictor_proj(predictor.predictor_norm(x)))

    moved = context.clone()
    moved[:, :16] += 1.0  # step 0: never the latest at any place
    moved[:, 16] += 1.0  # step 1, place 0: the source of targets 0 and 16 only
    changed = (predictor(moved, context_idx, target_idx, mask_index=0, grid_hw=(4, 4)) - predicted).abs()
    others = torch.cat([changed[:, 1:16], changed[:, 17:]], dim=1)
    assert changed[:, [0, 16]].amax(-1).min() > 1e-3 and others.max() == 0
    assert (predicted[:, :16] - predicted[:, 16:]).norm(dim=-1).min() > 1e-3  # the horizon is read


def test_a_same_place_predictor_is_refused_without_future_masks_only():
    """Multiblock masks hide a place at every step, leaving no earlier token to predict from."""
    with pytest.raises(ValueError, match="future masks only"):
        VJEPAModel({**CONFIG, "predictor_same_place": True})  # the released masks + a future one
    future = [{"type": "future", "temporal_mask_ratio": 0.5, "mask_ratio": 0.5}]
    model = VJEPAModel({**CONFIG, "predictor_same_place": True, "masks": future})
    assert model.predictor.config.same_place
