"""The skeleton every training loop shares, pretraining and `train-wm` alike.

`TrainingLoop` owns what is the same for any model: the run folder (refusing to overwrite a run
without `resume`), the batch split over processes and accumulation steps, the optimiser, the
checkpoint (atomic save, exact resume), the data stream position, and the step loop itself
(learning rate, metrics averaged over processes, `log.jsonl` and TensorBoard, progress bar,
checkpoints) up to the end of the run (the model, the training curves and `summary.json`). What one
step computes stays with each algorithm (`pretrain.py`, `world_model.py`), as DreamerV3 keeps its
agent apart from the runner that drives it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..checkpoints import read_checkpoint_file
from ..data.datasets import EpochSampler
from ..files import atomic_torch_save, write_json
from ..viz import plot_training_curves
from . import distributed
from .logs import MetricsLog
from .schedules import set_learning_rate

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


def param_groups(
    modules: list[nn.Module], weight_decay: float, lr_scales: list[float] | None = None
) -> list[dict]:
    """AdamW groups as released: weight decay on weight matrices (and mask tokens), none on biases
    and other 1-D parameters (norms). `lr_scales` (one per module, default 1) multiply the
    scheduled lr of that module's parameters (`set_learning_rate` reads a group's `lr_scale`)."""
    groups: dict[tuple[float, float], list] = {(weight_decay, 1.0): [], (0.0, 1.0): []}
    for module, scale in zip(modules, lr_scales or [1.0] * len(modules), strict=True):
        for name, p in module.named_parameters():
            if p.requires_grad:
                decay = 0.0 if name.endswith("bias") or p.ndim == 1 else weight_decay
                groups.setdefault((decay, scale), []).append(p)
    return [
        {"params": params, "weight_decay": decay, "lr_scale": scale}
        for (decay, scale), params in groups.items()
        if params or scale == 1.0
    ]


class TrainingLoop:
    """One training run in `out` of a config with `optim` (OptimConfig) and `run` (RunConfig)
    sections. Construct it first (it refuses a bad run before any work), then `start` it once the
    process group is up."""

    def __init__(
        self,
        out: str | Path,
        config: Any,
        *,
        name: str,
        resume: bool = False,
        progress: bool = True,
        stop_after: int | None = None,
    ):
        self.out, self.config, self.name = Path(out), config, name
        self.optim, self.run = config.optim, config.run
        self.checkpoint = self.out / CHECKPOINT
        if self.checkpoint.exists() and not resume:
            raise ValueError(
                f"{self.out} already holds a run ({CHECKPOINT}): pass --resume to continue it or use "
                "another --out"
            )
        if not isinstance(self.optim.steps, int) or self.optim.steps < 1:
            raise ValueError(f"optim.steps must be a positive number of steps, got {self.optim.steps!r}")
        if self.run.precision not in ("float32", "bfloat16"):
            raise ValueError(f"run.precision must be float32 or bfloat16, got {self.run.precision!r}")
        self.resume, self.progress, self.stop_after = resume, progress, stop_after
        self.step = 0

    def start(self, process: distributed.Process) -> dict | None:
        """Check the batch split for this process group and return the checkpoint to resume from
        (None for a fresh run); `per_rank` is then the clips or windows each process takes per
        micro-batch, and `step` the first step to run."""
        self.process = process
        optim = self.optim
        self.per_rank, remainder = divmod(optim.batch_size, process.world_size * optim.grad_accum)
        if remainder or self.per_rank == 0:
            raise ValueError(
                f"optim.batch_size {optim.batch_size} must be a multiple of processes x grad_accum "
                f"({process.world_size} x {optim.grad_accum})"
            )
        if not (self.resume and self.checkpoint.exists()):
            return None
        state = read_checkpoint_file(self.checkpoint)
        self.step = state["step"]
        log.info("resuming %s at step %d", self.out, self.step)
        return state

    def optimizer(
        self, modules: list[nn.Module], lr_scales: list[float] | None = None
    ) -> torch.optim.Optimizer:
        """AdamW over the trainable parameters of `modules` (`param_groups`), as `optim` says."""
        groups = param_groups(modules, self.optim.weight_decay, lr_scales)
        return torch.optim.AdamW(groups, betas=self.optim.betas, eps=self.optim.eps)

    def sampler(self, size: int) -> EpochSampler:
        """This process's data keys, continuing where the checkpointed step left the stream."""
        process, position = self.process, self.step * self.optim.grad_accum * self.per_rank
        return EpochSampler(
            size, self.run.seed, process.rank, process.world_size, start=position, batch_size=self.per_rank
        )

    def autocast(self):
        return distributed.autocast(self.process, self.run.precision)

    def accumulate(self, net: nn.Module, forward: Callable[[int], tuple[Tensor, dict]]) -> dict[str, float]:
        """The backward passes of one optimiser step: `forward(micro)` -> (loss, metrics) for each of
        the `optim.grad_accum` micro-batches, under autocast, gradients all-reduced on the last one
        only; returns the metrics averaged over the micro-batches."""
        count, sums = self.optim.grad_accum, {}
        for micro in range(count):
            with distributed.no_sync(net, skip=micro < count - 1), self.autocast():
                loss, metrics = forward(micro)
            (loss / count).backward()
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + float(value) / count
        return sums

    def update(self, optimizer, parameters: list[nn.Parameter], metrics: dict) -> None:
        """The optimiser step after the backward passes: gradient clipping (the norm before it goes
        into `metrics["grad_norm"]`) when `optim.grad_clip` is set, then step and zero the grads."""
        if self.optim.grad_clip:
            metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(parameters, self.optim.grad_clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def save(self, **state) -> None:
        """An atomic checkpoint of `state` with the step and the config, from the main process."""
        if self.process.is_main:
            state |= {"step": self.step, "config": json.dumps(self.config.to_dict())}
            atomic_torch_save(state, self.checkpoint)

    def loop(
        self,
        optimizer,
        train_step: Callable[[int], dict],
        save: Callable[[], None],
        *,
        rate: str,
        shown: tuple[str, ...] = ("loss",),
        watch: Callable[[int, dict[str, float]], None] | None = None,
    ) -> dict[str, float]:
        """Run the steps left (to `optim.steps`, or `stop_after`): set the learning rate, call
        `train_step(step)` for this process's metrics, average them over processes, log them every
        `run.log_every` steps and call `save()` every `run.checkpoint_every` and at the end. `rate`
        names the throughput metric; `shown` the metrics on the progress bar; `watch(step, metrics)`,
        when given, sees every step's averaged metrics (e.g. to flag a collapse). Returns the last
        step's metrics."""
        optim, run, process = self.optim, self.run, self.process
        if process.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        metrics_log = MetricsLog(self.out, enabled=process.is_main, start_step=self.step)
        end = optim.steps if self.stop_after is None else min(optim.steps, self.stop_after)
        bar = tqdm(
            total=optim.steps,
            initial=self.step,
            desc=self.name,
            unit="step",
            disable=not (self.progress and process.is_main),
        )
        self.started = time.perf_counter()
        values: dict[str, float] = {}
        while self.step < end:
            tick = time.perf_counter()
            lr = set_learning_rate(optimizer, optim, self.step)
            metrics = train_step(self.step)
            self.step += 1
            values = distributed.mean({k: float(v) for k, v in metrics.items()}, process)
            values["lr"] = lr
            values[rate] = optim.batch_size / (time.perf_counter() - tick)
            if self.step % run.log_every == 0 or self.step == end:
                metrics_log.write(self.step, values)
            if watch is not None:
                watch(self.step, values)
            bar.set_postfix({key: f"{values[key]:.4f}" for key in shown})
            bar.update()
            if self.step % run.checkpoint_every == 0 or self.step == end:
                save()
            distributed.barrier(process)
        bar.close()
        metrics_log.close()
        return values

    def summary(self, values: dict[str, float], **details) -> dict:
        """What every run reports (steps, whether it finished, final loss, seconds, processes),
        around the algorithm's `details`."""
        return {
            "steps": self.step,
            "finished": self.step >= self.optim.steps,
            "final_loss": values.get("loss"),
            **details,
            "seconds": round(time.perf_counter() - self.started, 2),
            "processes": self.process.world_size,
        }

    def finish(self, summary: dict, model: nn.Module) -> dict:
        """End the run: when it finished, the main process writes `model` (`save_pretrained`), the
        training curves and `summary.json`; then every process leaves the process group."""
        if summary["finished"] and self.process.is_main:
            model.save_pretrained(self.out)
            plot_training_curves(self.out, self.out / "training_curves.png")
            write_json(self.out / "summary.json", summary)
        distributed.teardown()
        return summary
