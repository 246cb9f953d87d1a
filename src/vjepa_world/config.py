"""Model and planner configurations, and every registry of named presets with its lookup.

An `EncoderConfig` and a `PredictorConfig` describe the two V-JEPA 2 networks. Presets pair an
encoder with its matching pretraining predictor, from a `vit_micro` that runs in a unit test to
the released ViT-L/H/g; `AC_PRESETS` name action-conditioned predictors and `PLANNER_PRESETS`
planner settings. Configs round-trip through plain dicts (JSON/YAML).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any


class Deprecated(FutureWarning):
    """An old spelling (a flag, a --set form, a preset name as an encoder) kept working for one
    release; the command line prints these as one line naming the new spelling."""


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
    # the mask type each mask token was trained with, in order (e.g. ["multiblock_8x0.15",
    # "future_0.5"]): saved with the weights so an untrained token is refused; None: not recorded
    mask_types: list[str] | None = None
    # add fixed 3D sine-cosine positions to every token before the blocks (V-JEPA 1, I-JEPA); the
    # released V-JEPA 2 predictor has RoPE only, so its checkpoints load with this off
    pos_embed: bool = False
    # add to each predicted token the (layer-normed) context token at the same spatial position in
    # the latest earlier step, when there is one: the predictor starts at "copy the last frame"
    # and learns only what changes (not in the released predictor, which loads with this off)
    copy_last: bool = False
    # each target token sees only the context token at its own place in the latest earlier step
    # (plus its sine-cosine position, which tells the horizon), never other tokens: whatever the
    # prediction needs of the motion, the encoder's tokens must then carry
    same_place: bool = False

    def __post_init__(self):
        if self.mask_types is not None and len(self.mask_types) > self.num_mask_tokens:
            raise ValueError(
                f"{len(self.mask_types)} mask types need as many mask tokens, the predictor has "
                f"{self.num_mask_tokens}"
            )


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


# ---------------------------------------------------------------------------- planning


OBJECTIVES = ("auto", "latent", "state", "distance", "reward")


@dataclass
class PlannerConfig:
    """How the planner searches (CEM or MPPI) and how the MPC loop uses its plans (`planning.py`)."""

    method: str = "cem"  # or "mppi"
    horizon: int = 2  # model steps planned ahead
    samples: int = 400
    elites: int = 10  # CEM: samples the next Gaussian is fitted to
    iterations: int = 10
    momentum: float = 0.15  # new mean/std = momentum * old + (1 - momentum) * the elites'
    init_std: float = 1.0  # first std, as a fraction of half the action range
    min_std: float = 0.02  # floor, same units: the search never collapses to one point
    temperature: float = 0.5  # MPPI: softmax(-standardised energy / temperature)
    # what is compared with the goal: "latent" (the latents), "state" (the states a world model's
    # state head decodes from them: needs a model trained on observation.state) or "distance" (the
    # learned temporal distance of its distance head: environment steps to the goal), or "reward"
    # (minus the return its reward head predicts over the horizon: no goal image needed); "auto" is
    # "distance" for a world model with a distance head (train-wm fits one by default), else "latent"
    objective: str = "auto"
    goal_weight: float = 0.0  # objective=reward: plus this weight x the latent goal energy (needs a goal)
    futures: int = (
        1  # futures drawn per candidate by the model's stochastic or ensemble head (1: deterministic)
    )
    risk: float = (
        0.0  # with futures > 1: energy = mean + risk x std over them (> 0 pessimistic, < 0 optimistic)
    )
    uncertainty: str | None = None  # the head that draws futures: stochastic, ensemble (None: the model's)
    energy: str = "l2"  # distance to the goal latents: l2 (squared, LeWorldModel) or l1 (V-JEPA 2-AC)
    reduce: str = "sum"  # energy summed over the horizon (get there and stay), or of the "final" step only
    execute: int = 1  # MPC: model steps executed before replanning
    # MPC: plan one environment action per model step, held for its frame_skip environment steps
    # (a search space frame_skip times smaller); False plans every environment step's action
    hold_actions: bool = False
    warm_start: bool = True  # start from the previous plan shifted by the steps executed
    history: int | None = None  # MPC: observed steps kept as context (None: what the model trained with)
    seed: int = 0

    def __post_init__(self):
        if self.method not in ("cem", "mppi"):
            raise ValueError(f"planner method must be 'cem' or 'mppi', got {self.method!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.energy not in ("l1", "l2") or self.reduce not in ("final", "sum"):
            raise ValueError(f"energy must be l1|l2, reduce final|sum; got {self.energy!r}, {self.reduce!r}")
        if self.samples < 1 or self.horizon < 1 or self.iterations < 1:
            raise ValueError(
                f"need samples, horizon and iterations >= 1, got samples {self.samples}, horizon "
                f"{self.horizon}, iterations {self.iterations}"
            )
        if self.method == "cem" and not 1 <= self.elites <= self.samples:
            raise ValueError(
                f"CEM needs 1 <= elites <= samples, got elites {self.elites}, samples {self.samples}"
            )
        if not 1 <= self.execute <= self.horizon:
            raise ValueError(f"execute must be in [1, horizon={self.horizon}], got {self.execute}")
        if self.futures < 1 or (self.risk and self.futures < 2):
            raise ValueError(
                f"need futures >= 1, and >= 2 for a risk weight; got {self.futures}, risk {self.risk}"
            )
        if self.goal_weight and self.objective != "reward":
            raise ValueError(
                "goal_weight adds a goal energy to objective=reward: set objective=reward or drop it"
            )

    @property
    def needs_goal(self) -> bool:
        """Whether the objective compares with a goal image."""
        return self.objective != "reward" or self.goal_weight > 0


PLANNER_PRESETS = {
    # what `plan` and `demo` use: 3 model steps ahead, the energy summed over them (measured in
    # docs/results.md: with a final-step energy even the true simulator and distance reach far less)
    "default": PlannerConfig(horizon=3, samples=128, elites=12, iterations=6, momentum=0.15),
    "vjepa2_ac": PlannerConfig(
        horizon=2, samples=400, elites=10, iterations=10, momentum=0.15, energy="l1", reduce="final"
    ),
    # LeWorldModel's CEM: 5 model steps ahead, 300 samples, the best 30, 30 iterations, MSE at the end
    "lewm": PlannerConfig(
        horizon=5,
        samples=300,
        elites=30,
        iterations=30,
        momentum=0.0,
        reduce="final",
    ),
    # what a 2-core CPU plans with in about a tenth of a second per action
    "fast": PlannerConfig(horizon=2, samples=100, elites=10, iterations=4, momentum=0.15, energy="l1"),
}


# ---------------------------------------------------------------------------- the preset lookups


def _lookup(registry: dict[str, Any], name: str, what: str) -> Any:
    """A fresh copy of `registry[name]`; an unknown name is an error that lists the known ones."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}: choose one of {', '.join(registry)}")
    return copy.deepcopy(registry[name])


