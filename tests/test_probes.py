import itertools

import pytest
import torch
from transformers import VJEPA2Config, VJEPA2ForVideoClassification

from conftest import randomize_
from vjepa_world import EncoderConfig, VideoEncoder
from vjepa_world.eval.probes import (
    AttentiveProbe,
    LinearProbe,
    ProbeConfig,
    average_views,
    knn_scores,
    multi_layer_tokens,
    pool_regions,
    topk_accuracy,
)


def test_released_layout():
    probe = AttentiveProbe(ProbeConfig(dim=64, num_classes=3))
    keys = set(probe.state_dict())
    assert {
        "pooler.query_tokens",
        "pooler.cross_attention_block.xattn.q.weight",
        "pooler.cross_attention_block.xattn.kv.weight",
        "pooler.blocks.2.attn.qkv.weight",
        "linear.weight",
    } <= keys
    assert not any("xattn.proj" in k for k in keys) and not any("pooler.blocks.3." in k for k in keys)
    assert probe.pooler.blocks[0].norm1.eps == 1e-5
    assert probe(torch.randn(2, 10, 64)).shape == (2, 3)


def test_transformers_classifier_loads_faithfully(tmp_path):
    config = VJEPA2Config(
        patch_size=16,
        crop_size=32,
        frames_per_clip=2,
        hidden_size=64,
        num_attention_heads=4,
        num_hidden_layers=1,
        pred_num_hidden_layers=1,
        num_labels=5,
        num_pooler_layers=3,
    )
    theirs = randomize_(VJEPA2ForVideoClassification(config)).eval()
    theirs.save_pretrained(tmp_path)
    probe = AttentiveProbe.from_transformers(tmp_path).eval()
    assert (probe.config.num_heads, probe.config.norm_eps, probe.config.depth) == (4, 1e-6, 4)
    encoder = VideoEncoder.from_pretrained(tmp_path).eval()  # the vjepa2. prefix is understood
    video = torch.randn(2, 3, 2, 32, 32)
    with torch.no_grad():
        expected = theirs(video.transpose(1, 2)).logits
        ours = probe(encoder(video))
    assert (ours - expected).abs().max() < 1e-5


