import pytest
import torch

from reference import reference_positions, reference_rope
from vjepa_world.nn.rope import (
    apply_rope,
    full_grid_rope_tables,
    grid_positions,
    rope_segment_dim,
    rope_tables,
)


@pytest.mark.parametrize(("head_dim", "segment"), [(64, 20), (80, 26), (32, 10), (16, 4)])
def test_segment_sizes_leave_the_documented_tail(head_dim, segment):
    assert rope_segment_dim(head_dim) == segment
    cos, sin = rope_tables(torch.tensor([5]), torch.tensor([3]), torch.tensor([7]), head_dim)
    assert torch.all(cos[0, 3 * segment :] == 1) and torch.all(sin[0, 3 * segment :] == 0)


def test_grid_positions_on_a_non_square_grid():
    t, h, w = grid_positions(torch.arange(2 * 3 * 5), (3, 5))
    expected = [reference_positions(n, 3, 5) for n in range(30)]
    assert list(zip(t.tolist(), h.tolist(), w.tolist(), strict=True)) == expected


@pytest.mark.parametrize("head_dim", [16, 32, 64, 80])
def test_rope_matches_float64_recomputation_of_the_quirk(head_dim):
    indices = torch.tensor([0, 4, 7, 13, 29])
    x = torch.randn(len(indices), head_dim, dtype=torch.float64)
    t, h, w = grid_positions(indices, (3, 5))
    cos, sin = rope_tables(t, h, w, head_dim, torch.float64)
    expected = reference_rope(x, [reference_positions(int(n), 3, 5) for n in indices])
    torch.testing.assert_close(apply_rope(x, cos, sin), expected, atol=1e-6, rtol=0)


def test_quirk_is_not_the_interleaved_layout():
    # element k uses frequency k mod s/2: elements 0 and s/2 of a segment share a frequency
    cos, _ = rope_tables(torch.tensor([3]), None, None, 64)
    assert cos[0, 0] == cos[0, 10] and cos[0, 1] != cos[0, 0]


def test_time_only_rotation_leaves_spatial_segments_alone():
    x = torch.randn(4, 64)
    cos, sin = rope_tables(torch.arange(4), None, None, 64)
    out = apply_rope(x, cos, sin)
    assert torch.equal(out[:, 20:], x[:, 20:])
    assert not torch.allclose(out[1:, :20], x[1:, :20])


def test_full_grid_tables_are_the_raster_tables_and_serve_training_after_inference():
    grid, head_dim = (2, 3, 4), 48
    with torch.inference_mode():  # the first call, as a policy's
        cos, sin = full_grid_rope_tables(grid, head_dim, torch.float32, torch.device("cpu"))
    expected = rope_tables(*grid_positions(torch.arange(24), grid[1:]), head_dim)
    torch.testing.assert_close((cos, sin), expected, rtol=0, atol=0)
    again = full_grid_rope_tables(grid, head_dim, torch.float32, torch.device("cpu"))
    assert again[0] is cos  # computed once
    x = torch.randn(24, head_dim, requires_grad=True)
    apply_rope(x, *again).sum().backward()  # an inference tensor here would raise
    assert x.grad is not None and not cos.is_inference()


def test_exporting_an_encoder_leaves_no_traced_table_in_the_cache():
    """torch.export traces with fake tensors: a table cached while tracing would break every later
    eager call on that grid."""
    from vjepa_world import VideoEncoder, get_preset

    torch.manual_seed(0)
    encoder = VideoEncoder(get_preset("vit_micro").encoder).eval()
    video = torch.randn(1, 3, 2, 32, 48)  # a grid no other test uses: (1, 2, 3) tokens
    with torch.no_grad():
        torch.export.export(encoder, (video,))
        cos, _ = full_grid_rope_tables((1, 2, 3), encoder.config.head_dim, torch.float32, torch.device("cpu"))
        assert type(cos) is torch.Tensor
        expected = encoder(video)
        assert type(expected) is torch.Tensor and torch.isfinite(expected).all()
