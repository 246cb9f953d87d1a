"""Future prediction: the pretrained model as a world model, scored per horizon.

Observe the first k tubelet steps of a clip (the context encoder sees only their tokens, as in
pretraining), predict the latents of every later step with the predictor, and compare with the
target encoder's layer-normed latents of the full clip (the training targets), per horizon:
L1 and cosine distance. Two baselines that use the same observation: copying the last observed
step, and the mean of the observed steps (per spatial position), both from the target encoder
run on the observed steps alone: its full-clip tokens of those steps have attended to the future.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.datasets import VideoDataset, collate_clips
from ..files import write_json
from ..horizon_errors import HorizonErrors, copy_last
from ..nn import MaskedPredictor, VideoEncoder
from ..nn.vit import as_video
from ..viz import plot_errors_by_horizon


def observed_mean(observed: Tensor, horizons: int) -> Tensor:
    """observed `(B, k, S, D)` -> the mean over observed steps, per position, `(B, horizons, S, D)`."""
    return observed.mean(dim=1, keepdim=True).expand(-1, horizons, -1, -1)


def future_mask_index(predictor: MaskedPredictor) -> int:
    """The index of the future mask the predictor was trained with (pretraining with
    `model.temporal_mask_ratio` > 0 adds it); an error when it learned none or does not say."""
    types = getattr(getattr(predictor, "config", None), "mask_types", None)
    if types is None:
        raise ValueError(
            "the predictor does not record the mask types it was trained with (a released or older "
            "checkpoint): pass the mask index to use (--mask-index)"
        )
    futures = [i for i, name in enumerate(types) if name.startswith("future")]
    if not futures:
        trained = ", ".join(f"{i}: {name}" for i, name in enumerate(types))
        raise ValueError(
            f"the predictor was trained without a future mask ({trained}): pass one of those indices "
            "(--mask-index) or pretrain with model.temporal_mask_ratio > 0"
        )
    return futures[0]


@torch.no_grad()
def predict_future(
    context_encoder: VideoEncoder,
    target_encoder: VideoEncoder,
    predictor: MaskedPredictor,
    video: Tensor,
    context_steps: int,
    mask_index: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Predicted latents of the unobserved steps `(B, T' - k, S, D)`; the target encoder's
    layer-normed latents of the observed steps, encoded without the rest `(B, k, S, D)` (what a
    baseline may use); and the truth, its latents of the unobserved steps in the whole clip
    `(B, T' - k, S, D)`. `mask_index` None: the future mask the predictor was trained with."""
    mask_index = future_mask_index(predictor) if mask_index is None else mask_index
    c = context_encoder.config
    video = as_video(video, c.patch_size, c.tubelet_size)
    steps, height, width = context_encoder.grid(video)
    if not 0 < context_steps < steps:
        raise ValueError(f"context_steps must be in [1, {steps - 1}] for a clip of {steps} tubelet steps")
    per_step, batch = height * width, video.shape[0]
    context_idx = torch.arange(context_steps * per_step, device=video.device).expand(batch, -1)
    target_idx = torch.arange(context_steps * per_step, steps * per_step, device=video.device).expand(
        batch, -1
    )
    context = context_encoder(video, context_idx=context_idx)
    predicted = predictor(context, context_idx, target_idx, mask_index=mask_index, grid_hw=(height, width))
    normed = lambda tokens: F.layer_norm(tokens, tokens.shape[-1:])
    observed = normed(target_encoder(video, context_idx=context_idx))
    truth = normed(target_encoder(video))[:, context_steps * per_step :]
    future = (batch, steps - context_steps, per_step, -1)
    return (
        predicted.reshape(future),
        observed.reshape(batch, context_steps, per_step, -1),
        truth.reshape(future),
    )


@torch.no_grad()
def evaluate_future(
    context_encoder: VideoEncoder,
    target_encoder: VideoEncoder,
    predictor: MaskedPredictor,
    batches,
    context_steps: int,
    mask_index: int | None = None,
) -> HorizonErrors:
    """Mean per-horizon errors of the predictor and the two baselines over batches of clips."""
    mask_index = future_mask_index(predictor) if mask_index is None else mask_index
    errors = HorizonErrors()
    for video in batches:
        predicted, observed, target = predict_future(
            context_encoder, target_encoder, predictor, video, context_steps, mask_index
        )
        horizons = target.shape[1]
        errors.add("predictor", predicted, target)
        errors.add("copy last", copy_last(observed, horizons), target)
        errors.add("observed mean", observed_mean(observed, horizons), target)
        errors.clips += video.shape[0]
    return errors.mean()


def run_future_evaluation(
    encoder: VideoEncoder,
    predictor: MaskedPredictor,
    data,
    out: str | Path,
    *,
    frames: int = 16,
    frame_step: int = 4,
    clips: int = 1,
    size: int | None = None,
    context_steps: int | None = None,
    mask_index: int | None = None,
    batch_size: int = 8,
    workers: int = 2,
    progress: bool = True,
    target_encoder: VideoEncoder | None = None,
) -> dict:
    """`vjepa-world evaluate-future`: score `predictor` on clips of the videos of `data` (a folder or
    CSV; `frames` frames every `frame_step`, `clips` per video, `size` px, default the encoder's),
    observing the first `context_steps` tubelet steps (default half), against the tokens of
    `target_encoder` (default `encoder`: the EMA target it was saved from). Writes `summary.json`,
    `l1_by_horizon.png` and `cosine_by_horizon.png` into `out` and returns the summary."""
    mask_index = future_mask_index(predictor) if mask_index is None else mask_index
    predictor.check_mask_index(mask_index)  # before any video is read
    steps = frames // encoder.config.tubelet_size
    context_steps = context_steps or steps // 2
    dataset = VideoDataset(
        data,
        num_frames=frames,
        frame_step=frame_step,
        clips_per_video=clips,
        image_size=size or encoder.config.image_size,
        train=False,
    )
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_clips, num_workers=workers)
    loaded = tqdm(loader, desc="evaluate-future", unit="batch", disable=not progress)
    errors = evaluate_future(
        encoder,
        target_encoder or encoder,
        predictor,
        (batch["video"] for batch in loaded),
        context_steps,
        mask_index,
    )
    out = Path(out)
    horizons = list(range(1, steps - context_steps + 1))
    summary = {
        "clips": errors.clips,
        "context_steps": context_steps,
        "mask_index": mask_index,
        "horizons": horizons,
        "l1": errors.l1,
        "cosine_distance": errors.cosine,
        "settings": {
            "data": str(data),
            "frames": frames,
            "frame_step": frame_step,
            "clips": clips,
            "size": size,
            "batch_size": batch_size,
        },
    }
    write_json(out / "summary.json", summary)
    plot_errors_by_horizon(horizons, errors.l1, out / "l1_by_horizon.png", ylabel="L1 error")
    plot_errors_by_horizon(horizons, errors.cosine, out / "cosine_by_horizon.png", ylabel="1 - cosine")
    return summary
