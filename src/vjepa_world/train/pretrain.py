"""V-JEPA pretraining loop: one process, or one per device under `torchrun --nproc_per_node N`.

Everything random is a function of (seed, step) or (seed, data key): masks come from a generator
seeded by the step, clips and augmentations from their data key, and the data stream position is
`step x clips per step`. A checkpoint (weights, optimizer, step) therefore resumes a killed run
with exactly the losses an uninterrupted run would have had.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.datasets import VideoDataset, collate_clips
from ..files import read_log
from ..jepa import VJEPAModel
from ..masks import Masks
from . import distributed
from .config import PretrainConfig, refuse_inert_keys
from .loop import CHECKPOINT, TrainingLoop, param_groups
from .schedules import linear

log = logging.getLogger(__name__)
__all__ = ["CHECKPOINT", "param_groups", "pretrain", "rank_slice", "step_generator"]


def step_generator(seed: int, step: int, micro: int) -> torch.Generator:
    """The mask generator of one micro-batch: a hash of (seed, step, micro), the same on every rank."""
    state = np.random.SeedSequence([seed, step, micro]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def rank_slice(masks: list[Masks], rank: int, per_rank: int) -> list[Masks]:
    """This process's rows of masks sampled for the global batch."""
    rows = slice(rank * per_rank, (rank + 1) * per_rank)
    return [(context[rows], target[rows]) for context, target in masks]


def pretrain(
    config: PretrainConfig,
    data,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    model: VJEPAModel | None = None,
) -> dict:
    """Pretrain `config.model` on the videos of `data` (folder, CSV or list), writing into `out`:
    `checkpoint.pt` (every `run.checkpoint_every` steps and at the end), `log.jsonl`, `tensorboard/`,
    and at the end the target encoder + predictor (`save_pretrained`) and `summary.json`.
    `stop_after` ends the run early after that many steps (as a kill would, but cleanly). `model`
    trains that VJEPAModel in place (built with `config.model`) instead of a new one."""
    refuse_inert_keys(config)
    optim, run = config.optim, config.run
    process = distributed.setup(run.device)
    loop = TrainingLoop(out, config, name="pretrain", resume=resume, progress=progress, stop_after=stop_after)
    state = loop.start(process)
    per_rank = loop.per_rank

    if config.model.sigreg and config.model.sigreg_samples == "clips" and per_rank < 2:
        raise ValueError(
            f"model.sigreg_samples=clips needs at least 2 clips per process for SIGReg, got {per_rank}: "
            "raise optim.batch_size or use sigreg_samples=tokens"
        )
    if optim.predictor_lr_scale <= 0:
        raise ValueError(f"optim.predictor_lr_scale must be > 0, got {optim.predictor_lr_scale}")
    if config.model.target == "ema" and optim.ema is None:
        raise ValueError(
            "optim.ema (the EMA target's momentum, first -> last step) is needed by model.target=ema"
        )
    torch.manual_seed(run.seed)
    model = VJEPAModel(config.model) if model is None else model
    encoder_config = model.context_encoder.config
    dataset = VideoDataset(
        data,
        num_frames=encoder_config.num_frames,
        frame_step=config.data.frame_step,
        fps=config.data.fps,
        clips_per_video=config.data.clips_per_video,
        image_size=encoder_config.image_size,
        seed=run.seed,
        crop_scale=config.data.crop_scale,
        crop_ratio=config.data.crop_ratio,
    )
    dataset[0]  # fail here, in one clear line, if no file at all can be decoded
    bad_files = 0
    if state is not None:
        model.load_state_dict(state["model"])  # full weights on every rank, before any sharding
        bad_files = state["bad_files"]
    model.to(process.device)
    for module in (model.context_encoder, model.predictor):
        module.gradient_checkpointing = run.activation_checkpointing
    sharded = run.fsdp and process.world_size > 1
    net = distributed.wrap(model, [model.context_encoder, model.predictor], process, run.fsdp)
    optimizer = loop.optimizer(  # after FSDP made its shards
        [model.context_encoder, model.predictor], lr_scales=[1.0, optim.predictor_lr_scale]
    )
    if state is not None:
        distributed.load_optimizer_state(model, optimizer, state["optimizer"], sharded)

    loader = DataLoader(
        dataset,
        batch_size=per_rank,
        sampler=loop.sampler(len(dataset)),
        num_workers=config.data.num_workers,
        collate_fn=collate_clips,
        persistent_workers=config.data.num_workers > 0,
        pin_memory=process.device.type == "cuda",
    )
    batches = iter(loader)
    grid = model.grid(
        torch.empty(1, 3, encoder_config.num_frames, encoder_config.image_size, encoder_config.image_size)
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    encoder_parameters = [p for p in model.context_encoder.parameters() if p.requires_grad]

    def train_step(step: int) -> dict[str, float]:
        """One optimiser step over `optim.grad_accum` micro-batches, then the target update (EMA, or
        a copy of the context encoder for an online target)."""

        def forward(micro: int):
            nonlocal bad_files
            batch = next(batches)
            bad_files += batch["bad_files"]
            video = batch["video"].to(process.device, non_blocking=True)
            generator = step_generator(run.seed, step, micro)  # masks, then SIGReg's directions
            masks = model.sample_masks(grid, per_rank * process.world_size, generator)
            return net(video, rank_slice(masks, process.rank, per_rank), generator)

        metrics = loop.accumulate(net, forward)
        if step < optim.encoder_delay:  # no gradient, so AdamW leaves the encoder (and its moments) alone
            for p in encoder_parameters:
                p.grad = None
        loop.update(optimizer, trainable, metrics)
        model.update_target(0.0 if optim.ema is None else linear(step, optim.steps, *optim.ema))
        return metrics | {"data/bad_files": distributed.total(bad_files, process)}  # the same on every rank

    def save() -> None:  # under FSDP a collective: every rank gathers its shards
        weights, optimizer_state = distributed.full_state(model, optimizer, sharded)
        loop.save(model=weights, optimizer=optimizer_state, bad_files=bad_files)

    # the first step whose target tokens collapsed (a resumed run keeps the one its log holds)
    collapse_step = next(
        (row["step"] for row in read_log(out) if row["step"] <= loop.step and row.get("collapsed", 0) > 0.5),
        None,
    )

    def watch(step: int, values: dict[str, float]) -> None:
        nonlocal collapse_step
        if values.get("collapsed", 0.0) > 0.5 and collapse_step is None:
            collapse_step = step
            log.warning(
                "step %d: the target tokens collapsed (effective rank %.1f)", step, values["target_rank"]
            )

    shown = ("loss", "clips_per_second")
    values = loop.loop(optimizer, train_step, save, rate="clips_per_second", shown=shown, watch=watch)
    summary = loop.summary(values, collapse_step=collapse_step, bad_files=bad_files)
    if summary["finished"] and sharded:  # gathered on the main process (a collective: every rank calls)
        weights = distributed.full_state(model, optimizer, sharded)[0]
        model = VJEPAModel(config.model)
        if process.is_main:
            model.load_state_dict(weights)
    return loop.finish(summary, model)
