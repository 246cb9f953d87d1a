"""VJEPAModel: the V-JEPA self-supervised objective (context encoder, predictor, EMA target).

One training forward: the target encoder (an exponential moving average of the context encoder,
no gradient) encodes the full clip and its tokens are layer-normed without affine parameters; for
each mask type the context encoder sees only the context tokens, the predictor fills in the target
tokens, and the L1 (or L2) distance to the targets is averaged, then weighted over mask types.

Anti-collapse option (LeJEPA, arXiv 2511.08544): `sigreg` > 0 adds that weight times SIGReg of
the context encoder's output (every token of every clip a sample, or with `sigreg_samples="clips"`
each clip's mean token), pushing it toward an isotropic Gaussian. With `target="online"` there is
no EMA copy: the targets are the context encoder's own tokens of the full clip, with gradient, and
SIGReg alone keeps them from collapsing. With `target="frozen"` the target encoder stays at its
initialisation (BYOL's fixed random target, arXiv 2006.07733: targets that cannot move cannot
collapse, nor drop what is hard to predict); the context encoder is then the trained one, saved and
evaluated.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import EncoderConfig, PredictorConfig, get_preset
from .masks import RELEASED_MASKS, FutureMask, Grid, Masks, MaskSpec, mask_from_dict
from .nn import MaskedPredictor, VideoEncoder
from .nn.regularizers import collapsed, effective_rank, sigreg
from .nn.tokens import gather_tokens
from .nn.vit import as_video


@dataclass
class VJEPAConfig:
    """A preset, optionally resized, and the objective.

    `encoder_dim` / `predictor_dim` change a preset's widths keeping its head width; `masks` lists
    mask specs (`{"type": "multiblock" | "future", ..., "weight": w}`). Left empty, the masks are the
    released multiblock pair, plus a future mask (`temporal_mask_ratio`, `mask_ratio`) when
    `temporal_mask_ratio` > 0.
    """

    preset: str = "vit_tiny"
    encoder_dim: int | None = None
    encoder_depth: int | None = None
    predictor_dim: int | None = None
    predictor_depth: int | None = None
    num_frames: int | None = None
    image_size: int | None = None
    patch_size: int | None = None
    attention: str = "joint"
    mask_ratio: float = 0.75
    temporal_mask_ratio: float = 0.0
    masks: list[dict[str, Any]] = field(default_factory=list)
    loss: str = "l1"
    sigreg: float = 0.0  # weight of SIGReg on the context encoder's output (0: off)
    # what SIGReg takes as one sample: every context token ("tokens"), or each clip's mean context
    # token ("clips": one embedding per view, as LeJEPA; a clip's tokens are not independent draws)
    sigreg_samples: str = "tokens"
    # "ema": EMA target encoder, no gradient; "online": the context encoder itself; "frozen": the
    # target encoder kept at its initialisation
    target: str = "ema"
    # fixed sine-cosine positions on the predictor's tokens (nn/sincos.py): its mask tokens then
    # differ by position from the first step; V-JEPA 2's predictor has RoPE only (False)
    predictor_pos_embed: bool = False
    # the predictor adds to each target the context token at the same place one step earlier or
    # more (nn/predictor.py `copy_last`), so its error starts at copy-last's and is about motion
    predictor_copy_last: bool = False
    # the predictor reads each target's same-place context token only (nn/predictor.py `same_place`)
    predictor_same_place: bool = False
    # score each predicted token's deviation from the clip's mean prediction against the target
    # token's deviation from the clip's mean target: a predictor that emits one vector per clip (the
    # summary every masked token shares) then lowers nothing, only where-and-when detail does
    center_per_clip: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {self.loss!r}")
        if self.target not in ("ema", "online", "frozen"):
            raise ValueError(f"target must be 'ema', 'online' or 'frozen', got {self.target!r}")
        if self.sigreg < 0:
            raise ValueError(f"sigreg is a loss weight and must be >= 0, got {self.sigreg}")
        if self.sigreg_samples not in ("tokens", "clips"):
            raise ValueError(f"sigreg_samples must be 'tokens' or 'clips', got {self.sigreg_samples!r}")
        if self.predictor_same_place and not all(isinstance(m, FutureMask) for m in self.mask_specs()):
            raise ValueError(
                "predictor_same_place predicts each target from the same place in an earlier observed step, "
                "which only future masks leave: set masks to future masks only"
            )

    def model_configs(self) -> tuple[EncoderConfig, PredictorConfig]:
        preset = get_preset(self.preset)
        encoder, predictor = preset.encoder, preset.predictor
        grid = {
            k: v for k in ("num_frames", "image_size", "patch_size") if (v := getattr(self, k)) is not None
        }
        encoder = dataclasses.replace(encoder, attention=self.attention, **grid)
        if self.encoder_dim:
            encoder = dataclasses.replace(
                encoder, dim=self.encoder_dim, num_heads=_heads(self.encoder_dim, encoder)
            )
        if self.encoder_depth:
            encoder = dataclasses.replace(encoder, depth=self.encoder_depth)
        predictor = dataclasses.replace(
            predictor,
            encoder_dim=encoder.dim,
            pos_embed=self.predictor_pos_embed,
            copy_last=self.predictor_copy_last,
            same_place=self.predictor_same_place,
            **grid,
        )
        if self.predictor_dim:
            heads = _heads(self.predictor_dim, predictor)
            predictor = dataclasses.replace(predictor, dim=self.predictor_dim, num_heads=heads)
        if self.predictor_depth:
            predictor = dataclasses.replace(predictor, depth=self.predictor_depth)
        types = [spec.name for spec in self.mask_specs()]  # mask token i learns mask type i
        if len(types) > predictor.num_mask_tokens:
            raise ValueError(f"{len(types)} mask types need as many mask tokens in the predictor")
        return encoder, dataclasses.replace(predictor, mask_types=types)

    def mask_specs(self) -> list[MaskSpec]:
        if self.masks:
            return [mask_from_dict(m) for m in self.masks]
        specs: list[MaskSpec] = list(RELEASED_MASKS)
        if self.temporal_mask_ratio > 0:
            specs.append(FutureMask(temporal_mask_ratio=self.temporal_mask_ratio, mask_ratio=self.mask_ratio))
        return specs


def _heads(dim: int, config: EncoderConfig | PredictorConfig) -> int:
    head_dim = config.dim // config.num_heads
    if dim % head_dim:
        raise ValueError(f"width {dim} is not a multiple of the preset's head width {head_dim}")
    return dim // head_dim


def centered(tokens: Tensor) -> Tensor:
    """Tokens `(B, n, D)` minus their clip's mean token `(B, 1, D)`."""
    return tokens - tokens.mean(1, keepdim=True)


