"""Model configurations and the one registry of named size presets.

An `EncoderConfig` and a `PredictorConfig` describe the two V-JEPA 2 networks. Presets pair an
encoder with its matching pretraining predictor, from a `vit_micro` that runs in a unit test to
the released ViT-L/H/g. Configs round-trip through plain dicts (JSON/YAML).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class EncoderConfig:
    """The video ViT. `image_size` and `num_frames` are the training clip; inference takes any
    clip whose size is a multiple of the patch and tubelet (RoPE has no fixed grid)."""

    dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    patch_size: int = 16
    tubelet_size: int = 2
    image_size: int = 256
    num_frames: int = 16
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    out_layers: list[int] | None = None
    attention: str = "joint"  # or "factorized": blocks alternate attention over space and over time

    def __post_init__(self):
        if self.attention not in ("joint", "factorized"):
            raise ValueError(f"attention must be 'joint' or 'factorized', got {self.attention!r}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


@dataclass
class PredictorConfig:
    """The pretraining (masked) predictor. Its RoPE decodes token indices on the grid of
    `image_size` / `patch_size`, as the released predictor does."""

    encoder_dim: int = 1024
    dim: int = 384
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    num_mask_tokens: int = 10
    patch_size: int = 16
    tubelet_size: int = 2
    image_size: int = 256
    num_frames: int = 16
    qkv_bias: bool = True
    norm_eps: float = 1e-6


@dataclass
class ACPredictorConfig:
    """The action-conditioned predictor (V-JEPA 2-AC); defaults are the released ViT-g one.
    `state_dim` 0 means no state token (frames and actions only); `extrinsics_dim` is in the
    released weights but unused unless `use_extrinsics`."""

    encoder_dim: int = 1408
    dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    action_dim: int = 7
    state_dim: int = 7
    extrinsics_dim: int = 0
    use_extrinsics: bool = False
    qkv_bias: bool = True
    norm_eps: float = 1e-6

    def __post_init__(self):
        if self.use_extrinsics and not self.extrinsics_dim:
            raise ValueError("use_extrinsics needs extrinsics_dim > 0")

    @property
    def conditioning_tokens(self) -> int:
        """Tokens before each step's frame tokens: action, then state, then extrinsics."""
        return 1 + bool(self.state_dim) + self.use_extrinsics


AC_PRESETS: dict[str, ACPredictorConfig] = {
    # CPU-sized: planning calls it thousands of times per action (see machines-and-envs.md).
    "ac_tiny": ACPredictorConfig(encoder_dim=192, dim=192, depth=4, num_heads=4, action_dim=2, state_dim=0),
    "ac_small": ACPredictorConfig(encoder_dim=384, dim=384, depth=6, num_heads=6, action_dim=2, state_dim=0),
    # Released V-JEPA 2-AC: on the ViT-g encoder, 7-D end-effector actions and states.
    "ac_vitg": ACPredictorConfig(extrinsics_dim=6),
}


@dataclass
class Preset:
    """A named model size: the encoder and its matching predictor."""

    encoder: EncoderConfig
    predictor: PredictorConfig
    params_millions: float | None = None  # the released encoder's parameter count, when released


def _preset(
    dim,
    depth,
    heads,
    pred_dim,
    pred_depth,
    pred_heads,
    *,
    mlp=4.0,
    patch=16,
    size=256,
    frames=16,
    params=None,
) -> Preset:
    grid = {"patch_size": patch, "image_size": size, "num_frames": frames}
    return Preset(
        encoder=EncoderConfig(dim=dim, depth=depth, num_heads=heads, mlp_ratio=mlp, **grid),
        predictor=PredictorConfig(
            encoder_dim=dim, dim=pred_dim, depth=pred_depth, num_heads=pred_heads, **grid
        ),
        params_millions=params,
    )


PRESETS: dict[str, Preset] = {
    # CPU-sized: micro for unit tests, tiny/small/base for real runs on a laptop.
    "vit_micro": _preset(64, 2, 2, 32, 2, 1, patch=8, size=32, frames=4),
    "vit_tiny": _preset(192, 12, 3, 96, 4, 3, patch=8, size=64, frames=8),
    "vit_small": _preset(384, 12, 6, 192, 6, 6, size=128),
    "vit_base": _preset(768, 12, 12, 384, 12, 12, size=224),
    # The released V-JEPA 2 encoders (ViT-g: 22 heads, MLP ratio 48/11), each with the 384-wide predictor.
    "vit_large": _preset(1024, 24, 16, 384, 12, 12, params=304),
    "vit_huge": _preset(1280, 32, 16, 384, 12, 12, params=632),
    "vit_giant": _preset(1408, 40, 22, 384, 12, 12, mlp=48 / 11, params=1012),
    "vit_giant_384": _preset(1408, 40, 22, 384, 12, 12, mlp=48 / 11, size=384, params=1012),
}


def get_preset(name: str) -> Preset:
    """Return a fresh copy of a preset, so callers may edit it freely."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(
        PRESETS[name],
        encoder=dataclasses.replace(PRESETS[name].encoder),
        predictor=dataclasses.replace(PRESETS[name].predictor),
    )


def mlp_hidden_dim(dim: int, mlp_ratio: float) -> int:
    """Width of the MLP's hidden layer: int(dim * ratio) as upstream, robust to float round-off
    (1408 * 48/11 must give 6144, and a ratio inferred as hidden/dim must give hidden back)."""
    return int(dim * mlp_ratio + 1e-6)


def check_keys(cls: type, values: dict[str, Any]) -> None:
    """An unknown key of config dataclass `cls` is an error that lists the known ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}: known keys are {sorted(names)}")


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build a config dataclass from a dict; an unknown key is an error that lists the known ones."""
    check_keys(cls, values)
    return cls(**values)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


__all__ = [
    "AC_PRESETS",
    "PRESETS",
    "ACPredictorConfig",
    "EncoderConfig",
    "PredictorConfig",
    "Preset",
    "check_keys",
    "from_dict",
    "get_preset",
    "mlp_hidden_dim",
    "to_dict",
]
