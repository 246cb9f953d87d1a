"""V-JEPA pretraining loop: one process, or one per device under `torchrun --nproc_per_node N`.

Everything random is a function of (seed, step) or (seed, data key): masks come from a generator
seeded by the step, clips and augmentations from their data key, and the data stream position is
`step x clips per step`. A checkpoint (weights, optimizer, step) therefore resumes a killed run
with exactly the losses an uninterrupted run would have had.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoints import atomic_torch_save, atomic_write, read_checkpoint_file
from ..data.datasets import EpochSampler, VideoDataset, collate_clips
from ..jepa import VJEPAModel
from ..masks import Masks
from ..viz import plot_training_curves
from . import distributed
from .config import PretrainConfig
from .logs import MetricsLog
from .schedules import linear, set_learning_rate

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


def param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """AdamW groups as released: weight decay on weight matrices (and mask tokens), none on biases
    and other 1-D parameters (norms)."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if p.requires_grad:
                (no_decay if name.endswith("bias") or p.ndim == 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def check_run(out: Path, resume: bool, precision: str) -> Path:
    """The run's checkpoint path, after refusing to overwrite a run without --resume and unknown
    precisions (shared by pretraining and world-model training)."""
    checkpoint = out / CHECKPOINT
    if checkpoint.exists() and not resume:
        raise ValueError(
            f"{out} already holds a run ({CHECKPOINT}): pass --resume to continue it or use another --out"
        )
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"run.precision must be float32 or bfloat16, got {precision!r}")
    return checkpoint


def step_generator(seed: int, step: int, micro: int) -> torch.Generator:
    """The mask generator of one micro-batch: a hash of (seed, step, micro), the same on every rank."""
    state = np.random.SeedSequence([seed, step, micro]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def rank_slice(masks: list[Masks], rank: int, per_rank: int) -> list[Masks]:
    """This process's rows of masks sampled for the global batch."""
    rows = slice(rank * per_rank, (rank + 1) * per_rank)
    return [(context[rows], target[rows]) for context, target in masks]


def save_state(
    path: Path, model, optimizer, step: int, config: PretrainConfig, bad_files: int, process, sharded
):
    """Atomic training checkpoint, written by the main process (gathered from all under FSDP)."""
    model_state, optimizer_state = distributed.full_state(model, optimizer, sharded)
    if process.is_main:
        state = {
            "model": model_state,
            "optimizer": optimizer_state,
            "step": step,
            "bad_files": bad_files,
            "config": json.dumps(config.to_dict()),
        }
        atomic_torch_save(state, path)


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
    optim, run = config.optim, config.run
    process = distributed.setup(run.device)
    out = Path(out)
    checkpoint = check_run(out, resume, run.precision)
    per_rank, remainder = divmod(optim.batch_size, process.world_size * optim.grad_accum)
    if remainder or per_rank == 0:
        raise ValueError(
            f"optim.batch_size {optim.batch_size} must be a multiple of processes x grad_accum "
            f"({process.world_size} x {optim.grad_accum})"
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
    step, bad_files, state = 0, 0, None
    if resume and checkpoint.exists():
        state = read_checkpoint_file(checkpoint)
        model.load_state_dict(state["model"])  # full weights on every rank, before any sharding
        step, bad_files = state["step"], state["bad_files"]
        log.info("resuming %s at step %d", out, step)
    model.to(process.device)
    for module in (model.context_encoder, model.predictor):
        module.gradient_checkpointing = run.activation_checkpointing
    sharded = run.fsdp and process.world_size > 1
    net = distributed.wrap(model, [model.context_encoder, model.predictor], process, run.fsdp)
    optimizer = torch.optim.AdamW(  # after wrapping: FSDP replaces the parameters with shards
        param_groups([model.context_encoder, model.predictor], optim.weight_decay),
        betas=optim.betas,
        eps=optim.eps,
    )
    if state is not None:
        distributed.load_optimizer_state(model, optimizer, state["optimizer"], sharded)

    sampler = EpochSampler(
        len(dataset),
        run.seed,
        process.rank,
        process.world_size,
        start=step * optim.grad_accum * per_rank,
        batch_size=per_rank,
    )
    loader = DataLoader(
        dataset,
        batch_size=per_rank,
        sampler=sampler,
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
    autocast = distributed.autocast(process, run.precision)
    if process.is_main:
        out.mkdir(parents=True, exist_ok=True)
    metrics_log = MetricsLog(out, enabled=process.is_main, start_step=step)
    end = optim.steps if stop_after is None else min(optim.steps, stop_after)
    bar = tqdm(
        total=optim.steps,
        initial=step,
        desc="pretrain",
        unit="step",
        disable=not (progress and process.is_main),
    )
    started = time.perf_counter()
    values: dict[str, float] = {}
    while step < end:
        tick = time.perf_counter()
        lr = set_learning_rate(optimizer, optim, step)
        sums: dict[str, float] = {}
        for micro in range(optim.grad_accum):
            batch = next(batches)
            video = batch["video"].to(process.device, non_blocking=True)
            masks = model.sample_masks(
                grid, per_rank * process.world_size, step_generator(run.seed, step, micro)
            )
            last = micro == optim.grad_accum - 1
            with distributed.no_sync(net, skip=not last), autocast:
                loss, metrics = net(video, rank_slice(masks, process.rank, per_rank))
            (loss / optim.grad_accum).backward()
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + float(value) / optim.grad_accum
            bad_files += batch["bad_files"]
        if optim.grad_clip:
            sums["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(trainable, optim.grad_clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.update_target(linear(step, optim.steps, *optim.ema))
        step += 1

        values = distributed.mean(sums, process)
        values["lr"] = lr
        values["data/bad_files"] = distributed.total(bad_files, process)
        values["clips_per_second"] = optim.batch_size / (time.perf_counter() - tick)
        if step % run.log_every == 0 or step == end:
            metrics_log.write(step, values)
        bar.set_postfix(loss=f"{values['loss']:.4f}", clips_s=f"{values['clips_per_second']:.1f}")
        bar.update()
        if step % run.checkpoint_every == 0 or step == end:
            save_state(checkpoint, model, optimizer, step, config, bad_files, process, sharded)
        distributed.barrier(process)
    bar.close()
    metrics_log.close()
    summary = {
        "steps": step,
        "finished": step >= optim.steps,
        "final_loss": values.get("loss"),
        "bad_files": bad_files,
        "seconds": round(time.perf_counter() - started, 2),
        "processes": process.world_size,
    }
    if summary["finished"]:
        if sharded:  # gathered on the main process only (a collective: every rank calls)
            weights = distributed.full_state(model, optimizer, sharded)[0]
            model = VJEPAModel(config.model)
            if process.is_main:
                model.load_state_dict(weights)
        if process.is_main:
            model.save_pretrained(out)
            plot_training_curves(out, out / "training_curves.png")
            atomic_write(
                out / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n")
            )
    distributed.teardown()
    return summary