FROZEN_TARGET_DIR = "target_encoder"  # inside a saved run whose target stayed at initialisation


def saved_frozen_target(run: str | os.PathLike) -> VideoEncoder | None:
    """The target encoder a frozen-target run saved (the tokens its predictor learned to predict),
    in eval mode; None for any other run (its predictor predicts the saved encoder's tokens)."""
    directory = Path(run) / FROZEN_TARGET_DIR
    return VideoEncoder.from_pretrained(directory).eval() if directory.is_dir() else None


class VJEPAModel(nn.Module):
    """`loss, metrics = model(videos)`: one V-JEPA training forward on `(B, 3, T, H, W)` clips."""

    def __init__(self, config: VJEPAConfig | dict[str, Any] | None = None, **overrides):
        super().__init__()
        if isinstance(config, dict):
            config = VJEPAConfig(**config)
        self.config = dataclasses.replace(config or VJEPAConfig(), **overrides)
        encoder_config, predictor_config = self.config.model_configs()
        self.context_encoder = VideoEncoder(encoder_config)
        self.target_encoder = copy.deepcopy(self.context_encoder).requires_grad_(False)
        self.predictor = MaskedPredictor(predictor_config)
        self.mask_specs = self.config.mask_specs()
        self.mask_generator = torch.Generator().manual_seed(self.config.seed)

    def grid(self, videos: Tensor) -> Grid:
        c = self.context_encoder.config
        return self.context_encoder.grid(as_video(videos, c.patch_size, c.tubelet_size))

    def sample_masks(self, grid: Grid, batch: int, generator: torch.Generator | None = None) -> list[Masks]:
        """One (context_idx, target_idx) pair per mask type for a batch on `grid`."""
        generator = generator or self.mask_generator
        return [spec.sample(grid, batch, generator) for spec in self.mask_specs]

    def forward(
        self, videos: Tensor, masks: list[Masks] | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss (a scalar with gradient) and detached metrics: loss per mask type, the std across the
        batch of predictions and of targets, the effective rank of the target tokens and whether it
        says they collapsed (`collapsed` 1.0, see `nn.regularizers.collapsed`).
        `generator` draws the masks when none are given, and SIGReg's random directions."""
        c = self.context_encoder.config
        videos = as_video(videos, c.patch_size, c.tubelet_size)
        grid = self.context_encoder.grid(videos)
        generator = generator or self.mask_generator
        masks = masks if masks is not None else self.sample_masks(grid, videos.shape[0], generator)
        online = self.config.target == "online"
        with torch.set_grad_enabled(online and torch.is_grad_enabled()):
            targets = (self.context_encoder if online else self.target_encoder)(videos)  # (B, N, D)
            targets = F.layer_norm(targets, targets.shape[-1:])
        device = videos.device
        metrics: dict[str, Tensor] = {}
        total, weights, regularizer = 0.0, 0.0, 0.0
        for index, (spec, (context_idx, target_idx)) in enumerate(zip(self.mask_specs, masks, strict=True)):
            context_idx, target_idx = context_idx.to(device), target_idx.to(device)
            context = self.context_encoder(videos, context_idx=context_idx)  # (B, n_ctx, D)
            predicted = self.predictor(context, context_idx, target_idx, mask_index=index, grid_hw=grid[1:])
            target = gather_tokens(targets, target_idx)  # (B, n_tgt, D)
            if self.config.center_per_clip:
                predicted, target = centered(predicted), centered(target)
            error = (predicted.float() - target.float()).abs()
            loss = error.mean() if self.config.loss == "l1" else error.pow(2).mean()
            metrics[f"loss/{spec.name}"] = loss.detach()
            metrics[f"pred_std/{spec.name}"] = predicted.detach().float().std(0, correction=0).mean()
            total, weights = total + spec.weight * loss, weights + spec.weight
            if self.config.sigreg:
                samples = context.flatten(0, 1) if self.config.sigreg_samples == "tokens" else context.mean(1)
                regularizer = regularizer + spec.weight * sigreg(samples, generator=generator)
        loss = total / weights
        metrics["loss/prediction"] = loss.detach()
        if self.config.sigreg:
            regularizer = regularizer / weights
            metrics["loss/sigreg"] = regularizer.detach()
            loss = loss + self.config.sigreg * regularizer
        metrics["loss"] = loss.detach()
        metrics["target_std"] = spread = targets.detach().float().std(0, correction=0).mean()
        metrics["target_rank"] = rank = effective_rank(targets.flatten(0, 1))
        metrics["collapsed"] = torch.tensor(float(collapsed(rank, spread, targets.shape[-1])))
        return loss, metrics

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """target <- momentum * target + (1 - momentum) * context, parameter by parameter; with
        `target="online"` a copy (the saved and evaluated encoder is then the trained one); with
        `target="frozen"` nothing."""
        if self.config.target == "frozen":
            return
        target = [p for p in self.target_encoder.parameters()]
        online = [p.detach() for p in self.context_encoder.parameters()]
        torch._foreach_lerp_(target, online, 1.0 if self.config.target == "online" else 1.0 - momentum)

    @property
    def trained_encoder(self) -> VideoEncoder:
        """The encoder evaluations use: the target encoder, or the context encoder when the target
        is frozen at its initialisation."""
        return self.context_encoder if self.config.target == "frozen" else self.target_encoder

    def encode(self, video: Tensor, pool: str | None = None) -> Tensor:
        """Features from the trained encoder."""
        return self.trained_encoder.encode(video, pool=pool)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """The trained encoder and the predictor, in the layout `VideoEncoder.from_pretrained` reads
        (a frozen target also in `FROZEN_TARGET_DIR`: the tokens the predictor learned to predict);
        returns the directory."""
        path = self.trained_encoder.save_pretrained(directory, predictor=self.predictor)
        if self.config.target == "frozen":
            self.target_encoder.save_pretrained(Path(directory) / FROZEN_TARGET_DIR)
        return path
