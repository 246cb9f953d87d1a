import pytest
import torch

from vjepa_world.masks import RELEASED_MASKS, FutureMask, MultiBlockMask, mask_from_dict

GRID = (4, 8, 8)  # T' x H' x W' = 256 tokens


def sample(spec, batch=6, seed=0, grid=GRID):
    return spec.sample(grid, batch, torch.Generator().manual_seed(seed))


def assert_valid(context, target, num_tokens):
    assert context.dtype == target.dtype == torch.int64
    for c, t in zip(context, target, strict=True):
        assert torch.all(c[1:] > c[:-1]) and torch.all(t[1:] > t[:-1])  # sorted, no repeats
        assert not set(c.tolist()) & set(t.tolist())  # disjoint
        assert c.min() >= 0 and t.max() < num_tokens


@pytest.mark.parametrize("spec", [*RELEASED_MASKS, FutureMask(), FutureMask(0.25, 0.9)], ids=lambda s: s.name)
def test_masks_are_disjoint_sorted_equal_length_and_seeded(spec):
    context, target = sample(spec)
    assert context.shape[0] == target.shape[0] == 6
    assert_valid(context, target, 256)
    again = sample(spec)
    assert torch.equal(context, again[0]) and torch.equal(target, again[1])
    assert not torch.equal(sample(spec, seed=1)[1], target)


@pytest.mark.parametrize(("blocks", "scale", "low", "high"), [(8, 0.15, 0.55, 0.8), (2, 0.70, 0.8, 0.97)])
def test_multiblock_ratio_and_tubes(blocks, scale, low, high):
    spec = MultiBlockMask(num_blocks=blocks, scale=scale)
    ratios = []
    for seed in range(20):
        _, target = sample(spec, batch=1, seed=seed)
        per_step = target[0].view(GRID[0], -1) % 64  # targets span the whole clip: same positions each step
        assert all(torch.equal(row, per_step[0]) for row in per_step)
        ratios.append(target.shape[1] / 256)
    # released: 8 x 0.15 covers ~70% of the frame, 2 x 0.70 ~90% (overlapping blocks)
    assert low < sum(ratios) / len(ratios) < high


def test_multiblock_block_size_follows_scale_and_aspect():
    spec = MultiBlockMask(num_blocks=1, scale=0.25)
    _, target = sample(spec, batch=1, grid=(1, 16, 16))
    rows, cols = target[0] // 16, target[0] % 16
    h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    assert h * w == target.shape[1] and 0.75 * 0.8 <= h / w <= 1.5 * 1.25 and abs(h * w - 64) <= 10


@pytest.mark.parametrize(("temporal", "ratio"), [(0.5, 0.75), (0.25, 0.75), (0.25, 0.9), (0.5, 0.3)])
def test_future_mask_ratios(temporal, ratio):
    spec = FutureMask(temporal_mask_ratio=temporal, mask_ratio=ratio)
    context, target = sample(spec)
    future, k = spec.counts(GRID)
    assert future == round(temporal * 4)
    assert target.shape[1] == future * 64 + (4 - future) * k
    assert context.shape[1] == (4 - future) * (64 - k)
    expected = max(ratio, future / 4)
    assert abs(target.shape[1] / 256 - expected) <= 4 / 256  # exact up to rounding k per step
    for t in target:  # every token of the last `future` steps is target
        assert set(range((4 - future) * 64, 256)) <= set(t.tolist())
    assert context.max() < (4 - future) * 64  # the context is only the past


def test_future_mask_needs_two_steps():
    with pytest.raises(ValueError, match="at least 2 tubelet steps"):
        sample(FutureMask(), grid=(1, 8, 8))


def test_mask_from_dict():
    assert mask_from_dict({"type": "future", "temporal_mask_ratio": 0.25}) == FutureMask(
        temporal_mask_ratio=0.25
    )
    assert mask_from_dict({"num_blocks": 2, "scale": 0.7, "aspect": [0.75, 1.5]}) == RELEASED_MASKS[1]
    with pytest.raises(ValueError, match="unknown mask type 'tube'"):
        mask_from_dict({"type": "tube"})
