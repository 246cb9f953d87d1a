import pytest
import torch

from conftest import randomize_
from reference import reference_encoder
from vjepa_world import EncoderConfig, MaskedPredictor, PredictorConfig, VideoEncoder

SMALL = EncoderConfig(dim=64, depth=2, num_heads=2, patch_size=8, image_size=32, num_frames=4)


@pytest.fixture
def encoder():
    return randomize_(VideoEncoder(SMALL)).eval()


def test_non_square_input_matches_float64_reference(encoder):
    video = torch.randn(1, 3, 4, 16, 24)  # 2 x 2 x 3 grid, not the config's 32 px square
    out = encoder(video)
    assert out.shape == (1, 12, 64)
    torch.testing.assert_close(out[0].double(), reference_encoder(encoder, video[0]), atol=1e-5, rtol=0)


def test_context_indices_encode_a_subset_at_its_grid_positions(encoder):
    video = torch.randn(2, 3, 4, 24, 16)
    context = torch.tensor([[0, 3, 5, 8, 11], [1, 2, 6, 7, 10]])
    out = encoder(video, context_idx=context)
    assert out.shape == (2, 5, 64)
    for b in range(2):
        expected = reference_encoder(encoder, video[b], context[b])
        torch.testing.assert_close(out[b].double(), expected, atol=1e-5, rtol=0)


def test_images_and_single_frames_fill_one_tubelet(encoder):
    image = torch.randn(2, 3, 32, 32)
    tubelet = image.unsqueeze(2).repeat(1, 1, 2, 1, 1)
    torch.testing.assert_close(encoder(image), encoder(tubelet))
    torch.testing.assert_close(encoder(image.unsqueeze(2)), encoder(tubelet))


def test_out_layers_return_normalised_tokens_of_chosen_blocks(encoder):
    video = torch.randn(1, 3, 4, 32, 32)
    first, last = encoder(video, out_layers=[0, 1])
    torch.testing.assert_close(last, encoder(video))
    assert first.shape == last.shape and not torch.allclose(first, last)
    configured = VideoEncoder(EncoderConfig(**{**SMALL.__dict__, "out_layers": [0]}))
    configured.load_state_dict(encoder.state_dict())
    torch.testing.assert_close(configured(video)[0], first)


def test_encode_pooling(encoder):
    video = torch.randn(2, 3, 4, 32, 32)
    tokens = encoder.encode(video)
    assert tokens.shape == (2, 32, 64)
    torch.testing.assert_close(encoder.encode(video, pool="mean"), tokens.mean(1))
    per_step = encoder.encode(video, pool="frame")
    assert per_step.shape == (2, 2, 64)
    torch.testing.assert_close(per_step[:, 1], tokens[:, 16:].mean(1))
    with pytest.raises(ValueError, match="pool must be"):
        encoder.encode(video, pool="max")


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 3, 4, 30, 32), "not divisible by the patch size 8"),
        ((1, 3, 4, 32, 20), "not divisible by the patch size 8"),
        ((1, 3, 3, 32, 32), "not a multiple of the tubelet size 2"),
        ((1, 4, 32, 32, 3), "3 colour channels"),
        ((1, 1, 4, 32, 32), "3 colour channels"),
        ((3, 32, 32), r"\(B, 3, T, H, W\)"),
        ((1, 1, 3, 4, 32, 32), r"\(B, 3, T, H, W\)"),
    ],
)
def test_bad_inputs_raise_one_line_value_errors(encoder, shape, message):
    with pytest.raises(ValueError, match=message) as info:
        encoder(torch.randn(shape))
    assert "\n" not in str(info.value)


def test_integer_video_is_rejected(encoder):
    with pytest.raises(ValueError, match="float tensor normalised"):
        encoder(torch.zeros(1, 3, 4, 32, 32, dtype=torch.uint8))


def test_bad_context_indices(encoder):
    video = torch.randn(2, 3, 4, 32, 32)
    with pytest.raises(ValueError, match="outside"):
        encoder(video, context_idx=torch.tensor([[0, 40], [1, 2]]))
    with pytest.raises(ValueError, match=r"shape \(B=2, n\)"):
        encoder(video, context_idx=torch.tensor([0, 1]))


def test_predictor_sorting_is_invisible_to_the_caller():
    predictor = randomize_(
        MaskedPredictor(
            PredictorConfig(encoder_dim=64, dim=32, depth=2, num_heads=1, patch_size=8, image_size=32)
        )
    ).eval()
    context = torch.randn(1, 4, 64)
    context_idx, target_idx = torch.tensor([[9, 2, 30, 17]]), torch.tensor([[5, 1, 22]])
    out = predictor(context, context_idx, target_idx)
    assert out.shape == (1, 3, 64)
    shuffled = predictor(context[:, [2, 0, 3, 1]], context_idx[:, [2, 0, 3, 1]], target_idx[:, [1, 2, 0]])
    torch.testing.assert_close(shuffled, out[:, [1, 2, 0]], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="context_tokens must be"):
        predictor(torch.randn(1, 4, 32), context_idx, target_idx)


def test_factorized_attention_regrouping_equals_masked_attention():
    factorized = VideoEncoder(EncoderConfig(**{**SMALL.__dict__, "attention": "factorized", "depth": 3}))
    randomize_(factorized).eval()
    video = torch.randn(2, 3, 4, 32, 32)
    everything = torch.arange(32).repeat(2, 1)
    torch.testing.assert_close(
        factorized(video), factorized(video, context_idx=everything), atol=1e-5, rtol=0
    )


def test_factorized_blocks_attend_within_a_step_then_across_time():
    config = EncoderConfig(**{**SMALL.__dict__, "attention": "factorized", "depth": 1})
    space_only = randomize_(VideoEncoder(config)).eval()
    video = torch.randn(1, 3, 4, 32, 32)
    changed = video.clone()
    changed[:, :, 2:] += 1.0  # only the second tubelet step changes
    a, b = space_only(video), space_only(changed)
    assert torch.equal(a[:, :16], b[:, :16]) and not torch.allclose(a[:, 16:], b[:, 16:])
    two = VideoEncoder(EncoderConfig(**{**config.__dict__, "depth": 2}))
    two.load_state_dict(randomize_(VideoEncoder(EncoderConfig(**{**SMALL.__dict__}))).state_dict())
    a, b = two(video), two(changed)
    assert not torch.allclose(a[:, :16], b[:, :16])  # the time block carries step 2 into step 1
    changed_place = video.clone()
    changed_place[..., :8, :8] += 1.0  # only spatial position (0, 0) of every step
    space_then_time = two(changed_place) - two(video)
    assert space_then_time[:, 1:16].abs().max() > 0  # space block spreads it within a step


def test_gradient_checkpointing_gives_the_same_gradients(encoder):
    video = torch.randn(1, 3, 4, 32, 32)
    encoder(video).square().sum().backward()
    plain = [p.grad.clone() for p in encoder.parameters()]
    encoder.zero_grad()
    encoder.gradient_checkpointing = True
    encoder(video).square().sum().backward()
    for a, p in zip(plain, encoder.parameters(), strict=True):
        torch.testing.assert_close(p.grad, a)


def test_unknown_attention_kind():
    with pytest.raises(ValueError, match="attention must be 'joint' or 'factorized'"):
        EncoderConfig(attention="sparse")