def test_released_probe_checkpoint(tmp_path):
    heads = [randomize_(AttentiveProbe(ProbeConfig(dim=64, num_classes=7))) for _ in range(2)]
    torch.save(
        {"classifiers": [{"module." + k: v for k, v in h.state_dict().items()} for h in heads], "epoch": 20},
        tmp_path / "probe.pt",
    )
    tokens = torch.randn(3, 12, 64)
    for index, head in enumerate(heads):
        loaded = AttentiveProbe.from_released(tmp_path / "probe.pt", index=index)
        torch.testing.assert_close(loaded(tokens), head(tokens))
    with pytest.raises(ValueError, match="index 2 is out of range"):
        AttentiveProbe.from_released(tmp_path / "probe.pt", index=2)
    torch.save({"encoder": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no 'classifiers'"):
        AttentiveProbe.from_released(tmp_path / "other.pt")


def separable(n=120, dim=16, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 5
    labels = torch.arange(n) % classes
    return centres[labels] + torch.randn(n, dim, generator=g), labels


def test_knn_and_linear_probe_separate_separable_features():
    x, y = separable()
    scores = knn_scores(x[:80], y[:80], x[80:], num_classes=4, k=5)
    assert topk_accuracy(scores, y[80:], 1) == 1.0
    probe = LinearProbe(16, 4)
    optimizer = torch.optim.Adam(probe.parameters(), lr=0.05)
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(probe(x[:80, None].expand(-1, 3, -1)), y[:80])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    probe.eval()
    assert topk_accuracy(probe(x[80:]), y[80:], 1) == 1.0


def test_multi_layer_tokens_and_view_averaging():
    encoder = VideoEncoder(
        EncoderConfig(dim=64, depth=3, num_heads=2, patch_size=8, image_size=32, num_frames=4)
    )
    video = torch.randn(2, 3, 4, 32, 32)
    tokens = multi_layer_tokens(encoder, video, [1, 2])
    assert tokens.shape == (2, 64, 64)
    torch.testing.assert_close(tokens[:, 32:], encoder(video))
    probe = AttentiveProbe(ProbeConfig(dim=64, num_classes=3, num_heads=4))
    views = [tokens, tokens[:, :32]]
    expected = (probe(views[0]).softmax(-1) + probe(views[1]).softmax(-1)) / 2
    torch.testing.assert_close(average_views(probe, views), expected)
    assert topk_accuracy(torch.tensor([[0.1, 0.5, 0.4]]), torch.tensor([2]), 2) == 1.0


def test_pool_regions_averages_each_step_over_a_coarse_grid():
    tokens = torch.randn(2, 2 * 2 * 4 * 4, 3, dtype=torch.float64)  # 2 layers x 2 steps x 4 x 4
    pooled = pool_regions(tokens, (2, 4, 4), 2)
    assert pooled.shape == (2, 2 * 2 * 2 * 2, 3)
    frames = tokens.view(2, 4, 4, 4, 3)  # (B, layer * step, h, w, D)
    for b, frame, (r, c) in itertools.product(range(2), range(4), itertools.product(range(2), range(2))):
        expected = frames[b, frame, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].mean(dim=(0, 1))
        torch.testing.assert_close(pooled[b, frame * 4 + r * 2 + c], expected)
    with pytest.raises(ValueError, match="regions dividing"):
        pool_regions(tokens, (2, 4, 4), 3)
    inside = AttentiveProbe(ProbeConfig(dim=3, num_classes=2, num_heads=1, grid=(2, 4, 4), regions=2))
    outside = AttentiveProbe(ProbeConfig(dim=3, num_classes=2, num_heads=1))
    outside.load_state_dict(inside.state_dict())
    torch.testing.assert_close(inside(tokens.float()), outside(pooled.float()))
    with pytest.raises(ValueError, match="need the token grid"):
        ProbeConfig(dim=3, num_classes=2, regions=2)


def test_positions_add_no_parameter_and_reach_time_order():
    """With `grid` the probe keeps the released keys (a released file loads exactly) and tells a
    sequence from its time reversal, which the released probe, seeing a set, cannot."""
    plain = AttentiveProbe(ProbeConfig(dim=32, num_classes=2, num_heads=2))
    placed = AttentiveProbe(ProbeConfig(dim=32, num_classes=2, num_heads=2, grid=(4, 2, 2), positions=True))
    assert set(plain.state_dict()) == set(placed.state_dict())
    placed.load_state_dict(randomize_(plain, std=0.3).state_dict())
    tokens = torch.randn(3, 16, 32)
    reversed_time = tokens.view(3, 4, 4, 32).flip(1).reshape(3, 16, 32)
    torch.testing.assert_close(plain(tokens), plain(reversed_time))
    assert (placed(tokens) - placed(reversed_time)).abs().max() > 1e-3  # plain: ~1e-7


def test_a_positional_probe_reads_the_direction_of_motion(tmp_path):
    """An object (one vector, plus noise) crosses a 1 x 4 strip over 4 steps, rightwards or
    leftwards, over noise: both directions give the same set of tokens, so only a probe that knows
    where and when each token is can tell them apart."""
    torch.manual_seed(0)
    dim, thing = 16, torch.randn(16)

    def clips(count):
        leftwards = torch.rand(count) < 0.5
        tokens = 0.5 * torch.randn(count, 4, 1, 4, dim)  # (clips, T', H', W', D)
        for t in range(4):
            column = torch.where(leftwards, 3 - t, t)
            tokens[torch.arange(count), t, 0, column] = thing + 0.3 * torch.randn(count, dim)
        return tokens.reshape(count, 16, dim), leftwards.long()

    scores = {}
    for grid in (None, (4, 1, 4)):
        config = ProbeConfig(dim=dim, num_classes=2, num_heads=2, depth=2, grid=grid, positions=bool(grid))
        probe = AttentiveProbe(config)
        optimizer = torch.optim.AdamW(probe.parameters(), lr=3e-3)
        for _ in range(200):
            tokens, labels = clips(32)
            loss = torch.nn.functional.cross_entropy(probe(tokens), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        tokens, labels = clips(256)
        with torch.no_grad():
            scores[grid] = topk_accuracy(probe(tokens), labels, 1)
    assert scores[None] < 0.7 and scores[(4, 1, 4)] > 0.9, scores
    torch.save({"classifiers": [probe.state_dict()], **probe.config.options()}, tmp_path / "p.pt")
    loaded = AttentiveProbe.from_released(tmp_path / "p.pt")
    assert loaded.config.grid == (4, 1, 4) and loaded.config.positions
    torch.testing.assert_close(loaded(tokens[:4]), probe(tokens[:4]))
