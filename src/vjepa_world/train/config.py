"""Training configuration: YAML files with `model`, `data`, `optim` and `run` sections, plus
`--set section.key=value` overrides from the command line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import from_dict
from ..jepa import VJEPAConfig


@dataclass
class DataConfig:
    frame_step: int = 4  # take every k-th frame...
    fps: float | None = None  # ...or sample at this rate (overrides frame_step)
    clips_per_video: int = 1
    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.35)
    num_workers: int = 2


@dataclass
class OptimConfig:
    batch_size: int = 8  # clips per optimizer step, over all processes and accumulation steps
    grad_accum: int = 1
    steps: int = 1000
    lr: float = 5.25e-4
    start_lr: float = 1e-4
    final_lr: float = 1e-6
    warmup_steps: int = 100
    decay_steps: int = 0  # linear decay to final_lr over the last decay_steps (0: stay constant)
    weight_decay: float = 0.04
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = None
    ema: tuple[float, float] = (0.99925, 0.99925)  # target-encoder momentum, first -> last step


@dataclass
class RunConfig:
    seed: int = 0
    device: str = "auto"  # auto: the local CUDA device under torchrun, else cuda, else cpu
    precision: str = "float32"  # or "bfloat16" (autocast)
    activation_checkpointing: bool = False
    fsdp: bool = False  # shard parameters (large presets, several GPUs); otherwise DDP
    checkpoint_every: int = 100
    log_every: int = 1


@dataclass
class PretrainConfig:
    model: VJEPAConfig = field(default_factory=VJEPAConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {"model": VJEPAConfig, "data": DataConfig, "optim": OptimConfig, "run": RunConfig}


def parse_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """["optim.lr=1e-3", "model.preset=vit_small"] -> {"optim": {"lr": 0.001}, ...}; values are YAML."""
    nested: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in SECTIONS:
            raise ValueError(
                f"--set expects section.key=value with a section in {sorted(SECTIONS)}, got {pair!r}"
            )
        nested.setdefault(section, {})[name] = yaml.safe_load(value)
    return nested


def build_config(values: dict[str, Any] | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    values = {k: dict(v or {}) for k, v in (values or {}).items()}
    unknown = set(values) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown config sections {sorted(unknown)}: use {sorted(SECTIONS)}")
    for section, changes in parse_overrides(overrides or []).items():
        values.setdefault(section, {}).update(changes)
    sections = {}
    for name, cls in SECTIONS.items():
        fields = values.get(name, {})
        tuples = {f.name for f in dataclasses.fields(cls) if "tuple" in str(f.type)}
        fields = {k: tuple(v) if k in tuples and v is not None else v for k, v in fields.items()}
        sections[name] = from_dict(cls, fields)
    return PretrainConfig(**sections)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> PretrainConfig:
    """A YAML config file (or the defaults) with `--set` overrides applied."""
    values = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        values = yaml.safe_load(path.read_text()) or {}
    return build_config(values, overrides)