def get_preset(name: str) -> Preset:
    """Return a fresh copy of a model preset (`PRESETS`), so callers may edit it freely."""
    return _lookup(PRESETS, name, "preset")


def preset_config(name: str, role: str):
    """The `role` network's config of a named preset: "encoder" or "predictor" of `PRESETS`, or
    "ac_predictor" of `AC_PRESETS`."""
    if role == "ac_predictor":
        return _lookup(AC_PRESETS, name, "action-conditioned preset")
    return getattr(get_preset(name), role)


def planner_config(preset: str = "default", **changes) -> PlannerConfig:
    """A planner preset (`PLANNER_PRESETS`) with some fields changed (`--set planner.samples=200`);
    a change that would not act with the others (`planner_inert_keys`) is a one-line error."""
    base = _lookup(PLANNER_PRESETS, preset, "planner preset")
    check_keys(PlannerConfig, changes)
    config = dataclasses.replace(base, **changes)
    inert = planner_inert_keys(config)
    for key, value in changes.items():
        if key in inert and value != getattr(base, key):
            raise ValueError(f"planner.{key} {inert[key]}: drop it (its value {value!r} would be ignored)")
    return config


def planner_inert_keys(config: PlannerConfig) -> dict[str, str]:
    """{key: why it has no effect} for the planner settings that would not act with the others."""
    inert = {}
    if config.method != "cem":
        inert["elites"] = "is CEM's (the samples it refits to); MPPI weights every sample by temperature"
    if config.method != "mppi":
        inert["temperature"] = "is MPPI's; CEM refits to the elites (set method=mppi)"
    if config.objective not in ("latent", "auto"):
        inert["energy"] = f"is the latent objective's distance; objective={config.objective} has its own"
    return inert


# ---------------------------------------------------------------------------- config helpers


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
    "OBJECTIVES",
    "PLANNER_PRESETS",
    "PRESETS",
    "ACPredictorConfig",
    "Deprecated",
    "EncoderConfig",
    "PlannerConfig",
    "PredictorConfig",
    "Preset",
    "check_keys",
    "from_dict",
    "get_preset",
    "mlp_hidden_dim",
    "planner_config",
    "planner_inert_keys",
    "preset_config",
    "to_dict",
]
